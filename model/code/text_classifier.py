"""The classifier: mean of n-gram embeddings (``EmbeddingBag``) followed by a linear layer."""

from __future__ import annotations

import torch
from torch import nn

EMBEDDING_KEY = "embedding.weight"
REQUIRED_KEYS = (EMBEDDING_KEY, "fc.weight", "fc.bias")


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
        missing = [key for key in REQUIRED_KEYS if key not in state]
        if missing:
            raise ValueError(f"model.pth lacks {missing}; found {sorted(state)}")
        vocab_size, embed_dim = state[EMBEDDING_KEY].shape
        num_class = state["fc.weight"].shape[0]
        model = cls(vocab_size, embed_dim, num_class)
        model.load_state_dict({key: state[key].float() for key in REQUIRED_KEYS})
        return model

    def folded(self) -> torch.Tensor:
        """The ``(vocab_size, num_class)`` table that serves exactly like this model.

        Mean pooling and the linear layer are both linear, so ``fc(mean(E[ids]))`` equals
        ``mean((E @ W.T + b)[ids])``: each looked-up row shrinks from ``embed_dim`` numbers to
        ``num_class`` (4) and the matmul disappears from every request.
        """
        with torch.no_grad():
            return (self.embedding.weight @ self.fc.weight.T + self.fc.bias).contiguous()
