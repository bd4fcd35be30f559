"""Preprocessing: parity with real torchtext 0.18 (golden file), and the fast paths against
straightforward transcriptions of torchtext's algorithm."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import use_serving_code

use_serving_code()
from textprep import UNK_TOKEN, Vocabulary, ngrams, tokenize  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / "model" / "parity" / "golden.json"

# torchtext 0.18 data/utils.py, _basic_english_normalize: these substitutions, in this order.
TORCHTEXT_RULES = [(re.compile(p), r) for p, r in [
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "), (r"\(", " ( "),
    (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "), (r"\s+", " ")]]


def torchtext_tokenize(line):
    line = line.lower()
    for pattern, replacement in TORCHTEXT_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def golden_cases():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["torchtext"].startswith("0.18.")
    return golden["cases"]


def test_golden_file_covers_the_edge_cases():
    texts = [case["text"] for case in golden_cases()]
    for needle in ("<br />", '"', "'", "(", "!", "?", ";", ":", "é", "日本", "😀", "\u00a0"):
        assert any(needle in text for text in texts), needle
    assert "" in texts and " " in texts


@pytest.mark.parametrize("case", golden_cases(), ids=lambda case: repr(case["text"][:30]))
def test_tokens_and_ngrams_match_torchtext(case):
    tokens = tokenize(case["text"])
    assert tokens == case["tokens"]
    for n, expected in case["ngrams"].items():
        assert ngrams(tokens, int(n)) == expected


TRICKY = st.text(alphabet=st.sampled_from(list("aZ É'\".,()!?;:<>/br \t\n\u00a0\u2028xİ")) |
                 st.characters(), max_size=60)


@settings(max_examples=300, deadline=None)
@given(TRICKY)
def test_tokenize_equals_the_sequential_regex_algorithm(text):
    assert tokenize(text) == torchtext_tokenize(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=12), st.integers(1, 4))
def test_ngrams_follow_ngrams_iterator_order(tokens, n):
    expected = list(tokens)
    for size in range(2, n + 1):
        expected += [" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)]
    assert ngrams(tokens, n) == expected


VOCAB = Vocabulary.build(["The cat sat. The cat ran! <unk> cat <unk> cat",
                          "A dog sat, the dog ran."], 3, min_freq=2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["the", "cat", "dog", "sat", "ran", ".", "zebra", "<unk>"]),
                max_size=10).map(" ".join))
def test_encode_equals_looking_up_every_ngram_string(text):
    index = {token: i for i, token in enumerate(VOCAB.tokens)}
    assert VOCAB.encode(text) == [index.get(g, 0) for g in ngrams(tokenize(text), 3)]


def expected_rows(text, size):
    """Rows of the ``size``-grams of ``text``, looked up by their strings."""
    index = {token: i for i, token in enumerate(VOCAB.tokens)}
    tokens = tokenize(text)
    return [index.get(" ".join(tokens[i:i + size]), 0) for i in range(len(tokens) - size + 1)]


# Words of VOCAB, characters that change tokenization or lowercasing across a text's edge (final
# sigma, dotted capital I, quotes around "<br />"), and the NUL that lookup() joins texts with.
BATCH_TEXTS = st.lists(st.lists(st.sampled_from(
    ["the ", "cat ", "dog ", "sat", "ran", ".", " ", "Σ", "İ", '"', "<br", " />", "\x00", "x"]),
    max_size=12).map("".join), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(BATCH_TEXTS)
def test_a_batch_lookup_gives_every_text_its_own_ngrams(texts):
    lookup = VOCAB.lookup(texts)
    length = lookup.stream_length
    assert len(lookup.ids) == VOCAB.ngram_size * length
    assert lookup.offsets == sorted(lookup.offsets) and len(lookup.offsets) == len(texts)
    bounds = [*lookup.offsets, length]
    for size in range(1, VOCAB.ngram_size + 1):
        stream = lookup.ids.tolist()[(size - 1) * length:size * length]
        for i, text in enumerate(texts):
            rows = [row for row in stream[bounds[i]:bounds[i + 1]] if row != VOCAB.pad_index]
            assert rows == expected_rows(text, size), (size, i)


def test_lookup_pads_ngrams_across_texts_and_past_the_end():
    lookup = VOCAB.lookup(["the cat sat", "dog"])
    pad, cat, the, sat, dog, the_cat = (VOCAB.pad_index, *map(
        VOCAB.tokens.index, ["cat", "the", "sat", "dog", "the cat"]))
    assert lookup._replace(ids=lookup.ids.tolist()) == (
        [the, cat, sat, pad, dog,  # the boundary between texts: a pad
         the_cat, 0, pad, pad, pad,  # "cat sat" is not in VOCAB
         0, pad, pad, pad, pad],  # nor is "the cat sat"
        5, [0, 3])
    assert VOCAB.encode("the cat sat") == [the, cat, sat, the_cat, 0, 0]


def test_vocabulary_is_frequency_cut_and_ordered():
    assert VOCAB.tokens[0] == UNK_TOKEN
    assert VOCAB.tokens[1:4] == ["cat", "the", "."]  # by count, then alphabetically
    assert "a" not in VOCAB.tokens and "the cat" in VOCAB.tokens
    assert "the cat sat" not in VOCAB.tokens
    assert VOCAB.encode("zebra zebra") == [0, 0, 0]
    assert "<unk> cat" not in VOCAB.tokens  # seen twice, but "<unk>" is the unknown token


def test_vocabulary_round_trips_through_json(tmp_path):
    VOCAB.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert (loaded.tokens, loaded.ngram_size) == (VOCAB.tokens, 3)
    assert loaded.encode("the cat sat") == VOCAB.encode("the cat sat")


@pytest.mark.parametrize("content, message", [
    ("[]", "not a vocabulary file"),
    ('{"format": "other"}', "not a vocabulary file"),
    ('{"format": "agnews-vocab/1", "ngrams": 2, "tokens": "abc"}', "must be a list of strings"),
    ('{"format": "agnews-vocab/1", "ngrams": 2, "tokens": ["a"]}', "must start with '<unk>'"),
    ('{"format": "agnews-vocab/1", "ngrams": 2, "tokens": ["<unk>", "a", "a"]}', "duplicate"),
    ('{"format": "agnews-vocab/1", "ngrams": 0, "tokens": ["<unk>"]}', "ngrams must be"),
    ('{"format": "agnews-vocab/1", "ngrams": 2, "tokens": ["<unk>", "a", "a b"]}',
     "'a b' is not an n-gram"),
    ('{"format": "agnews-vocab/1", "ngrams": 2, "tokens": ["<unk>", "a", "a a a"]}',
     "'a a a' is not an n-gram"),
    ('{"format": "agnews-vocab/1", "ngrams": 3, "tokens": ["<unk>", "a", "b", "a b a"]}',
     "'a b a' is not an n-gram .* whose first n-1 tokens are an entry"),
])
def test_bad_vocabulary_files_are_refused(tmp_path, content, message):
    (tmp_path / "vocab.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        Vocabulary.load(tmp_path / "vocab.json")
