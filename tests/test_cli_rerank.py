"""`search-service rerank`: passages from arguments, --file and stdin; text and --json output."""

import json

import pytest
from click.testing import CliRunner

from search_service.cli import main
from search_service.rerankers import load_reranker
from tests.support.tiny_llm import make_tiny_llm_reranker

QUERY = "What is the capital of France?"
PASSAGES = [
    "Paris is the capital of France.",
    "The population of China is over 1.4 billion people.",
    "hi",
]


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return make_tiny_llm_reranker(tmp_path_factory.mktemp("checkpoints") / "gemma-tiny")


@pytest.fixture
def env(tiny_reranker_dir, llm_dir):
    return {
        "RAG_RERANKERS": f"enc={tiny_reranker_dir},llm={llm_dir}",
        "RAG_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
    }


def invoke(env, *args, input=None):
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_text_output_is_sorted_with_indexes(env, tiny_reranker):
    result = invoke(env, "rerank", QUERY, *PASSAGES)
    assert result.exit_code == 0, result.output
    scores = tiny_reranker.score(QUERY, PASSAGES)
    order = sorted(range(len(PASSAGES)), key=lambda i: -scores[i])
    lines = result.stdout.splitlines()
    assert [line.split("#")[1].split()[0] for line in lines] == [str(i) for i in order]
    assert lines[0] == f"1. [{scores[order[0]]:.4f}] #{order[0]} {PASSAGES[order[0]]}"


def test_stdin_and_file_give_the_same_json_as_the_api(env, tiny_reranker, tmp_path):
    passages_file = tmp_path / "passages.txt"
    passages_file.write_text("\n".join(PASSAGES[1:]) + "\n\n", encoding="utf-8")
    from_file = json.loads(
        invoke(env, "rerank", QUERY, PASSAGES[0], "--file", str(passages_file), "--json").stdout
    )
    from_stdin = json.loads(
        invoke(
            env, "rerank", QUERY, PASSAGES[0], "-f", "-", "--json", input="\n".join(PASSAGES[1:])
        ).stdout
    )
    for response in (from_file, from_stdin):
        assert response["model"] == "enc" and response["meta"]["raw_scores"] is True
        scores = {r["index"]: r["relevance_score"] for r in response["results"]}
        assert [scores[i] for i in range(3)] == pytest.approx(
            tiny_reranker.score(QUERY, PASSAGES), abs=1e-5
        )
        assert [r["document"]["text"] for r in response["results"]] == [
            PASSAGES[r["index"]] for r in response["results"]
        ]
    normalized = json.loads(
        invoke(env, "rerank", QUERY, *PASSAGES, "--json", "--normalize", "--top-n", "2").stdout
    )
    assert len(normalized["results"]) == 2 and all(
        0 < r["relevance_score"] < 1 for r in normalized["results"]
    )


def test_model_by_name_or_path_with_a_prompt(env, llm_dir):
    llm = load_reranker(llm_dir, device="cpu")
    prompt = "Is B relevant to A?"
    for model in ("llm", str(llm_dir)):
        result = invoke(
            env, "rerank", QUERY, *PASSAGES, "--model", model, "--prompt", prompt, "--json"
        )
        response = json.loads(result.stdout)
        assert response["model"] == "llm"  # by name or path: the configured name, never a path
        scores = {r["index"]: r["relevance_score"] for r in response["results"]}
        assert [scores[i] for i in range(3)] == pytest.approx(
            llm.score(QUERY, PASSAGES, prompt=prompt), abs=1e-5
        )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--prompt", "p"], "the encoder reranker does not support prompt"),
        (["--model", "llm", "--cutoff-layers", "2"], "does not support cutoff_layers"),
        (["--compress-ratio", "3"], "compress_ratio"),
        (["--cutoff-layers", "x"], "expected integers"),
        (["--max-length", "600"], "exceeds the model's limit of 512"),
    ],
)
def test_bad_options_are_cli_errors(env, args, fragment):
    result = invoke(env, "rerank", QUERY, "hi", *args)
    assert result.exit_code != 0 and fragment in result.output


def test_no_passages_or_no_reranker(env):
    assert "no passages" in invoke(env, "rerank", QUERY, "-f", "-", input="\n\n").output
    result = invoke({"RAG_RERANKER_MODEL": "none"}, "rerank", QUERY, "hi")
    assert result.exit_code == 1 and "no reranker is configured" in result.output
