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
from typing import Any, Callable

import fastjsonschema

from localcloud.gateway_responses import Refusal

log = logging.getLogger("localcloud.apigateway")

DEFAULT_MODEL = "$default"
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
Validate = Callable[[Any], Any]


@functools.lru_cache(maxsize=256)
def _compiled(schema_text: str) -> Validate:
    """One compiled validator per schema: routing tables are rebuilt often, schemas rarely."""
    schema = json.loads(schema_text)
    if isinstance(schema, dict) and "$schema" not in schema:
        # API Gateway's models are draft 4; fastjsonschema takes a schema without $schema as
        # draft 2019-09 (boolean exclusiveMinimum, const, if/then/else would differ).
        schema = {**schema, "$schema": DRAFT_04}
    return fastjsonschema.compile(schema)


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
        schema = model.schema if isinstance(model.schema, str) else json.dumps(model.schema)
        try:
            validators[content_type.lower()] = _compiled(schema)
        except Exception as exc:  # AWS refuses such a model; moto stores anything
            log.error("API %s: model %s is not a usable JSON schema: %r", api.id, model_name, exc)
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
