"""The folded serving table computes exactly what the EmbeddingBag + Linear module computes."""

import pytest
import torch

from model import use_serving_code

use_serving_code()
from text_classifier import TextClassifier, folded_table  # noqa: E402

from .conftest import served_logits  # noqa: E402


@pytest.mark.parametrize("weighted", [False, True])
def test_folded_table_gives_the_module_logits(weighted):
    torch.manual_seed(0)
    model = TextClassifier(vocab_size=50, embed_dim=8, num_class=4, weighted=weighted)
    if weighted:
        model.bag_weight.uniform_(0.1, 5.0)
    ids = torch.randint(0, 50, (30,))
    offsets = torch.tensor([0, 5, 6, 20])
    expected = model(ids, offsets)
    table = folded_table(model.state_dict())
    assert table.shape == (50, 5)
    assert torch.allclose(table[:, -1], model.bag_weight if weighted else torch.ones(50))
    assert torch.allclose(served_logits(table, ids, offsets), expected, atol=1e-5)


def test_weighted_mean_leans_towards_heavy_entries():
    model = TextClassifier(vocab_size=2, embed_dim=1, num_class=1, weighted=True)
    model.load_state_dict({"embedding.weight": torch.tensor([[0.0], [1.0]]),
                           "fc.weight": torch.ones(1, 1), "fc.bias": torch.zeros(1),
                           "bag_weight": torch.tensor([1.0, 3.0])})
    assert model(torch.tensor([[0, 1]])).item() == pytest.approx(0.75)
    assert model(torch.tensor([0, 1, 1]), torch.tensor([0, 1])).flatten().tolist() == [0.0, 1.0]


def test_fp16_state_loads_as_float32_with_its_shapes():
    state = {k: v.half() for k, v in TextClassifier(20, 6, 4).state_dict().items()}
    model = TextClassifier.from_state_dict(state)
    assert (model.embedding.num_embeddings, model.embedding.embedding_dim) == (20, 6)
    assert model.fc.weight.dtype == torch.float32


CONSISTENT = {"embedding.weight": torch.zeros(3, 2), "fc.weight": torch.zeros(4, 2),
              "fc.bias": torch.zeros(4)}


@pytest.mark.parametrize("state, message", [
    ({"embedding.weight": torch.zeros(3, 2)}, r"lacks \['fc.weight', 'fc.bias'\]"),
    ({"embedding.weight": torch.zeros(3, 2), "fc.weight": torch.zeros(4, 5),
      "fc.bias": torch.zeros(4)}, "shapes do not fit together"),
    ({**CONSISTENT, "bag_weight": torch.ones(4)},
     r"bag_weight has shape \(4,\), expected .* \(3,\)"),
    ({**CONSISTENT, "bag_weight": torch.tensor([1.0, 0.0, 1.0])}, "positive and finite"),
    ({**CONSISTENT, "bag_weight": torch.tensor([1.0, float("inf"), 1.0])}, "positive and finite"),
])
def test_inconsistent_states_are_refused(state, message):
    with pytest.raises(ValueError, match=message):
        folded_table(state)
