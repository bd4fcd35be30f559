"""The folded serving table computes exactly what the EmbeddingBag + Linear module computes."""

import pytest
import torch

from model import use_serving_code

use_serving_code()
from text_classifier import TextClassifier, folded_table  # noqa: E402


def test_folded_table_gives_the_module_logits():
    torch.manual_seed(0)
    model = TextClassifier(vocab_size=50, embed_dim=8, num_class=4)
    ids = torch.randint(0, 50, (30,))
    offsets = torch.tensor([0, 5, 6, 20])
    expected = model(ids, offsets)
    table = folded_table(model.state_dict())
    got = torch.nn.functional.embedding_bag(ids, table, offsets, mode="mean")
    assert table.shape == (50, 4)
    assert torch.allclose(got, expected, atol=1e-5)


def test_fp16_state_loads_as_float32_with_its_shapes():
    state = {k: v.half() for k, v in TextClassifier(20, 6, 4).state_dict().items()}
    model = TextClassifier.from_state_dict(state)
    assert (model.embedding.num_embeddings, model.embedding.embedding_dim) == (20, 6)
    assert model.fc.weight.dtype == torch.float32


@pytest.mark.parametrize("state, message", [
    ({"embedding.weight": torch.zeros(3, 2)}, r"lacks \['fc.weight', 'fc.bias'\]"),
    ({"embedding.weight": torch.zeros(3, 2), "fc.weight": torch.zeros(4, 5),
      "fc.bias": torch.zeros(4)}, "shapes do not fit together"),
])
def test_inconsistent_states_are_refused(state, message):
    with pytest.raises(ValueError, match=message):
        folded_table(state)
