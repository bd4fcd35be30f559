"""Serve one extracted model.tar.gz on the real SageMaker PyTorch serving stack.

    .venv-torchserve/bin/python -m localcloud.torchserve --model-dir DIR --port PORT [--workers N]

Runs what the SageMaker PyTorch inference container runs: the ``sagemaker-pytorch-inference``
toolkit's serving entry point (``sagemaker_pytorch_serving_container.serving.main``), which
writes a TorchServe config and starts TorchServe (a Java front end plus Python workers running
the toolkit's handler service over ``DIR/code/inference.py``). It needs its own virtual
environment with torchserve, the toolkit and Java 17 (see docs/conformance.md).

Differences from the container, all about running several servers side by side on one host:

* ``DIR`` is laid out as ``<private dir>/model`` (``SAGEMAKER_BASE_DIR``), the config file lives
  in the private dir instead of ``/etc``, and so do TorchServe's pid file, worker sockets,
  model store and logs (TorchServe's log4j config also copies every log line to stdout).
* Every listener is bound to 127.0.0.1: the inference and management API on ``PORT`` (the
  toolkit writes 0.0.0.0), the metrics API and both gRPC APIs on free loopback ports (their
  fixed defaults would collide between two servers).
* The toolkit finds "its" TorchServe by scanning every process for the Java main class and
  gives up when there are two; here it is found by its private config path.

Readiness: ``GET /ping`` answers "Healthy" before any worker has loaded the model, so probe with a
valid ``POST /invocations`` (:func:`invocations_ok`). The process stays in the foreground;
SIGTERM or SIGINT stops the Java front end (which stops its workers), the launcher adopts and
reaps the JVM (a child subreaper), and anything still running from the private dir is
terminated before exit, so nothing outlives the launcher. ``LOCAL_MODEL_SERVER=torchserve``
makes the local cloud use this launcher (:func:`runtime_options`).
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

HOST = "127.0.0.1"
# The interpreter of the virtual environment that holds TorchServe and the toolkit.
TORCHSERVE_PYTHON = Path(__file__).resolve().parents[1] / ".venv-torchserve" / "bin" / "python"
# Any sentence works: unknown words map to the <unk> row, so the request is always valid.
READINESS_REQUEST = b'{"sentence": "readiness probe"}'
MODEL_NAME = "model"  # the directory name SageMaker gives the extracted archive
# TorchServe listeners besides the inference/management port, each on its own free loopback port.
EXTRA_LISTENERS = ("metrics_address", "grpc_inference_port", "grpc_management_port")
STOP_GRACE_SECONDS = 10.0
# As localcloud.model_server's: under memory pressure the kernel kills a model server (restarted
# or failed with a reason by its supervisor) rather than the daemon holding every deployment.
OOM_SCORE_RAISE = 500  # above the score inherited from the daemon, up to the maximum, 1000
PR_SET_CHILD_SUBREAPER = 36  # prctl option, <linux/prctl.h>


class LaunchError(ValueError):
    """The server cannot be started as asked (bad arguments, missing Java, unexpected config)."""


class _Stopped(BaseException):
    """SIGTERM or SIGINT arrived before the toolkit took over signal handling."""


def _raise_stopped(signo, frame):
    raise _Stopped(signo)


def server_argv(model_dir: Path, port: int, python: Path = TORCHSERVE_PYTHON) -> list[str]:
    """The command serving ``model_dir`` on ``port``, like ``localcloud.model_server``'s.

    Isolated mode (-I): neither the working directory nor PYTHONPATH can shadow the toolkit's
    modules; this file needs nothing from the source tree.
    """
    return [
        str(python),
        "-I",
        str(Path(__file__).resolve()),
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]


def invocations_ok(port: int, timeout: float = 2.0) -> bool:
    """True once a valid ``POST /invocations`` answers 200, i.e. a worker has loaded the model.

    ``GET /ping`` is no readiness signal here: TorchServe answers it before the model is loaded.
    """
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/invocations",
            READINESS_REQUEST,
            {"Content-Type": "application/json", "Accept": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def runtime_options(env: Mapping[str, str]) -> dict:
    """Keyword arguments for the local cloud's SageMaker runtime, chosen by ``LOCAL_MODEL_SERVER``.

    ``builtin`` (the default) keeps the project's model server; ``torchserve`` serves every
    variant with this launcher, probed for readiness with a real request.
    """
    choice = env.get("LOCAL_MODEL_SERVER", "").strip() or "builtin"
    if choice == "builtin":
        return {}
    if choice != "torchserve":
        raise LaunchError(
            f"LOCAL_MODEL_SERVER={choice!r} is not a model server; allowed: builtin, torchserve"
        )
    if not TORCHSERVE_PYTHON.is_file():
        raise LaunchError(
            f"LOCAL_MODEL_SERVER=torchserve needs {TORCHSERVE_PYTHON} "
            "(`make conformance` creates it)"
        )
    _check_java()
    return {"server_argv": server_argv, "ready_probe": invocations_ok}


def read_properties(text: str) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (as TorchServe's launcher reads them)."""
    properties = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def _set_property(text: str, key: str, value: str) -> str:
    lines = [line for line in text.splitlines() if line.split("=", 1)[0].strip() != key]
    return "\n".join(lines + [f"{key}={value}"]) + "\n"


def localize_config(text: str, port: int, extra_ports: dict[str, int], host: str = HOST) -> str:
    """The toolkit's TorchServe config with every listener on ``host``.

    The toolkit must have put the inference and management APIs on ``port``; anything else means
    it was configured in a way this launcher does not understand, so that is an error rather
    than a silent rewrite.
    """
    properties = read_properties(text)
    for key in ("inference_address", "management_address"):
        address = properties.get(key)
        scheme, _, rest = (address or "").partition("://")
        if scheme != "http" or rest.rsplit(":", 1)[-1] != str(port):
            raise LaunchError(f"toolkit wrote {key}={address!r}; expected http://<host>:{port}")
        text = _set_property(text, key, f"http://{host}:{port}")
    missing = sorted(set(EXTRA_LISTENERS) - set(extra_ports))
    if missing:
        raise LaunchError(f"no port given for {', '.join(missing)}")
    text = _set_property(text, "metrics_address", f"http://{host}:{extra_ports['metrics_address']}")
    text = _set_property(text, "grpc_inference_address", host)
    text = _set_property(text, "grpc_management_address", host)
    text = _set_property(text, "grpc_inference_port", str(extra_ports["grpc_inference_port"]))
    return _set_property(text, "grpc_management_port", str(extra_ports["grpc_management_port"]))


def serving_environment(
    base: dict[str, str], run_dir: Path, port: int, workers: int, bin_dir: Path
) -> dict[str, str]:
    """The environment the toolkit and TorchServe run with, confined to ``run_dir``.

    ``TMPDIR`` holds TorchServe's pid file (one per host otherwise), ``TEMP`` becomes the JVM's
    ``java.io.tmpdir``, where the worker sockets live. ``bin_dir`` (this virtual environment's)
    goes first on ``PATH``, because the toolkit runs the ``torchserve`` command by name.
    Log locations the caller chose are kept.
    """
    env = dict(base)
    tmp = str(run_dir / "tmp")
    env.update(
        {
            "SAGEMAKER_BASE_DIR": str(run_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "TMPDIR": tmp,
            "TEMP": tmp,
            "PATH": os.pathsep.join(
                [str(bin_dir)] + [p for p in base.get("PATH", "").split(os.pathsep) if p]
            ),
        }
    )
    env.setdefault("LOG_LOCATION", str(run_dir / "logs"))
    env.setdefault("METRICS_LOCATION", env["LOG_LOCATION"])
    return env


def prepare_run_dir(model_dir: Path) -> Path:
    """A private directory with ``model`` pointing at ``model_dir`` (SageMaker's /opt/ml/model)."""
    run_dir = Path(tempfile.mkdtemp(prefix="torchserve-"))
    (run_dir / MODEL_NAME).symlink_to(model_dir.resolve(), target_is_directory=True)
    for sub in ("tmp", "logs"):
        (run_dir / sub).mkdir()
    return run_dir


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise LaunchError(
            "TorchServe needs Java 17 or newer: install a JDK (Debian: openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )


def _processes_of(run_dir: Path):
    """Live processes whose command line mentions ``run_dir``: the JVM and its workers."""
    import psutil

    marker = str(run_dir)
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.pid != os.getpid()
                and process.status() != psutil.STATUS_ZOMBIE
                and any(marker in arg for arg in process.cmdline())
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _terminate_leftovers(run_dir: Path) -> None:
    """Stop whatever the stopped JVM left running (workers it could not reap in time)."""
    import psutil

    leftovers = _processes_of(run_dir)
    for process in leftovers:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(leftovers, timeout=STOP_GRACE_SECONDS)
    for process in alive:
        print(
            f"torchserve launcher: pid {process.pid} ignored SIGTERM; killing it", file=sys.stderr
        )
        try:
            process.kill()
        except psutil.Error:
            pass


def _patch_toolkit(toolkit, run_dir: Path, port: int, stop_requested: list) -> None:
    """Point the toolkit at the private dir, loopback addresses and our own JVM.

    ``stop_requested`` gets an entry when SIGTERM arrives, so a JVM that exits on its own can be
    told apart from one that was asked to stop.
    """
    from retrying import retry

    config_file = run_dir / "sagemaker-ts.properties"
    toolkit.TS_CONFIG_FILE = str(config_file)
    toolkit.MODEL_STORE = str(run_dir / ".sagemaker" / "ts" / "models")
    generate = toolkit._generate_ts_config_properties

    def generate_localized(handler_service):
        ports = dict(zip(EXTRA_LISTENERS, free_loopback_ports(len(EXTRA_LISTENERS))))
        return localize_config(generate(handler_service), port, ports)

    @retry(stop_max_delay=10 * 1000, wait_fixed=100)
    def retrieve_our_server():
        # Our JVM is the one started with our config file; other TorchServes may be running.
        for process in _processes_of(run_dir):
            if toolkit.TS_NAMESPACE in process.cmdline() and str(config_file) in process.cmdline():
                return process
        raise LaunchError(
            f"TorchServe did not start (no {toolkit.TS_NAMESPACE} process with {config_file})"
        )

    add_sigterm_handler = toolkit._add_sigterm_handler

    def add_recording_sigterm_handler(ts_process):
        add_sigterm_handler(ts_process)  # forwards SIGTERM to the JVM
        forward = signal.getsignal(signal.SIGTERM)

        def record_and_forward(signo, frame):
            stop_requested.append(signo)
            forward(signo, frame)

        signal.signal(signal.SIGTERM, record_and_forward)

    toolkit._generate_ts_config_properties = generate_localized
    toolkit._retrieve_ts_server_process = retrieve_our_server
    toolkit._add_sigterm_handler = add_recording_sigterm_handler


def _become_subreaper() -> None:
    """Adopt our orphans: the JVM is started by the short-lived ``torchserve`` command.

    Otherwise the JVM (and any worker it leaves) is re-parented to init, which may reap it only
    seconds after it exits; as our child it is reaped, and waited for, at once. Linux only.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: waiting for the JVM just takes until init reaps it


def serve(model_dir: Path, port: int, workers: int) -> int:
    """Run the toolkit's entry point in the foreground; return when TorchServe has stopped."""
    _check_java()
    _become_subreaper()
    # Until the toolkit installs its own handler (which forwards SIGTERM to the JVM), a stop
    # request unwinds through the cleanup below instead of killing this process outright.
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    run_dir = prepare_run_dir(model_dir)
    started = time.monotonic()
    try:
        os.environ.update(
            serving_environment(
                dict(os.environ), run_dir, port, workers, Path(sys.executable).parent
            )
        )
        # The toolkit reads SAGEMAKER_BASE_DIR and the working directory at import time.
        os.chdir(run_dir)
        from sagemaker_pytorch_serving_container import serving
        from sagemaker_pytorch_serving_container import torchserve as toolkit

        stop_requested = []
        _patch_toolkit(toolkit, run_dir, port, stop_requested)
        print(
            f"torchserve launcher: serving {model_dir} on http://{HOST}:{port} "
            f"with {workers} worker(s); private dir {run_dir}",
            flush=True,
        )
        serving.main()  # returns when the JVM has exited
        lifetime = time.monotonic() - started
        if not stop_requested:
            print(
                f"torchserve launcher: TorchServe exited on its own after {lifetime:.1f} s "
                "(its log is above)",
                file=sys.stderr,
            )
            return 1
        print(f"torchserve launcher: TorchServe stopped after {lifetime:.1f} s", flush=True)
        return 0
    except LaunchError as exc:
        print(f"torchserve launcher: {exc}", file=sys.stderr)
        return 1
    except _Stopped:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _terminate_leftovers(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def prefer_as_oom_victim() -> None:
    """Raise this process's OOM score (any process may raise its own); TorchServe and its
    workers inherit it."""
    try:
        score = Path("/proc/self/oom_score_adj")
        score.write_text(str(min(1000, int(score.read_text()) + OOM_SCORE_RAISE)))
    except OSError:  # not Linux: nothing to prefer
        pass


# The same argument checks as localcloud.model_server's: each runs isolated (-I),
# importing nothing from the source tree, so each has its own copy;
# tests/localcloud/test_model_server.py holds the two to one behaviour.
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.torchserve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="extracted model.tar.gz")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (1-65535)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="TorchServe workers (default: SAGEMAKER_MODEL_SERVER_WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if not (args.model_dir / "code" / "inference.py").is_file():
        parser.error(f"--model-dir {args.model_dir}: no code/inference.py in it")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: must be 1-65535 (TorchServe needs a fixed port)")
    if args.workers is None:
        raw = os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
        try:
            args.workers = _positive(raw)
        except ValueError:
            parser.error(f"SAGEMAKER_MODEL_SERVER_WORKERS={raw!r}: must be a positive integer")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefer_as_oom_victim()
    try:
        return serve(args.model_dir.resolve(), args.port, args.workers)
    except LaunchError as exc:
        print(f"torchserve launcher: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    status = main()
    # Skip interpreter teardown: the toolkit imported torch (to name its handler module), and
    # unloading it adds about a second to every stop. Everything we started is gone by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
