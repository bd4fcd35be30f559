"""Turn an API Gateway proxy event into validated texts, or an ApiError saying what is wrong.

Checks run cheapest first and the body size is checked before anything is decoded or parsed.
"""

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Tuple

from predictor_config import PredictorSettings
from proxy_response import ApiError

ACCEPTED_MEDIA_TYPE = "application/json"
ACCEPTED_CHARSETS = ("utf-8", "utf8")
FIELDS = ("sentence", "sentences")
# SageMaker's InferenceId: 1-64 printable characters, not starting with a space.
INFERENCE_ID = re.compile(r"[!-~][ -~]{0,63}")


@dataclass(frozen=True)
class PredictionRequest:
    texts: Tuple[str, ...]
    batch: bool

    def model_payload(self) -> bytes:
        """The body sent to the model: only the validated field, never the client's extras.

        Compact and with no escapes beyond those JSON requires, it is never longer than the
        client's body, so MAX_BODY_BYTES also bounds what InvokeEndpoint receives.
        """
        doc = {"sentences": list(self.texts)} if self.batch else {"sentence": self.texts[0]}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_id_of(event, context) -> str:
    """API Gateway's request id, so response, logs and data capture can be joined on it."""
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if isinstance(request_id, str) and INFERENCE_ID.fullmatch(request_id):
        return request_id
    return str(getattr(context, "aws_request_id", "") or "unknown")


def parse_request(event, settings: PredictorSettings) -> PredictionRequest:
    if not isinstance(event, dict):
        raise ApiError(400, "InvalidRequest", "the event is not an API Gateway proxy request")
    _check_method(event.get("httpMethod"))
    _check_content_type(_header(event.get("headers"), "content-type"))
    raw = _body_bytes(event, settings.max_body_bytes)
    return _validated(_parse_json(raw), settings)


def _header(headers, name: str) -> Optional[str]:
    """Header lookup ignoring case, as HTTP requires; API Gateway keeps the client's spelling."""
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


def _check_method(method) -> None:
    if method is not None and method != "POST":
        raise ApiError(405, "MethodNotAllowed",
                       f"method {str(method)[:20]!r} is not allowed; use POST",
                       headers={"Allow": "POST"})


def _check_content_type(value: Optional[str]) -> None:
    if value is None:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the Content-Type header is missing; send {ACCEPTED_MEDIA_TYPE}")
    media_type, _, params = value.partition(";")
    if media_type.strip().lower() != ACCEPTED_MEDIA_TYPE:
        raise ApiError(415, "UnsupportedMediaType",
                       f"Content-Type {value[:100]!r} is not supported; send {ACCEPTED_MEDIA_TYPE}")
    for param in params.split(";"):
        name, _, param_value = param.partition("=")
        charset = param_value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ACCEPTED_CHARSETS:
            raise ApiError(415, "UnsupportedMediaType",
                           f"charset {charset[:40]!r} is not supported; send utf-8")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "PayloadTooLarge", f"the request body exceeds {limit} bytes")


def _body_bytes(event: dict, limit: int) -> bytes:
    body = event.get("body")
    if body is None or body == "":
        raise ApiError(400, "EmptyBody", 'the request body is empty; send {"sentence": "..."}')
    if not isinstance(body, str):
        raise ApiError(400, "InvalidRequest", "the request body is not a string")
    if event.get("isBase64Encoded") is True:
        # base64 carries 3 bytes per 4 characters: reject before decoding anything.
        if len(body) > 4 * -(-limit // 3):
            raise _too_large(limit)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "InvalidEncoding", "the request body is not valid base64") from None
    else:
        if len(body) > limit:  # every character is at least one byte
            raise _too_large(limit)
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "InvalidEncoding", "the request body is not valid UTF-8") from None
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _unique_keys(pairs: list) -> dict:
    """A JSON object, refused if a key repeats (at any depth): parsers disagree on which value
    wins, so the gateway, this function and the model could each read a different request."""
    doc = dict(pairs)  # in C: per-pair Python runs only once a key did repeat
    if len(doc) < len(pairs):
        key = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ApiError(400, "InvalidJson", f"the request body repeats the key {key[:40]!r} in "
                                           "one object; each key may appear only once")
    return doc


def _parse_json(raw: bytes):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "InvalidEncoding", "the request body is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ApiError(400, "InvalidJson", "the request body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise ApiError(400, "InvalidJson", f"the request body is not valid JSON: {error}") from None


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _validated(doc, settings: PredictorSettings) -> PredictionRequest:
    if not isinstance(doc, dict):
        raise ApiError(400, "InvalidRequest",
                       f'the request body must be a JSON object like {{"sentence": "..."}}, '
                       f"not {_json_type(doc)}")
    unknown = sorted(key for key in doc if key not in FIELDS)
    if unknown:
        raise ApiError(400, "InvalidRequest",
                       f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                       f"allowed fields: sentence, sentences")
    if len(doc) != 1:
        raise ApiError(400, "InvalidRequest",
                       "send exactly one of 'sentence' (a string) "
                       "or 'sentences' (a list of strings)")
    if "sentence" in doc:
        return PredictionRequest((_checked_text(doc["sentence"], "sentence", settings),), False)
    sentences = doc["sentences"]
    if not isinstance(sentences, list):
        raise ApiError(400, "InvalidRequest",
                       f"'sentences' must be a list of strings, not {_json_type(sentences)}")
    if not sentences:
        raise ApiError(400, "InvalidRequest", "'sentences' is empty; send at least one sentence")
    if len(sentences) > settings.max_batch_size:
        raise ApiError(400, "TooManySentences",
                       f"'sentences' has {len(sentences)} items; the limit is "
                       f"{settings.max_batch_size} per request")
    texts = tuple(_checked_text(text, f"sentences[{index}]", settings)
                  for index, text in enumerate(sentences))
    return PredictionRequest(texts, True)


def _checked_text(value, where: str, settings: PredictorSettings) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "InvalidRequest",
                       f"'{where}' must be a string, not {_json_type(value)}")
    if not value.strip():
        raise ApiError(400, "EmptyText", f"'{where}' is empty")
    if len(value) > settings.max_text_chars:
        raise ApiError(400, "TextTooLong",
                       f"'{where}' has {len(value)} characters; "
                       f"the limit is {settings.max_text_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "InvalidEncoding",
                       f"'{where}' contains an unpaired surrogate escape") from None
    return value
