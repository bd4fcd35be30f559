"""CloudWatch metrics emitted by the local data plane, aggregated per minute.

Every data-plane request records a few values; writing each one into moto's CloudWatch backend
would cost more than the request itself and give ``list-metrics`` one entry per datum. The sink
instead keeps one (sum, min, max, count) per metric, dimension set and minute, and a background
thread flushes what accumulated every ``flush_interval`` seconds as ``StatisticValues`` stamped
at the start of the minute. CloudWatch (and moto) combine several StatisticValues of the same
minute correctly, so partial flushes are safe.

API, for every part of the data plane:

    from localcloud import metrics
    metrics.record("AWS/SageMaker", "Invocations", 1, "Count",
                   {"EndpointName": name, "VariantName": variant})
    metrics.record("AWS/SageMaker", "ModelLatency", micros, "Microseconds", {...})

``record`` is thread-safe, cheap (a dict update under a lock) and never raises for a valid
call; it goes to ``metrics.SINK``. ``record_many(namespace, dimensions, [(name, value, unit),
...])`` records several values with the same dimensions under one lock. The daemon calls
``SINK.configure(account_id, region)`` and ``SINK.start()``; until then values accumulate and
are written on the first flush.
``SINK.flush()`` writes immediately (tests, shutdown). Units are CloudWatch unit names.

Emitted by this package: ``AWS/ApiGateway`` (ApiName, Stage): Count, 4XXError, 5XXError,
Latency, IntegrationLatency (Milliseconds); ``AWS/Lambda`` (FunctionName): Invocations,
Errors, Throttles (Count), Duration (Milliseconds).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Iterable, Mapping

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"

# (namespace, metric name, unit, sorted dimension pairs, minute start in epoch seconds)
_Key = tuple[str, str, str, tuple[tuple[str, str], ...], int]


class MetricsSink:
    def __init__(self, flush_interval: float = 5.0) -> None:
        self.flush_interval = flush_interval
        self.account_id = DEFAULT_ACCOUNT_ID
        self.region = "us-east-1"
        self._lock = threading.Lock()
        self._pending: dict[_Key, list[float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def configure(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region

    def record(
        self,
        namespace: str,
        name: str,
        value: float,
        unit: str,
        dimensions: Mapping[str, str],
        at: float | None = None,
    ) -> None:
        self.record_many(namespace, dimensions, ((name, value, unit),), at)

    def record_many(
        self,
        namespace: str,
        dimensions: Mapping[str, str],
        values: Iterable[tuple[str, float, str]],
        at: float | None = None,
    ) -> None:
        """Several ``(name, value, unit)`` with the same dimensions, under one lock."""
        minute = int(at if at is not None else time.time()) // 60 * 60
        dims = tuple(sorted(dimensions.items()))
        with self._lock:
            for name, value, unit in values:
                value = float(value)
                key = (namespace, name, unit, dims, minute)
                stats = self._pending.get(key)
                if stats is None:
                    self._pending[key] = [value, value, value, 1.0]
                    continue
                stats[0] += value
                if value < stats[1]:
                    stats[1] = value
                if value > stats[2]:
                    stats[2] = value
                stats[3] += 1.0

    def flush(self) -> int:
        """Write everything accumulated so far into moto's CloudWatch; returns datums written."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        from moto.cloudwatch.models import cloudwatch_backends

        backend = cloudwatch_backends[self.account_id][self.region]
        by_namespace: dict[str, list[dict]] = {}
        for (namespace, name, unit, dims, minute), (total, low, high, count) in pending.items():
            by_namespace.setdefault(namespace, []).append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    # moto compares naive UTC datetimes
                    "Timestamp": datetime.fromtimestamp(minute, timezone.utc).replace(tzinfo=None),
                    "Unit": unit,
                    "StatisticValues": {
                        "Sum": total,
                        "Minimum": low,
                        "Maximum": high,
                        "SampleCount": count,
                    },
                }
            )
        for namespace, data in by_namespace.items():
            backend.put_metric_data(namespace, data)
        return len(pending)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flush thread after a final flush."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a bad datum must not stop metrics for the rest of the run
            log.exception("flushing metrics to CloudWatch failed")


SINK = MetricsSink()


def record(
    namespace: str, name: str, value: float, unit: str, dimensions: Mapping[str, str]
) -> None:
    SINK.record(namespace, name, value, unit, dimensions)


def record_many(
    namespace: str, dimensions: Mapping[str, str], values: Iterable[tuple[str, float, str]]
) -> None:
    SINK.record_many(namespace, dimensions, values)
