"""The training step on its own: the rows each loss reads, and one real step of every loss on a tiny
encoder (the weights move, the checkpoint loads as the encoder family and scores differently)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from search_service.errors import InvalidRequestError
from search_service.finetuning.training import (
    LOSSES,
    TrainingOptions,
    column_rows,
    listwise_rows,
    train,
)
from search_service.rerankers import load_reranker

LINES = [
    {"query": "q1", "pos": ["p1a", "p1b"], "neg": ["n1", "n2", "n3", "n4", "n5", "n6"]},
    {"query": "q2", "pos": ["p2"], "neg": ["m1", "m2"]},
]


def test_lists_draw_negatives_by_seed_and_columns_repeat_a_short_line():
    lists = listwise_rows(LINES, group_size=5, seed=3)
    assert lists["query"] == ["q1", "q1", "q2"]  # one list per positive
    assert [docs[0] for docs in lists["docs"]] == ["p1a", "p1b", "p2"]
    for docs in lists["docs"][:2]:
        assert len(docs) == 5 and len(set(docs[1:])) == 4 and set(docs[1:]) <= set(LINES[0]["neg"])
    assert lists["docs"][2] == ["p2", "m1", "m2"] and lists["labels"][2] == [1.0, 0.0, 0.0]
    assert listwise_rows(LINES, 5, 3) == lists and any(
        listwise_rows(LINES, 5, seed)["docs"] != lists["docs"] for seed in range(4, 10))

    columns = column_rows(LINES, group_size=5, seed=3)
    assert list(columns) == ["query", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
    assert columns["positive"] == ["p1a", "p1b", "p2"]
    assert [columns[f"negative_{i}"][0] for i in range(1, 5)] == lists["docs"][0][1:]
    assert [columns[f"negative_{i}"][2] for i in range(1, 5)] == ["m1", "m2", "m1", "m2"]  # cycled


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lines") / "train.jsonl"
    lines = [{"query": f"what is topic {i}?", "pos": [f"topic {i} is a thing about {i} and more"],
              "neg": [f"unrelated passage number {i}-{j}" for j in range(4)]} for i in range(6)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("loss", LOSSES)
def test_one_step_of_each_loss_moves_the_weights_and_loads_as_an_encoder(loss, train_file, tiny_reranker_dir,
                                                                         tiny_reranker, tmp_path):
    options = TrainingOptions(base_model=str(tiny_reranker_dir), max_length=32, max_steps=2, batch_size=3,
                              learning_rate=1e-3, loss=loss, device="cpu", progress=False)
    summary = train(train_file, tmp_path / "out", options)
    assert summary["steps"] == 2 and summary["loss"] == loss and summary["lists"] == 6
    assert summary["pairs"] == 6 * (6 if loss == "multiple-negatives" else 5)
    before = load_file(str(tiny_reranker_dir / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    moved = [name for name in before if name in after and not torch.equal(before[name], after[name])]
    assert len(moved) > len(before) // 2, moved

    trained = load_reranker(str(tmp_path / "out"), device="cpu")
    assert trained.family == "encoder"
    passages = ["topic 1 is a thing about 1 and more", "unrelated passage number 1-0"]
    assert trained.score("what is topic 1?", passages) != tiny_reranker.score("what is topic 1?", passages)


def test_an_unknown_loss_is_refused(train_file, tiny_reranker_dir, tmp_path):
    with pytest.raises(InvalidRequestError, match="loss must be one of multiple-negatives, listnet, lambda"):
        train(train_file, tmp_path / "out", TrainingOptions(base_model=str(tiny_reranker_dir), loss="pointwise"))
