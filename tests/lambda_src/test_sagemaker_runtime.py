"""The predictor's InvokeEndpoint client reads error answers as botocore reads rest-json errors."""

import pytest
from lambda_testkit import load_function


@pytest.fixture(scope="module")
def runtime():
    return load_function("predictor")


@pytest.mark.parametrize("status, headers, body, code, message", [
    (424, {"x-amzn-errortype": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"},
     b'{"message": "Received client error (400)", "OriginalStatusCode": 400}', "ModelError",
     "Received client error (400)"),
    (400, {"x-amzn-errortype": "ValidationError"}, b'{"Message": "Endpoint x not found."}',
     "ValidationError", "Endpoint x not found."),
    (400, {}, b'{"__type": "com.amazonaws.sagemaker#ThrottlingException", "message": "slow"}',
     "ThrottlingException", "slow"),
    (503, {}, b'{"code": "ServiceUnavailable"}', "ServiceUnavailable", ""),
    (502, {}, b"<html>Bad Gateway</html>", "", "<html>Bad Gateway</html>"),
    (500, {}, b"", "", ""),
    (500, {}, b"[1, 2]", "", "[1, 2]"),
])
def test_error_code_and_message(runtime, status, headers, body, code, message):
    error = runtime.sagemaker_runtime.parse_error(runtime.http11.Response(status, headers, body))
    assert (error.status, error.code, error.message) == (status, code, message)


def test_modeled_fields_are_kept(runtime):
    body = b'{"OriginalStatusCode": 413, "OriginalMessage": "too big", "LogStreamArn": "arn:x"}'
    error = runtime.sagemaker_runtime.parse_error(
        runtime.http11.Response(424, {"x-amzn-errortype": "ModelError"}, body))
    assert error.fields["OriginalStatusCode"] == 413
    assert error.fields["OriginalMessage"] == "too big"
