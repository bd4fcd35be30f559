"""The classifier: a mean of n-gram embeddings (``EmbeddingBag``) followed by a linear layer.

With ``weighted`` the mean is weighted: each vocabulary entry carries a positive pooling weight
(``bag_weight``), learned in training, so that telling n-grams can outweigh the rest of a text.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import embedding_bag

EMBEDDING_KEY = "embedding.weight"
BAG_WEIGHT_KEY = "bag_weight"  # optional: without it every entry weighs 1 (a plain mean)
REQUIRED_KEYS = (EMBEDDING_KEY, "fc.weight", "fc.bias")


def _checked(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The tensors of a TextClassifier state_dict as float32, with consistent shapes: embedding,
    fc weight, fc bias and the pooling weights (ones when the state has none)."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"model.pth lacks {missing}; found {sorted(state)}")
    embedding, weight, bias = (state[key].float() for key in REQUIRED_KEYS)
    if (embedding.dim(), weight.dim(), bias.dim()) != (2, 2, 1) or \
            weight.shape[1] != embedding.shape[1] or bias.shape[0] != weight.shape[0]:
        raise ValueError(f"model.pth shapes do not fit together: embedding "
                         f"{tuple(embedding.shape)}, fc.weight {tuple(weight.shape)}, "
                         f"fc.bias {tuple(bias.shape)}")
    if BAG_WEIGHT_KEY not in state:
        return embedding, weight, bias, torch.ones(len(embedding))
    bag_weight = state[BAG_WEIGHT_KEY].float()
    if bag_weight.shape != (len(embedding),):
        raise ValueError(f"model.pth {BAG_WEIGHT_KEY} has shape {tuple(bag_weight.shape)}, "
                         f"expected one weight per embedding row, ({len(embedding)},)")
    if not bool((bag_weight > 0).all()) or not bool(bag_weight.isfinite().all()):
        raise ValueError(f"model.pth {BAG_WEIGHT_KEY} must be positive and finite")
    return embedding, weight, bias, bag_weight


def folded_table(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``(vocab_size, num_class + 1)`` table that serves exactly like the model in ``state``:
    per entry, its logits times its pooling weight, then the weight itself. A bag's logits are
    its rows' sum divided by the sum's last column.

    Mean pooling and the linear layer are both linear, so ``fc(Σ wᵢ E[i] / Σ wᵢ)`` equals
    ``Σ wᵢ (E[i] @ W.T + b) / Σ wᵢ``: each looked-up row shrinks from ``embed_dim`` numbers to
    ``num_class + 1`` (5) and the matmul disappears from every request. Computed straight from
    the tensors, so serving never builds (and randomly initialises) the module itself.
    """
    embedding, weight, bias, bag_weight = _checked(state)
    logits = embedding @ weight.T + bias
    return torch.cat([logits * bag_weight[:, None], bag_weight[:, None]], 1).contiguous()


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, num_class: int, sparse: bool = False,
                 weighted: bool = False):
        super().__init__()
        # sparse=True (training) makes gradients touch only the rows a batch uses.
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", sparse=sparse)
        self.fc = nn.Linear(embed_dim, num_class)
        self.register_buffer(BAG_WEIGHT_KEY, torch.ones(vocab_size) if weighted else None)
        self.init_weights()

    def init_weights(self, init_range: float = 0.5) -> None:
        self.embedding.weight.data.uniform_(-init_range, init_range)
        self.fc.weight.data.uniform_(-init_range, init_range)
        self.fc.bias.data.zero_()

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for bags of ids: a 2-D ``ids`` is one bag per row, else ``offsets`` start bags."""
        if self.bag_weight is None:
            return self.fc(self.embedding(ids, offsets))
        weights = self.bag_weight[ids]
        sums = embedding_bag(ids, self.embedding.weight, offsets, mode="sum",
                             per_sample_weights=weights)
        totals = embedding_bag(ids, self.bag_weight[:, None], offsets, mode="sum")
        return self.fc(sums / totals)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "TextClassifier":
        """A float32 model sized from the tensors themselves (stored weights may be fp16)."""
        embedding, weight, bias, bag_weight = _checked(state)
        weighted = BAG_WEIGHT_KEY in state
        model = cls(embedding.shape[0], embedding.shape[1], weight.shape[0], weighted=weighted)
        tensors = dict(zip(REQUIRED_KEYS, (embedding, weight, bias)))
        model.load_state_dict({**tensors, **({BAG_WEIGHT_KEY: bag_weight} if weighted else {})})
        return model
