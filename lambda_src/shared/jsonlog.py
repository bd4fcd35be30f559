"""One JSON object per log line, so CloudWatch Logs Insights can filter on fields."""

import json
import sys
import threading
import time

_write_lock = threading.Lock()


def log(level: str, event: str, **fields) -> None:
    """Write ``{"level", "event", "time", **fields}`` as one line to stdout (captured by Lambda)."""
    record = {"level": level, "event": event, "time": round(time.time(), 3), **fields}
    line = json.dumps(record, default=str, separators=(",", ":"), ensure_ascii=False)
    # Threads of the tester log too; one write per line keeps lines whole.
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
