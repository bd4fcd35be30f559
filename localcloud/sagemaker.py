"""The SageMaker runtime of the local cloud: InvokeEndpoint on deployed endpoints, for real.

moto keeps the control plane (Model, EndpointConfig, Endpoint); this module serves it. For every
production variant of an endpoint it runs one model server process
(:mod:`localcloud.model_server`, supervised by :mod:`localcloud.processes`) on the variant's
deployed ``model.tar.gz``, read from moto's S3 in-process and extracted once per content hash
under ``<state_dir>/models/<sha256>/``. Servers start when moto creates an endpoint (and lazily
on the first invocation), and stop when it is deleted.

What an endpoint serves is read from its endpoint config when it is created or updated, so a
Model or EndpointConfig deleted afterwards changes nothing, as on AWS. A change of models rolls
out as UpdateEndpoint's does (blue/green): the endpoint is ``Updating`` and keeps answering from
its servers while the new ones start; traffic switches once all are ready, and the old servers
stop after answering what they were sent. If a new server keeps failing to start, the endpoint
stays InService on the old ones, with a FailureReason. A change of weights alone (or a new
config with the same models) applies at once, on the same servers.

InvokeEndpoint's REST wire protocol, as botocore's ``sagemaker-runtime`` client speaks it:
``POST /endpoints/<name>/invocations`` with ``Content-Type``, ``Accept``,
``X-Amzn-SageMaker-Target-Variant``, ``X-Amzn-SageMaker-Inference-Id`` and
``X-Amzn-SageMaker-Custom-Attributes``; the answer carries ``Content-Type`` and
``x-Amzn-Invoked-Production-Variant``. Errors carry ``x-amzn-ErrorType`` and a JSON body:

* ``ValidationError`` (400): unknown endpoint ("Endpoint X of account Y not found."), unknown
  target variant, bad header values, a variant whose model cannot be prepared.
* ``ModelError`` (424): the model answered non-2xx; ``OriginalStatusCode``, ``OriginalMessage``
  and ``LogStreamArn`` as on AWS.
* ``ModelNotReadyException`` (429): the variant's server did not become ready in time.
* ``ServiceUnavailable`` (503): the server died during the request (it is being restarted).

A variant is chosen at random by the endpoint's current variant weights, unless the request
names one. Sampled invocations are captured (:mod:`localcloud.capture`) before the response is
returned. AWS/SageMaker metrics per (EndpointName, VariantName) go to the metrics sink:
Invocations, Invocation4XXErrors, Invocation5XXErrors, InvocationsPerInstance (Count) and
ModelLatency, OverheadLatency (Microseconds).

Daemon API::

    runtime = SageMakerRuntime(Path(".localcloud/state"), metrics.SINK, registry=pid_registry)
    install_moto_hooks(runtime)       # before moto serves requests; once per process
    await runtime.start()             # on the data-plane event loop
    status, headers, body = await runtime.handle(method, path, headers, body)
    await runtime.close()             # stops every model server, uploads pending capture

Another server implementation plugs in with ``SageMakerRuntime(..., server_argv=lambda
model_dir, port: [...], ready_probe=lambda port: ...)``; the probe must prove the model answers.

Files: ``<state_dir>/models/<sha256>/`` (extracted archives), ``<state_dir>/capture-spool/``
(write-ahead capture spool), ``<log_dir>/model-<endpoint>-<variant>.log`` (server logs;
``log_dir`` defaults to ``<state_dir>/../logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import http.client
import io
import json
import logging
import os
import random
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import unquote

from localcloud import model_server
from localcloud.capture import DataCapture
from localcloud.metrics import DEFAULT_ACCOUNT_ID, MetricsSink
from localcloud.processes import READY, STOPPED, ManagedProcess, PidRegistry

log = logging.getLogger("localcloud.sagemaker")

HOST = "127.0.0.1"
NAMESPACE = "AWS/SageMaker"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MODEL_TIMEOUT_SECONDS = 60.0  # SageMaker's limit for a real-time container to answer
FAIL_FAST_AFTER = 2  # consecutive start failures after which invocations stop waiting
_INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/\d{8}/(?P<region>[a-z0-9-]+)/")


# -- errors as InvokeEndpoint returns them ------------------------------------------------------


class InvokeError(Exception):
    """An InvokeEndpoint error response: botocore raises ClientError with ``code``."""

    status = 400
    code = "ValidationError"

    def __init__(self, message: str, **fields: Any):
        super().__init__(message)
        self.message = message
        self.fields = fields

    def response(self) -> tuple[int, dict[str, str], bytes]:
        body = {"message": self.message, **self.fields}
        return self.status, _error_headers(self.code), json.dumps(body).encode()


class ValidationError(InvokeError):
    pass


class ModelError(InvokeError):
    status, code = 424, "ModelError"


class ModelNotReady(InvokeError):
    status, code = 429, "ModelNotReadyException"


class ServiceUnavailable(InvokeError):
    status, code = 503, "ServiceUnavailable"


class UnknownOperation(InvokeError):
    status, code = 404, "UnknownOperationException"


def _error_headers(code: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": code,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }


# -- what moto says an endpoint is --------------------------------------------------------------


@dataclass(frozen=True)
class VariantSpec:
    """What a variant's model server runs; a different spec means a different server."""

    name: str
    model_name: str
    model_data_url: str
    environment: tuple[tuple[str, str], ...]


@dataclass
class Variant:
    spec: VariantSpec
    weight: float
    instance_count: int


@dataclass
class EndpointView:
    account: str
    region: str
    name: str
    variants: list[Variant]
    capture_config: Mapping[str, Any] | None
    moto_endpoint: Any


@dataclass(eq=False)
class Deployment:
    """What an endpoint serves, fixed when it was created or updated: as on AWS, deleting its
    Model or EndpointConfig afterwards does not change what a running endpoint serves."""

    endpoint: Any  # moto's FakeEndpoint, whose current weights and instance counts apply
    specs: dict[str, VariantSpec]  # by variant name
    configured: dict[str, dict[str, Any]]  # the config's variants: initial weights and counts


def _sagemaker_backend(account: str, region: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    # moto's BackendDict lookup costs ~20 us (locks, lazy creation); a plain dict read of what
    # already exists is free and still follows moto resets. Only a miss takes the slow path.
    backend = dict.get(dict.get(sagemaker_backends, account) or {}, region)
    return backend if backend is not None else sagemaker_backends[account][region]


def _variant_models(backend: Any, config_name: str) -> dict[str, dict]:
    config = backend.endpoint_configs.get(config_name)
    return {v["VariantName"]: v for v in (config.production_variants if config else [])}


def _variant_spec(backend: Any, endpoint: str, variant: str, model_name: str | None) -> VariantSpec:
    model = backend._models.get(model_name) if model_name else None
    if model is None:
        raise ValidationError(
            f"Variant {variant} of endpoint {endpoint} refers to model {model_name!r}, "
            "which does not exist."
        )
    container = model.primary_container or (model.containers[0] if model.containers else {})
    url = container.get("ModelDataUrl")
    if not url:
        raise ValidationError(
            f"Model {model_name} (variant {variant} of endpoint {endpoint}) has no ModelDataUrl; "
            "the local cloud serves model.tar.gz archives."
        )
    env = container.get("Environment") or {}
    return VariantSpec(variant, model_name, url, tuple(sorted((k, str(v)) for k, v in env.items())))


def _deployment(backend: Any, name: str, endpoint: Any) -> Deployment:
    configured = _variant_models(backend, endpoint.endpoint_config_name)
    specs = {}
    for current in endpoint.production_variants:
        variant = current["VariantName"]
        model_name = configured.get(variant, {}).get("ModelName")
        specs[variant] = _variant_spec(backend, name, variant, model_name)
    return Deployment(endpoint, specs, {v: dict(c) for v, c in configured.items()})


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# -- model archives -----------------------------------------------------------------------------


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"ModelDataUrl {url!r} is not an s3://bucket/key URL")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def read_s3_object(account: str, region: str, url: str) -> bytes:
    """The bytes of ``s3://bucket/key`` from moto's S3 backend, in-process."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    bucket, key = parse_s3_url(url)
    try:
        obj = s3_backends[account][get_partition(region)].get_object(bucket, key)
    except Exception as exc:  # moto raises its own NoSuchBucket/NoSuchKey types
        raise ValueError(f"cannot read {url}: {type(exc).__name__}: {exc}") from exc
    if obj is None:
        raise ValueError(f"cannot read {url}: no such object")
    return obj.value


def extract_archive(data: bytes, models_dir: Path) -> Path:
    """Extract a model.tar.gz once per content hash; returns ``models_dir/<sha256>``.

    Extraction uses tarfile's ``data`` filter: absolute paths, ``..``, links leaving the target,
    and device files are refused. It happens in a temporary directory that is renamed into
    place, so a half-extracted model is never served.
    """
    digest = hashlib.sha256(data).hexdigest()
    target = models_dir / digest
    if target.is_dir():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=models_dir))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent extraction of the same archive
                raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"model archive {digest[:16]} cannot be extracted: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when the server on ``port`` answers GET /ping with 200 (i.e. its model is loaded)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def model_server_argv(model_dir: Path, port: int) -> list[str]:
    """The default model server: isolated mode (-I) so only ``model_dir/code`` is importable
    besides the installed packages, never the source tree or PYTHONPATH."""
    return [
        sys.executable,
        "-I",
        model_server.__file__,
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]


# -- keep-alive HTTP/1.1 client for the model servers ------------------------------------------


class ServerGone(Exception):
    """The connection failed before a complete response arrived."""


class _NothingReceived(ServerGone):
    """The connection failed before any byte of a response: the request can be resent."""


class _ResetAsEndReader(asyncio.StreamReader):
    """A reader that takes a connection reset as the end of the stream.

    TorchServe sends a complete 4xx response and then resets the connection; the stock reader
    raises the reset before handing over the bytes it already holds, which would turn every
    model 4xx into "server gone". A response cut short by a reset still fails: its
    Content-Length is not met.
    """

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, ConnectionResetError):
            self.feed_eof()
        else:
            super().set_exception(exc)


async def _open_connection(host: str,
                           port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = _ResetAsEndReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class ConnectionPool:
    """Idle keep-alive connections to one model server (asyncio sets TCP_NODELAY on them)."""

    def __init__(self, port: int, max_idle: int = 64):
        self.port = port
        self.max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(
        self, path: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; raises ServerGone, or TimeoutError after ``timeout`` seconds of silence."""
        head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = head.encode("latin-1") + b"\r\n" + body
        if self._idle:
            try:
                return await self._exchange(self._idle.pop(), request, timeout)
            except _NothingReceived:
                pass  # closed by a restarted server while idle: resend on a fresh connection
        try:
            conn = await _open_connection(HOST, self.port)
        except OSError as exc:
            raise ServerGone(f"cannot connect to {HOST}:{self.port}: {exc}") from exc
        return await self._exchange(conn, request, timeout)

    async def _exchange(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        request: bytes,
        timeout: float,
    ) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        try:
            writer.write(request)
            try:
                status_line = await asyncio.wait_for(reader.readline(), timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise _NothingReceived(str(exc) or type(exc).__name__) from exc
            if not status_line:
                raise _NothingReceived("connection closed before the response")
            status, headers, data = await asyncio.wait_for(
                self._read_rest(status_line, reader), timeout
            )
        except (TimeoutError, _NothingReceived):  # TimeoutError first: it is an OSError
            writer.close()
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            raise ServerGone(str(exc) or type(exc).__name__) from exc
        closing = headers.get("connection", "").lower() == "close" or reader.at_eof()
        if closing or len(self._idle) >= self.max_idle:
            writer.close()
        else:
            self._idle.append(conn)
        return status, headers, data

    @staticmethod
    async def _read_rest(
        status_line: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, dict[str, str], bytes]:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"malformed status line {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        if length is None:
            headers["connection"] = "close"
            return status, headers, await reader.read()
        return status, headers, await reader.readexactly(int(length))

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


# -- one running variant -----------------------------------------------------------------------


@dataclass(eq=False)
class VariantServer:
    spec: VariantSpec
    archive_sha256: str
    port: int
    process: ManagedProcess
    pool: ConnectionPool
    log_path: Path
    state_changed: asyncio.Event  # set (on the loop) whenever the process changes state
    active: int = 0  # requests routed to it and not yet answered
    idle: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # set when active is 0
    stop_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Count a request, so a server taken out of routing is stopped only after answering."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()


# -- the runtime ---------------------------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).lower(): str(v) for k, v in items}


EndpointKey = tuple[str, str, str]  # (account, region, endpoint name)


class SageMakerRuntime:
    """See the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        metrics_sink: MetricsSink,
        *,
        registry: PidRegistry | None = None,
        log_dir: Path | None = None,
        capture: DataCapture | None = None,
        default_region: str = "us-east-1",
        ready_wait: float = 30.0,
        server_argv: Callable[[Path, int], list[str]] = model_server_argv,
        ready_probe: Callable[[int], bool] = ping,
    ):
        self.state_dir = Path(state_dir)
        self.models_dir = self.state_dir / "models"
        self.log_dir = Path(log_dir) if log_dir else self.state_dir.parent / "logs"
        self.metrics = metrics_sink
        self.registry = registry
        self.capture = capture or DataCapture(self.state_dir / "capture-spool")
        self.default_region = default_region
        self.ready_wait = ready_wait
        # Another model server (e.g. TorchServe, whose /ping answers before the model loads)
        # plugs in with its command line and a probe that proves the model answers.
        self.server_argv = server_argv
        self.ready_probe = ready_probe
        self.loop: asyncio.AbstractEventLoop | None = None
        # Routed servers by (account, region, endpoint, variant): those of _serving's deployments.
        self._servers: dict[tuple[str, str, str, str], VariantServer] = {}
        self._serving: dict[EndpointKey, Deployment] = {}  # where each endpoint's traffic goes
        self._latest: dict[EndpointKey, Deployment] = {}  # moto's endpoint, as first seen
        self._requested: dict[EndpointKey, Any] = {}  # moto endpoint a reconcile was asked for
        self._rejected: dict[EndpointKey, Any] = {}  # moto endpoint whose update failed
        self._running: set[VariantServer] = set()  # every server started and not yet stopped
        self._tasks: set[asyncio.Task] = set()
        self._endpoint_locks: dict[EndpointKey, asyncio.Lock] = {}
        self._failed: dict[EndpointKey, str] = {}  # endpoints marked Failed by us

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start capture uploads (replaying any leftover spool)."""
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.capture.start)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        servers = list(self._running)
        self._servers.clear()
        self._serving.clear()
        for server in servers:
            server.pool.close()
        await asyncio.gather(*(asyncio.to_thread(self._stop_server, s) for s in servers))
        await asyncio.to_thread(self.capture.stop)
        self.loop = None

    def servers(self) -> dict[tuple[str, str, str, str], VariantServer]:
        """Routed variant servers by (account, region, endpoint, variant), for status and tests.

        During a model change the new servers warm up outside this map until traffic switches.
        """
        return dict(self._servers)

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task of this runtime (on the loop); close() cancels what is left."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- endpoint lifecycle (from moto's threads) ----------------------------------------------

    def endpoint_changed(self, account: str, region: str, name: str) -> None:
        """Thread-safe: bring the endpoint's servers in line with moto (start, roll out or stop).

        What the endpoint serves is read here, as moto creates it: a Model that CloudFormation
        deletes right after (a replaced one) must not change what the endpoint serves.
        """
        key = (account, region, name)
        endpoint = _sagemaker_backend(account, region).endpoints.get(name)
        if endpoint is None:
            self._latest.pop(key, None)
        else:
            try:
                self._current(key, endpoint)
            except ValidationError:
                pass  # reconcile logs it
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # not serving yet: servers start lazily on the first invocation
        if endpoint is not None and key not in self._serving:
            # As on AWS, a new endpoint is Creating until its model servers are ready, and
            # Failed, with the reason, when one cannot start (reconcile decides).
            endpoint.endpoint_status = "Creating"
        loop.call_soon_threadsafe(
            lambda: self._spawn(self._reconcile_logged(account, region, name))
        )

    async def _reconcile_logged(self, account: str, region: str, name: str) -> None:
        try:
            await self.reconcile(account, region, name)
        except Exception:
            log.exception("updating the model servers of endpoint %s failed", name)

    async def reconcile(self, account: str, region: str, name: str) -> None:
        """Start servers for a new endpoint, roll a changed one out, stop a deleted one's."""
        key = (account, region, name)
        async with self._lock(*key):
            endpoint = _sagemaker_backend(account, region).endpoints.get(name)
            if endpoint is None:
                self._forget(key)
                return
            serving = self._serving.get(key)
            if serving is None or (
                serving.endpoint is not endpoint and self._rejected.get(key) is not endpoint
            ):
                await self._apply(key, endpoint, serving)
            serving = self._serving.get(key)
        if serving is not None:  # a new endpoint's servers start now, not on its first call
            view = self._view(key, serving, endpoint)
            started = []
            for variant in view.variants:
                try:
                    started.append(await self._server_for(view, variant.spec))
                except ValidationError as exc:
                    log.error("%s", exc.message)
            if endpoint.endpoint_status == "Creating":
                failure = await self._warm(started)
                if failure is not None:
                    self._creation_failed(endpoint, name, failure)
                else:
                    self._created(view)

    def _creation_failed(self, endpoint: Any, name: str, reason: str) -> None:
        """A new endpoint that cannot serve: Failed, with the reason (invocations still say
        why each one fails)."""
        if endpoint.endpoint_status == "Creating":
            log.error("endpoint %s failed: %s", name, reason)
            endpoint.endpoint_status = "Failed"
            endpoint.failure_reason = reason

    def _created(self, view: EndpointView) -> None:
        """A new endpoint is InService once a server of each of its variants is ready."""
        endpoint = view.moto_endpoint
        if endpoint.endpoint_status != "Creating":
            return
        key = (view.account, view.region, view.name)
        servers = [self._servers.get((*key, v.spec.name)) for v in view.variants]
        if all(server is not None and server.process.state == READY for server in servers):
            endpoint.endpoint_status = "InService"

    async def _apply(self, key: EndpointKey, endpoint: Any, serving: Deployment | None) -> None:
        try:
            latest = self._current(key, endpoint)
        except ValidationError as exc:
            log.error("endpoint %s cannot be served: %s", key[2], exc.message)
            if serving is not None:
                self._rejected[key] = endpoint  # it keeps serving what it served
            else:
                self._creation_failed(endpoint, key[2], exc.message)
            return
        if serving is None or not self._needs_servers(key, latest):
            self._switch(key, latest, {})
        else:
            await self._roll_out(key, serving, latest)

    def _forget(self, key: EndpointKey) -> None:
        """The endpoint is gone: nothing routes to it, its servers stop."""
        for state in (self._serving, self._latest, self._requested, self._rejected, self._failed):
            state.pop(key, None)
        for server_key in [k for k in self._servers if k[:3] == key]:
            self._retire(self._servers.pop(server_key))

    def _lock(self, account: str, region: str, name: str) -> asyncio.Lock:
        return self._endpoint_locks.setdefault((account, region, name), asyncio.Lock())

    # -- blue/green model changes ---------------------------------------------------------------

    async def _roll_out(self, key: EndpointKey, serving: Deployment, latest: Deployment) -> None:
        """A change of models, as UpdateEndpoint makes it: traffic stays on the servers of
        ``serving`` while those ``latest`` needs start; it switches once all of them are ready,
        and the old ones stop after answering what they were sent. If one cannot start, the
        endpoint stays InService on the old ones, with a FailureReason, as on AWS."""
        endpoint = latest.endpoint
        endpoint.endpoint_status = "Updating"
        started: dict[str, VariantServer] = {}
        failure = None
        for variant, spec in latest.specs.items():
            if self._has_server(key, spec):
                continue
            try:
                model_dir = await self._prepare(key, spec)
            except ValueError as exc:
                failure = f"variant {variant}: {exc}"
                break
            started[variant] = self._start_server(key[2], spec, model_dir)
        if failure is None:
            failure = await self._warm(started.values())
        endpoint.endpoint_status = "InService"
        if failure is None:
            self._switch(key, latest, started)
            endpoint.failure_reason = None
            log.info(
                "endpoint %s serves endpoint config %s", key[2], endpoint.endpoint_config_name
            )
            return
        for server in started.values():
            self._retire(server)
        self._rejected[key] = endpoint
        endpoint.failure_reason = (
            f"Updating to endpoint config {endpoint.endpoint_config_name} failed: {failure}"
        )
        log.error(
            "endpoint %s keeps serving endpoint config %s: updating to %s failed: %s",
            key[2],
            serving.endpoint.endpoint_config_name,
            endpoint.endpoint_config_name,
            failure,
        )

    async def _warm(self, servers: Iterable[VariantServer]) -> str | None:
        """Wait until every server is ready; the first that keeps failing to start, as text."""
        def settled(process: ManagedProcess) -> bool:
            return process.state in (READY, STOPPED) or (
                process.failures_since_ready >= FAIL_FAST_AFTER
            )

        for server in servers:
            await self._until(server, settled, None)
            if server.process.state != READY:
                return (
                    f"the model server of variant {server.spec.name} failed to start "
                    f"{server.process.failures_since_ready} times; see {server.log_path}"
                )
        return None

    def _switch(
        self, key: EndpointKey, deployment: Deployment, started: Mapping[str, VariantServer]
    ) -> None:
        """Route the endpoint to ``deployment`` (no await: no request sees half of it)."""
        self._serving[key] = deployment
        for variant, server in started.items():
            old = self._servers.get((*key, variant))
            self._servers[(*key, variant)] = server
            if old is not None:
                self._retire(old)
        for server_key in [k for k in self._servers if k[:3] == key]:
            if server_key[3] not in deployment.specs:
                self._retire(self._servers.pop(server_key))

    def _retire(self, server: VariantServer) -> None:
        self._spawn(self._drain_and_stop(server))

    async def _drain_and_stop(self, server: VariantServer) -> None:
        if server.active:
            server.idle.clear()
            try:
                await asyncio.wait_for(server.idle.wait(), MODEL_TIMEOUT_SECONDS + self.ready_wait)
            except TimeoutError:
                pass
        server.pool.close()
        await asyncio.to_thread(self._stop_server, server)

    # -- resolution -----------------------------------------------------------------------------

    def resolve(self, account: str, region: str, name: str) -> EndpointView:
        """The endpoint as an invocation sees it: the deployment its traffic goes to now."""
        key = (account, region, name)
        endpoint = _sagemaker_backend(account, region).endpoints.get(name)
        if endpoint is None:
            raise ValidationError(f"Endpoint {name} of account {account} not found.")
        serving = self._serving.get(key)
        if serving is None or serving.endpoint is not endpoint:
            serving = self._follow(key, endpoint, serving)
        return self._view(key, serving, endpoint)

    def _follow(self, key: EndpointKey, endpoint: Any, serving: Deployment | None) -> Deployment:
        """Route to a changed endpoint at once when it needs no other servers (first sight,
        weights, the same models); otherwise keep routing to the servers that are running
        while reconcile rolls the change out."""
        try:
            latest = self._current(key, endpoint)
        except ValidationError:
            if serving is None:
                raise
            latest = None
        if latest is not None and (serving is None or not self._needs_servers(key, latest)):
            self._switch(key, latest, {})
            return latest
        if self._requested.get(key) is not endpoint:  # a change the runtime was not told about
            self._requested[key] = endpoint
            self._spawn(self._reconcile_logged(*key))
        return serving

    def _current(self, key: EndpointKey, endpoint: Any) -> Deployment:
        """The deployment of moto's ``endpoint``, read from its config the first time it is seen."""
        latest = self._latest.get(key)
        if latest is None or latest.endpoint is not endpoint:
            latest = _deployment(_sagemaker_backend(key[0], key[1]), key[2], endpoint)
            self._latest[key] = latest
        return latest

    def _has_server(self, key: EndpointKey, spec: VariantSpec) -> bool:
        server = self._servers.get((*key, spec.name))
        return server is not None and server.spec == spec

    def _needs_servers(self, key: EndpointKey, deployment: Deployment) -> bool:
        """True when the endpoint serves from servers and ``deployment`` needs others."""
        serves = any(k[:3] == key for k in self._servers)
        return serves and not all(self._has_server(key, s) for s in deployment.specs.values())

    def _view(self, key: EndpointKey, deployment: Deployment, endpoint: Any) -> EndpointView:
        variants = []
        for current in deployment.endpoint.production_variants:
            name = current["VariantName"]
            configured = deployment.configured.get(name, {})
            weight = current.get("CurrentWeight", configured.get("InitialVariantWeight", 1.0))
            count = current.get("CurrentInstanceCount", configured.get("InitialInstanceCount", 1))
            instances = max(1, int(_number(count, 1)))
            variants.append(Variant(deployment.specs[name], _number(weight, 1.0), instances))
        capture = deployment.endpoint.data_capture_config
        return EndpointView(*key, variants, capture, endpoint)

    @staticmethod
    def choose(view: EndpointView, target: str | None) -> Variant:
        if target is not None:
            for variant in view.variants:
                if variant.spec.name == target:
                    return variant
            known = ", ".join(v.spec.name for v in view.variants)
            raise ValidationError(
                f"Variant {target} not found for endpoint {view.name}; its variants are: {known}."
            )
        weights = [max(0.0, v.weight) for v in view.variants]
        if not view.variants or sum(weights) <= 0:
            raise ValidationError(
                f"Endpoint {view.name} has no variant with a positive weight; "
                "name one with TargetVariant."
            )
        return random.choices(view.variants, weights)[0]

    # -- servers --------------------------------------------------------------------------------

    async def _server_for(self, view: EndpointView, spec: VariantSpec) -> VariantServer:
        """The variant's routed server, started here if it has none (a new endpoint, or one
        the runtime did not see created). After a switch, the variant's new server."""
        key = (view.account, view.region, view.name, spec.name)
        server = self._servers.get(key)
        if server is not None:
            return server
        async with self._lock(view.account, view.region, view.name):
            server = self._servers.get(key)
            if server is not None:
                return server
            try:
                model_dir = await self._prepare(key[:3], spec)
            except ValueError as exc:
                self._mark_failed(view, f"variant {spec.name}: {exc}")
                raise ValidationError(
                    f"Endpoint {view.name} is in Failed status: variant {spec.name}: {exc}"
                ) from exc
            server = self._start_server(view.name, spec, model_dir)
            self._servers[key] = server
            self._mark_in_service(view)
            return server

    async def _prepare(self, key: EndpointKey, spec: VariantSpec) -> Path:
        """The variant's model.tar.gz from S3, extracted; ValueError when it cannot be served."""
        data = await asyncio.to_thread(read_s3_object, key[0], key[1], spec.model_data_url)
        model_dir = await asyncio.to_thread(extract_archive, data, self.models_dir)
        if not (model_dir / "code" / "inference.py").is_file():
            raise ValueError(f"{spec.model_data_url} has no code/inference.py")
        return model_dir

    def _start_server(self, endpoint: str, spec: VariantSpec, model_dir: Path) -> VariantServer:
        port = free_port()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{endpoint}-{spec.name}")
        log_path = self.log_dir / f"model-{safe}.log"
        env = dict(spec.environment)
        env.setdefault("OMP_NUM_THREADS", "1")
        loop, state_changed = asyncio.get_running_loop(), asyncio.Event()
        process = ManagedProcess(
            f"model-server:{endpoint}:{spec.name}",
            self.server_argv(model_dir, port),
            log_path=log_path,
            env=env,
            cwd=model_dir,
            ready=functools.partial(self.ready_probe, port),
            ready_timeout=120.0,
            registry=self.registry,
            on_state=lambda _process, _state: loop.call_soon_threadsafe(state_changed.set),
        )
        pool = ConnectionPool(port)
        server = VariantServer(spec, model_dir.name, port, process, pool, log_path, state_changed)
        self._running.add(server)
        process.start()
        log.info(
            "starting model server for %s/%s on port %d (%s)",
            endpoint,
            spec.name,
            port,
            model_dir.name[:16],
        )
        return server

    def _stop_server(self, server: VariantServer) -> None:
        """In a thread; a retiring server may still be stopping when close() stops it again."""
        with server.stop_lock:
            if server not in self._running:
                return
            server.process.stop()
            self._running.discard(server)
        log.info("stopped model server %s", server.process.name)

    def _mark_failed(self, view: EndpointView, reason: str) -> None:
        log.error("endpoint %s cannot be served: %s", view.name, reason)
        self._failed[(view.account, view.region, view.name)] = reason
        view.moto_endpoint.endpoint_status = "Failed"
        view.moto_endpoint.failure_reason = reason

    def _mark_in_service(self, view: EndpointView) -> None:
        if self._failed.pop((view.account, view.region, view.name), None) is not None:
            view.moto_endpoint.endpoint_status = "InService"
            view.moto_endpoint.failure_reason = None

    async def _ready(self, view: EndpointView, server: VariantServer) -> None:
        """Wait for the variant's server; give up early when it keeps failing to start."""
        process = server.process
        # Waiting on the loop, not in executor threads: a burst of first requests must not
        # starve everything else that uses the default executor while a model loads.
        await self._until(
            server,
            lambda p: p.state == READY or p.failures_since_ready >= FAIL_FAST_AFTER,
            self.ready_wait,
        )
        self._created(view)
        if process.state != READY:
            failing = process.failures_since_ready >= FAIL_FAST_AFTER
            raise ModelNotReady(
                f"Model server for variant {server.spec.name} of endpoint {view.name} is not ready"
                + (
                    f": it failed to start {process.failures_since_ready} times"
                    if failing
                    else f" after {self.ready_wait:.0f}s"
                )
                + f"; see {server.log_path}."
            )

    @staticmethod
    async def _until(
        server: VariantServer, settled: Callable[[ManagedProcess], bool], timeout: float | None
    ) -> None:
        """Wait on the loop until ``settled(process)`` holds, or ``timeout`` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not settled(server.process):
            server.state_changed.clear()
            if settled(server.process):
                break
            remaining = None if deadline is None else deadline - loop.time()
            try:
                await asyncio.wait_for(server.state_changed.wait(), remaining)
            except TimeoutError:
                break

    # -- InvokeEndpoint -------------------------------------------------------------------------

    async def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        """InvokeEndpoint over HTTP (``POST /endpoints/<name>/invocations``), for the gateway."""
        lowered = _lower_headers(headers)
        match = _INVOCATIONS_PATH.match(path.split("?", 1)[0])
        if match is None or method.upper() != "POST":
            return UnknownOperation(
                f"{method} {path} is not a sagemaker-runtime operation of the local cloud; "
                "it serves POST /endpoints/<EndpointName>/invocations."
            ).response()
        account, region = self._caller(lowered)
        return await self.invoke(account, region, unquote(match.group("name")), lowered, body)

    def _caller(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """Account and region as moto derives them (MOTO_ACCOUNT_ID, header, access key)."""
        from moto.iam.models import get_account_id_from

        found = _CREDENTIAL.search(headers.get("authorization", ""))
        region = found.group("region") if found else self.default_region
        account = os.environ.get("MOTO_ACCOUNT_ID") or headers.get("x-moto-account-id")
        if not account:
            account = get_account_id_from(found.group("key")) if found else DEFAULT_ACCOUNT_ID
        return account, region

    async def invoke(
        self, account: str, region: str, name: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One InvokeEndpoint call; ``headers`` have lower-case names. Returns the wire response."""
        received = time.time()
        started = time.perf_counter()
        try:
            self._validate(name, headers, body)
            view = self.resolve(account, region, name)
            failed = self._failed.get((account, region, name))
            if failed is not None:
                raise ValidationError(f"Endpoint {name} is in Failed status: {failed}")
            variant = self.choose(view, headers.get("x-amzn-sagemaker-target-variant"))
        except InvokeError as exc:
            return exc.response()
        dims = {"EndpointName": name, "VariantName": variant.spec.name}
        try:
            server = await self._server_for(view, variant.spec)
            with server.in_use():
                await self._ready(view, server)
                model_started = time.perf_counter()
                status, model_headers, data = await self._call_model(view, server, headers, body)
                model_seconds = time.perf_counter() - model_started
        except InvokeError as exc:
            server_side = exc.status >= 500 or isinstance(exc, ModelNotReady)
            self.metrics.record_many(
                NAMESPACE, dims, self._counts(variant, 5 if server_side else 4)
            )
            return exc.response()
        response_type = model_headers.get("content-type", "application/octet-stream")
        if 200 <= status < 300:
            self.capture.capture(
                self.capture.settings_for(view.capture_config),
                account_id=account,
                endpoint=name,
                variant=variant.spec.name,
                request_body=body,
                request_type=headers.get("content-type"),
                response_body=data,
                response_type=response_type,
                inference_id=headers.get("x-amzn-sagemaker-inference-id"),
                when=received,
            )
        overhead_seconds = max(0.0, time.perf_counter() - started - model_seconds)
        self.metrics.record_many(
            NAMESPACE,
            dims,
            self._counts(variant, 0 if status < 400 else status // 100)
            + [
                ("ModelLatency", model_seconds * 1e6, "Microseconds"),
                ("OverheadLatency", overhead_seconds * 1e6, "Microseconds"),
            ],
        )
        if not 200 <= status < 300:
            return self._model_error(view, server, status, data).response()
        response_headers = {
            "Content-Type": response_type,
            "x-Amzn-Invoked-Production-Variant": variant.spec.name,
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        custom = model_headers.get("x-amzn-sagemaker-custom-attributes")
        if custom is not None:
            response_headers["X-Amzn-SageMaker-Custom-Attributes"] = custom
        return 200, response_headers, data

    @staticmethod
    def _validate(name: str, headers: Mapping[str, str], body: bytes) -> None:
        if not _ENDPOINT_NAME.match(name):
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
                " and have length less than or equal to 63"
            )
        if len(body) > MAX_PAYLOAD_BYTES:
            raise ValidationError(
                f"Request body of {len(body)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit of "
                "InvokeEndpoint."
            )
        for header, field, limit in (
            ("x-amzn-sagemaker-inference-id", "inferenceId", 64),
            ("x-amzn-sagemaker-custom-attributes", "customAttributes", 1024),
            ("x-amzn-sagemaker-target-variant", "targetVariant", 63),
        ):
            value = headers.get(header)
            if value is not None and not 1 <= len(value) <= limit:
                raise ValidationError(
                    f"1 validation error detected: Value at '{field}' failed to satisfy "
                    "constraint: "
                    f"Member must have length between 1 and {limit}"
                )

    async def _call_model(
        self, view: EndpointView, server: VariantServer, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        forwarded = {}
        for name, wire in (
            ("content-type", "Content-Type"),
            ("accept", "Accept"),
            ("x-amzn-sagemaker-custom-attributes", "X-Amzn-SageMaker-Custom-Attributes"),
            ("x-amzn-sagemaker-inference-id", "X-Amzn-SageMaker-Inference-Id"),
        ):
            if name in headers:
                forwarded[wire] = headers[name]
        try:
            return await server.pool.post("/invocations", forwarded, body, MODEL_TIMEOUT_SECONDS)
        except ServerGone as exc:
            log.error(
                "model server %s failed during a request (%s); the supervisor restarts it",
                server.process.name,
                exc,
            )
            raise ServiceUnavailable(
                f"The model server for variant {server.spec.name} of endpoint {view.name} stopped "
                "while processing the request; it is being restarted. Retry the request."
            ) from exc
        except TimeoutError:
            raise ModelError(
                "Your invocation timed out while waiting for a response from container primary. "
                f"See {server.log_path} for more information.",
                LogStreamArn=self._log_stream_arn(view),
            ) from None

    @staticmethod
    def _log_stream_arn(view: EndpointView) -> str:
        group = f"/aws/sagemaker/Endpoints/{view.name}"
        return f"arn:aws:logs:{view.region}:{view.account}:log-group:{group}"

    def _model_error(
        self, view: EndpointView, server: VariantServer, status: int, data: bytes
    ) -> ModelError:
        original = data.decode("utf-8", "replace")
        kind = "client" if 400 <= status < 500 else "server"
        return ModelError(
            f'Received {kind} error ({status}) from primary with message "{original}". '
            f"See {server.log_path} for more information.",
            ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL",
            OriginalStatusCode=status,
            OriginalMessage=original,
            LogStreamArn=self._log_stream_arn(view),
        )

    @staticmethod
    def _counts(variant: Variant, error_class: int) -> list[tuple[str, float, str]]:
        """Invocations, InvocationsPerInstance and the 4XX/5XX counters of one request."""
        return [
            ("Invocations", 1, "Count"),
            ("InvocationsPerInstance", 1.0 / variant.instance_count, "Count"),
            ("Invocation4XXErrors", 1 if error_class == 4 else 0, "Count"),
            ("Invocation5XXErrors", 1 if error_class == 5 else 0, "Count"),
        ]

    # -- moto's InvokeEndpoint (called from moto's request threads) ------------------------------

    def invoke_from_thread(
        self, account: str, region: str, name: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        loop = self.loop
        if loop is None or loop.is_closed():
            return ServiceUnavailable(
                "The local SageMaker runtime is not running; start the local cloud's data plane."
            ).response()
        future = asyncio.run_coroutine_threadsafe(
            self.invoke(account, region, name, _lower_headers(headers), body), loop
        )
        return future.result()


# -- moto patches ------------------------------------------------------------------------------

_hooked: list[SageMakerRuntime] = []
_hook_lock = threading.Lock()


def install_moto_hooks(runtime: SageMakerRuntime) -> None:
    """Route moto's own InvokeEndpoint to ``runtime`` and tell it about endpoint changes.

    Patches, once per process: ``SageMakerRuntimeResponse.invoke_endpoint`` (the control-plane
    port answers with the real model instead of canned data) and the SageMaker backend's
    ``create_endpoint`` and ``delete_endpoint`` (weights are read on every invocation).
    CloudFormation updates an Endpoint in place (``compat.fix_sagemaker_endpoint_update``), so
    the runtime sees one change, not a delete and a create. Calling it again points the hooks at
    a new runtime.
    """
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    with _hook_lock:
        first = not _hooked
        _hooked[:] = [runtime]
        if not first:
            return

    def invoke_endpoint(self: Any) -> tuple[int, dict[str, str], bytes]:
        name = unquote(self.path.rstrip("/").split("/")[-2])
        status, headers, body = _hooked[0].invoke_from_thread(
            self.current_account, self.region, name, dict(self.headers), self.raw_body or b""
        )
        return status, {**headers, "status": status}, body  # moto takes the status from "status"

    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint
    # The body is the model's payload, any bytes: moto would decode it as UTF-8 first and
    # answer bytes that are not with a 500 page. invoke_endpoint reads raw_body.
    SageMakerRuntimeResponse.use_raw_body = True

    def notifying(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: Any, endpoint_name: str, *args: Any, **kwargs: Any) -> Any:
            result = method(self, endpoint_name, *args, **kwargs)
            _hooked[0].endpoint_changed(self.account_id, self.region_name, endpoint_name)
            return result

        return wrapper

    for name in ("create_endpoint", "delete_endpoint"):
        setattr(SageMakerModelBackend, name, notifying(getattr(SageMakerModelBackend, name)))
