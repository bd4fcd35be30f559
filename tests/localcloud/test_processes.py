"""The supervisor: process groups, readiness, restart after death, stop, leftover registry."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from localcloud.processes import (
    READY,
    STOPPED,
    ManagedProcess,
    PidRegistry,
    kill_recorded,
)

# A child that forks a grandchild (same process group), then reports both pids and its
# environment, cwd and argv through a marker file, and waits.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    marker = sys.argv[1]
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(600)
        os._exit(0)
    print("child says hello", flush=True)
    with open(marker + ".tmp", "w") as fh:
        json.dump({"pid": os.getpid(), "grandchild": grandchild, "cwd": os.getcwd(),
                   "env": os.environ.get("PROBE_VALUE"), "args": sys.argv[2:]}, fh)
    os.replace(marker + ".tmp", marker)
    if "--ignore-term" in sys.argv:
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def read_marker(marker):
    return json.loads(marker.read_text())


@pytest.fixture
def child_script(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def make_process(tmp_path, child_script, *extra, **kwargs):
    marker = tmp_path / "marker.json"
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    kwargs.setdefault("ready", marker.exists)
    kwargs.setdefault("backoff_initial", 0.05)
    proc = ManagedProcess(
        "probe",
        [sys.executable, str(child_script), str(marker), *extra],
        log_path=tmp_path / "logs" / "probe.log",
        env={"PROBE_VALUE": "from-env"},
        cwd=workdir,
        **kwargs,
    )
    return proc, marker


def test_start_passes_env_cwd_log_and_stop_kills_the_whole_group(tmp_path, child_script):
    registry = PidRegistry(tmp_path / "children.json")
    proc, marker = make_process(tmp_path, child_script, "x", registry=registry)
    proc.start()
    try:
        assert proc.wait_ready(10)
        info = read_marker(marker)
        assert proc.state == READY and proc.pid == info["pid"]
        assert info["env"] == "from-env" and info["cwd"] == str(tmp_path / "work")
        assert info["args"] == ["x"]
        assert str(info["pid"]) in PidRegistry(tmp_path / "children.json").entries()
        assert alive(info["grandchild"])
    finally:
        proc.stop(timeout=2)
    assert proc.state == STOPPED and proc.pid is None
    assert wait_until(lambda: not alive(info["grandchild"]), 5)
    assert PidRegistry(tmp_path / "children.json").entries() == {}
    assert "child says hello" in (tmp_path / "logs" / "probe.log").read_text()


def test_a_killed_child_is_restarted_and_the_death_is_logged(tmp_path, child_script, caplog):
    caplog.set_level(logging.ERROR, logger="localcloud.processes")
    proc, marker = make_process(tmp_path, child_script)
    proc.start()
    try:
        assert proc.wait_ready(10)
        first = read_marker(marker)
        marker.unlink()
        os.kill(first["pid"], signal.SIGKILL)
        assert wait_until(lambda: marker.exists() and proc.state == READY, 10)
        second = read_marker(marker)
        assert second["pid"] != first["pid"] and proc.pid == second["pid"]
        assert proc.restarts == 1 and proc.last_exit == -signal.SIGKILL
        assert proc.failures_since_ready == 0  # ready again
        # The dead child's forked worker did not survive it.
        assert wait_until(lambda: not alive(first["grandchild"]), 5)
    finally:
        proc.stop(timeout=2)
    died = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert died and "killed by SIGKILL" in died[0] and "child says hello" in died[0]


def test_a_child_that_never_gets_ready_is_restarted(tmp_path, child_script, caplog):
    caplog.set_level(logging.ERROR, logger="localcloud.processes")
    proc, marker = make_process(tmp_path, child_script, ready=lambda: False, ready_timeout=0.3)
    proc.start()
    try:
        assert proc.wait_state(lambda state: proc.failures_since_ready >= 2, 10)
        assert not proc.wait_ready(0) and proc.restarts >= 1
    finally:
        proc.stop(timeout=2)
    assert any("not ready after" in r.getMessage() for r in caplog.records)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path, child_script):
    proc, marker = make_process(tmp_path, child_script, "--ignore-term")
    proc.start()
    assert proc.wait_ready(10)
    pid = read_marker(marker)["pid"]
    time.sleep(0.1)  # let the child install its SIGTERM handler
    started = time.monotonic()
    proc.stop(timeout=0.5)
    assert not alive(pid)
    assert time.monotonic() - started < 5


def test_a_missing_program_is_logged_and_retried_without_crashing(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="localcloud.processes")
    proc = ManagedProcess(
        "missing",
        [str(tmp_path / "no-such-program")],
        log_path=tmp_path / "m.log",
        backoff_initial=0.05,
    )
    proc.start()
    try:
        assert wait_until(lambda: proc.restarts >= 1, 5)
    finally:
        proc.stop(timeout=1)
    assert any("cannot start" in r.getMessage() for r in caplog.records)


DAEMON = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from localcloud.processes import ManagedProcess, PidRegistry
    child, marker, registry = sys.argv[1:4]
    proc = ManagedProcess(
        "leftover", [sys.executable, child, marker], log_path=Path(marker + ".log"),
        ready=Path(marker).exists, registry=PidRegistry(Path(registry)),
    )
    proc.start()
    proc.wait_ready(20)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_kill_recorded_stops_leftovers_of_a_crashed_daemon_and_spares_recycled_pids(
    tmp_path, child_script
):
    registry_path, marker = tmp_path / "children.json", tmp_path / "marker.json"
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(child_script), str(marker), str(registry_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert daemon.stdout.readline().strip() == "ready"
    daemon.kill()  # the daemon dies without stopping its children
    daemon.wait()
    info = read_marker(marker)
    assert alive(info["pid"])
    entries = PidRegistry._read(registry_path)
    # An entry whose start time does not match is a recycled pid and must be left alone.
    stranger = {"name": "stranger", "pgid": os.getpgid(0), "start_ticks": 1, "argv": []}
    entries[str(os.getpid())] = stranger
    registry_path.write_text(json.dumps(entries))
    assert kill_recorded(registry_path, timeout=2) == [info["pid"]]
    assert wait_until(lambda: not alive(info["pid"]) and not alive(info["grandchild"]), 5)
    assert not registry_path.exists()


def test_empty_argv_is_rejected_with_the_process_name(tmp_path):
    with pytest.raises(ValueError, match="worker: argv"):
        ManagedProcess("worker", [], log_path=tmp_path / "x.log")
