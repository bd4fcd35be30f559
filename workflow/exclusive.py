"""One ``make deploy`` or ``make teardown`` at a time per deployment, on this machine.

``python -m workflow.exclusive --target T --config C --what deploy -- COMMAND ...`` runs COMMAND
while holding an exclusive lock on the deployment it changes (the target, and the config's
project name and stage; on AWS also its region and profile) and exits with COMMAND's status.
While another run holds that lock it exits 2 at once, naming that run.

The lock is flock(2) on a file, which the kernel releases when its holder ends however it ends:
a run that died never blocks the next. The file's content only says who holds it. It lives
beside the local cloud's state for the local target (checkouts sharing a LOCALCLOUD_HOME share
the local cloud, so its stacks), and in the checkout's ``build/`` for AWS.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from workflow.context import WorkflowError, add_common_arguments, cli
from workflow.target import resolve

AWS_LOCK_DIR = Path("build")


@dataclass(frozen=True)
class Deployment:
    lock_file: Path
    description: str


def deployment(target_name: str, cfg) -> Deployment:
    """The deployment ``cfg`` describes on the target ``target_name``: its lock file, and its
    name for people."""
    from generator.naming import prefix

    project = cfg.project
    stage = f"{project.name} stage {project.stage}"
    if target_name == "local":
        from localcloud import daemon

        return Deployment(
            daemon.home() / f"deployment-{prefix(cfg)}.lock", f"{stage} on the local cloud"
        )
    # Also refuses an unknown target, or AWS without credentials, before anything runs.
    target = resolve(target_name, project.region, project.profile)
    profile = target.env.get("AWS_PROFILE")
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{target.region}-{profile or 'default'}")
    where = f"in AWS {target.region}" + (f" (profile {profile})" if profile else "")
    return Deployment(AWS_LOCK_DIR / f"deployment-aws-{key}-{prefix(cfg)}.lock", f"{stage} {where}")


def _holder(lock_fd: int) -> str:
    """Who holds the lock, as its file says; it may not have written it yet."""
    try:
        record = json.loads(os.pread(lock_fd, 4096, 0))
        started = time.localtime(record["started"])
        clock = "%H:%M:%S" if started[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S"
        return f"make {record['what']} (pid {record['pid']}, since {time.strftime(clock, started)})"
    except (ValueError, KeyError, TypeError):
        return "run"


@contextmanager
def exclusive(changed: Deployment, what: str) -> Iterator[None]:
    """Hold ``changed``'s lock, recording that ``make what`` holds it; if another run holds it,
    raise WorkflowError at once, naming that run."""
    try:
        changed.lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(changed.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WorkflowError(
            f"cannot open the lock file {changed.lock_file} ({exc.strerror}): make its directory "
            "writable"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkflowError(
                f"another {_holder(fd)} is changing {changed.description}: wait for it to end, "
                f"then run make {what} again"
            ) from None
        record = {"pid": os.getpid(), "what": what, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)


def run_to_the_end(command: list[str]) -> int:
    """Run ``command`` to its end; its exit status (128 + the signal, when one ended it)."""
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame) -> None:
        if child is not None:
            child.send_signal(signum)

    # Ctrl-C and a closed terminal reach the child through the process group; the lock holds
    # until the child has ended. A TERM sent to this process alone is passed on. One this process
    # was started ignoring (nohup, a script's background job) stays ignored, and so the child
    # inherits it: a handler would be reset to the default in the child.
    for signum in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda *_: None)
    signal.signal(signal.SIGTERM, forward)
    # close_fds=False: a recursive make inherits the jobserver descriptors make passed here.
    child = subprocess.Popen(command, close_fds=False)
    status = child.wait()
    return 128 - status if status < 0 else status  # a negative status is minus the signal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.exclusive", description=__doc__.splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--what", required=True, help="the make target, as the message names it")
    parser.add_argument("command", nargs="+", help="after --: the command to run in the lock")
    args = parser.parse_args(argv)

    @cli(f"make {args.what}")
    def locked_run() -> int:
        from generator.config import load

        with exclusive(deployment(args.target, load(args.config)), args.what):
            return run_to_the_end(args.command)

    return locked_run()


if __name__ == "__main__":
    sys.exit(main())
