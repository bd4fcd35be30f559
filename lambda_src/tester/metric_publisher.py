"""CloudWatch custom metrics from a run's outcomes, batched into few PutMetricData calls.

Latency goes out as Values/Counts, rounded to 0.1 ms so equal values share an entry (and
percentiles stay computable); counts as the value 1 with a count, so Sum is the number of
requests. Data points carry the minute they happened in. A count with no outcome in a minute
that had requests goes out as 0, as AWS's own error counts do, so a clean run's StatusError and
TestFail widgets show 0 rather than no data.
"""

import datetime
import json
from collections import Counter, defaultdict
from typing import Dict, List, Tuple

from botocore.exceptions import BotoCoreError, ClientError
from run_summary import Outcome

MAX_VALUES_PER_DATUM = 150
MAX_DATUMS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 900_000  # below the 1 MB request limit, leaving room for encoding overhead

Key = Tuple[int, str, Tuple[Tuple[str, str], ...]]
COUNTERS = ("StatusSuccess", "StatusError", "TestSuccess", "TestFail")
ZERO = Counter({0.0: 1})


def metric_data(outcomes: List[Outcome], stage: str, started_epoch_s: float) -> List[dict]:
    series: Dict[Key, Counter] = defaultdict(Counter)
    for outcome in outcomes:
        minute = int((started_epoch_s + outcome.sent_s) // 60 * 60)
        for dimensions in ((("Stage", stage), ("TestCase", outcome.case_id)),
                           (("Stage", stage), ("Variant", outcome.variant))):
            if outcome.latency_ms is not None:
                series[(minute, "ResponseTime", dimensions)][round(outcome.latency_ms, 1)] += 1
            for counter in COUNTERS:  # present in every minute with requests; empty means 0
                series.setdefault((minute, counter, dimensions), Counter())
            status_metric = "StatusSuccess" if outcome.succeeded else "StatusError"
            series[(minute, status_metric, dimensions)][1.0] += 1
            series[(minute, "TestSuccess" if outcome.passed else "TestFail", dimensions)][1.0] += 1
    data = []
    for (minute, name, dimensions), counts in sorted(series.items()):
        counts = counts or ZERO
        values = sorted(counts)
        for first in range(0, len(values), MAX_VALUES_PER_DATUM):
            chunk = values[first:first + MAX_VALUES_PER_DATUM]
            data.append({
                "MetricName": name,
                "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions],
                "Timestamp": datetime.datetime.fromtimestamp(minute, datetime.timezone.utc),
                "Unit": "Milliseconds" if name == "ResponseTime" else "Count",
                "Values": chunk,
                "Counts": [float(counts[value]) for value in chunk],
            })
    return data


def batches(data: List[dict]) -> List[List[dict]]:
    """Split into calls of at most 1000 data points and about 900 kB each."""
    calls, current, size = [], [], 0
    for datum in data:
        datum_size = len(json.dumps(datum, default=str)) * 2
        full = len(current) == MAX_DATUMS_PER_CALL or size + datum_size > MAX_BYTES_PER_CALL
        if current and full:
            calls.append(current)
            current, size = [], 0
        current.append(datum)
        size += datum_size
    if current:
        calls.append(current)
    return calls


def publish(client, namespace: str, data: List[dict]) -> dict:
    """Send every batch; a failed batch is reported, not raised, so the other batches still go."""
    report = {"dataPoints": len(data), "calls": 0, "failedCalls": 0, "errors": []}
    for batch in batches(data):
        report["calls"] += 1
        try:
            client.put_metric_data(Namespace=namespace, MetricData=batch)
        except (BotoCoreError, ClientError) as error:
            report["failedCalls"] += 1
            report["errors"].append(f"{type(error).__name__}: {error}"[:300])
    return report
