"""The model hop over HTTP: the project's model server beside TorchServe + SageMaker toolkit.

Both serve the same extracted ``model.tar.gz`` on 127.0.0.1, launched exactly as the local cloud
and ``make conformance`` launch them (``localcloud.sagemaker.model_server_argv`` and
``localcloud.torchserve.server_argv``), with the container environment the Model resource sets
(batch and text limits, ``SAGEMAKER_MODEL_SERVER_WORKERS`` from config.json). Each is ready when a
real ``POST /invocations`` answers 200 (TorchServe answers ``/ping`` before its model is loaded).
wrk then POSTs AG_NEWS sentences to ``/invocations`` at 1 and 16 connections, runs interleaved
between the two servers (:func:`bench.wrk.measure`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import conformance, wrk
from localcloud import torchserve as launcher
from localcloud.sagemaker import model_server_argv

SERVERS = ("model_server", "torchserve")
STARTUP_TIMEOUT = 120.0


def _probe(body: bytes) -> conformance.Case:
    return conformance.Case("probe", body, conformance.JSON, conformance.JSON, 200)


def run(archive: Path, bodies: Path, env: dict[str, str], runs: int, seconds: float,
        warmup: float, logs: Path, torchserve_python: Path = launcher.TORCHSERVE_PYTHON,
        log=print) -> dict:
    """Serve ``archive`` on both stacks and measure them with the same wrk protocol."""
    if not torchserve_python.is_file():
        raise RuntimeError(f"{torchserve_python} does not exist: `make conformance` creates the "
                           "TorchServe virtual environment")
    first_body = bodies.read_text().splitlines()[0].encode()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        model_dir = conformance.extract(archive, Path(tmp))
        commands = {
            "model_server": lambda port: model_server_argv(model_dir, port),
            "torchserve": lambda port: launcher.server_argv(model_dir, port, torchserve_python),
        }
        servers: dict[str, conformance.Server] = {}
        try:
            for name in SERVERS:  # one after the other: each startup time without competition
                port = launcher.free_loopback_ports(1)[0]
                servers[name] = conformance.Server(name, commands[name](port), port, env,
                                                   logs / f"http-{name}.log")
                servers[name].wait_ready(_probe(first_body), conformance.Deadline(STARTUP_TIMEOUT),
                                         STARTUP_TIMEOUT)
                log(f"[bench] {name} ready after {servers[name].ready_after:.1f} s on port {port}")
            loads = {name: wrk.Load(f"http://{conformance.HOST}:{s.port}/invocations", bodies)
                     for name, s in servers.items()}
            figures = wrk.measure(loads, (1, 16), runs, seconds, warmup, log)
        finally:
            for server in servers.values():
                server.stop()
    for name, server in servers.items():
        figures[name]["ready_s"] = round(server.ready_after, 2)
    ours, theirs = figures["model_server"], figures["torchserve"]
    return {
        "archive": str(archive),
        "workers": int(env["SAGEMAKER_MODEL_SERVER_WORKERS"]),
        "servers": figures,
        "ratio_req_per_s": {c: round(ours[c]["req_per_s"]["median"]
                                     / theirs[c]["req_per_s"]["median"], 2) for c in ("c1", "c16")},
        "p99_lower": {c: ours[c]["p99_ms"]["median"] < theirs[c]["p99_ms"]["median"]
                      for c in ("c1", "c16")},
    }


def sentence_bodies(texts: list[str], limit: int = 256) -> list[dict]:
    """``{"sentence": ...}`` request documents for the first ``limit`` texts."""
    return [{"sentence": text} for text in texts[:limit]]
