"""SageMaker PyTorch serving handler for the AG_NEWS classifier.

Contract: ``model_fn(model_dir)``, ``input_fn(body, content_type)``, ``predict_fn(data, model)``,
``output_fn(prediction, accept)``. Requests are ``application/json`` ``{"sentence": "..."}`` or
``{"sentences": [...]}``, or ``text/csv`` / ``text/plain`` with one sentence per line; every batch
is one forward pass. Client errors raise ``request_errors.RequestError`` subclasses carrying the
HTTP status. Only plain Python and torch are needed: no torchtext, nothing pickled.

Limits come from ``MODEL_MAX_BATCH_SIZE`` (default 64) and ``MODEL_MAX_TEXT_CHARS`` (default 5000),
read when the model is loaded. The hot path avoids per-call logging, autograd and extra copies.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from array import array
from collections import Counter
from functools import lru_cache
from math import exp
from pathlib import Path
from typing import NamedTuple

import torch
from request_errors import InvalidInput, NotAcceptable, PayloadTooLarge, UnsupportedContentType
from text_classifier import folded_table
from textprep import Vocabulary
from torch.nn.functional import embedding_bag

LOG = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
ACCEPTABLE = {JSON, "application/*", "*/*"}
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_TEXT_CHARS = 5000


class Limits(NamedTuple):
    max_batch_size: int
    max_text_chars: int


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r} must be a positive integer")
    return value


def limits_from_env() -> Limits:
    return Limits(_positive_int_env("MODEL_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE),
                  _positive_int_env("MODEL_MAX_TEXT_CHARS", DEFAULT_MAX_TEXT_CHARS))


LIMITS = limits_from_env()


class LoadedModel(NamedTuple):
    """What ``model_fn`` returns: the folded classifier table plus everything to drive it."""

    # Per n-gram row: its logits times its pooling weight, then the weight
    # (text_classifier.folded_table; the weight is 1 for a plain mean). One more row, at
    # vocab.pad_index, is all zeros: it adds nothing to a bag, not even weight.
    table: torch.Tensor  # (vocabulary + 1, labels + 1)
    vocab: Vocabulary
    labels: tuple[str, ...]
    device: torch.device


class Request(NamedTuple):
    texts: list[str]
    single: bool


class Prediction(NamedTuple):
    probabilities: list[list[float]]  # per sentence, per label; float32 values (see output_fn)
    labels: tuple[str, ...]
    single: bool


def model_fn(model_dir: str) -> LoadedModel:
    """Load ``model.pth`` (a state_dict, weights only), ``vocab.json`` and ``metadata.json``."""
    global LIMITS
    started = time.perf_counter()
    LIMITS = limits_from_env()
    # One intra-op thread per worker: the model is too small for threading to pay off, and
    # several workers share the instance's cores.
    torch.set_num_threads(1)
    root = Path(model_dir)
    metadata = json.loads((root / "metadata.json").read_text(encoding="utf-8"))
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if not isinstance(labels, list) or not labels or not set(map(type, labels)) <= {str}:
        raise ValueError(f"{root / 'metadata.json'}: 'labels' must be a non-empty list of "
                         f"label names, got {labels!r}")
    labels = tuple(labels)
    vocab = Vocabulary.load(root / "vocab.json")
    state = torch.load(root / "model.pth", map_location="cpu", weights_only=True)
    table = folded_table(state)
    if table.shape[0] != len(vocab):
        raise ValueError(f"model.pth has {table.shape[0]} embedding rows "
                         f"but vocab.json has {len(vocab)} entries")
    if table.shape[1] - 1 != len(labels):
        raise ValueError(f"model.pth has {table.shape[1] - 1} outputs "
                         f"but metadata.json names {len(labels)} labels")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    table = torch.cat([table, torch.zeros(1, table.shape[1])]).to(device)
    LOG.info("loaded %s: %d vocabulary entries, %d labels, on %s, limits %s, in %.3f s",
             root, len(vocab), len(labels), device, LIMITS, time.perf_counter() - started)
    return LoadedModel(table, vocab, labels, device)


def _media_type(header: str | None, default: str) -> str:
    if not header:
        return default
    return header.split(";", 1)[0].strip().lower()


def _decode(body: bytes | bytearray | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"request body is not valid UTF-8 ({err.reason} at byte {err.start})")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refused if a key repeats (at any depth): parsers disagree on which value
    wins, so a proxy in front could validate one request and this handler serve another."""
    document = dict(pairs)  # in C: per-pair Python runs only once a key did repeat
    if len(document) < len(pairs):
        key = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise InvalidInput(f"request body repeats the key {key[:40]!r} in one object; "
                           "each key may appear only once")
    return document


# Built once: json.loads with a hook would build a decoder and its scanner on every call.
_JSON_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _from_json(text: str) -> Request:
    try:
        document = _JSON_DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(f"request body is not valid JSON: {err.msg} at line {err.lineno} "
                           f"column {err.colno}")
    except RecursionError:
        raise InvalidInput("request body is not a sentence request: JSON nested too deeply")
    if not isinstance(document, dict):
        raise InvalidInput('JSON body must be an object with "sentence" (a string) or '
                           f'"sentences" (a list of strings), got {type(document).__name__}')
    if "sentence" in document and "sentences" in document:
        raise InvalidInput('JSON body must have either "sentence" or "sentences", not both')
    if "sentence" in document:
        sentence = document["sentence"]
        if not isinstance(sentence, str):
            raise InvalidInput(f'"sentence" must be a string, got {type(sentence).__name__}')
        return Request([sentence], True)
    if "sentences" in document:
        sentences = document["sentences"]
        if not isinstance(sentences, list):
            raise InvalidInput(f'"sentences" must be a list of strings, '
                               f"got {type(sentences).__name__}")
        for index, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise InvalidInput(f'"sentences"[{index}] must be a string, '
                                   f"got {type(sentence).__name__}")
        return Request(sentences, False)
    raise InvalidInput('JSON body is missing the field "sentence" (or "sentences" for a batch); '
                       f"found {sorted(document)[:10]}")


def _from_lines(text: str, media_type: str) -> Request:
    if media_type == CSV:
        # A record with unquoted commas is still one sentence: rejoin its fields.
        lines = [",".join(row) for row in csv.reader(io.StringIO(text, newline=""))]
    else:
        lines = text.splitlines()
    return Request(lines, False)


def _check(request: Request) -> Request:
    texts, limits = request.texts, LIMITS
    if not texts:
        raise InvalidInput("request contains no sentences")
    if len(texts) > limits.max_batch_size:
        raise PayloadTooLarge(f"batch has {len(texts)} sentences; the maximum is "
                              f"{limits.max_batch_size} (MODEL_MAX_BATCH_SIZE)")
    for index, text in enumerate(texts):
        where = "sentence" if request.single else f"sentence {index}"
        if len(text) > limits.max_text_chars:
            raise PayloadTooLarge(f"{where} has {len(text)} characters; the maximum is "
                                  f"{limits.max_text_chars} (MODEL_MAX_TEXT_CHARS)")
        if not text or text.isspace():
            raise InvalidInput(f"{where} is empty or whitespace only")
    return request


def input_fn(body: bytes | bytearray | str, content_type: str | None) -> Request:
    """Parse and validate a request body into the sentences to classify."""
    media_type = _media_type(content_type, JSON)
    if media_type == JSON:
        return _check(_from_json(_decode(body)))
    if media_type in (CSV, TEXT):
        return _check(_from_lines(_decode(body), media_type))
    raise UnsupportedContentType(f"content type {content_type!r} is not supported; "
                                 f"use {JSON}, {CSV} or {TEXT}")


def _softmax(logits: list[float]) -> list[float]:
    """Softmax in plain Python, cheaper than tensor operations for one row, with the result
    rounded to float32 like the batch path's."""
    top = max(logits)
    exps = [exp(value - top) for value in logits]
    total = sum(exps)
    return array("f", [value / total for value in exps]).tolist()


def _no_words(data: Request, index: int) -> InvalidInput:
    where = "sentence" if data.single else f"sentence {index}"
    return InvalidInput(f"{where} has no words to classify")


def predict_fn(data: Request, model: LoadedModel) -> Prediction:
    """Classify every sentence of the request in one forward pass: each sentence's logits are
    the weighted mean of its n-grams' logits, a bag sum divided by the bag's weight column."""
    lookup = model.vocab.lookup(data.texts)
    if not lookup.stream_length:
        raise _no_words(data, 0)
    ids = lookup.ids.to(model.device)  # the table needs no gradient: no autograd context either
    if len(data.texts) == 1:  # one bag: a row sum is cheaper than embedding_bag
        *sums, weight = model.table.index_select(0, ids).sum(0).tolist()  # no pads: weight > 0
        return Prediction([_softmax([total / weight for total in sums])], model.labels,
                          data.single)
    # One bag per sentence and stream; a sentence's streams are summed afterwards.
    streams = len(ids) // lookup.stream_length
    starts = torch.tensor([offset + stream * lookup.stream_length for stream in range(streams)
                           for offset in lookup.offsets], device=model.device)
    sums = embedding_bag(ids, model.table, starts, mode="sum").view(streams, len(data.texts), -1)
    sums = sums.sum(0)  # (sentences, labels + 1)
    weights = sums[:, -1:]
    empty = (weights == 0).nonzero()
    if len(empty):
        raise _no_words(data, int(empty[0, 0]))
    return Prediction((sums[:, :-1] / weights).softmax(1).tolist(), model.labels, data.single)


# Probabilities are shown rounded to 4 decimals: the text of each of the 10,001 possible values,
# as json.dumps writes the float round(p, 4).
_ROUNDED_TEXT = [repr(tenthousandths / 10000) for tenthousandths in range(10001)]


@lru_cache(maxsize=8)
def _json_parts(labels: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Per label, the JSON text before the probabilities, and each probability's key."""
    heads = [f'{{"success": "true", "label": {i + 1}, "labelName": {json.dumps(name)}, '
             '"probabilities": {' for i, name in enumerate(labels)]
    return heads, [f"{json.dumps(name)}: " for name in labels]


def _result_json(probabilities: list[float], heads: list[str], keys: list[str]) -> str:
    """One result object as JSON text, built from parts: the text ``json.dumps`` gives for the
    label of the largest probability and each probability rounded to 4 decimals."""
    # A float32 times 10**4 is exact as a Python float, so round() (half to even) gives exactly
    # round(p, 4)'s digits, which round the exact value half to even too.
    return (heads[probabilities.index(max(probabilities))]
            + ", ".join([key + _ROUNDED_TEXT[round(p * 10000)]
                         for key, p in zip(keys, probabilities)]) + "}}")


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """Serialize to JSON: one result object for a single sentence, else a list in order."""
    if not any(_media_type(part, JSON) in ACCEPTABLE for part in (accept or JSON).split(",")):
        raise NotAcceptable(f"accept type {accept!r} is not supported; use {JSON}")
    heads, keys = _json_parts(prediction.labels)
    results = [_result_json(row, heads, keys) for row in prediction.probabilities]
    return (results[0] if prediction.single else "[" + ", ".join(results) + "]"), JSON
