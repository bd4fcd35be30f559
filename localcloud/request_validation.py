"""API Gateway's request body validation: a method's request validator with the body on, and
the JSON schema (draft 4) of the model its ``requestModels`` maps the request's content type to.

As AWS documents: a content type without a model of its own takes the ``$default`` model, and
without either the body is not validated. A body that is not JSON, or fails the schema, is
refused with 400 "Invalid request body" (gateway response type BAD_REQUEST_BODY). Schemas are
compiled to Python by fastjsonschema (a few microseconds a body, about 7x less than
jsonschema's validator), whose wording of the first error, not API Gateway's, fills
``$context.error.validationErrorString``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any, Callable

import fastjsonschema

from localcloud.gateway_responses import Refusal

log = logging.getLogger("localcloud.apigateway")

DEFAULT_MODEL = "$default"
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
Validate = Callable[[Any], Any]


# How a model refers to another model of its API (AWS's absolute form).
_MODEL_URI = re.compile(
    r"^https://apigateway\.amazonaws\.com/restapis/(?P<api>[^/]+)/models/(?P<name>[^/?#]+)$"
)
# Every scheme urllib would otherwise fetch, blocking the event loop, at compile time.
_URL_SCHEMES = ("http", "https", "ftp", "file", "data")


def _draft_4(schema: Any) -> Any:
    if isinstance(schema, dict) and "$schema" not in schema:
        # API Gateway's models are draft 4; fastjsonschema takes a schema without $schema as
        # draft 2019-09 (boolean exclusiveMinimum, const, if/then/else would differ).
        return {**schema, "$schema": DRAFT_04}
    return schema


@functools.lru_cache(maxsize=256)
def _validator(
    api_id: str, model_name: str, schema_text: str, models: tuple[tuple[str, str], ...]
) -> Validate | None:
    """One compiled validator per schema: routing tables are rebuilt often, schemas rarely.

    ``models`` (name, schema) are the API's, for a schema that refers to them; nothing remote
    is fetched. A schema that does not compile is logged once and not applied: AWS refuses such
    a model, moto stores anything.
    """
    schemas = dict(models)

    def model(uri: str) -> Any:
        found = _MODEL_URI.match(uri)
        if found is None or found.group("api") != api_id or found.group("name") not in schemas:
            raise ValueError(f"$ref {uri} is not a model of this API (nothing remote is fetched)")
        return _draft_4(json.loads(schemas[found.group("name")]))

    handlers = {scheme: model for scheme in _URL_SCHEMES}
    try:
        return fastjsonschema.compile(_draft_4(json.loads(schema_text)), handlers=handlers)
    except Exception as exc:  # any way a schema can fail to compile
        log.error("API %s: model %s is not a usable JSON schema: %r", api_id, model_name, exc)
        return None


def _schema_text(model: Any) -> str:
    return model.schema if isinstance(model.schema, str) else json.dumps(model.schema)


def body_validators(api: Any, method: Any) -> dict[str, Validate]:
    """Content type (lowercase) -> validator, for a method whose validator checks the body."""
    validator = (getattr(api, "request_validators", None) or {}).get(
        getattr(method, "request_validator_id", None) or ""
    )
    if validator is None or str(validator.validate_request_body).lower() != "true":
        return {}
    validators = {}
    for content_type, model_name in (getattr(method, "request_models", None) or {}).items():
        model = (getattr(api, "models", None) or {}).get(model_name)
        if model is None:
            log.error("API %s: request model %s does not exist", api.id, model_name)
            continue
        schema = _schema_text(model)
        refs = ()
        if "$ref" in schema:  # only then do the API's other models belong to the cache key
            refs = tuple(sorted((name, _schema_text(m)) for name, m in api.models.items()))
        validate = _validator(api.id, model_name, schema, refs)
        if validate is not None:
            validators[content_type.lower()] = validate
    return validators


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def refusal_of(validators: dict[str, Validate], content_type: str, body: bytes) -> Refusal | None:
    """The BAD_REQUEST_BODY refusal for a body its model refuses, else None."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    validate = validators.get(media_type) or validators.get(DEFAULT_MODEL)
    if validate is None:
        return None
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _invalid(f"the body is not JSON: {exc}")
    try:
        validate(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        return _invalid(exc.message)
    except RecursionError:
        return _invalid("the body is nested too deeply for its schema")
    return None


def _invalid(problem: str) -> Refusal:
    return Refusal(
        400, "Invalid request body", "BadRequestException", "BAD_REQUEST_BODY", f"[{problem}]"
    )
