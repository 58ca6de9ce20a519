"""The settings file: `RAG_*=value` lines the CLI reads under the environment.

Precedence, highest first: command-line options, environment variables, the settings file, the
built-in defaults. The file is `search-service.env` in the current directory, or the path in
`RAG_SETTINGS_FILE` (`none` reads no file). `scripts/demo.py` writes its model choice and data
directory there, so the README's commands continue with the demo's models and database.
`RAG_AUTH` is refused in the file: turning auth off stays a choice made for one run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from search_service.env_values import DISABLED
from search_service.errors import ConfigurationError

FILE_NAME = "search-service.env"
NOT_IN_FILE = {
    "RAG_AUTH": "turning auth off is a choice for one run: set RAG_AUTH in the environment",
    "RAG_SETTINGS_FILE": "it names the file itself: set it in the environment",
}


def settings_file_path(environ: Mapping[str, str], *, process: bool) -> Path | None:
    """The file to read: `RAG_SETTINGS_FILE`, else (for the process environment only, so that a
    mapping given by a caller stays the whole story) `./search-service.env` when it exists."""
    if "RAG_SETTINGS_FILE" in environ:
        raw = environ["RAG_SETTINGS_FILE"].strip()
        if raw.lower() in DISABLED:
            return None
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"RAG_SETTINGS_FILE names {raw!r}, which is not a file")
        return path
    default = Path.cwd() / FILE_NAME
    return default if process and default.is_file() else None


def read_settings_file(path: Path, known: Iterable[str]) -> dict[str, str]:
    """`NAME=value` per line (`#` comments, blank lines, optional quotes) -> {NAME: value}.
    An unknown name is an error naming the line, so a typo never goes unnoticed."""
    known = set(known)
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        where = f"{path}, line {number}"
        if not sep:
            raise ConfigurationError(f"{where}: expected NAME=value, got {line!r}")
        if name in NOT_IN_FILE:
            raise ConfigurationError(f"{where}: {name} cannot be set in the settings file; {NOT_IN_FILE[name]}")
        if name not in known:
            raise ConfigurationError(f"{where}: unknown setting {name!r} (the README's Settings table lists them)")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def update_settings_file(path: Path, values: Mapping[str, str], header: str) -> None:
    """Set `values` in the file, keeping its other lines; a new file starts with `header`."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else [
        f"# {line}" if line else "#" for line in header.splitlines()
    ]
    pending = dict(values)
    for index, line in enumerate(lines):
        name = line.strip().removeprefix("export ").partition("=")[0].strip()
        if name in pending and not line.lstrip().startswith("#"):
            lines[index] = f"{name}={pending.pop(name)}"
    lines += [f"{name}={value}" for name, value in pending.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
