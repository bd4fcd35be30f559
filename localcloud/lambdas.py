"""The local Lambda runtime: warm worker pools that run the deployed zips.

Functions are read from moto's Lambda backend (code bytes, handler, environment, timeout,
memory, reserved concurrency). Each code version is extracted once, by content hash, under
``<home>/state/functions/<sha256>/``; each function gets a pool of up to
``min(reserved concurrency, MAX_POOL_SIZE)`` warm ``localcloud.lambda_worker`` processes,
started on demand and supervised by :mod:`localcloud.processes` (a worker that dies is logged
and restarted). Workers connect back to a private Unix socket; an invocation is one frame each
way (see :mod:`localcloud.lambda_worker`), so no process is spawned per request and handler
output goes to ``<home>/logs/lambda/<function>.log``, never into results.

All worker I/O happens on one asyncio loop (the gateway's). Callers on that loop await
:meth:`LambdaRuntime.invoke`; moto's server threads use :meth:`LambdaRuntime.invoke_blocking`
and :meth:`LambdaRuntime.submit_event`. :func:`install_moto_hooks` routes moto's Invoke
(RequestResponse and Event) and SNS -> Lambda deliveries here, so Docker is never needed.

Lambda semantics kept: the configured timeout (the worker is killed and restarted, the caller
gets ``Sandbox.Timedout``), reserved concurrency (0 throttles every call; otherwise synchronous
calls beyond it, waiting ones included, are throttled, with a warning per burst), asynchronous
retries (``MaximumRetryAttempts``, default 2) and then the function's dead-letter queue, updated
code or configuration replaces the pool, a deleted function stops its workers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import hashlib
import inspect
import io
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from localcloud import metrics, urls
from localcloud.lambda_worker import HEADER
from localcloud.processes import ManagedProcess, PidRegistry

log = logging.getLogger("localcloud.lambdas")

MAX_POOL_SIZE = 4
DEFAULT_ASYNC_RETRIES = 2
ASYNC_RETRY_DELAYS = (1.0, 2.0)  # Lambda waits minutes; locally a retry should be seen soon
WORKER_INIT_TIMEOUT = 60.0  # import of the handler module (Lambda allows 10 s; this box is shared)
ACQUIRE_TIMEOUT = 120.0  # a caller waiting longer than this for a free worker gives up
RECONCILE_SECONDS = 0.5  # how soon a deleted function's workers stop (checks are cheap)
THROTTLE_LOG_SECONDS = 5.0  # a function's throttles are logged at most this often (then as a count)
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
PASSED_THROUGH_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # Lambda's RequestResponse invocation payload quota


class ChangeCounter:
    """Counts calls of moto's mutating model methods, so caches built from moto's state know when
    to rebuild without comparing that state on every request."""

    def __init__(self, name: str, prefixes: set[str]) -> None:
        self.value = 0
        self._marker = f"_localcloud_counted_{name}"
        self._prefixes = frozenset(prefixes)

    def watch(self, *classes: type) -> None:
        for cls in classes:
            if cls.__dict__.get(self._marker):
                continue
            for name in dir(cls):
                # plain instance methods only: class and static methods keep their binding
                attribute = inspect.getattr_static(cls, name)
                verb = name.lstrip("_").split("_", 1)[0]
                if verb in self._prefixes and inspect.isfunction(attribute):
                    setattr(cls, name, self._counting(attribute))
            setattr(cls, self._marker, True)

    def _counting(self, method: Any) -> Any:
        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            finally:
                self.value += 1

        return counted


FUNCTION_CHANGES = ChangeCounter(
    "lambda", {"create", "update", "delete", "put", "publish", "add", "remove", "set"}
)


class InvokeResult(NamedTuple):
    payload: bytes  # the function's result, or Lambda's error document when error_type is set
    error_type: str | None  # None on success
    duration_ms: float
    request_id: str = ""


class Throttled(Exception):
    """The function's reserved concurrency is used up (Lambda's TooManyRequestsException)."""


class PayloadTooLarge(Exception):
    """A synchronous invocation's event is over 6 MB (Lambda's RequestEntityTooLargeException);
    the function does not run."""


def function_logs_dir(home: Path) -> Path:
    """Where the local cloud at ``home`` writes each function's output (``<function>.log``)."""
    return Path(home) / "logs" / "lambda"


@dataclass
class _ThrottleBurst:
    logged_at: float
    unlogged: int = 0  # calls throttled since the last warning
    latest: str = ""  # the reason given to the latest of them
    flush_pending: bool = False


class ThrottleWarnings:
    """A warning per burst of throttles, not per call: the first call of a function throttled
    is logged at once; the calls after it within ``interval`` seconds are counted, and their
    count is logged when the interval ends (``call_later(delay, callback)`` schedules that)."""

    def __init__(self, interval: float = THROTTLE_LOG_SECONDS, call_later=None) -> None:
        self.interval = interval
        self.call_later = call_later
        self._bursts: dict[str, _ThrottleBurst] = {}

    def note(self, fn_name: str, reason: str, now: float | None = None) -> str | None:
        """Count one throttled call; the warning logged for it, if any."""
        now = time.monotonic() if now is None else now
        burst = self._bursts.get(fn_name)
        if burst is None or now - burst.logged_at >= self.interval:
            earlier = burst.unlogged if burst else 0
            burst = self._bursts.setdefault(fn_name, _ThrottleBurst(now))
            burst.logged_at, burst.unlogged = now, 0
            more = f" ({earlier} more since the previous warning)" if earlier else ""
            return self._warn(f"Lambda throttled a call of {reason}{more}")
        burst.unlogged += 1
        burst.latest = reason
        if self.call_later is not None and not burst.flush_pending:
            burst.flush_pending = True
            self.call_later(burst.logged_at + self.interval - now, lambda: self.flush(fn_name))
        return None

    def flush(self, fn_name: str, now: float | None = None) -> str | None:
        """Log how many calls were throttled since the last warning, if any were."""
        burst = self._bursts.get(fn_name)
        if burst is None:
            return None
        burst.flush_pending = False
        if not burst.unlogged:
            return None
        message = (
            f"Lambda throttled {burst.unlogged} more calls since the previous warning; "
            f"the latest: {burst.latest}"
        )
        burst.logged_at = time.monotonic() if now is None else now
        burst.unlogged = 0
        return self._warn(message)

    @staticmethod
    def _warn(message: str) -> str:
        log.warning("%s", message)
        return message


class _WorkerGone(Exception):
    pass


_REQUEST_ID_PREFIX = secrets.token_hex(10)
_request_ids = itertools.count(1)


def new_request_id() -> str:
    """A unique id in UUID form: a random per-process prefix and a counter (no syscall)."""
    p, n = _REQUEST_ID_PREFIX, next(_request_ids)
    return f"{p[:8]}-{p[8:12]}-4{p[12:15]}-a{p[15:18]}-{n:012x}"


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _error_message(error_document: bytes) -> str:
    """The ``errorMessage`` of Lambda's error document (the document itself if it has none)."""
    try:
        return str(json.loads(error_document)["errorMessage"])
    except (ValueError, KeyError, TypeError):
        return error_document.decode(errors="replace")


# What Lambda puts in a failed asynchronous event's ErrorCode: the status of the invocation.
FUNCTION_ERROR_CODE = 200  # the function ran and failed (X-Amz-Function-Error)
THROTTLED_ERROR_CODE = 429
DEAD_LETTER_MESSAGE_LIMIT = 1024  # Lambda sends the first 1 KB of the error message


def park_failed_event(
    fn: Any, payload: bytes, request_id: str, error_code: int, message: str
) -> None:
    """Send an asynchronous event that Lambda gives up on to the function's dead-letter queue
    (``DeadLetterConfig.TargetArn``), with Lambda's RequestID, ErrorCode and ErrorMessage
    attributes; without one the event is dropped, as on Lambda, and logged whole."""
    target = (getattr(fn, "dead_letter_config", None) or {}).get("TargetArn")
    if not target:
        log.error("%s: asynchronous event dropped (no dead-letter queue): %s",
                  fn.function_name, payload.decode(errors="replace"))
        return
    attributes = {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(error_code)},
        "ErrorMessage": {"DataType": "String",
                         "StringValue": message[:DEAD_LETTER_MESSAGE_LIMIT] or "unknown"},
    }
    service, region, account, name = _arn_parts(target)
    body = payload.decode(errors="replace")
    try:
        if service != "sqs":
            raise ValueError("the local cloud delivers dead letters to SQS queues only")
        from moto.sqs.models import sqs_backends

        sqs_backends[account][region].send_message(name, body, message_attributes=attributes)
    except Exception as exc:  # moto's errors share no base class; the event goes to the log
        log.error("%s: asynchronous event could not reach its dead-letter target %s (%s): %s",
                  fn.function_name, target, exc, body)
        return
    log.warning("%s: asynchronous event sent to its dead-letter queue %s (request %s)",
                fn.function_name, target, request_id)


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN; empty strings where it has none."""
    parts = arn.split(":", 5) + [""] * 6
    return parts[2], parts[3], parts[4], parts[5]


def _code_sha_hex(fn: Any) -> str:
    """moto keeps base64(sha256); directories are named by the hex form."""
    try:
        return base64.b64decode(fn.code_sha_256).hex()
    except (binascii.Error, TypeError, ValueError):
        return hashlib.sha256(fn.code_bytes or b"").hexdigest()


@dataclass
class _Frame:
    meta: dict
    body: bytes


class Worker:
    """One slot of a pool: a supervised process and, while it is up, its connection."""

    def __init__(self, pool: "WorkerPool", index: int) -> None:
        self.pool = pool
        self.token = secrets.token_hex(16)
        self.name = f"lambda:{pool.fn_name}:{index}"
        self.writer: asyncio.StreamWriter | None = None
        self.pid: int | None = None
        self.pending: asyncio.Future | None = None
        self.killed = False
        self.process: ManagedProcess | None = None

    @property
    def connected(self) -> bool:
        return self.writer is not None

    async def run(self, request_id: str, payload: bytes, timeout: float) -> InvokeResult:
        loop = asyncio.get_running_loop()
        self.pending = loop.create_future()
        deadline_ms = int((time.time() + timeout) * 1000)
        meta = json.dumps({"request_id": request_id, "deadline_ms": deadline_ms}).encode()
        started = time.perf_counter()
        self.writer.write(HEADER.pack(len(meta), len(payload)) + meta + payload)
        try:
            frame: _Frame = await asyncio.wait_for(self.pending, timeout)
        except asyncio.TimeoutError:
            self.kill(f"request {request_id} timed out after {timeout:.2f} s")
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return InvokeResult(
                _error_payload("Sandbox.Timedout", message),
                "Sandbox.Timedout",
                (time.perf_counter() - started) * 1000,
            )
        except asyncio.CancelledError:
            # the worker may still be running this event: it must not serve anyone else
            self.kill(f"request {request_id} was cancelled")
            raise
        except _WorkerGone:
            message = (
                f"RequestId: {request_id} Error: Runtime exited unexpectedly "
                f"(see {self.pool.runtime.function_log(self.pool.fn_name)})"
            )
            return InvokeResult(
                _error_payload("Runtime.ExitError", message),
                "Runtime.ExitError",
                (time.perf_counter() - started) * 1000,
            )
        finally:
            self.pending = None
        elapsed = (time.perf_counter() - started) * 1000
        error = frame.meta.get("error")
        if error:
            return InvokeResult(
                json.dumps(error).encode(), error.get("errorType", "Error"), elapsed
            )
        return InvokeResult(frame.body, None, elapsed)

    def attach(self, writer: asyncio.StreamWriter, pid: int) -> None:
        self.writer, self.pid, self.killed = writer, pid, False

    def detach(self) -> None:
        """The connection closed: the process died, was killed, or is being stopped."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(_WorkerGone())

    def kill(self, reason: str) -> None:
        """SIGKILL the worker's process group; its supervisor starts a fresh one."""
        log.warning("killing Lambda worker %s (pid %s): %s", self.name, self.pid, reason)
        self.killed = True
        pid, writer = self.pid, self.writer
        self.writer = None
        if writer is not None:
            writer.close()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class WorkerPool:
    """The warm workers of one function version."""

    def __init__(self, runtime: "LambdaRuntime", fn: Any) -> None:
        self.runtime = runtime
        self.fn = fn
        self.fn_name = fn.function_name
        self.signature = WorkerPool.signature_of(fn)
        reserved = fn.reserved_concurrency
        self.reserved = None if reserved is None else int(reserved)
        self.max_size = (
            MAX_POOL_SIZE if self.reserved is None else min(self.reserved, MAX_POOL_SIZE)
        )
        self.timeout = float(fn.timeout or 3)
        self.workers: list[Worker] = []
        self.idle: collections.deque[Worker] = collections.deque()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.in_flight = 0
        self.retired = False
        self.checked_at = FUNCTION_CHANGES.value  # moto's state when the signature last matched
        self._code_dir: asyncio.Future | None = None

    @staticmethod
    def signature_of(fn: Any) -> tuple:
        """Everything whose change needs fresh workers."""
        return (
            fn.code_sha_256,
            fn.handler,
            fn.timeout,
            fn.memory_size,
            fn.reserved_concurrency,
            json.dumps(fn.environment_vars, sort_keys=True),
        )

    def matches(self, fn: Any) -> bool:
        return fn is self.fn and WorkerPool.signature_of(fn) == self.signature

    async def invoke(self, payload: bytes, synchronous: bool) -> InvokeResult:
        if self.max_size == 0 or (
            synchronous and self.reserved is not None and self.in_flight >= self.reserved
        ):
            raise Throttled(self.throttle_reason())
        request_id = new_request_id()
        self.in_flight += 1
        try:
            if self._code_dir is None:
                self._code_dir = asyncio.ensure_future(
                    asyncio.to_thread(self.runtime.extract_code, self.fn)
                )
            try:
                await asyncio.shield(self._code_dir)
            except (OSError, RuntimeError, zipfile.BadZipFile) as exc:
                message = f"RequestId: {request_id} Error: cannot unpack the function's code: {exc}"
                return InvokeResult(
                    _error_payload("Runtime.InvalidCode", message), "Runtime.InvalidCode", 0.0,
                    request_id,
                )
            worker = await self._acquire()
            try:
                result = await worker.run(request_id, payload, self.timeout)
                return result._replace(request_id=request_id)
            finally:
                self.release(worker)
        finally:
            self.in_flight -= 1
            if self.retired and self.in_flight == 0:
                self.runtime.stop_pool_later(self)

    def throttle_reason(self) -> str:
        """Why a call is throttled now. Calls waiting for a free local worker count as running:
        on Lambda each would have its own execution environment at once, but their wait is this
        machine's, so a saturated machine throttles at a rate Lambda would serve."""
        if self.reserved == 0:
            return f"{self.fn_name}: reserved concurrency is 0"
        running = sum(1 for worker in self.workers if worker.pending is not None)
        return (
            f"{self.fn_name}: reserved concurrency {self.reserved} used up: {running} running, "
            f"{self.in_flight - running} waiting for one of {self.max_size} local workers"
        )

    async def _acquire(self) -> Worker:
        deadline = time.monotonic() + ACQUIRE_TIMEOUT
        while True:
            while self.idle:
                worker = self.idle.popleft()
                if worker.connected:
                    return worker
            waiting = sum(1 for waiter in self.waiters if not waiter.done())
            if len(self.workers) < self.max_size and waiting >= self._starting():
                self._add_worker()
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release(waiter.result())  # handed over just now: pass it on
                waiter.cancel()
                raise
            if not waiter.done():
                waiter.cancel()
                raise Throttled(f"{self.fn_name}: no worker became free in {ACQUIRE_TIMEOUT:.0f} s")
            worker = waiter.result()
            if worker.connected:  # it may have died between its release and now
                return worker

    def _starting(self) -> int:
        return sum(1 for w in self.workers if not w.connected)

    def _add_worker(self) -> None:
        worker = Worker(self, len(self.workers))
        self.workers.append(worker)
        worker.process = self.runtime.spawn(self.fn, self._code_dir.result(), worker)
        worker.process.start()

    def release(self, worker: Worker) -> None:
        """Hand a connected, free worker to the next waiter, or park it as idle."""
        if not worker.connected or worker.pending is not None:
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self.idle.append(worker)

    def processes(self) -> list[ManagedProcess]:
        return [w.process for w in self.workers if w.process is not None]


class LambdaRuntime:
    def __init__(
        self,
        home: Path,
        registry: PidRegistry | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.home = Path(home)
        self.functions_dir = self.home / "state" / "functions"
        self.logs_dir = function_logs_dir(self.home)
        self.registry = registry
        self.region = region
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pools: dict[tuple, WorkerPool] = {}
        self._by_token: dict[str, Worker] = {}
        self._events: set[asyncio.Task] = set()  # queued asynchronous invocations
        self._stopping: set[asyncio.Task] = set()  # pools being stopped
        self._retired: set[WorkerPool] = set()  # replaced pools still finishing invocations
        self._server: asyncio.AbstractServer | None = None
        self._socket_dir: Path | None = None
        self._reconciler: asyncio.Task | None = None
        self._functions: dict[str, tuple[Any, int]] = {}
        self.throttle_warnings = ThrottleWarnings()  # given the loop's timer by start()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.throttle_warnings.call_later = self.loop.call_later
        run_dir = self.home / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        self.socket_path = run_dir / "lambda.sock"
        if len(str(self.socket_path)) > 100:  # AF_UNIX paths are limited to 108 bytes
            self._socket_dir = Path(tempfile.mkdtemp(prefix="localcloud-"))
            self.socket_path = self._socket_dir / "lambda.sock"
        self.socket_path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        self._reconciler = asyncio.ensure_future(self._reconcile_forever())

    async def stop(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
        for task in list(self._events):
            task.cancel()
        pools, self.pools = [*self.pools.values(), *self._retired], {}
        await asyncio.gather(*self._stopping, *(self._stop_pool(pool) for pool in pools))
        if self._server is not None:
            self._server.close()
        self.socket_path.unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    # -- invocation ---------------------------------------------------------------------------

    async def invoke(self, fn: Any, payload: bytes, synchronous: bool = True) -> InvokeResult:
        """Run ``fn`` (a moto LambdaFunction) on ``payload`` (the event as JSON bytes)."""
        if synchronous and len(payload) > SYNC_PAYLOAD_LIMIT:
            raise PayloadTooLarge(
                f"{len(payload)} byte payload is too large for the RequestResponse invocation "
                f"type ({SYNC_PAYLOAD_LIMIT})"
            )
        pool = self.pool_for(fn)
        dims = {"FunctionName": pool.fn_name}
        try:
            result = await pool.invoke(payload, synchronous)
        except Throttled as exc:
            metrics.record("AWS/Lambda", "Throttles", 1, "Count", dims)
            self.throttle_warnings.note(pool.fn_name, str(exc))
            raise
        metrics.record_many(
            "AWS/Lambda",
            dims,
            (
                ("Invocations", 1, "Count"),
                ("Duration", result.duration_ms, "Milliseconds"),
                ("Errors", 1 if result.error_type else 0, "Count"),
            ),
        )
        return result

    def invoke_blocking(self, fn: Any, payload: bytes) -> InvokeResult:
        """:meth:`invoke` from a thread other than the loop's (moto's request threads)."""
        if self.loop is None:
            raise RuntimeError("the Lambda runtime is not started")
        if self.loop.is_running() and _on_loop_thread(self.loop):
            raise RuntimeError("invoke_blocking called on the runtime's own loop: await invoke()")
        future = asyncio.run_coroutine_threadsafe(self.invoke(fn, payload), self.loop)
        return future.result()

    def submit_event(self, fn: Any, payload: bytes) -> None:
        """Queue an asynchronous (``Event``) invocation; returns at once, from any thread."""
        self.loop.call_soon_threadsafe(self._start_event, fn, payload)

    def _start_event(self, fn: Any, payload: bytes) -> None:
        task = asyncio.ensure_future(self._run_event(fn, payload))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _run_event(self, fn: Any, payload: bytes) -> None:
        retries = DEFAULT_ASYNC_RETRIES
        for config in getattr(fn, "event_invoke_config", []):
            retries = int(config.config.get("MaximumRetryAttempts", retries))
        for attempt in range(retries + 1):
            try:
                result = await self.invoke(fn, payload, synchronous=False)
            except Throttled as exc:
                log.error("asynchronous invocation of %s throttled: %s", fn.function_name, exc)
                park_failed_event(fn, payload, new_request_id(), THROTTLED_ERROR_CODE, str(exc))
                return
            if result.error_type is None:
                return
            log.error(
                "asynchronous invocation of %s failed (attempt %d of %d): %s",
                fn.function_name,
                attempt + 1,
                retries + 1,
                result.payload.decode(errors="replace"),
            )
            if attempt < retries:
                await asyncio.sleep(ASYNC_RETRY_DELAYS[min(attempt, len(ASYNC_RETRY_DELAYS) - 1)])
        park_failed_event(
            fn, payload, result.request_id, FUNCTION_ERROR_CODE, _error_message(result.payload)
        )

    def function(self, arn: str) -> Any:
        """moto's function for ``arn`` (cached until moto's Lambda state changes)."""
        cached = self._functions.get(arn)
        if cached is not None and cached[1] == FUNCTION_CHANGES.value:
            return cached[0]
        from moto.awslambda.models import lambda_backends

        generation = FUNCTION_CHANGES.value
        service, region, account, resource = _arn_parts(arn)
        if service != "lambda" or not resource.startswith("function:"):
            raise LookupError(f"{arn} is not a Lambda function ARN")
        try:
            fn = lambda_backends[account][region].get_function(arn)
        except Exception as exc:  # moto's not-found error
            raise LookupError(f"function {arn} does not exist ({exc})") from None
        self._functions[arn] = (fn, generation)
        return fn

    # -- pools --------------------------------------------------------------------------------

    def pool_for(self, fn: Any) -> WorkerPool:
        key = (fn.account_id, fn.region, fn.function_name, str(fn.version))
        pool = self.pools.get(key)
        if pool is not None and pool.fn is fn and pool.checked_at == FUNCTION_CHANGES.value:
            return pool
        if pool is not None and pool.matches(fn):
            pool.checked_at = FUNCTION_CHANGES.value
            return pool
        if pool is not None:
            log.info("function %s changed: replacing its workers", fn.function_name)
            self._retire(pool)
        pool = self.pools[key] = WorkerPool(self, fn)
        return pool

    def _retire(self, pool: WorkerPool) -> None:
        pool.retired = True
        self._retired.add(pool)
        if pool.in_flight == 0:
            self.stop_pool_later(pool)

    def stop_pool_later(self, pool: WorkerPool) -> None:
        task = asyncio.ensure_future(self._stop_pool(pool))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop_pool(self, pool: WorkerPool) -> None:
        self._retired.discard(pool)
        for worker in pool.workers:
            self._by_token.pop(worker.token, None)
            worker.killed = True
        processes = pool.processes()
        pool.workers, pool.idle = [], collections.deque()
        await asyncio.gather(*(asyncio.to_thread(p.stop, 2.0) for p in processes))

    async def _reconcile_forever(self) -> None:
        seen = FUNCTION_CHANGES.value
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            if FUNCTION_CHANGES.value != seen:  # nothing to compare while moto is unchanged
                seen = FUNCTION_CHANGES.value
                self.reconcile()

    def reconcile(self) -> None:
        """Retire pools whose function was deleted or replaced in moto."""
        from moto.awslambda.models import lambda_backends

        for key, pool in list(self.pools.items()):
            account, region, name, version = key
            try:
                current = lambda_backends[account][region].get_function(
                    name, None if version == "$LATEST" else version
                )
            except Exception:  # moto raises its own not-found types
                current = None
            if current is None or not pool.matches(current):
                log.info("function %s was deleted or changed: stopping its workers", name)
                del self.pools[key]
                self._retire(pool)

    # -- worker processes ----------------------------------------------------------------------

    def function_log(self, fn_name: str) -> Path:
        return self.logs_dir / f"{fn_name}.log"

    def extract_code(self, fn: Any) -> Path:
        """The function's code directory, extracted once per content hash."""
        target = self.functions_dir / _code_sha_hex(fn)
        if target.is_dir():
            return target
        if not getattr(fn, "code_bytes", b""):
            raise RuntimeError(f"function {fn.function_name} has no code")
        self.functions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=self.functions_dir))
        try:
            with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as archive:
                archive.extractall(staging)  # extractall drops absolute and ".." members
            os.replace(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():  # not a lost race with another extraction
                raise
        return target

    def worker_env(self, fn: Any, code_dir: Path) -> dict[str, str]:
        region = fn.region or self.region
        env = {k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ}
        env.update({k: urls.to_local_url(str(v)) for k, v in (fn.environment_vars or {}).items()})
        env.update(DUMMY_CREDENTIALS)
        env.update(
            {
                "AWS_ENDPOINT_URL": urls.control_url(),
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": urls.dataplane_url(),
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                # a developer's ~/.aws must not redirect or re-credential the function
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": (
                    "$LATEST" if str(fn.version) == "$LATEST" else str(fn.version)
                ),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": datetime.now(timezone.utc).strftime(
                    "%Y/%m/%d/[$LATEST]"
                )
                + uuid.uuid4().hex,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
                "LAMBDA_TASK_ROOT": str(code_dir),
                "LOCALCLOUD_FUNCTION_ARN": fn.function_arn,
                "LOCALCLOUD_WORKER_SOCKET": str(self.socket_path),
                "_HANDLER": fn.handler or "",
                "TZ": ":UTC",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def spawn(self, fn: Any, code_dir: Path, worker: Worker) -> ManagedProcess:
        env = self.worker_env(fn, code_dir)
        env["LOCALCLOUD_WORKER_TOKEN"] = worker.token
        self._by_token[worker.token] = worker
        return ManagedProcess(
            worker.name,
            [sys.executable, "-m", "localcloud.lambda_worker"],
            log_path=self.function_log(fn.function_name),
            env=env,
            inherit_env=False,
            cwd=code_dir,
            ready=lambda: worker.connected,
            ready_timeout=WORKER_INIT_TIMEOUT,
            backoff_initial=0.1,
            backoff_max=5.0,
            registry=self.registry,
        )

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await asyncio.wait_for(_read_frame(reader), WORKER_INIT_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            hello = None
        worker = self._by_token.get(hello.meta.get("token", "")) if hello else None
        if worker is None:
            writer.close()  # not one of ours (or a worker of a stopped pool)
            return
        worker.attach(writer, int(hello.meta["pid"]))
        if hello.meta.get("init_error"):
            log.error("%s failed to initialise: %s", worker.name, hello.meta["init_error"])
        worker.pool.release(worker)
        try:
            while True:
                frame = await _read_frame(reader)
                if worker.pending is not None and not worker.pending.done():
                    worker.pending.set_result(frame)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        if worker.writer is writer:  # not a kill we already handled
            if worker.pending is not None and not worker.killed:
                log.error("%s (pid %s) died during an invocation", worker.name, worker.pid)
            worker.detach()


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _read_frame(reader: asyncio.StreamReader) -> _Frame:
    header = await reader.readexactly(HEADER.size)
    meta_len, body_len = HEADER.unpack(header)
    data = await reader.readexactly(meta_len + body_len)
    return _Frame(json.loads(data[:meta_len]), data[meta_len:])


# -- moto seams -------------------------------------------------------------------------------

_runtime: LambdaRuntime | None = None


def install_moto_hooks(runtime: LambdaRuntime) -> None:
    """Route moto's Lambda invocations and SNS -> Lambda deliveries to ``runtime``.

    ``LambdaFunction.invoke`` serves the Invoke API (RequestResponse, Event, DryRun);
    ``LambdaFunction._invoke_lambda`` is what moto's other event sources call (it would start
    Docker); ``Subscription.publish`` for the ``lambda`` protocol builds SNS's real event and
    queues it, because moto would deliver inside Publish and so serialise the subscribers.
    """
    global _runtime
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda.responses import LambdaResponse
    from moto.sns.models import Subscription

    _runtime = runtime
    FUNCTION_CHANGES.watch(LambdaBackend, LambdaFunction)
    if getattr(LambdaFunction.invoke, "localcloud_hook", False):
        return
    LambdaFunction.invoke = _moto_invoke
    LambdaFunction._invoke_lambda = _moto_invoke_lambda
    LambdaResponse._dispatch = _refusing_non_utf8(LambdaResponse._dispatch)
    Subscription.publish = _wrap_sns_publish(Subscription.publish)


def _refusing_non_utf8(dispatch: Any) -> Any:
    """moto decodes every request body as UTF-8 before it dispatches, so an Invoke payload of
    other bytes raised UnicodeDecodeError: a 500 HTML page. Lambda answers 400."""

    @functools.wraps(dispatch)
    def wrapper(self: Any, request: Any, full_url: Any = None, headers: Any = None) -> Any:
        try:
            return dispatch(self, request, full_url, headers)
        except UnicodeDecodeError as exc:
            error = _moto_error(
                400,
                "InvalidRequestContentException",
                "Could not parse request body into json: not UTF-8 "
                f"(byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            )
            return error.code, dict(error.get_headers()), error.get_body()

    return wrapper


def _header(headers: Any, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _moto_error(code: int, error_type: str, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(error_type, message)
    error.code = code
    return error


def _moto_invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
    payload = body.encode() if isinstance(body, str) else bytes(body or b"")
    payload = payload or b"{}"
    try:
        json.loads(payload)
    except ValueError as exc:
        raise _moto_error(
            400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
        )
    invocation_type = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        _runtime.submit_event(self, payload)
        return b""
    try:
        result = _runtime.invoke_blocking(self, payload)
    except Throttled:
        raise _moto_error(429, "TooManyRequestsException", "Rate Exceeded.")
    except PayloadTooLarge as exc:
        raise _moto_error(413, "RequestEntityTooLargeException", str(exc))
    response_headers["x-amz-executed-version"] = str(self.version)
    if result.error_type is not None:
        response_headers["x-amz-function-error"] = "Unhandled"
    return result.payload


_moto_invoke.localcloud_hook = True  # type: ignore[attr-defined]


def _moto_invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    payload = event if isinstance(event, str) else json.dumps(event if event is not None else {})
    try:
        result = _runtime.invoke_blocking(self, payload.encode())
    except Throttled:
        return _error_payload("TooManyRequestsException", "Rate Exceeded.").decode(), True, ""
    return result.payload.decode(errors="replace"), result.error_type is not None, ""


def sns_event(
    subscription: Any,
    message: str,
    message_id: str,
    subject: str | None,
    message_attributes: dict | None,
) -> dict:
    """The event SNS gives a subscribed function (one record)."""
    topic_arn = subscription.topic.arn
    region = _arn_parts(topic_arn)[1]
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription.arn,
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": topic_arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                    + "Z",
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": (
                        f"https://sns.{region}.amazonaws.com/SimpleNotificationService.pem"
                    ),
                    "UnsubscribeUrl": (
                        f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
                        f"&SubscriptionArn={subscription.arn}"
                    ),
                    "MessageAttributes": {
                        name: {"Type": attr.get("Type"), "Value": attr.get("Value")}
                        for name, attr in (message_attributes or {}).items()
                    },
                },
            }
        ]
    }


def _wrap_sns_publish(original: Any) -> Any:
    def publish(
        self: Any,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: dict | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
    ) -> None:
        if self.protocol != "lambda":
            return original(
                self,
                message,
                message_id,
                subject,
                message_attributes,
                group_id,
                deduplication_id,
                message_structure,
            )
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(message_attributes, message):
            return None
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        try:
            fn = _runtime.function(self.endpoint)
        except LookupError as exc:
            log.error("SNS delivery to %s dropped: %s", self.endpoint, exc)
            return None
        event = sns_event(self, message, message_id, subject, message_attributes)
        _runtime.submit_event(fn, json.dumps(event).encode())
        return None

    return publish
