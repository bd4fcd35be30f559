"""API Gateway's request body validation: a method's request validator with the body on, and
the JSON schema (draft 4) of the model its ``requestModels`` maps the request's content type to.

As AWS documents: a content type without a model of its own takes the ``$default`` model, and
without either the body is not validated. A body that is not JSON, or fails the schema, is
refused with 400 "Invalid request body" (gateway response type BAD_REQUEST_BODY). The schema
errors' wording is jsonschema's, not API Gateway's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import SchemaError

from localcloud.gateway_responses import Refusal

log = logging.getLogger("localcloud.apigateway")

DEFAULT_MODEL = "$default"
MAX_ERRORS = 5  # schema errors named in validationErrorString


def body_validators(api: Any, method: Any) -> dict[str, Draft4Validator]:
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
        try:
            schema = json.loads(model.schema) if isinstance(model.schema, str) else model.schema
            Draft4Validator.check_schema(schema)
        except (TypeError, ValueError, SchemaError) as exc:
            log.error("API %s: model %s is not a JSON schema: %s", api.id, model_name, exc)
            continue
        validators[content_type.lower()] = Draft4Validator(schema)
    return validators


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def refusal_of(
    validators: dict[str, Draft4Validator], content_type: str, body: bytes
) -> Refusal | None:
    """The BAD_REQUEST_BODY refusal for a body its model refuses, else None."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    validator = validators.get(media_type) or validators.get(DEFAULT_MODEL)
    if validator is None:
        return None
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _invalid([f"the body is not JSON: {exc}"])
    errors = [error.message for _, error in zip(range(MAX_ERRORS), validator.iter_errors(document))]
    return _invalid(errors) if errors else None


def _invalid(problems: list[str]) -> Refusal:
    return Refusal(
        400,
        "Invalid request body",
        "BadRequestException",
        "BAD_REQUEST_BODY",
        "[" + ", ".join(problems) + "]",
    )
