"""API Gateway proxy responses and the one error type that becomes an HTTP error."""

import json
from typing import Dict, Optional

BASE_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class ApiError(Exception):
    """A failure with the HTTP status, error code and message the client should see."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)


def json_response(status: int, payload: dict, headers: Optional[Dict[str, str]] = None) -> dict:
    return {
        "statusCode": status,
        "headers": {**BASE_HEADERS, **(headers or {})},
        "body": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def error_response(message_id: str, error: ApiError) -> dict:
    payload = {"MessageId": message_id, "error": {"code": error.code, "message": error.message}}
    return json_response(error.status, payload, error.headers)
