"""``python -m localcloud up [--foreground] [--config PATH] | down | status | env``: the embedded
local cloud."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localcloud import daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud",
        description="The embedded local cloud: moto and a local data plane on 127.0.0.1.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start in the background (no-op when running)")
    up.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C")
    up.add_argument(
        "--config",
        type=Path,
        help="the config whose project.region the stacks deploy to (default: the project's "
        "config.json)",
    )
    commands.add_parser("down", help="stop the local cloud and every process it started")
    commands.add_parser("status", help="exit 0 when running and answering, 1 otherwise")
    commands.add_parser("env", help="print shell exports pointing the aws CLI and boto3 at it")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (daemon.LocalCloudError, ValueError) as exc:
        print(f"localcloud: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "up":
        if args.foreground:
            return daemon.serve_foreground(args.config)
        info, started, lost = daemon.start_background(args.config)
        state = "started" if started else "already running"
        print(
            f"local cloud {state} (pid {info.pid}): control plane {info.control_url}, "
            f"data plane {info.dataplane_url}, region {info.region}"
        )
        note = None if started else daemon.other_code_note(daemon.home(), info)
        if note:
            print(note)
        if lost is not None:
            print(
                f"local cloud: the previous one (pid {lost.pid}) stopped without `make local-down` "
                "(killed, crashed or the machine restarted); the stacks, buckets and functions it "
                "held in memory are gone: `make deploy` deploys them again"
            )
        return 0
    if args.command == "down":
        print("local cloud stopped" if daemon.stop() else "local cloud is not running")
        return 0
    if args.command == "status":
        info = daemon.running(daemon.home())
        if info is None:
            print("local cloud is not running")
            return 1
        print(
            f"local cloud running (pid {info.pid}): control plane {info.control_url}, "
            f"data plane {info.dataplane_url}, region {info.region}, state {daemon.home()}"
        )
        return 0
    print("\n".join(daemon.env_exports()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
