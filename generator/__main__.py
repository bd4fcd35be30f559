"""`python -m generator [--config config.json] [--out templates_out]`: templates + manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEFAULT_PATH, ConfigError, load
from .render import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator", description=__doc__)
    parser.add_argument(
        "--config", default=str(DEFAULT_PATH), help="configuration file (default: config.json)"
    )
    parser.add_argument(
        "--out", default="templates_out", help="output directory (default: templates_out)"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = render(cfg)
    # Stacks disabled by config must not linger from an earlier run.
    for stale in out.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    # Always written (same bytes), so make sees the manifest as up to date afterwards.
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"[*] templates: {len(files) - 1} stacks + manifest.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
