"""Library DEBUG lines (bm25s sets its own logger to DEBUG) reach the CLI's log only with -v."""

import logging
import subprocess
import sys
from datetime import datetime, timedelta

SCRIPT = """
import logging, sys
from search_service.logs import setup_logging
setup_logging(verbose=sys.argv[1] == "-v")
noisy = logging.getLogger("bm25s")
noisy.setLevel(logging.DEBUG)  # what bm25s does for itself
noisy.debug("Building index from tokens")
noisy.warning("a library warning")
logging.getLogger("search_service.test").info("our own info")
logging.getLogger("search_service.test").debug("our own debug")
"""


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=True)
    return done.stderr


def test_library_debug_lines_need_verbose():
    quiet = run("-")
    stamp = quiet.splitlines()[0].split(" ", 1)[0]
    assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)  # ISO 8601 with its offset
    assert "Building index from tokens" not in quiet and "our own debug" not in quiet
    assert "a library warning" in quiet and "our own info" in quiet
    loud = run("-v")
    assert "Building index from tokens" in loud and "our own debug" in loud


def test_setup_logging_twice_keeps_one_filter():
    from search_service.logs import DebugNeedsVerbose, setup_logging

    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    try:
        setup_logging(verbose=False)
        setup_logging(verbose=False)
        assert sum(isinstance(f, DebugNeedsVerbose) for f in handler.filters) == 1
        setup_logging(verbose=True)
        assert not any(isinstance(f, DebugNeedsVerbose) for f in handler.filters)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
