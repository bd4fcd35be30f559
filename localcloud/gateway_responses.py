"""API Gateway's own refusals and the gateway responses that reshape them.

API Gateway answers some requests itself (no such route, a missing key, a throttle, a body it
refuses, a failed integration). An API's gateway responses replace such an answer's status,
add headers and render a template: the refusal's own response type's if the API has one, else
DEFAULT_4XX or DEFAULT_5XX by its status. Templates get the ``$context`` variables this module
knows filled in; VTL directives are not run.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("localcloud.apigateway")

JSON = "application/json"
Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Refusal:
    """An answer API Gateway makes itself, which the API's gateway responses may reshape."""

    status: int
    message: str
    error_type: str  # the x-amzn-errortype header
    # The gateway response type where AWS documents it for this condition; None where it does
    # not, so that only DEFAULT_4XX or DEFAULT_5XX can apply.
    response_type: str | None = None
    validation_errors: str | None = None  # $context.error.validationErrorString


MISSING_TOKEN = Refusal(
    403,
    "Missing Authentication Token",
    "MissingAuthenticationTokenException",
    "MISSING_AUTHENTICATION_TOKEN",
)
INTEGRATION_FAILURE = Refusal(500, "Internal server error", "IntegrationFailure")
THROTTLED = Refusal(429, "Too Many Requests", "TooManyRequestsException", "THROTTLED")
TOO_LARGE = Refusal(413, "Request Too Long", "RequestTooLongException", "REQUEST_TOO_LARGE")


@dataclass(frozen=True)
class GatewayResponse:
    """One of an API's gateway responses, as it applies to a refusal."""

    status: int | None
    headers: tuple[tuple[str, str], ...]  # static values only
    content_type: str | None
    template: str | None


_CONTEXT_VARIABLE = re.compile(
    r"\$(?:context\.([A-Za-z]+(?:\.[A-Za-z]+)*)|\{context\.([A-Za-z]+(?:\.[A-Za-z]+)*)\})"
)
_STATIC_VALUE = re.compile(r"^'(.*)'$", re.S)
_STATUS_CODE = re.compile(r"^[1-5][0-9][0-9]$")
_HEADER_PARAMETER = "gatewayresponse.header."
_unsupported_logged: set[str] = set()


def _log_unsupported_once(what: str) -> None:
    if what not in _unsupported_logged:
        _unsupported_logged.add(what)
        log.warning("gateway response %s is not served locally and is left out", what)


def compile_gateway_response(response: Any) -> GatewayResponse:
    headers = []
    for name, value in sorted((getattr(response, "response_parameters", None) or {}).items()):
        static = _STATIC_VALUE.match(value or "")
        if name.startswith(_HEADER_PARAMETER) and static:
            headers.append((name[len(_HEADER_PARAMETER) :], static.group(1)))
        else:
            _log_unsupported_once(f"parameter {name} = {value}")
    templates = getattr(response, "response_templates", None) or {}
    content_type = JSON if JSON in templates else next(iter(sorted(templates)), None)
    status = getattr(response, "status_code", None)
    if status in (None, ""):
        status = None
    elif not _STATUS_CODE.match(str(status)):
        # AWS refuses it; moto stores anything, and one bad response must not fail every request
        _log_unsupported_once(f"status code {status!r}")
        status = None
    return GatewayResponse(
        int(status) if status is not None else None,
        tuple(headers),
        content_type,
        templates.get(content_type) if content_type else None,
    )


def render_gateway_response(
    responses: dict[str, GatewayResponse], refusal: Refusal, context: dict[str, str]
) -> Response:
    """A refusal as the API's gateway responses shape it (as API Gateway's defaults without).

    ``context`` holds the ``$context`` variables besides ``error.*`` (requestId, apiId, stage).
    """
    fallback = "DEFAULT_4XX" if refusal.status < 500 else "DEFAULT_5XX"
    own = responses.get(refusal.response_type) if refusal.response_type else None
    default = responses.get(fallback)
    chosen = own or default
    status = (own and own.status) or (default and default.status) or refusal.status
    values = {
        **context,
        "error.message": refusal.message,
        "error.messageString": json.dumps(refusal.message),
        "error.responseType": refusal.response_type or fallback,
        "error.validationErrorString": refusal.validation_errors or "",
    }

    def value_of(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            _log_unsupported_once(f"variable $context.{name}")
        return values.get(name, "")

    if chosen is not None and chosen.template is not None:
        content_type = chosen.content_type
        body = _CONTEXT_VARIABLE.sub(value_of, chosen.template).encode()
    else:
        content_type, body = JSON, json.dumps({"message": refusal.message}).encode()
    own_headers = chosen.headers if chosen is not None else ()
    # A header the gateway response sets replaces API Gateway's own of that name.
    overridden = {name.lower() for name, _ in own_headers}
    defaults = [("content-type", content_type), ("x-amzn-errortype", refusal.error_type)]
    if "requestId" in context:
        defaults.append(("x-amzn-requestid", context["requestId"]))
    headers = [(n, v) for n, v in defaults if n not in overridden] + list(own_headers)
    return status, headers, body
