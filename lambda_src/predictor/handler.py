"""Predictor: API Gateway proxy request -> SageMaker InvokeEndpoint -> proxy response.

Every outcome, including bugs, becomes a JSON response with an honest status; details of
failures go to the log (keyed by MessageId), never to the client.
"""

import os
import time
import traceback

import envconfig
import jsonlog
from endpoint import invoke, runtime_client
from predictor_config import PredictorSettings
from proxy_response import ApiError, error_response, json_response
from request_body import PredictionRequest, message_id_of, parse_request

_settings = None


def settings() -> PredictorSettings:
    """Read once per container; a bad environment is reported on every request until fixed."""
    global _settings
    if _settings is None:
        _settings = PredictorSettings.from_env(os.environ)
    return _settings


def handler(event, context):
    started = time.perf_counter()
    message_id = message_id_of(event, context)
    log_fields = {"messageId": message_id, "requestId": getattr(context, "aws_request_id", None)}
    try:
        response = _predict(event, message_id, log_fields)
    except ApiError as error:
        response = error_response(message_id, error)
        log_fields["errorCode"] = error.code
        log_fields["errorDetail"] = repr(error.__cause__) if error.__cause__ else error.message
    except envconfig.ConfigError as error:
        response = error_response(
            message_id, ApiError(500, "InternalError", "the service is misconfigured"))
        log_fields.update(errorCode="ConfigError", errorDetail=str(error))
    except Exception:  # the last line of defence: API Gateway must always get a proxy response
        response = error_response(message_id, ApiError(
            500, "InternalError", "internal error; quote the MessageId when reporting it"))
        log_fields.update(errorCode="Unhandled", errorDetail=traceback.format_exc())
    status = response["statusCode"]
    jsonlog.log("ERROR" if status >= 500 else "INFO", "predict", status=status,
                latencyMs=round((time.perf_counter() - started) * 1000, 2), **log_fields)
    return response


def _predict(event, message_id: str, log_fields: dict) -> dict:
    config = settings()
    request = parse_request(event, config)
    log_fields.update(sentences=len(request.texts), textChars=sum(map(len, request.texts)))
    if config.log_request_text:
        log_fields["texts"] = list(request.texts)
    invoked = time.perf_counter()
    answer = invoke(runtime_client(), config.endpoint_name, request.model_payload(), message_id)
    log_fields.update(variant=answer.variant,
                      modelLatencyMs=round((time.perf_counter() - invoked) * 1000, 2))
    return json_response(200, _success_body(request, answer.payload, message_id, answer.variant))


def _success_body(request: PredictionRequest, payload, message_id: str, variant: str) -> dict:
    """The model's answer with MessageId and variant; the shape must match what was asked."""
    if request.batch:
        if (isinstance(payload, list) and len(payload) == len(request.texts)
                and all(isinstance(item, dict) for item in payload)):
            return {"MessageId": message_id, "variant": variant, "results": payload}
    elif isinstance(payload, dict):
        body = {"MessageId": message_id, "variant": variant}
        body.update((key, value) for key, value in payload.items() if key not in body)
        return body
    raise ApiError(502, "InvalidModelResponse", "the model's answer does not match the request")
