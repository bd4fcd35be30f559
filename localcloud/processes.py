"""A small process supervisor for the local cloud's child processes (model servers, Lambda workers).

Each child runs in its own session and process group (so stopping it also stops anything it
forked), with its stdout and stderr appended to a log file. A monitor thread per child waits
for readiness, notices death, logs it with the tail of the child's log, and restarts it with
exponential backoff. Every live child is recorded in a :class:`PidRegistry` file, so a later
``down`` can stop processes a crashed daemon left behind (:func:`kill_recorded`).

API::

    registry = PidRegistry(Path(".localcloud/children.json"))
    proc = ManagedProcess(
        "model-server:MyEndpoint:Model-A",
        [sys.executable, "-m", "localcloud.model_server", "--model-dir", d, "--port", "9001"],
        log_path=Path(".localcloud/logs/model-a.log"),
        env={"OMP_NUM_THREADS": "1"},  # overlaid on os.environ (inherit_env=False: used as is)
        cwd=d,
        ready=lambda: http_ok("http://127.0.0.1:9001/ping"),   # polled until True
        registry=registry,
    )
    proc.start()                 # returns at once; the monitor thread spawns and supervises
    proc.wait_ready(timeout=30)  # True once ready() answered True for the current incarnation
    proc.state                   # "starting" | "ready" | "backoff" | "stopped"
    proc.pid, proc.restarts, proc.last_exit, proc.failures_since_ready
    proc.wait_state(lambda state: ..., timeout)   # block until a state predicate holds
    proc.stop(timeout=5)         # SIGTERM to the group, SIGKILL after ``timeout``; no restart

    kill_recorded(Path(".localcloud/children.json"))   # stop leftovers of a previous run

A child that exits, or never becomes ready within ``ready_timeout``, is restarted after
``backoff_initial`` seconds, doubling up to ``backoff_max``; the delay resets once a child has
stayed ready for ``stable_after`` seconds. ``on_state`` (optional) is called from the monitor
thread with ``(proc, state)`` on every state change, so callers can react to deaths.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

log = logging.getLogger("localcloud.processes")

STARTING, READY, BACKOFF, STOPPED = "starting", "ready", "backoff", "stopped"
LOG_TAIL_BYTES = 2048
READY_POLL_SECONDS = 0.05


def _process_start_ticks(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (Linux), so a recycled pid is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); split after the parenthesised command name, which may contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
        return False


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie member of the group exists.

    Orphaned members exit as zombies until an init process reaps them (in some containers,
    never), and a zombie still answers ``killpg(pgid, 0)``, so on Linux /proc is consulted.
    """
    if not _kill_group(pgid, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def terminate_group(
    pgid: int, timeout: float = 5.0, leader: subprocess.Popen | None = None
) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after ``timeout`` seconds.

    ``leader`` is our Popen for the group leader: it is reaped here, because an unreaped (zombie)
    leader would keep the group looking alive until the deadline.
    """
    deadline = time.monotonic() + timeout
    if not _kill_group(pgid, signal.SIGTERM):
        return
    if leader is not None:
        try:
            leader.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if not _wait_group_gone(pgid, max(0.0, deadline - time.monotonic())):
        log.warning("process group %d ignored SIGTERM for %.1fs; sending SIGKILL", pgid, timeout)
        _kill_group(pgid, signal.SIGKILL)
        if leader is not None:
            leader.wait()
        _wait_group_gone(pgid, 2.0)


class PidRegistry:
    """The live children, ``{pid: {name, pgid, start_ticks, argv}}`` in a JSON file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, dict]:
        try:
            entries = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable process registry %s: %s", path, exc)
            return {}
        return entries if isinstance(entries, dict) else {}

    def add(self, name: str, pid: int, argv: Sequence[str]) -> None:
        entry = {
            "name": name,
            "pgid": pid,
            "start_ticks": _process_start_ticks(pid),
            "argv": list(argv),
        }
        with self._lock:
            self._entries[str(pid)] = entry
            self._write()

    def remove(self, pid: int) -> None:
        with self._lock:
            if self._entries.pop(str(pid), None) is not None:
                self._write()

    def entries(self) -> dict[str, dict]:
        with self._lock:
            return {pid: dict(entry) for pid, entry in self._entries.items()}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def kill_recorded(path: Path, timeout: float = 5.0) -> list[int]:
    """Stop every still-running process group recorded in the registry file at ``path``.

    A pid whose start time differs from the recorded one belongs to someone else now and is
    left alone. Returns the pids that were signalled; the file is removed afterwards.
    """
    path = Path(path)
    killed = []
    for pid_text, entry in PidRegistry._read(path).items():
        pid, pgid = int(pid_text), int(entry.get("pgid", pid_text))
        recorded = entry.get("start_ticks")
        current = _process_start_ticks(pid)
        if recorded is not None and current is not None and current != recorded:
            continue
        if current is None and not _group_alive(pgid):
            continue
        log.info("stopping leftover %s (pid %d)", entry.get("name", "?"), pid)
        terminate_group(pgid, timeout)
        killed.append(pid)
    path.unlink(missing_ok=True)
    return killed


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class ManagedProcess:
    """One supervised child process; see the module docstring for the API."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: str | os.PathLike | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 60.0,
        restart: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 10.0,
        registry: PidRegistry | None = None,
        on_state: Callable[["ManagedProcess", str], None] | None = None,
    ):
        if not argv:
            raise ValueError(f"{name}: argv must name a program")
        self.name, self.argv = name, list(argv)
        self.log_path = Path(log_path)
        self.env = dict(os.environ, **(env or {})) if inherit_env else dict(env or {})
        self.cwd = cwd
        self.ready_check = ready
        self.ready_timeout = ready_timeout
        self.restart_on_exit = restart
        self.backoff_initial, self.backoff_max, self.stable_after = (
            backoff_initial,
            backoff_max,
            stable_after,
        )
        self.registry = registry
        self.on_state = on_state
        self.restarts = 0
        self.failures_since_ready = 0  # deaths or readiness timeouts since it was last ready
        self.last_exit: int | None = None
        self._state = STOPPED
        self._popen: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._spawn_lock = threading.Lock()  # so stop() never misses a child being spawned
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- public -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def pid(self) -> int | None:
        popen = self._popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} is already running")
        self._stopping.clear()
        self._set_state(STARTING)
        self._thread = threading.Thread(
            target=self._supervise, name=f"supervise {self.name}", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def wait_state(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds (True) or ``timeout`` passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._state), timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._spawn_lock:
            popen = self._popen
        if popen is not None and popen.poll() is None:
            terminate_group(popen.pid, timeout, popen)
        if self._thread is not None:
            self._thread.join(timeout + 5.0)
            self._thread = None
        self._set_state(STOPPED)

    # -- monitor thread ---------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        with self._changed:
            if state == self._state:
                return
            self._state = state
            self._changed.notify_all()
        if state != READY:
            self._ready.clear()
        if self.on_state is not None:
            try:
                self.on_state(self, state)
            except Exception:  # a faulty observer must not stop supervision
                log.exception("%s: state observer failed", self.name)

    def _spawn(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"--- {stamp} starting {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.registry is not None:
            self.registry.add(self.name, popen.pid, self.argv)
        return popen

    def _await_ready(self, popen: subprocess.Popen) -> bool:
        """Poll the readiness check; False if the child died, stop was asked, or time ran out."""
        if self.ready_check is None:
            return True
        deadline = time.monotonic() + self.ready_timeout
        while not self._stopping.is_set() and popen.poll() is None:
            try:
                if self.ready_check():
                    return True
            except Exception as exc:  # a probe error means "not ready yet"
                log.debug("%s: readiness probe error: %s", self.name, exc)
            if time.monotonic() >= deadline:
                log.error(
                    "%s (pid %d) not ready after %.0fs; restarting it. Log %s ends with:\n%s",
                    self.name,
                    popen.pid,
                    self.ready_timeout,
                    self.log_path,
                    _log_tail(self.log_path),
                )
                return False
            time.sleep(READY_POLL_SECONDS)
        return False

    def _supervise(self) -> None:
        backoff = self.backoff_initial
        while not self._stopping.is_set():
            self._set_state(STARTING)
            with self._spawn_lock:
                if self._stopping.is_set():
                    break
                try:
                    popen = self._popen = self._spawn()
                except OSError as exc:
                    log.error("%s: cannot start %s: %s", self.name, self.argv[0], exc)
                    popen = None
            if popen is not None:
                ready_at = None
                if self._await_ready(popen):
                    ready_at = time.monotonic()
                    self.failures_since_ready = 0
                    self._set_state(READY)
                    self._ready.set()
                    popen.wait()
                # Whatever happened, nothing of this incarnation (forked workers too) may linger.
                terminate_group(popen.pid, 2.0, popen)
                popen.wait()
                self.last_exit = popen.returncode
                if self.registry is not None:
                    self.registry.remove(popen.pid)
                if self._stopping.is_set():
                    break
                if ready_at is not None and time.monotonic() - ready_at >= self.stable_after:
                    backoff = self.backoff_initial
                log.error(
                    "%s (pid %d) died: %s; restarting in %.1fs. Log %s ends with:\n%s",
                    self.name,
                    popen.pid,
                    describe_exit(popen.returncode),
                    backoff,
                    self.log_path,
                    _log_tail(self.log_path),
                )
            self.failures_since_ready += 1
            if not self.restart_on_exit:
                break
            self._set_state(BACKOFF)
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max)
            self.restarts += 1
        self._set_state(STOPPED)
