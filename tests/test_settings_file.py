"""The settings file: options > environment > file > defaults; RAG_AUTH never comes from it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_service.errors import ConfigurationError
from search_service.settings import Settings
from search_service.settings_file import FILE_NAME, read_settings_file, update_settings_file


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_fills_what_the_environment_leaves_unset(tmp_path):
    path = write(tmp_path / "s.env", "# the demo's choice\nRAG_EMBEDDER_MODEL=/models/minilm\n"
                 "RAG_RERANKER_MODEL=none\nexport RAG_TOP_K='3'\n\nRAG_DATA_DIR=\"/srv/rag\"\n")
    settings = Settings.from_env({"RAG_SETTINGS_FILE": str(path), "RAG_TOP_K": "4"})
    assert settings.embedder_model == "/models/minilm"  # file over default
    assert settings.reranker_model is None
    assert settings.top_k == 4  # environment over file
    assert settings.data_dir == Path("/srv/rag")
    assert settings.settings_file == path
    assert Settings.from_env({"RAG_SETTINGS_FILE": str(path)}, top_k=2).top_k == 2  # options over both
    assert Settings.from_env({"RAG_SETTINGS_FILE": "none"}).embedder_model == "BAAI/bge-m3"  # defaults


def test_the_file_in_the_current_directory_is_read_for_the_process_environment(tmp_path, monkeypatch):
    write(tmp_path / FILE_NAME, "RAG_TOP_K=2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAG_SETTINGS_FILE", raising=False)
    monkeypatch.delenv("RAG_TOP_K", raising=False)
    assert Settings.from_env().top_k == 2
    assert Settings.from_env({}).top_k == 5  # a mapping given by the caller is the whole environment
    monkeypatch.setenv("RAG_SETTINGS_FILE", "off")
    assert Settings.from_env().top_k == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ("RAG_AUTH=off\n", "RAG_AUTH cannot be set in the settings file"),
        ("RAG_TOPK=3\n", "line 1: unknown setting 'RAG_TOPK'"),
        ("# ok\nRAG_TOP_K\n", "line 2: expected NAME=value"),
        ("RAG_TOP_K=many\n", "RAG_TOP_K must be an integer"),
    ],
)
def test_a_bad_line_names_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "s.env", text)
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({"RAG_SETTINGS_FILE": str(path)})


def test_a_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a file"):
        Settings.from_env({"RAG_SETTINGS_FILE": str(tmp_path / "nope.env")})


def test_update_keeps_other_lines_and_replaces_its_own(tmp_path):
    path = tmp_path / "s.env"
    update_settings_file(path, {"RAG_DATA_DIR": "/a", "RAG_RERANKER_MODEL": "none"}, "written by the demo\n\nedit freely")
    assert path.read_text().startswith("# written by the demo\n#\n# edit freely\n")
    with path.open("a") as handle:
        handle.write("RAG_TOP_K=3\n")
    update_settings_file(path, {"RAG_DATA_DIR": "/b"}, "unused")
    assert read_settings_file(path, {"RAG_DATA_DIR", "RAG_RERANKER_MODEL", "RAG_TOP_K"}) == {
        "RAG_DATA_DIR": "/b", "RAG_RERANKER_MODEL": "none", "RAG_TOP_K": "3"
    }


def test_the_cli_reads_the_file_and_the_environment_wins(tmp_path):
    """`search-service migrate` prints the database it used: the file's data directory, unless
    RAG_DATA_DIR is set."""
    write(tmp_path / FILE_NAME, f"RAG_DATA_DIR={tmp_path / 'from-file'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    cli = [sys.executable, "-m", "search_service", "migrate"]
    out = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert str(tmp_path / "from-file" / "rag.db") in out.stdout
    env["RAG_DATA_DIR"] = str(tmp_path / "from-env")
    out = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert str(tmp_path / "from-env" / "rag.db") in out.stdout
