"""Property: whatever the request, the predictor answers a well-formed proxy response."""

import base64
import json
import string
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck
from hypothesis import event as record_class
from hypothesis import given, settings
from hypothesis import strategies as st
from lambda_testkit import event, load_function

LIMITS = {"MAX_BATCH_SIZE": 4, "MAX_BODY_BYTES": 2048, "MAX_TEXT_CHARS": 40}
CONTEXT = SimpleNamespace(aws_request_id="lambda-req-fuzz")


class FakeModel:
    """Answers like the model, through the runtime client's interface; records what reached it."""

    def __init__(self, invocation):
        self._invocation = invocation
        self.bodies = []
        self.sizes = []

    def invoke_endpoint(self, endpoint_name, body, content_type, accept, inference_id):
        doc = json.loads(body)
        self.bodies.append(doc)
        self.sizes.append(len(body))
        one = {"success": "true", "label": 1, "labelName": "World"}
        answer = [one] * len(doc["sentences"]) if "sentences" in doc else one
        return self._invocation(json.dumps(answer).encode(), "Model-A")


@contextmanager
def configured(predictor):
    """The predictor with small limits and a fresh FakeModel as its endpoint; yields the model."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in LIMITS.items():
            patch.setenv(key, str(value))
        patch.setenv("ENDPOINT_NAME", "TextClassification-Endpoint")
        patch.setattr(predictor.handler, "_settings", None)
        model = FakeModel(predictor.sagemaker_runtime.Invocation)
        patch.setattr(predictor.handler, "runtime_client", lambda: model)
        yield model


@pytest.fixture(scope="module")
def predictor():
    return load_function("predictor")


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))
json_tree = st.recursive(json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=6)
sentence = st.text(max_size=50)
# Lone surrogates (category Cs) cannot be encoded as UTF-8, so they are never valid text.
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
valid_doc = st.one_of(
    st.fixed_dictionaries({"sentence": unicode_text.filter(str.strip)}),
    st.fixed_dictionaries({"sentences": st.lists(unicode_text.filter(str.strip), min_size=1,
                                                 max_size=4)}))
request_doc = st.one_of(
    valid_doc,
    st.fixed_dictionaries({"sentence": st.one_of(sentence, json_tree)}),
    st.fixed_dictionaries({"sentences": st.one_of(st.lists(st.one_of(sentence, json_tree),
                                                           max_size=6), json_tree)}),
    st.dictionaries(st.sampled_from(["sentence", "sentences", "extra"]), json_tree, max_size=3),
    json_tree,
)
raw_json_text = st.one_of(
    request_doc.map(lambda doc: json.dumps(doc, allow_nan=True)),
    request_doc.map(lambda doc: json.dumps(doc, ensure_ascii=False)),
    st.text(alphabet=string.printable + "[]{}\":,\\é\ud800", max_size=60),
    st.integers(1, 1000).map(lambda depth: "[" * depth + "]" * depth),
)
body_and_flag = st.one_of(
    raw_json_text.map(lambda text: (text, False)),
    raw_json_text.map(lambda text: (text, False)),
    raw_json_text.map(lambda text: (base64.b64encode(text.encode("utf-8", "surrogatepass"))
                                    .decode(), True)),
    st.binary(max_size=100).map(lambda data: (base64.b64encode(data).decode(), True)),
    st.text(max_size=50).map(lambda text: (text, True)),
    st.sampled_from([(None, False), ("", False), (None, True), ("x" * 3000, False),
                     ("[" * 1500 + "]" * 1500, False)]),
    st.tuples(json_tree, json_tree),
)
content_type = st.one_of(
    st.sampled_from(["application/json", "APPLICATION/JSON", "application/json; charset=utf-8",
                     "application/json; charset=latin-1", "text/plain", "application/xml", ""]),
    st.text(max_size=40), json_tree)
header_name = st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "Content-Typ"])
json_headers = st.builds(lambda name, value: {name: value},
                         st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"]),
                         st.sampled_from(["application/json", "Application/JSON",
                                          "application/json; charset=utf-8",
                                          'application/json;charset="UTF-8"']))
any_headers = st.one_of(json_headers, st.none(), json_tree,
                        st.dictionaries(header_name, content_type, max_size=2))
any_method = st.one_of(st.just("POST"), st.none(), st.sampled_from(["GET", "PUT"]), json_tree)


@st.composite
def envelope(draw):
    """(headers, method): a JSON POST in most examples, so that most of them reach the body."""
    if draw(st.sampled_from([True, True, True, False])):
        return draw(json_headers), "POST"
    return draw(any_headers), draw(any_method)


def valid_request(doc) -> bool:
    """What the model may receive: exactly one field, non-blank strings within the limits."""
    if not isinstance(doc, dict) or len(doc) != 1:
        return False
    texts = [doc["sentence"]] if "sentence" in doc else doc.get("sentences")
    return (isinstance(texts, list) and 1 <= len(texts) <= LIMITS["MAX_BATCH_SIZE"]
            and all(isinstance(t, str) and t.strip() and len(t) <= LIMITS["MAX_TEXT_CHARS"]
                    for t in texts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=body_and_flag, headers_and_method=envelope(),
       request_id=st.one_of(st.text(max_size=70), json_tree))
def test_any_request_gets_a_well_formed_json_response(predictor, body, headers_and_method,
                                                      request_id):
    headers, method = headers_and_method
    with configured(predictor) as model:
        proxy_event = event("predictor_single.json")
        proxy_event["body"], proxy_event["isBase64Encoded"] = body
        proxy_event["headers"], proxy_event["httpMethod"] = headers, method
        proxy_event["requestContext"]["requestId"] = request_id
        response = predictor.handler.handler(proxy_event, CONTEXT)

    assert isinstance(response, dict) and isinstance(response["statusCode"], int)
    status = response["statusCode"]
    record_class(f"status {status}")  # shown by --hypothesis-show-statistics
    assert status in (200, 400, 405, 413, 415)  # the model never fails here: no 5xx
    assert response["headers"]["Content-Type"] == "application/json; charset=utf-8"
    payload = json.loads(response["body"])
    assert isinstance(payload["MessageId"], str) and payload["MessageId"]
    assert all(valid_request(doc) for doc in model.bodies)
    if status == 200:
        assert len(model.bodies) == 1 and payload["variant"] == "Model-A"
        # The model never gets more than the client sent, so MAX_BODY_BYTES bounds InvokeEndpoint.
        raw = base64.b64decode(body[0]) if body[1] else body[0].encode("utf-8")
        assert model.sizes[0] <= len(raw)
        assert "label" in payload or len(payload["results"]) == len(model.bodies[0]["sentences"])
    else:
        assert model.bodies == []
        assert set(payload) == {"MessageId", "error"} and payload["error"]["message"]


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(unicode_text.filter(str.strip), min_size=1, max_size=4),
       batch=st.booleans())
def test_valid_requests_always_reach_the_model(predictor, texts, batch):
    doc = {"sentences": texts} if batch else {"sentence": texts[0]}
    with configured(predictor) as model:
        proxy_event = event("predictor_single.json")
        proxy_event["body"] = json.dumps(doc)
        response = predictor.handler.handler(proxy_event, CONTEXT)
    assert response["statusCode"] == 200, response["body"]
    assert model.bodies == [doc]
