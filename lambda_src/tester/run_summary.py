"""Judging each reply against its case, and the run summary (overall, per case, per variant)."""

import json
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional

from latency_stats import percentiles
from open_loop import RunStats, Shot

UNKNOWN_VARIANT = "unknown"
MAX_VARIANT_CHARS = 255  # CloudWatch dimension value limit
MAX_CODE_CHARS = 64  # an error code longer than any of the API's is cut


@dataclass(frozen=True)
class Outcome:
    sent_s: float
    lag_ms: float
    case_id: str
    status: object  # int HTTP status, or a transport failure name
    latency_ms: Optional[float]
    variant: str
    passed: bool  # 2xx and every expected key/value present
    # "<status> <error.code>" for an error answer in the API's error shape, else None
    error_code: Optional[str] = None

    @property
    def completed(self) -> bool:
        return isinstance(self.status, int)

    @property
    def succeeded(self) -> bool:
        return self.completed and 200 <= self.status < 300

    @property
    def wrong_label(self) -> bool:
        return self.succeeded and not self.passed


def _json_object(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _error_code(status: int, doc: dict) -> Optional[str]:
    """The code of an answer in the API's error shape: the predictor's and API Gateway's own
    (its gateway responses) alike, so a throttle and a spent quota tell themselves apart."""
    error = doc.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return f"{status} {code[:MAX_CODE_CHARS]}" if isinstance(code, str) and code else None


def judge(shot: Shot) -> Outcome:
    reply = shot.reply
    doc, error_code = {}, None
    if isinstance(reply.status, int):
        if 200 <= reply.status < 300:
            doc = _json_object(reply.body)
        else:
            error_code = _error_code(reply.status, _json_object(reply.body))
    variant = doc.get("variant")
    if not (isinstance(variant, str) and variant):
        variant = UNKNOWN_VARIANT
    variant = variant[:MAX_VARIANT_CHARS]
    passed = bool(doc) and all(key in doc and doc[key] == value
                               for key, value in shot.case.expected.items())
    lag_ms = max(0.0, (shot.sent_s - shot.due_s) * 1000)
    return Outcome(shot.sent_s, lag_ms, shot.case.case_id, reply.status, reply.latency_ms,
                   variant, passed, error_code)


def group_summary(outcomes: List[Outcome], duration_s: float) -> dict:
    errors = Counter(str(o.status) for o in outcomes if not o.succeeded)
    codes = Counter(o.error_code for o in outcomes if o.error_code)
    return {
        "requests": len(outcomes),
        "completed": sum(o.completed for o in outcomes),
        "succeeded": sum(o.succeeded for o in outcomes),
        "passed": sum(o.passed for o in outcomes),
        "wrongLabels": sum(o.wrong_label for o in outcomes),
        "errorsByStatus": dict(sorted(errors.items())),
        "errorsByCode": dict(sorted(codes.items())),
        "latencyMs": percentiles(o.latency_ms for o in outcomes if o.latency_ms is not None),
        "achievedRatePerSec": round(len(outcomes) / duration_s, 3) if duration_s > 0 else None,
    }


def summarize(outcomes: List[Outcome], stats: RunStats, duration_s: float) -> dict:
    """Overall figures first, then per case and per variant, then the raw samples."""
    overall = group_summary(outcomes, duration_s)
    by_case: Dict[str, List[Outcome]] = {}
    by_variant: Dict[str, List[Outcome]] = {}
    for outcome in outcomes:
        by_case.setdefault(outcome.case_id, []).append(outcome)
        by_variant.setdefault(outcome.variant, []).append(outcome)
    return {
        "requestsScheduled": stats.scheduled,
        "requestsSent": stats.sent,
        "requestsCompleted": overall["completed"],
        "requestsUnfinished": stats.sent - len(outcomes),
        "errorsByStatus": overall["errorsByStatus"],
        "errorsByCode": overall["errorsByCode"],
        "wrongLabels": overall["wrongLabels"],
        "passed": overall["passed"],
        "latencyMs": overall["latencyMs"],
        "achievedRatePerSec": round(stats.sent / duration_s, 3) if duration_s > 0 else None,
        "sendLagMs": percentiles(o.lag_ms for o in outcomes),
        "workers": stats.workers,
        "elapsedSec": round(stats.elapsed_s, 3),
        "perCase": {key: group_summary(group, duration_s)
                    for key, group in sorted(by_case.items())},
        "perVariant": {key: group_summary(group, duration_s)
                       for key, group in sorted(by_variant.items())},
        "samples": [[round(o.sent_s, 4), None if o.latency_ms is None else round(o.latency_ms, 3),
                     o.status, o.case_id, o.variant]
                    for o in sorted(outcomes, key=lambda o: o.sent_s)],
    }
