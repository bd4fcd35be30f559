"""Fixtures for the model tests: the serving handler imported as the container imports it, and
the two shipped models loaded through ``model_fn``."""

import json
from pathlib import Path

import pytest
import torch

from model import CODE_DIR
from model.evaluate import import_handler

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ag_news_sample.csv"
SHIPPED = ("model-a", "model-b")


def served_logits(table: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """What serving computes from a folded table (``text_classifier.folded_table``): bag sums
    divided by the sums' weight column."""
    sums = torch.nn.functional.embedding_bag(ids, table, offsets, mode="sum")
    return sums[:, :-1] / sums[:, -1:]


@pytest.fixture(scope="session")
def handler():
    return import_handler(CODE_DIR)


@pytest.fixture(scope="session")
def shipped(handler):
    return {name: handler.model_fn(str(ROOT / "model" / name)) for name in SHIPPED}


@pytest.fixture(scope="session")
def cases():
    return json.loads((ROOT / "config.json").read_text())["load_test"]["cases"]


@pytest.fixture()
def invoke(handler):
    """Run a body through input_fn -> predict_fn -> output_fn; return the parsed JSON answer."""

    def call(model, body, content_type="application/json", accept="application/json"):
        data = handler.input_fn(body, content_type)
        text, media_type = handler.output_fn(handler.predict_fn(data, model), accept)
        assert media_type == "application/json"
        return json.loads(text)

    return call
