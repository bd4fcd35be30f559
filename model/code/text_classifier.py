"""The classifier: mean of n-gram embeddings (``EmbeddingBag``) followed by a linear layer."""

from __future__ import annotations

import torch
from torch import nn

EMBEDDING_KEY = "embedding.weight"
REQUIRED_KEYS = (EMBEDDING_KEY, "fc.weight", "fc.bias")


def _checked(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The three tensors of a TextClassifier state_dict as float32, with consistent shapes."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"model.pth lacks {missing}; found {sorted(state)}")
    embedding, weight, bias = (state[key].float() for key in REQUIRED_KEYS)
    if (embedding.dim(), weight.dim(), bias.dim()) != (2, 2, 1) or \
            weight.shape[1] != embedding.shape[1] or bias.shape[0] != weight.shape[0]:
        raise ValueError(f"model.pth shapes do not fit together: embedding "
                         f"{tuple(embedding.shape)}, fc.weight {tuple(weight.shape)}, "
                         f"fc.bias {tuple(bias.shape)}")
    return embedding, weight, bias


def folded_table(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``(vocab_size, num_class)`` table that serves exactly like the model in ``state``.

    Mean pooling and the linear layer are both linear, so ``fc(mean(E[ids]))`` equals
    ``mean((E @ W.T + b)[ids])``: each looked-up row shrinks from ``embed_dim`` numbers to
    ``num_class`` (4) and the matmul disappears from every request. Computed straight from the
    tensors, so serving never builds (and randomly initialises) the module itself.
    """
    embedding, weight, bias = _checked(state)
    return (embedding @ weight.T + bias).contiguous()


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, num_class: int, sparse: bool = False):
        super().__init__()
        # sparse=True (training) makes gradients touch only the rows a batch uses.
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", sparse=sparse)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self, init_range: float = 0.5) -> None:
        self.embedding.weight.data.uniform_(-init_range, init_range)
        self.fc.weight.data.uniform_(-init_range, init_range)
        self.fc.bias.data.zero_()

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for bags of ids: a 2-D ``ids`` is one bag per row, else ``offsets`` start bags."""
        return self.fc(self.embedding(ids, offsets))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "TextClassifier":
        """A float32 model sized from the tensors themselves (stored weights may be fp16)."""
        embedding, weight, bias = _checked(state)
        model = cls(embedding.shape[0], embedding.shape[1], weight.shape[0])
        model.load_state_dict(dict(zip(REQUIRED_KEYS, (embedding, weight, bias))))
        return model
