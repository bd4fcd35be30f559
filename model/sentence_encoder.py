"""Training only: all-MiniLM-L6-v2 as a sentence encoder, in plain torch.

The same pinned files as the word prior (``model/word_prior.py``): the BERT encoder's weights are
read from the verified safetensors bytes, text is split by the same WordPiece code, and a
sentence embedding is the mean of the last layer over the tokens, normalised, as
sentence-transformers computes it. ``model/teacher.py`` fits a classifier on these embeddings
whose soft labels the served bag-of-n-grams model learns from; serving never runs it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from model.word_prior import WordPieces, minilm_dir, read_safetensors, verified_bytes

HEADS = 12  # all-MiniLM-L6-v2's attention heads (its config.json)
LAYER_NORM_EPS = 1e-12
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


class SentenceEncoder:
    """all-MiniLM-L6-v2: WordPiece ids -> 6 transformer layers -> masked mean -> unit vector."""

    def __init__(self, folder: Path | None = None, pieces: WordPieces | None = None):
        folder = Path(folder) if folder else minilm_dir()
        self.pieces = pieces or WordPieces(folder)
        self.weights = read_safetensors(verified_bytes(folder / "model.safetensors"))
        self.layers = sum(1 for name in self.weights
                          if name.endswith(".attention.self.query.weight"))

    def token_ids(self, text: str) -> list[int]:
        index = self.pieces.index
        return [index["[CLS]"], *self.pieces.split(text)[:MAX_TOKENS - 2], index["[SEP]"]]

    def _norm(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return nn.functional.layer_norm(x, x.shape[-1:], self.weights[prefix + ".weight"],
                                        self.weights[prefix + ".bias"], LAYER_NORM_EPS)

    def _linear(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return nn.functional.linear(x, self.weights[prefix + ".weight"],
                                    self.weights[prefix + ".bias"])

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last layer for a padded batch: ``ids`` and ``mask`` are (batch, tokens)."""
        w = self.weights
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        padding = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q, k, v = (self._linear(x, p + "attention.self." + name)
                       .view(batch, length, HEADS, -1).transpose(1, 2)
                       for name in ("query", "key", "value"))
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + padding
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, -1)
            x = self._norm(x + self._linear(context, p + "attention.output.dense"),
                           p + "attention.output.LayerNorm")
            inner = nn.functional.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Unit-norm sentence embeddings, one row per text, in order. Texts are batched by
        length, so padding costs little; padded positions change no result."""
        ids = [self.token_ids(text) for text in texts]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out = torch.zeros(len(texts), self.weights["embeddings.word_embeddings.weight"].shape[1])
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                length = max(len(ids[i]) for i in rows)
                batch = torch.zeros(len(rows), length, dtype=torch.long)
                mask = torch.zeros(len(rows), length, dtype=torch.long)
                for slot, i in enumerate(rows):
                    batch[slot, :len(ids[i])] = torch.tensor(ids[i])
                    mask[slot, :len(ids[i])] = 1
                hidden = self.hidden_states(batch, mask)
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                out[rows] = (hidden * weights).sum(1) / weights.sum(1)
        return nn.functional.normalize(out, dim=1)
