"""The local cloud daemon: moto's server (control plane) and the data-plane gateway in one process.

One process, because the data plane reads moto's backends in memory (no HTTP round trip to
the control plane on the hot path). Threads: moto's threaded WSGI server and the metrics
flusher; everything else (gateway, Lambda worker I/O, SageMaker routing) runs on one uvloop
event loop. Child processes (Lambda workers, model servers) are started through
:mod:`localcloud.processes` and recorded in ``<home>/children.json``, so ``down`` can stop them
even after a crash of the daemon.

Files under ``<home>`` (``<project>/.localcloud`` unless ``LOCALCLOUD_HOME`` is set):
  localcloud.pid      the daemon's pid          daemon.json   pid, ports, URLs, region, start time
  daemon-code.json    its pid and a digest of the localcloud code it runs
  localcloud.log      the daemon's log          children.json live child processes
  up.lock             serialises concurrent ``up`` commands
  deployment-<project><stage>.lock  held by the ``make deploy`` or ``make teardown`` changing
                      that stage's stacks (workflow/exclusive.py)
  logs/lambda/<fn>.log  each function's output  state/functions/<sha256>/  extracted function code
  run/lambda.sock     the Lambda workers' private channel
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localcloud import urls

log = logging.getLogger("localcloud")

PID_FILE = "localcloud.pid"
INFO_FILE = "daemon.json"
# Not in daemon.json: older checkouts read that into DaemonInfo, which takes no other keys.
CODE_FILE = "daemon-code.json"
LOG_FILE = "localcloud.log"
CHILDREN_FILE = "children.json"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
DEFAULT_REGION = "us-east-1"


class LocalCloudError(Exception):
    """A one-line, user-facing reason why a command failed."""


# -- locations and settings ----------------------------------------------------------------------


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding config.json (else ``start``)."""
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / "config.json").is_file():
            return directory
    return start


def home() -> Path:
    override = os.environ.get("LOCALCLOUD_HOME")
    return Path(override).resolve() if override else project_root() / ".localcloud"


def region(config_path: Path | None = None) -> str:
    """The region the stacks deploy to: project.region of the validated config (``config_path``,
    else the project's config.json); outside a project AWS_DEFAULT_REGION, else us-east-1."""
    if config_path is None:
        config_path = project_root() / "config.json"
        if not config_path.is_file():
            return os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    from generator.config import ConfigError, load

    try:
        return load(config_path).project.region
    except ConfigError as exc:
        raise LocalCloudError(str(exc)) from None


@dataclass
class DaemonInfo:
    pid: int
    control_url: str
    dataplane_url: str
    region: str
    started_at: float


def read_info(home_dir: Path) -> DaemonInfo | None:
    try:
        return DaemonInfo(**json.loads((home_dir / INFO_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def code_digest(package: Path = Path(__file__).parent) -> str:
    """A digest of this localcloud package's source; a daemon runs the code it started with.
    Hidden files are not modules: an editor's lock file (Emacs' ``.#name.py`` is a dangling
    symlink) would otherwise change the digest, or fail reading it."""
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        if path.name.startswith(".") or not path.is_file():
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def runs_other_code(home_dir: Path, info: DaemonInfo) -> bool:
    """Whether the daemon ``info`` names runs other localcloud code than this checkout's (it
    started before a pull, or before it recorded its code)."""
    try:
        recorded = json.loads((home_dir / CODE_FILE).read_text())
    except (OSError, ValueError):
        return True
    return recorded != {"pid": info.pid, "code": code_digest()}


def other_code_note(home_dir: Path, info: DaemonInfo) -> str | None:
    """What to tell the user when the daemon ``info`` names runs other localcloud code than this
    checkout's, else None."""
    if not runs_other_code(home_dir, info):
        return None
    return (
        f"local cloud: the running one (pid {info.pid}) started from other localcloud code than "
        "this checkout's and keeps serving as that code does; to serve this checkout's, "
        "`make local-down` then `make deploy` (which deploys every stack again, with a new API "
        "id and key)"
    )


def _is_our_daemon(pid: int) -> bool:
    """Alive and running this package (a recycled pid belongs to someone else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"localcloud" in cmdline and b"--foreground" in cmdline


def _healthy(dataplane_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{dataplane_url}/_localcloud/health", timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def alive(home_dir: Path) -> bool:
    """Whether the daemon that ``home_dir`` names is still alive, answering or not (a busy one
    may miss a health check's timeout)."""
    info = read_info(home_dir)
    return info is not None and _is_our_daemon(info.pid)


def running(home_dir: Path) -> DaemonInfo | None:
    """The daemon's info when it is alive and answering, else None."""
    info = read_info(home_dir)
    if info is None or not _is_our_daemon(info.pid) or not _healthy(info.dataplane_url):
        return None
    return info


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((urls.HOST, port))
        except OSError:
            return False
    return True


def _busy_port_error(port: int) -> LocalCloudError:
    return LocalCloudError(
        f"port {port} on {urls.HOST} is in use by another process; stop it or set "
        "LOCALCLOUD_PORT to another port (the data plane takes the next one)"
    )


# -- commands ------------------------------------------------------------------------------------


def start_background(
    config_path: Path | None = None,
) -> tuple[DaemonInfo, bool, DaemonInfo | None]:
    """Start the daemon detached and wait until it answers; (info, False, None) if it was
    running. Its region is ``config_path``'s (see :func:`region`); a running one must have that
    region. The third item is the previous daemon when it stopped without ``down`` (killed,
    crashed, or the machine restarted): the state it held in memory is gone.

    Concurrent ``up`` commands (``make -j``) serialise on a lock file, so only one starts it.
    """
    import fcntl

    from localcloud import torchserve

    torchserve.runtime_options(os.environ)  # a bad LOCAL_MODEL_SERVER fails here, in one line
    home_dir = home()
    home_dir.mkdir(parents=True, exist_ok=True)
    with open(home_dir / "up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_locked(home_dir, config_path)


def _start_locked(
    home_dir: Path, config_path: Path | None
) -> tuple[DaemonInfo, bool, DaemonInfo | None]:
    reg = region(config_path)  # validate the config before detaching, so the error shows here
    info = read_info(home_dir)
    running = info is not None and _is_our_daemon(info.pid)
    # A daemon that stops, and `down`, remove daemon.json; one left behind names a dead daemon.
    lost = info if info is not None and not running else None
    if running:
        deadline = time.monotonic() + START_TIMEOUT  # it may be starting up right now
        while _is_our_daemon(info.pid) and time.monotonic() < deadline:
            if _healthy(info.dataplane_url, 0.5):
                if info.region != reg:
                    raise LocalCloudError(
                        f"the local cloud (pid {info.pid}) runs for region {info.region}, but "
                        f"the config says {reg}: stop it first (`make local-down`)"
                    )
                return info, False, None
            time.sleep(0.1)
        if _is_our_daemon(info.pid):
            raise LocalCloudError(
                f"the local cloud (pid {info.pid}) runs but does not answer on "
                f"{info.dataplane_url}; see {home_dir / LOG_FILE}, or restart it with "
                "`python -m localcloud down` then `up`"
            )
    control_port = urls.control_port()
    for port in (control_port, control_port + 1):
        if not _port_free(port):
            raise _busy_port_error(port)
    log_path = home_dir / LOG_FILE
    env = dict(os.environ, LOCALCLOUD_HOME=str(home_dir), LOCALCLOUD_PORT=str(control_port))
    with open(log_path, "ab") as log_file:
        log_file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} up\n".encode())
        log_file.flush()
        import subprocess

        config_args = ["--config", str(config_path.resolve())] if config_path else []
        process = subprocess.Popen(
            [sys.executable, "-m", "localcloud", "up", "--foreground", *config_args],
            cwd=str(project_root()),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalCloudError(
                f"the local cloud exited during start-up: {_last_error(log_path)} (log: {log_path})"
            )
        info = read_info(home_dir)
        if info is not None and info.pid == process.pid and _healthy(info.dataplane_url, 0.5):
            return info, True, lost
        time.sleep(0.1)
    _terminate(process.pid)
    raise LocalCloudError(
        f"the local cloud did not answer within {START_TIMEOUT:.0f} s (log: {log_path})"
    )


def _last_error(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (errors or [line for line in lines if line] or ["no output"])[-1]


def _terminate(pid: int) -> None:
    """SIGTERM the daemon, wait for its clean shutdown, SIGKILL its group if it hangs."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    log.warning(
        "the local cloud (pid %d) ignored SIGTERM for %.0f s; killing it", pid, STOP_TIMEOUT
    )
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop() -> bool:
    """Stop the daemon and every process it started; False when nothing was running."""
    from localcloud.processes import kill_recorded

    home_dir = home()
    info = read_info(home_dir)
    stopped = False
    if info is not None and _is_our_daemon(info.pid):
        _terminate(info.pid)
        stopped = True
    leftovers = kill_recorded(home_dir / CHILDREN_FILE)
    for name in (PID_FILE, INFO_FILE, CODE_FILE):
        (home_dir / name).unlink(missing_ok=True)
    return stopped or bool(leftovers)


def env_exports() -> list[str]:
    """Shell lines pointing the aws CLI and boto3 at the control plane."""
    reg = region()
    return [
        "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN",
        f"export AWS_ENDPOINT_URL={urls.control_url()}",
        "export AWS_ACCESS_KEY_ID=test",
        "export AWS_SECRET_ACCESS_KEY=test",
        f"export AWS_DEFAULT_REGION={reg}",
        f"export AWS_REGION={reg}",
    ]


# -- the daemon itself ---------------------------------------------------------------------------


def serve_foreground(config_path: Path | None = None) -> int:
    """Run the local cloud in this process until SIGTERM/SIGINT."""
    home_dir = home()
    home_dir.mkdir(parents=True, exist_ok=True)
    # The event loop releases the GIL on every socket write; with moto's request threads and
    # the capture uploader busy, the default 5 ms switch interval is how long it can then wait
    # to get it back. 0.5 ms measured ~10% more req/s through the API and half the p99.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per control-plane call
    existing = read_info(home_dir)
    if existing is not None and existing.pid != os.getpid() and _is_our_daemon(existing.pid):
        raise LocalCloudError(f"the local cloud is already running (pid {existing.pid})")
    from localcloud.processes import kill_recorded

    kill_recorded(home_dir / CHILDREN_FILE)  # leftovers of a daemon that crashed
    reg = region(config_path)
    control_port = urls.control_port()
    control = _ControlPlane(control_port)  # binds now: a busy port fails before anything starts
    try:
        from localcloud import gateway

        try:
            data_socket = gateway.listening_socket(urls.HOST, control_port + 1)
        except OSError:
            raise _busy_port_error(control_port + 1)
        _write_state(
            home_dir,
            DaemonInfo(os.getpid(), urls.control_url(), urls.dataplane_url(), reg, time.time()),
        )
        try:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(_serve(home_dir, reg, control, data_socket))
        finally:
            for name in (PID_FILE, INFO_FILE, CODE_FILE):
                (home_dir / name).unlink(missing_ok=True)
    finally:
        control.stop()
    log.info("the local cloud stopped")
    return 0


def _write_state(home_dir: Path, info: DaemonInfo) -> None:
    (home_dir / PID_FILE).write_text(f"{info.pid}\n")
    (home_dir / CODE_FILE).write_text(json.dumps({"pid": info.pid, "code": code_digest()}))
    tmp = home_dir / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info.__dict__, indent=1))
    os.replace(tmp, home_dir / INFO_FILE)


class _ControlPlane:
    """moto's server app on a threaded werkzeug server bound to 127.0.0.1.

    ``ThreadedMotoServer`` binds inside its thread and waits forever when the port is busy;
    binding here makes that a clear error. The handler disables Nagle's algorithm (werkzeug's
    keep-alive responses otherwise wait ~40 ms for a delayed ACK) and acknowledges request
    headers at once (see :class:`localcloud.gateway.QuickAckProtocol`).
    """

    def __init__(self, port: int) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class NoDelayHandler(MotoRequestHandler):
            disable_nagle_algorithm = True

            def parse_request(self) -> bool:
                # ACK the headers now: botocore holds a request body until they are acknowledged
                parsed = super().parse_request()
                try:
                    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                except OSError:  # the client is already gone
                    pass
                return parsed

        app = DomainDispatcherApplication(create_backend_app)
        try:
            self.server = make_server(
                urls.HOST, port, app, threaded=True, request_handler=NoDelayHandler
            )
        except (OSError, SystemExit):  # werkzeug exits the process on a busy port
            raise _busy_port_error(port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="moto", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()


async def _serve(home_dir: Path, reg: str, control: _ControlPlane, data_socket) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID

    from localcloud import apigateway, compat, gateway, lambdas, metrics, sagemaker, torchserve
    from localcloud.processes import PidRegistry

    compat.apply()
    registry = PidRegistry(home_dir / CHILDREN_FILE)  # one file for every child process
    runtime = lambdas.LambdaRuntime(home_dir, registry=registry, region=reg)
    lambdas.install_moto_hooks(runtime)
    apigateway.install_moto_hooks()
    endpoints = sagemaker.SageMakerRuntime(
        home_dir / "state",
        metrics.SINK,
        registry=registry,
        default_region=reg,
        **torchserve.runtime_options(os.environ),  # LOCAL_MODEL_SERVER=builtin|torchserve
    )
    sagemaker.install_moto_hooks(endpoints)
    metrics.SINK.configure(DEFAULT_ACCOUNT_ID, reg)
    metrics.SINK.start()
    await runtime.start()
    await endpoints.start()
    control.start()

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    server = gateway.make_server(
        gateway.Gateway(apigateway.ApiGatewayDataPlane(runtime), endpoints)
    )
    serving = asyncio.ensure_future(server.serve(sockets=[data_socket]))
    # What start-up built (moto, its routes and models: about 145,000 objects) lives as long as
    # the daemon. Frozen, full collections skip it, which shortens each of their pauses of the
    # event loop by as much.
    gc.collect()
    gc.freeze()
    log.info(
        "local cloud up: control plane %s, data plane %s, region %s, state %s",
        urls.control_url(),
        urls.dataplane_url(),
        reg,
        home_dir,
    )
    try:
        await asyncio.wait(
            [serving, asyncio.ensure_future(stop_requested.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        log.info("stopping the local cloud")
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await asyncio.gather(runtime.stop(), endpoints.close())
        metrics.SINK.stop()
