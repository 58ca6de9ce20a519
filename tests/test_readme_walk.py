"""A newcomer's first hour: `scripts/demo.py`, then the README's "Using it" commands as written.

The commands come from README.md itself (the bash blocks between the `readme-walk` markers), so
when the README changes this test shows whether someone can still follow it. They run in one
bash, top to bottom, in a fresh directory that looks like the clone (its files linked, `.venv`
the virtualenv running the tests, no data), offline, with no RAG_* variable set: what the
commands need comes from the settings file the demo wrote. Stand-ins, and only these: a tiny
generated reranker is the reranker at hand when the demo runs, port 8000 becomes a free port,
and `datasets/scifact` is a small BEIR-format dataset written here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.serve_process import free_port

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- readme-walk:start", "<!-- readme-walk:end -->"
NOT_LINKED = {".git", ".venv", "data", "eval", "search-service.env", "serve.log", "datasets"}
MARK = "@@readme-walk"


def walk_commands(readme: str) -> list[str]:
    """The commands of the bash blocks between the markers, in order (`\\` continuations joined)."""
    assert START in readme and END in readme, "README.md lost its readme-walk markers"
    section = readme.split(START, 1)[1].split(END, 1)[0]
    commands, pending = [], ""
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def fake_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in NOT_LINKED and not entry.name.startswith(".pytest"):
            (clone / entry.name).symlink_to(entry)
    (clone / ".venv").symlink_to(Path(sys.prefix))
    write_beir(clone / "datasets" / "scifact")
    return clone


def write_beir(folder: Path) -> None:
    """Six documents, three judged queries: corpus.jsonl, queries.jsonl, qrels/test.tsv."""
    corpus = {
        "d1": "The giant panda eats bamboo shoots and leaves, up to 38 kilograms a day.",
        "d2": "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
        "d3": "The Eiffel Tower in Paris was finished in 1889 for the World's Fair.",
        "d4": "Volcanoes erupt when magma rises through cracks in the Earth's crust.",
        "d5": "The printing press of Gutenberg used movable metal type around 1450.",
        "d6": "Coffee is brewed by passing hot water through ground roasted beans.",
    }
    queries = {"q1": "What do pandas eat?", "q2": "How do plants make sugar?", "q3": "When was the Eiffel Tower built?"}
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")


def newcomer_env(tmp_path: Path) -> dict:
    """A shell with the virtualenv not activated, no RAG_* variable, no model hub."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), TOKENIZERS_PARALLELISM="false")
    env.pop("VIRTUAL_ENV", None)
    return env


def script(commands: list[str], port: int) -> str:
    lines = ["set -euo pipefail"]
    for index, command in enumerate(commands):
        command = command.replace("localhost:8000", f"localhost:{port}").replace("--port 8000", f"--port {port}")
        lines += [f'echo; echo "{MARK} {index}"', command]
    return "\n".join(lines) + f'\necho; echo "{MARK} done"\n'


def outputs(text: str, commands: list[str]) -> dict[str, str]:
    """Each command's output, by command."""
    parts = re.split(rf"^{MARK} (\d+|done)$", text, flags=re.MULTILINE)
    return {commands[int(parts[i])]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2) if parts[i] != "done"}


@pytest.mark.slow
def test_the_readme_runs_top_to_bottom_after_the_demo(tmp_path, tiny_reranker_dir):
    commands = walk_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    clone = fake_clone(tmp_path)
    env = newcomer_env(tmp_path)

    demo = subprocess.run([str(clone / ".venv" / "bin" / "python"), "scripts/demo.py"], check=False, cwd=clone, capture_output=True,
                          text=True, timeout=600, env={**env, "RAG_RERANKER_MODEL": str(tiny_reranker_dir)})
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    saved = (clone / "search-service.env").read_text()
    assert f"RAG_DATA_DIR={clone.resolve() / 'data' / 'demo-minilm'}" in saved
    assert f"RAG_RERANKER_MODEL={tiny_reranker_dir}" in saved and "RAG_AUTH" not in saved
    go_on = demo.stdout.split('Go on with the README\'s "Using it" section')[1].splitlines()[1:]
    readme_start = [re.sub(r"\s+#.*$", "", command) for command in commands[:2]]
    assert [line.strip() for line in go_on if line.strip()] == readme_start  # the demo and the README agree

    walk = subprocess.Popen(["bash", "-c", script(commands, free_port())], cwd=clone, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = walk.communicate(timeout=900)
    finally:
        try:
            os.killpg(walk.pid, signal.SIGKILL)  # a server the walk left behind (it stops its own)
        except ProcessLookupError:
            pass
    (tmp_path / "walk.log").write_text(stdout + "\n--- stderr ---\n" + stderr)  # to read after a failure
    out = outputs(stdout + "\n", commands)
    failed = list(out)[-1] if out else "(before the first command)"
    assert walk.returncode == 0, f"README command failed: {failed}\n{stdout[-4000:]}\n{stderr[-4000:]}"

    by_word = {name: [o for c, o in out.items() if name in c] for name in ("curl", "keys list", "eval", "search-service search")}
    for body in by_word["curl"]:  # every HTTP call answered with a JSON body, none of them an error
        assert "error" not in json.loads(body), body
    assert "giant-panda.md" in by_word["search-service search"][0]  # the demo's collection
    assert "chat" in by_word["keys list"][0] and "nDCG@10" in by_word["eval"][0]
    answers = [json.loads(body) for body in by_word["curl"] if body.startswith('{"collection"') or '"results"' in body]
    notes = [a for a in answers if a.get("collection") == "notes" and "results" in a]
    assert notes and notes[0]["results"][0]["document_id"] == "giant-panda.md"  # uploaded, indexed, found
    summary = (clone / "serve.log").read_text()
    assert "auth: on" in summary and "settings file" in summary and "serving on" in summary
