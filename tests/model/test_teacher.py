"""The MiniLM sentence encoder and the teacher whose soft labels training mixes in."""

import pytest
import torch

from model.sentence_encoder import MAX_TOKENS, SentenceEncoder
from model.teacher import Teacher


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


TEXTS = ["Stocks fell sharply on Wall Street today.",
         "Shares dropped steeply in New York trading.",
         "The goalkeeper saved a penalty in the final minute of the cup match.",
         "Intel unveils a faster processor."]


def test_embeddings_are_unit_vectors_that_group_paraphrases(encoder):
    embeddings = encoder.encode(TEXTS)
    assert embeddings.shape == (4, 384)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4))
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2] + 0.2
    assert similarity[0, 1] > similarity[0, 3]


def test_embeddings_match_the_reference_implementation(encoder):
    """Values from transformers 4.46.3 (AutoModel, masked mean, normalised) on the same files."""
    got = encoder.encode(["Stocks fell sharply on Wall Street today.",
                          "Café-bar's owner, 42, says \"no\" <b>again</b>!"])
    assert torch.allclose(got[0, :6], torch.tensor(
        [0.053002, -0.00644, 0.066655, 0.066951, -0.02828, 0.014505]), atol=2e-6)
    assert torch.allclose(got[1, 100:104], torch.tensor(
        [-0.032742, 0.092688, 0.001233, -0.033259]), atol=2e-6)


def test_batching_and_padding_do_not_change_an_embedding(encoder):
    together = encoder.encode(TEXTS, batch_size=4)
    alone = torch.cat([encoder.encode([text]) for text in TEXTS])
    assert torch.allclose(together, alone, atol=1e-5)


def test_token_ids_are_framed_and_capped(encoder):
    ids = encoder.token_ids("Hello world")
    assert [encoder.pieces.pieces[i] for i in ids] == ["[CLS]", "hello", "world", "[SEP]"]
    assert len(encoder.token_ids("word " * 1000)) == MAX_TOKENS


class CountingEncoder:
    """Unit vectors that separate the labels' words; counts what it was asked to encode."""

    def __init__(self):
        self.encoded = []

    def encode(self, texts):
        self.encoded += texts
        return torch.nn.functional.normalize(
            torch.tensor([[text.count("goal"), text.count("stock"), 0.1] for text in texts]), dim=1)


def test_soft_labels_are_probabilities_that_follow_the_training_labels():
    rows = [(1, "goal"), (1, "goal goal"), (2, "stock"), (2, "stock stock"), (1, "goal stock goal")]
    probabilities = Teacher(CountingEncoder()).soft_labels(rows, 4, l2=0.01)
    assert probabilities.shape == (5, 4)
    assert torch.allclose(probabilities.sum(1), torch.ones(5))
    assert probabilities.argmax(1).tolist() == [1, 1, 2, 2, 1]


def test_each_text_is_encoded_once():
    encoder = CountingEncoder()
    teacher = Teacher(encoder)
    first = teacher.embed(["goal", "stock", "goal"])
    again = teacher.embed(["stock", "goal"])
    assert sorted(encoder.encoded) == ["goal", "stock"]
    assert torch.equal(again, first[[1, 0]])
