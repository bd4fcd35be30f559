"""SageMaker InvokeEndpoint over one keep-alive connection, signed with SigV4.

botocore spends about 1.1 ms of CPU per InvokeEndpoint (building the request from the service
model, signing, urllib3, parsing), more than the rest of the predictor and the model together.
The predictor makes one kind of call, so it makes it directly: botocore still resolves the
endpoint URL, region, CA bundle and credential chain once per container (and refreshes
credentials that expire); each call is then one prepared write and one read. Retries follow
botocore's standard mode (the same retryable failures, the same backoff), timeouts are the same.
"""

import json
import os
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional
from urllib.parse import quote, urlsplit

import botocore.session
import envconfig
import http11
from botocore.httpsession import get_cert_path
from sigv4 import Credentials, Signer

# botocore's standard retry mode: what it retries, and its backoff (random * 2^(retry - 1) s).
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException",
})
MAX_BACKOFF_SEC = 20.0
USER_AGENT = "text-classification-predictor"


class EndpointUnreachable(Exception):
    """No connection to the runtime, or it broke off, on every attempt."""


class EndpointTimeout(Exception):
    """The runtime did not answer within the read timeout, on every attempt."""


class EndpointError(Exception):
    """The runtime answered with an error: ``code`` as botocore would name it, the JSON fields."""

    def __init__(self, status: int, code: str, message: str, fields: Dict[str, object]):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.fields = status, code, message, fields


@dataclass(frozen=True)
class Invocation:
    body: bytes
    variant: str


@dataclass
class RuntimeClient:
    endpoint_url: str
    region: str
    signing_name: str
    credentials: Callable[[], Credentials]
    connect_timeout: float
    read_timeout: float
    total_attempts: int
    ssl_context: Optional[ssl.SSLContext] = None
    sleep: Callable[[float], None] = time.sleep
    _connection: http11.Connection = field(init=False)
    _signer: Signer = field(init=False)

    def __post_init__(self):
        self._base_path = urlsplit(self.endpoint_url).path.rstrip("/")
        self._connection = http11.Connection.to_url(
            self.endpoint_url, connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout, ssl_context=self.ssl_context)
        self._signer = Signer(self.region, self.signing_name)

    def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str, accept: str,
                        inference_id: str) -> Invocation:
        path = f"{self._base_path}/endpoints/{quote(endpoint_name, safe='')}/invocations"
        headers = {"Host": self._connection.host_header, "Content-Type": content_type,
                   "Accept": accept, "X-Amzn-SageMaker-Inference-Id": inference_id,
                   "User-Agent": USER_AGENT}
        for attempt in range(1, self.total_attempts + 1):
            last_attempt = attempt == self.total_attempts
            signed = self._signer.signed_headers(self.credentials(), "POST", path, headers, body)
            request = http11.format_request("POST", path, signed, body)
            try:
                response = self._send(request)
            except TimeoutError as error:
                if last_attempt:
                    raise EndpointTimeout(str(error)) from error
            except OSError as error:  # refused, reset, TLS, malformed answer
                if last_attempt:
                    raise EndpointUnreachable(str(error)) from error
            else:
                if 200 <= response.status < 300:
                    return Invocation(response.body,
                                      response.headers.get("x-amzn-invoked-production-variant", ""))
                error = parse_error(response)
                if last_attempt or not _retryable(error):
                    raise error
            self.sleep(min(MAX_BACKOFF_SEC, random.random() * 2 ** (attempt - 1)))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, request: bytes) -> http11.Response:
        try:
            return self._connection.exchange(request)
        except http11.StaleConnection:  # the runtime closed an idle connection: not a failure
            return self._connection.exchange(request)

    def close(self) -> None:
        self._connection.close()


def from_environment(connect_timeout: float, read_timeout: float,
                     total_attempts: int) -> RuntimeClient:
    """A client for the endpoint URL, region, CA bundle and credentials boto3 would use here.

    Lambda sets AWS_REGION, which botocore itself does not read (it reads AWS_DEFAULT_REGION);
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME / AWS_ENDPOINT_URL point it elsewhere, as they do boto3.
    """
    session = botocore.session.get_session()
    resolver = session.create_client("sagemaker-runtime",
                                     region_name=os.environ.get("AWS_REGION") or None)
    provider = session.get_credentials()
    if provider is None:
        raise envconfig.ConfigError("no AWS credentials: the function's role provides them")
    ca_bundle = session.get_config_variable("ca_bundle") or get_cert_path(True)
    return RuntimeClient(
        endpoint_url=resolver.meta.endpoint_url,
        region=resolver.meta.region_name,
        signing_name=resolver.meta.service_model.signing_name,
        credentials=provider.get_frozen_credentials,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        total_attempts=total_attempts,
        ssl_context=ssl.create_default_context(cafile=ca_bundle),
    )


def parse_error(response: http11.Response) -> EndpointError:
    """An error answer as botocore reads rest-json errors (code from x-amzn-ErrorType or __type)."""
    try:
        fields = json.loads(response.body) if response.body else {}
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict):  # not a JSON object: the text itself is all there is
        fields, message = {}, response.body[:200].decode("utf-8", "replace")
    else:
        message = fields.get("message") or fields.get("Message")
        message = message if isinstance(message, str) else ""
    code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
    if not code:
        raw = fields.get("__type") or fields.get("code") or ""
        code = raw.rsplit("#", 1)[-1] if isinstance(raw, str) else ""
    return EndpointError(response.status, code, message, fields)


def _retryable(error: EndpointError) -> bool:
    return error.status in RETRYABLE_STATUSES or error.code in RETRYABLE_CODES
