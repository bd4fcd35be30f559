"""The SageMaker handler contract: predictions of the shipped models, batching, content types,
and a 4xx error naming the problem for every kind of bad input."""

import csv
import importlib.util
import io
import json
import shutil
import sys
import types
from array import array

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import CODE_DIR

from .conftest import FIXTURE, ROOT, SHIPPED

LABEL_NAMES = {1: "World", 2: "Sports", 3: "Business", 4: "Sci/Tech"}


def request_error(handler):
    """The base class of the handler's client errors, from the module the handler imported."""
    return sys.modules[handler.InvalidInput.__module__].RequestError


def fixture_texts(count):
    with FIXTURE.open(newline="") as handle:
        return [" ".join(row[1:]) for row in csv.reader(handle)][:count]


@pytest.mark.parametrize("name", SHIPPED)
def test_reference_cases_predict_their_labels(name, shipped, cases, invoke):
    for case in cases:
        result = invoke(shipped[name], json.dumps({"sentence": case["sentence"]}))
        assert result["success"] == "true"
        assert result["label"] == case["expected_label"], case["id"]
        assert result["labelName"] == LABEL_NAMES[case["expected_label"]]
        assert list(result["probabilities"]) == list(LABEL_NAMES.values())
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert max(result["probabilities"], key=result["probabilities"].get) == result["labelName"]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_batch_answers_like_single_requests_in_order(name, shipped, cases, invoke):
    texts = [case["sentence"] for case in cases] + fixture_texts(60)
    singles = [invoke(shipped[name], json.dumps({"sentence": text})) for text in texts]
    batch = invoke(shipped[name], json.dumps({"sentences": texts}))
    assert [r["label"] for r in batch] == [r["label"] for r in singles]
    for one, many in zip(singles, batch):
        assert many["probabilities"] == pytest.approx(one["probabilities"], abs=2e-4)


def test_csv_and_plain_text_take_one_sentence_per_line(shipped, cases, invoke):
    model = shipped["model-a"]
    texts = [case["sentence"] for case in cases]
    expected = [case["expected_label"] for case in cases]
    plain = invoke(model, "\n".join(texts) + "\n", "text/plain")
    buffer = io.StringIO()
    csv.writer(buffer).writerows([text] for text in texts)
    quoted = invoke(model, buffer.getvalue().encode(), "text/csv")
    unquoted = invoke(model, "\r\n".join(texts), "text/csv; charset=utf-8")
    assert [r["label"] for r in plain] == expected
    assert [r["label"] for r in quoted] == expected
    assert [r["label"] for r in unquoted] == expected  # unquoted commas stay in the sentence


def test_body_may_be_bytes_and_content_type_may_carry_parameters(shipped, cases, invoke):
    body = json.dumps({"sentence": cases[1]["sentence"]}).encode()
    assert invoke(shipped["model-a"], body, "Application/JSON; charset=utf-8")["label"] == 2
    assert invoke(shipped["model-a"], bytearray(body), None)["label"] == 2  # JSON by default


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/json", "application/*",
                                    "text/html, application/json;q=0.9"])
def test_accept_types_that_allow_json(shipped, cases, invoke, accept):
    assert invoke(shipped["model-a"], json.dumps({"sentence": cases[2]["sentence"]}),
                  accept=accept)["label"] == 3


BAD_REQUESTS = [
    ("{not json", "application/json", 400, "not valid JSON"),
    ("[1, 2]", "application/json", 400, "must be an object"),
    ("[" * 100_000 + "]" * 100_000, "application/json", 400, "nested too deeply"),
    ('"just a string"', "application/json", 400, "must be an object"),
    ('{"text": "hello"}', "application/json", 400, 'missing the field "sentence"'),
    ('{"sentence": 5}', "application/json", 400, '"sentence" must be a string, got int'),
    ('{"sentence": null}', "application/json", 400, '"sentence" must be a string'),
    ('{"sentence": ["a"]}', "application/json", 400, '"sentence" must be a string, got list'),
    ('{"sentences": "hello"}', "application/json", 400, '"sentences" must be a list'),
    ('{"sentences": ["ok", 3]}', "application/json", 400, '"sentences"[1] must be a string'),
    ('{"sentences": []}', "application/json", 400, "no sentences"),
    ('{"sentence": "a", "sentences": ["b"]}', "application/json", 400, "not both"),
    ('{"sentence": "a", "sentence": "b"}', "application/json", 400, "repeats the key 'sentence'"),
    ('{"sentences": ["a"], "sentences": ["b"]}', "application/json", 400,
     "repeats the key 'sentences'"),
    ('{"sentences": ["a", {"x": 1, "y": 2, "x": 3}]}', "application/json", 400,
     "repeats the key 'x'"),
    ('{"sentence": ""}', "application/json", 400, "sentence is empty"),
    ('{"sentence": " \\n\\t\\u00a0"}', "application/json", 400, "sentence is empty"),
    ('{"sentences": ["fine", "  "]}', "application/json", 400, "sentence 1 is empty"),
    ("first\n\nthird", "text/plain", 400, "sentence 1 is empty"),
    ("", "text/plain", 400, "no sentences"),
    ("", "text/csv", 400, "no sentences"),
    (b'{"sentence": "caf\xe9"}', "application/json", 400, "not valid UTF-8"),
    ('{"sentence": "x"}', "application/xml", 415, "'application/xml' is not supported"),
    ('{"sentence": "x"}', "application/x-npy", 415, "is not supported"),
]


@pytest.mark.parametrize("body, content_type, status, message", BAD_REQUESTS,
                         ids=[f"{status}:{message[:30]}" for _, _, status, message in BAD_REQUESTS])
def test_bad_input_is_a_client_error_naming_the_problem(handler, body, content_type, status,
                                                        message):
    with pytest.raises(request_error(handler)) as caught:
        handler.input_fn(body, content_type)
    error = caught.value
    assert error.status_code == status
    assert message in error.message
    assert str(error) == error.message


@pytest.mark.parametrize("body, message", [
    ('{"sentence": "\\"\\"\\""}', "sentence has no words to classify"),
    ('{"sentences": ["ok", ";:<br />", "fine", ":"]}', "sentence 1 has no words to classify"),
    ('{"sentences": ["\\"", ";"]}', "sentence 0 has no words to classify")])
def test_text_without_any_token_is_rejected_not_crashed(handler, shipped, body, message):
    data = handler.input_fn(body, "application/json")
    for model in shipped.values():
        with pytest.raises(request_error(handler)) as caught:
            handler.predict_fn(data, model)
        assert caught.value.status_code == 400
        assert caught.value.message == message


FLOAT32_PROBABILITIES = st.lists(st.floats(0, 1, width=32), min_size=4, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(FLOAT32_PROBABILITIES, min_size=1, max_size=5) |
       st.just([[0.03125, 0.00005, 0.99995, 0.5]]))  # decimal ties and float32 near-ties
def test_output_is_the_json_of_the_rounded_probabilities(handler, rows):
    labels = ("World", "Sports", "Business", "Sci/Tech")
    rows = [array("f", row).tolist() for row in rows]
    text, media_type = handler.output_fn(handler.Prediction(rows, labels, False), "*/*")
    assert media_type == "application/json"
    assert text == json.dumps([
        {"success": "true", "label": row.index(max(row)) + 1,
         "labelName": labels[row.index(max(row))],
         "probabilities": {name: round(p, 4) for name, p in zip(labels, row)}} for row in rows])


@pytest.mark.parametrize("accept", ["text/html", "text/csv", "application/x-npy"])
def test_unsupported_accept_is_406(handler, shipped, cases, accept):
    data = handler.input_fn(json.dumps({"sentence": cases[0]["sentence"]}), "application/json")
    with pytest.raises(request_error(handler)) as caught:
        handler.output_fn(handler.predict_fn(data, shipped["model-a"]), accept)
    assert caught.value.status_code == 406
    assert repr(accept) in caught.value.message


def test_limits_make_too_large_requests_413(handler, monkeypatch):
    monkeypatch.setattr(handler, "LIMITS", handler.Limits(max_batch_size=3, max_text_chars=20))
    handler.input_fn(json.dumps({"sentences": ["a", "b", "c"]}), "application/json")
    handler.input_fn(json.dumps({"sentence": "x" * 20}), "application/json")
    with pytest.raises(request_error(handler)) as batch:
        handler.input_fn(json.dumps({"sentences": ["a", "b", "c", "d"]}), "application/json")
    with pytest.raises(request_error(handler)) as lines:
        handler.input_fn("a\nb\nc\nd", "text/plain")
    with pytest.raises(request_error(handler)) as text:
        handler.input_fn(json.dumps({"sentences": ["ok", "x" * 21]}), "application/json")
    assert (batch.value.status_code, lines.value.status_code, text.value.status_code) == (413,) * 3
    assert "4 sentences; the maximum is 3 (MODEL_MAX_BATCH_SIZE)" in batch.value.message
    assert "sentence 1 has 21 characters; the maximum is 20 (MODEL_MAX_TEXT_CHARS)" in \
        text.value.message


def test_limits_come_from_the_environment(handler, monkeypatch):
    monkeypatch.delenv("MODEL_MAX_BATCH_SIZE", raising=False)
    monkeypatch.delenv("MODEL_MAX_TEXT_CHARS", raising=False)
    assert handler.limits_from_env() == (64, 5000)
    monkeypatch.setenv("MODEL_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("MODEL_MAX_TEXT_CHARS", "100")
    assert handler.limits_from_env() == (8, 100)
    for bad in ("0", "-3", "many", "1.5"):
        monkeypatch.setenv("MODEL_MAX_BATCH_SIZE", bad)
        with pytest.raises(ValueError, match=f"MODEL_MAX_BATCH_SIZE={bad!r} must be a positive"):
            handler.limits_from_env()


def test_errors_subclass_the_toolkit_error_when_it_is_importable(monkeypatch):
    class BaseInferenceToolkitError(Exception):  # the toolkit's constructor and attributes
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

    errors = types.ModuleType("sagemaker_inference.errors")
    errors.BaseInferenceToolkitError = BaseInferenceToolkitError
    monkeypatch.setitem(sys.modules, "sagemaker_inference", types.ModuleType("sagemaker_inference"))
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", errors)
    spec = importlib.util.spec_from_file_location("request_errors_under_toolkit",
                                                  CODE_DIR / "request_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    error = module.PayloadTooLarge("batch has 65 sentences\nsecond line")
    assert isinstance(error, BaseInferenceToolkitError)
    assert (error.status_code, error.message) == (413, "batch has 65 sentences\nsecond line")
    assert error.phrase == "batch has 65 sentences second line"  # the reason phrase is one line


def test_errors_have_a_status_without_the_toolkit(handler):
    statuses = {cls.__name__: cls("x").status_code for cls in (
        handler.InvalidInput, handler.PayloadTooLarge, handler.UnsupportedContentType,
        handler.NotAcceptable)}
    assert statuses == {"InvalidInput": 400, "PayloadTooLarge": 413,
                        "UnsupportedContentType": 415, "NotAcceptable": 406}


@pytest.fixture()
def artifact_copy(tmp_path):
    target = tmp_path / "model"
    shutil.copytree(ROOT / "model" / "model-a", target)
    return target


def test_model_fn_refuses_pickled_objects(handler, artifact_copy):
    torch.save({"model": torch.nn.Linear(2, 2)}, artifact_copy / "model.pth")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        handler.model_fn(str(artifact_copy))


def test_model_fn_checks_that_the_files_belong_together(handler, artifact_copy):
    vocab = json.loads((artifact_copy / "vocab.json").read_text())
    vocab["tokens"] = vocab["tokens"][:100]
    (artifact_copy / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="vocab.json has 100 entries"):
        handler.model_fn(str(artifact_copy))


def test_model_fn_needs_label_names(handler, artifact_copy):
    (artifact_copy / "metadata.json").write_text(json.dumps({"variant": "model-a"}))
    with pytest.raises(ValueError, match="'labels' must be a non-empty list of label names"):
        handler.model_fn(str(artifact_copy))


def test_model_fn_sets_one_thread_and_reads_limits(handler, artifact_copy, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("MODEL_MAX_BATCH_SIZE", "7")
    try:
        model = handler.model_fn(str(artifact_copy))
        assert torch.get_num_threads() == 1
        assert handler.LIMITS.max_batch_size == 7
        assert model.device.type in ("cpu", "cuda")
    finally:
        torch.set_num_threads(threads)
        monkeypatch.delenv("MODEL_MAX_BATCH_SIZE")
        handler.LIMITS = handler.limits_from_env()
