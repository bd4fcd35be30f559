"""InvokeEndpoint, and the mapping of each SageMaker failure to the status a client should see."""

import json
from dataclasses import dataclass
from typing import Optional, Union

import sagemaker_runtime
from proxy_response import ApiError
from sagemaker_runtime import EndpointError, EndpointTimeout, EndpointUnreachable

# The predictor times out after 20 s and API Gateway after 29 s: two attempts of
# connect + read (16 s at worst, plus backoff) must fit, and the handler still has to answer.
CONNECT_TIMEOUT_SEC = 2
READ_TIMEOUT_SEC = 6
TOTAL_ATTEMPTS = 2
RETRY_AFTER_SEC = 5
MAX_MODEL_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class ModelAnswer:
    payload: Union[dict, list]
    variant: str


_client: Optional[sagemaker_runtime.RuntimeClient] = None


def runtime_client() -> sagemaker_runtime.RuntimeClient:
    """The container's one client, with its keep-alive connection to the runtime."""
    global _client
    if _client is None:
        _client = sagemaker_runtime.from_environment(
            CONNECT_TIMEOUT_SEC, READ_TIMEOUT_SEC, TOTAL_ATTEMPTS)
    return _client


def invoke(client, endpoint_name: str, body: bytes, inference_id: str) -> ModelAnswer:
    try:
        answer = client.invoke_endpoint(endpoint_name, body, "application/json",
                                        "application/json", inference_id)
    except EndpointError as error:
        raise _from_endpoint_error(error) from error
    except EndpointTimeout as error:
        raise ApiError(504, "ModelTimeout",
                       f"the model did not answer within {READ_TIMEOUT_SEC} s") from error
    except EndpointUnreachable as error:  # refused, reset, connect timeout
        raise ApiError(503, "ModelUnavailable", "the model endpoint cannot be reached; retry later",
                       retry_after=RETRY_AFTER_SEC) from error
    try:
        payload = json.loads(answer.body)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, (dict, list)):
        raise ApiError(502, "InvalidModelResponse", "the model returned an unreadable answer")
    return ModelAnswer(payload, answer.variant or "unknown")


def _from_endpoint_error(error: EndpointError) -> ApiError:
    code = error.code
    if code == "ModelError":
        original_status = error.fields.get("OriginalStatusCode")
        if isinstance(original_status, int) and 400 <= original_status < 500:
            return ApiError(400, "InvalidRequest",
                            _model_message(error.fields.get("OriginalMessage")))
        return ApiError(502, "ModelError", "the model failed to process the request")
    if code in ("ModelNotReadyException", "ServiceUnavailable"):
        return ApiError(503, "ModelUnavailable", "the model is not ready to serve; retry later",
                        retry_after=RETRY_AFTER_SEC)
    if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
        return ApiError(429, "TooManyRequests", "the model endpoint is throttling; slow down",
                        retry_after=RETRY_AFTER_SEC)
    if code in ("ValidationError", "InternalFailure", "InternalDependencyException"):
        # ValidationError here means a wrong endpoint name or a deployment fault: not the
        # client's doing, since the request itself was validated before the call.
        return ApiError(502, "UpstreamError", "the model service failed to answer")
    return ApiError(500, "InternalError", "internal error")


def _model_message(original) -> str:
    """The container's own error message ({"error": {"message"}} or plain text), kept short."""
    message = original if isinstance(original, str) else ""
    try:
        doc = json.loads(message)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        inner = doc.get("error") if isinstance(doc.get("error"), dict) else doc
        if isinstance(inner.get("message"), str):
            message = inner["message"]
        elif isinstance(doc.get("error"), str):
            message = doc["error"]
    message = message.strip()[:MAX_MODEL_MESSAGE_CHARS]
    return message or "the model rejected the request"
