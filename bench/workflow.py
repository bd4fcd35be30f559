"""Workflow timings: ``make templates``, a full ``make deploy`` to a fresh local cloud, a no-op
redeploy and ``make teardown``, each timed from the outside as a user runs them.

Everything runs in a scratch copy of the working tree (``build/bench/tree``: the files git tracks or
would track, plus a link to ``.venv``), so the benchmark never rewrites this tree's
``templates_out/`` or ``build/`` and can use its own configuration: ``--config`` (config.json by
default) as the tree's config.json, with the API's throttle and the predictor's reserved concurrency
raised to the configuration's maxima. The shipped 200 req/s would cap the end-to-end measurement at
16 connections; the shipped reserved concurrency of 50 throttles calls that queue for the local
workers when the testers and the stack saturate the machine's cores (docs/local-cloud.md), which is
this machine's wait, not a latency to measure. Nothing else differs. Every deploy round gets a new
local cloud (its own ``LOCALCLOUD_HOME`` and ports) and starts from a clean ``build/`` and
``templates_out/``, so "full deploy" includes packing, generating, starting the local cloud and
deploying every stack; the round ends with ``make teardown`` and ``python -m localcloud down``, and
the local cloud's log is kept as ``<logs>/localcloud-<round>.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from bench import wrk
from generator.config import MAX_API_BURST_LIMIT, MAX_API_RATE_LIMIT, MAX_RESERVED_CONCURRENCY
from localcloud import daemon, urls

ROOT = Path(__file__).resolve().parents[1]
MAKE_TIMEOUT = 900
# The configuration's own upper bounds: far above what 2 cores can serve.
BENCH_THROTTLE = {"rate_limit": MAX_API_RATE_LIMIT, "burst_limit": MAX_API_BURST_LIMIT}
BENCH_RESERVED_CONCURRENCY = MAX_RESERVED_CONCURRENCY
ROUTING_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")


class StepFailed(RuntimeError):
    """A make command of the workflow failed."""


def source_files(root: Path = ROOT) -> list[str]:
    """The working tree as git sees it: tracked files and untracked files not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (root / name).is_file()})


def bench_config(config: dict) -> dict:
    """``config`` with the API throttle and the predictor's reserved concurrency raised (see
    the module docstring)."""
    changed = json.loads(json.dumps(config))
    changed["api_hosting"]["throttle"] = dict(BENCH_THROTTLE)
    changed["api_hosting"]["predictor"]["reserved_concurrency"] = BENCH_RESERVED_CONCURRENCY
    return changed


def make_tree(dest: Path, config_path: Path, root: Path = ROOT) -> Path:
    """A fresh scratch copy of ``root`` at ``dest`` (replacing any earlier one), its config.json
    the bench configuration of ``config_path``."""
    if dest.exists():
        shutil.rmtree(dest)
    for name in source_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    (dest / ".venv").symlink_to(root / ".venv", target_is_directory=True)
    for generated in ("build", "templates_out"):
        shutil.rmtree(dest / generated, ignore_errors=True)
    config = json.loads(config_path.read_text())
    (dest / "config.json").write_text(json.dumps(bench_config(config), indent=2) + "\n")
    return dest


def kept_log(logs: Path, round_number: int) -> Path:
    """Where a deploy round's local cloud log is kept once its home is removed."""
    return logs / f"localcloud-{round_number}.log"


class Tree:
    """Commands run in the scratch tree, each timed, with its output in ``<logs>/<name>.log``."""

    def __init__(self, tree: Path, logs: Path):
        self.tree, self.logs = tree, logs
        self.env = {k: v for k, v in os.environ.items() if k not in ROUTING_VARIABLES}
        for variable in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # not `make bench`'s own flags
            self.env.pop(variable, None)

    def timed(self, name: str, command: list[str]) -> float:
        """Seconds ``command`` took; a failure raises with the end of its log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        started = time.perf_counter()
        with open(log_path, "w") as log:
            result = subprocess.run(command, cwd=self.tree, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=MAKE_TIMEOUT)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise StepFailed(f"`{' '.join(command)}` failed (exit {result.returncode}); "
                             f"log {log_path}:\n{tail}")
        return seconds

    def make(self, name: str, *targets: str) -> float:
        return self.timed(name, ["make", "--no-print-directory", *targets])


class Cloud(Tree):
    """A private local cloud for the scratch tree: its own home directory and ports."""

    def __init__(self, tree: Path, logs: Path):
        super().__init__(tree, logs)
        self.home = Path(tempfile.mkdtemp(prefix="bench-localcloud-"))
        self.port = urls.free_port_pair()
        self.env.update(LOCALCLOUD_HOME=str(self.home), LOCALCLOUD_PORT=str(self.port))

    def down(self) -> float:
        return self.timed("localcloud-down", [str(self.tree / ".venv" / "bin" / "python"), "-m",
                                              "localcloud", "down"])

    def keep_log(self, round_number: int) -> Path | None:
        """Copy the daemon's log (throttles, failed integrations) out of the home before it is
        removed, to :func:`kept_log`."""
        source = self.home / daemon.LOG_FILE
        if not source.is_file():
            return None
        self.logs.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(source, kept_log(self.logs, round_number)))

    @contextmanager
    def environment(self) -> Iterator[None]:
        """This process pointed at the cloud (the workflow and localcloud modules read these)."""
        saved = {k: os.environ.get(k) for k in ("LOCALCLOUD_HOME", "LOCALCLOUD_PORT")}
        os.environ.update(LOCALCLOUD_HOME=str(self.home), LOCALCLOUD_PORT=str(self.port))
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _clean(tree: Path) -> None:
    for generated in ("build", "templates_out"):
        shutil.rmtree(tree / generated, ignore_errors=True)


def run(tree: Path, logs: Path, runs: int, on_deployed: Callable[[Cloud], dict] | None = None,
        log=print) -> dict:
    """Time the workflow ``runs`` times; ``on_deployed(cloud)`` runs once, after the first
    deploy and no-op redeploy, on that fresh deployment (the end-to-end benchmark)."""
    times: dict[str, list[float]] = {k: [] for k in
                                     ("templates", "deploy", "noop_redeploy", "teardown", "down")}
    extra: dict = {}
    for index in range(runs):
        shutil.rmtree(tree / "templates_out", ignore_errors=True)
        times["templates"].append(Tree(tree, logs).make(f"templates-{index + 1}", "templates"))
        log(f"[bench] make templates run {index + 1}/{runs}: {times['templates'][-1]:.2f} s")
    for index in range(runs):
        _clean(tree)
        cloud = Cloud(tree, logs)
        try:
            times["deploy"].append(cloud.make(f"deploy-{index + 1}", "deploy"))
            times["noop_redeploy"].append(cloud.make(f"redeploy-{index + 1}", "deploy"))
            log(f"[bench] deploy round {index + 1}/{runs}: full {times['deploy'][-1]:.1f} s, "
                f"no-op {times['noop_redeploy'][-1]:.1f} s")
            if on_deployed is not None and index == 0:
                with cloud.environment():
                    extra = on_deployed(cloud)
            times["teardown"].append(cloud.make(f"teardown-{index + 1}", "teardown"))
            log(f"[bench] teardown round {index + 1}/{runs}: {times['teardown'][-1]:.1f} s")
        finally:
            times["down"].append(cloud.down())
            cloud.keep_log(index + 1)
            shutil.rmtree(cloud.home, ignore_errors=True)
    return {"seconds": {k: wrk.spread(v) for k, v in times.items() if v}, **extra}
