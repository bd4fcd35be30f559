"""``make test-load``: publish the load-test message, wait for every tester, report.

The message goes to the trigger topic with ``aws sns publish`` (as the reference system does); each
subscribed tester Lambda writes its summary to ``s3://<results bucket>/load-tests/<RunId>/``. This
command waits for one summary per tester, merges them (latency percentiles from the raw samples,
not averages of percentiles), prints the totals, per case and per variant, and writes
``build/reports/load-tests/<RunId>/load-test.json`` plus a latency-over-time and a
latency-histogram PNG, and copies them to ``build/reports/`` (the latest run's): runs at the
same time each keep their own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from generator.config import MAX_TESTER_RATE, MAX_TESTER_REQUESTS, tester_requests
from generator.stacks.api_hosting import GATEWAY_ERROR_CODES
from workflow.context import Context, WorkflowError, add_common_arguments, cli, load_context
from workflow.outputs import stack_outputs
from workflow.pack import LAMBDA_SRC, SHARED
from workflow.target import aws_cli


def _lambda_shared_module(name: str):
    """A module of ``lambda_src/shared``, which the Lambda zips carry at their root rather than
    as a package: loaded from its file, so the report and the testers run the same code."""
    spec = importlib.util.spec_from_file_location(f"lambda_shared.{name}",
                                                  LAMBDA_SRC / SHARED / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


percentiles = _lambda_shared_module("latency_stats").percentiles

TESTING_STACK = "api-testing"
RESULTS_PREFIX = "load-tests"
SNS_MESSAGE_LIMIT = 262_144  # bytes SNS takes in one Publish
# Testers need their duration, their last request's timeout, and start-up and upload time; past
# that the run is reported as stuck.
WAIT_MARGIN_SECONDS = 90
POLL_SECONDS = 1.0
# The workflow cannot import the tester, so this repeats its handler.py's FINISH_MARGIN_SEC (its
# MAX_RATE_PER_SEC and load_message.py's MAX_REQUESTS_PER_RUN are the config's MAX_TESTER_RATE
# and MAX_TESTER_REQUESTS); a test keeps them equal, so a run the testers would refuse or cut
# short is refused before it is published.
TESTER_FINISH_MARGIN_SEC = 5
# A tester reads its remaining time after its invocation has started: at the full budget it
# would shorten the run by that moment (and say so). One second covers it.
TESTER_START_SLACK_SEC = 1


def longest_run(load) -> int:
    """Seconds the deployed testers run in full: a tester starts with about its Lambda timeout
    left and stops RequestTimeoutSec + its finish margin before that runs out."""
    return (
        load.tester_timeout_seconds
        - load.request_timeout_seconds
        - TESTER_FINISH_MARGIN_SEC
        - TESTER_START_SLACK_SEC
    )


def _make_number(variable: str, text: str, high: float, unit: str, why: str = "") -> float:
    """``text``, as given to make's ``variable``, as a number in (0, high]; else one line."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= high:  # also refuses nan and inf
        raise WorkflowError(f"{variable}={text}: expected {unit} > 0 and <= {high:g}{why}")
    return value


def run_settings(
    load, config: str, duration_text: str | None, rate_text: str | None
) -> tuple[float, float]:
    """DURATION and RATE (config's load_test where unset), refused unless every tester runs
    them in full."""
    longest = longest_run(load)
    duration = load.duration_seconds
    if duration_text is not None:
        duration = _make_number(
            "DURATION", duration_text, longest, "seconds",
            f", the longest run the testers' Lambda timeout holds (to run longer, raise "
            f"load_test.duration_seconds in {config}, then make deploy)",
        )
    rate = load.rate_per_second
    if rate_text is not None:
        rate = _make_number(
            "RATE", rate_text, MAX_TESTER_RATE, "requests per second per tester"
        )
    planned = tester_requests(duration, rate)
    if planned > MAX_TESTER_REQUESTS:
        raise WorkflowError(
            f"{rate:g} req/s for {duration:g} s is {planned} requests per tester; a tester "
            f"sends at most {MAX_TESTER_REQUESTS} per run: lower RATE or DURATION"
        )
    return duration, rate


def build_message(cfg, run_id: str, duration: float, rate: float) -> dict:
    """The tester message for ``run_id``: config's load_test at ``duration`` and ``rate``."""
    load = cfg.load_test
    return {
        "RunId": run_id,
        "Config": {
            "DurationInSec": duration,
            "RatePerSec": rate,
            "IntervalInSec": None,
            "RequestTimeoutSec": load.request_timeout_seconds,
        },
        "TestData": [
            {
                "type": case.id,
                "resource": cfg.api_hosting.resource_path,
                "request": {"sentence": case.sentence},
                "response": {"success": "true", "label": case.expected_label},
            }
            for case in load.cases
        ],
    }


def message_text(message: dict) -> str:
    """The message as published (readable JSON, ASCII whatever the shell's locale), refused
    before publishing when SNS would refuse it: config validation bounds each case, not all of
    them together."""
    text = json.dumps(message, indent=2) + "\n"
    size = len(text.encode("utf-8"))
    if size > SNS_MESSAGE_LIMIT:
        raise WorkflowError(
            f"the load-test message is {size:,} bytes, over SNS's {SNS_MESSAGE_LIMIT:,}: "
            "make load_test.cases fewer or their sentences shorter"
        )
    return text


def _counts(parts, key: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part.get(key, {}))
    return total


def merge(summaries: dict[str, dict]) -> dict:
    """One report from the testers' summaries (tester function name -> summary)."""
    samples = [row for summary in summaries.values() for row in summary.get("samples", [])]
    errors = _counts(summaries.values(), "errorsByStatus")
    codes = _counts(summaries.values(), "errorsByCode")

    def group(rows: list[list], parts: list[dict]) -> dict:
        group_errors = _counts(parts, "errorsByStatus")
        return {
            "requests": len(rows),
            "errors": sum(group_errors.values()),
            "errors_by_status": dict(sorted(group_errors.items())),
            "errors_by_code": dict(sorted(_counts(parts, "errorsByCode").items())),
            "wrong_labels": sum(part.get("wrongLabels", 0) for part in parts),
            "latency_ms": percentiles([row[1] for row in rows if row[1] is not None]),
        }

    def breakdown(column: int, section: str) -> dict:
        keys = sorted({row[column] for row in samples})
        return {
            key: group(
                [row for row in samples if row[column] == key],
                [s[section][key] for s in summaries.values() if key in s.get(section, {})],
            )
            for key in keys
        }

    return {
        "testers": sorted(summaries),
        "totals": {
            "sent": sum(s.get("requestsSent", 0) for s in summaries.values()),
            "completed": sum(s.get("requestsCompleted", 0) for s in summaries.values()),
            "unfinished": sum(s.get("requestsUnfinished", 0) for s in summaries.values()),
            "errors": sum(errors.values()),
            "errors_by_status": dict(sorted(errors.items())),
            "errors_by_code": dict(sorted(codes.items())),
            "wrong_labels": sum(s.get("wrongLabels", 0) for s in summaries.values()),
            "achieved_rate_per_sec": round(
                sum(s.get("achievedRatePerSec") or 0 for s in summaries.values()), 3
            ),
            "latency_ms": percentiles([row[1] for row in samples if row[1] is not None]),
        },
        "per_case": breakdown(3, "perCase"),
        "per_variant": breakdown(4, "perVariant"),
        "samples": samples,
    }


def render(report: dict) -> str:
    def fmt(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    totals = report["totals"]
    rows = [("all", {**totals, "requests": totals["sent"]})]
    rows += [(f"case {k}", v) for k, v in report["per_case"].items()]
    rows += [(f"variant {k}", v) for k, v in report["per_variant"].items()]
    # Whole names: ids and variant names up to 64 characters may share their first ones.
    width = max(16, *(len(name) + 1 for name, _ in rows))
    header = f"{'':<{width}}{'requests':>9}{'errors':>8}{'wrong':>7}" + "".join(
        f"{name:>9}" for name in ("p50 ms", "p90 ms", "p99 ms", "max ms")
    )
    lines = [header]
    for name, g in rows:
        lat = g["latency_ms"]
        lines.append(
            f"{name:<{width}}{g['requests']:>9}{g['errors']:>8}{g['wrong_labels']:>7}"
            f"{fmt(lat['p50']):>9}{fmt(lat['p90']):>9}{fmt(lat['p99']):>9}{fmt(lat['max']):>9}"
        )
    lines.append(
        f"testers {len(report['testers'])}, sent {totals['sent']}, "
        f"completed {totals['completed']}, "
        f"achieved {totals['achieved_rate_per_sec']} req/s, "
        f"errors by status {totals['errors_by_status'] or 'none'}"
        + (f", by code {totals['errors_by_code']}" if totals.get("errors_by_code") else "")
    )
    return "\n".join(lines)


def _coded(totals: dict, status_class: str) -> tuple[int, dict[str, int]]:
    """How many answers had a status starting so ("5", "429"), and their error codes
    (``errors_by_code`` keys are "<status> <code>"; answers without the API's error shape have
    none, such as a deployment from before its gateway responses)."""
    count = sum(n for status, n in totals["errors_by_status"].items()
                if status.startswith(status_class))
    codes = {key: n for key, n in (totals.get("errors_by_code") or {}).items()
             if key.startswith(status_class)}
    return count, codes


def _listed(codes: dict[str, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(codes.items()))


def server_error_hint(totals: dict, local: bool, home: Path | None = None) -> str | None:
    """Where to read why answers were 5xx (None when none were), with their error codes:
    GatewayError is API Gateway's (the function failed or was throttled), the others the
    predictor's."""
    count, codes = _coded(totals, "5")
    if not count:
        return None
    if local:
        from localcloud import daemon
        from localcloud.lambdas import function_logs_dir

        home = home or daemon.home()
        where = (
            f"{home / daemon.LOG_FILE} (Lambda throttles, failed integrations) and the "
            f"functions' logs in {function_logs_dir(home)}"
        )
    else:
        where = (
            "the predictor's CloudWatch log group and its AWS/Lambda Throttles metric "
            "(a throttled call leaves no log line)"
        )
    listed = f" ({_listed(codes)})" if codes else ""
    return f"{count} answers were 5xx{listed}: {where} say why"


def throttle_hint(totals: dict, api) -> str | None:
    """Which limit answered 429 (None when none did), as ``api_hosting`` sets them: the error
    code tells the stage's throttle (or SageMaker's) from the API key's quota."""
    count, codes = _coded(totals, "429")
    if not count:
        return None
    throttle = (
        f"the stage's throttle (api_hosting.throttle: {api.throttle.rate_limit:g} requests/s, "
        f"burst {api.throttle.burst_limit})"
    )
    quota = (
        f"the API key's quota (api_hosting.quota: {api.quota.limit} per {api.quota.period}) "
        "ran out"
    )
    if not codes:
        either = f", or {quota}" if api.auth == "api_key" else ""
        return f"{count} answers were 429: the load went over {throttle}{either}"
    reasons = {
        GATEWAY_ERROR_CODES["THROTTLED"]: (
            f"the load went over {throttle} or SageMaker's for the endpoint"
        ),
        GATEWAY_ERROR_CODES["QUOTA_EXCEEDED"]: quota,
    }
    parts = []
    for key, n in sorted(codes.items()):
        code = key.split(" ", 1)[1]
        parts.append(f"{n} {code}: {reasons[code]}" if code in reasons else f"{n} {code}")
    if count > sum(codes.values()):
        parts.append(f"{count - sum(codes.values())} without an error code")
    return f"{count} answers were 429: " + "; ".join(parts)


def shortened_runs(summaries: dict[str, dict], duration: float) -> list[str]:
    """One line per tester that ran less than ``duration``: a tester cuts its run to fit its
    Lambda timeout, which is the deployed one, while DURATION is checked against the config's
    (a load_test.duration_seconds raised but not yet deployed)."""
    lines = []
    for name, summary in sorted(summaries.items()):
        ran = (summary.get("config") or {}).get("runDurationSec")
        if isinstance(ran, (int, float)) and ran < duration - 0.5:
            lines.append(
                f"[!] tester {name} ran {ran:.0f} s of the {duration:g} s asked: its deployed "
                "Lambda timeout is shorter than load_test.duration_seconds needs (make deploy "
                "applies a changed load_test)"
            )
    return lines


def unpublished_metrics(summaries: dict[str, dict]) -> list[str]:
    """One line per tester whose PutMetricData calls failed: the tester carries on (its summary
    records the errors), so the tester dashboard lacks that part of the run and nothing else
    says so."""
    lines = []
    for name, summary in sorted(summaries.items()):
        metrics = summary.get("metrics") or {}
        failed = metrics.get("failedCalls") or 0
        if failed:
            errors = metrics.get("errors") or ["no error recorded"]
            lines.append(
                f"[!] tester {name}: {failed} of {metrics.get('calls', failed)} PutMetricData "
                f"calls failed, so the tester dashboard lacks part of this run: {errors[0]}"
            )
    return lines


def plot(report: dict, out: Path) -> list[Path]:
    """Latency over time (one series per variant) and a latency histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [row for row in report["samples"] if row[1] is not None]
    by_variant: dict[str, list[list]] = defaultdict(list)
    for row in timed:
        by_variant[row[4]].append(row)
    fig, ax = plt.subplots(figsize=(9, 4))
    for variant, rows in sorted(by_variant.items()):
        ax.plot([r[0] for r in rows], [r[1] for r in rows], ".", markersize=3, label=variant)
    ax.set(
        xlabel="seconds since the tester started",
        ylabel="latency (ms, to end of body)",
        title="Load test: latency over time",
    )
    if by_variant:
        ax.legend()
    over_time = out / "latency-over-time.png"
    fig.tight_layout()
    fig.savefig(over_time, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.hist([r[1] for r in timed] or [0], bins=50)
    for name, value in report["totals"]["latency_ms"].items():
        if value is not None and name != "max":
            ax.axvline(value, linestyle="--", linewidth=1)
            ax.text(value, ax.get_ylim()[1] * 0.9, f" {name}", fontsize=8)
    ax.set(xlabel="latency (ms)", ylabel="requests", title="Load test: latency histogram")
    histogram = out / "latency-histogram.png"
    fig.tight_layout()
    fig.savefig(histogram, dpi=100)
    plt.close(fig)
    return [over_time, histogram]


def summary_wait_seconds(run_config: dict) -> float:
    """How long the testers of a run with this message ``Config`` may take to report."""
    return (
        float(run_config["DurationInSec"])
        + float(run_config["RequestTimeoutSec"])
        + WAIT_MARGIN_SECONDS
    )


def _listing(s3, bucket: str, prefix: str) -> dict:
    """The results under ``prefix``; a bucket deleted meanwhile (``make teardown`` while the
    run waits) says so, rather than as an AWS error that names neither the stack nor a remedy."""
    from botocore.exceptions import ClientError

    try:
        return s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
    raise WorkflowError(
        f"the results bucket {bucket} no longer exists: the {TESTING_STACK} stack was deleted "
        "(a `make teardown`?) while this run waited for its testers, and their summaries with "
        "it; `make deploy`, then `make test-load` again"
    )


def wait_for_summaries(
    s3,
    bucket: str,
    run_id: str,
    testers: list[str],
    timeout: float,
    failed_runs: str | None = None,
) -> dict[str, dict]:
    """Each tester's summary once all are there; ``failed_runs`` (the FailedRuns queue's URL,
    from a stack deployed since it is an output) is named when one does not come."""
    prefix = f"{RESULTS_PREFIX}/{run_id}/"
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    try:
        while True:
            listing = _listing(s3, bucket, prefix)
            for item in listing.get("Contents", []):
                name = item["Key"][len(prefix) :].removesuffix(".json")
                if name not in found:
                    found[name] = json.loads(
                        s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    )
                    print(f"[=] tester {name} finished ({len(found)}/{len(testers)})", flush=True)
            if len(found) >= len(testers):
                return found
            if time.monotonic() > deadline:
                missing = sorted(set(testers) - set(found))
                raise WorkflowError(
                    f"no summary from {', '.join(missing)} after {timeout:.0f} s: see the "
                    "testers' logs (the Lambda log groups); a run that failed outright is "
                    f"parked, with its error, in the {TESTING_STACK} stack's FailedRuns queue"
                    + (f" {failed_runs}" if failed_runs else "")
                )
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        # The published run is the testers' now: stopping the wait does not stop them.
        print(
            f"[!] load test {run_id}: its testers keep running (for up to "
            f"{max(0.0, deadline - time.monotonic()):.0f} s more) and write their summaries to "
            f"s3://{bucket}/{prefix}; a `make test-load` meanwhile shares the API with them",
            file=sys.stderr,
            flush=True,
        )
        raise


def _keep_latest(path: Path, reports: Path) -> None:
    """Copy a run's file to ``reports`` (the latest run's), whole: a concurrent run that reads
    it sees its previous or its new content, never part of each."""
    partial = reports / f".{path.name}.{uuid.uuid4().hex}"
    shutil.copyfile(path, partial)
    partial.replace(reports / path.name)


def run(ctx: Context, duration: float, rate: float, reports: Path) -> dict:
    out = stack_outputs(
        ctx.target.client("cloudformation"), ctx.manifest.stack(TESTING_STACK).stack_name
    )
    if "TriggerTopicArn" not in out:
        raise WorkflowError(
            f"stack {ctx.manifest.stack(TESTING_STACK).stack_name} is not deployed: "
            "run `make deploy`"
        )
    testers = out["TesterFunctionNames"].split(",")
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    message = build_message(ctx.cfg, run_id, duration, rate)
    # The run's own files: a `make test-load` started meanwhile writes its message to its own
    # directory, so the one published here is this run's (with this RunId) and no other.
    run_reports = reports / RESULTS_PREFIX / run_id
    run_reports.mkdir(parents=True, exist_ok=True)
    message_file = run_reports / "load-test-message.json"
    message_file.write_text(message_text(message))
    config = message["Config"]
    print(
        f"[*] load test {run_id}: {len(testers)} tester{'s' if len(testers) > 1 else ''} x "
        f"{config['RatePerSec']} req/s for {config['DurationInSec']} s",
        flush=True,
    )
    published = subprocess.run(
        aws_cli()
        + [
            "sns",
            "publish",
            "--topic-arn",
            out["TriggerTopicArn"],
            "--region",
            ctx.target.region,
            "--message",
            f"file://{message_file.resolve()}",
        ],
        env=ctx.target.env,
        capture_output=True,
        text=True,
    )
    if published.returncode != 0:
        raise WorkflowError(
            f"aws sns publish failed: {(published.stderr or published.stdout).strip()}"
        )
    summaries = wait_for_summaries(
        ctx.target.client("s3"),
        out["ResultsBucketName"],
        run_id,
        testers,
        summary_wait_seconds(config),
        out.get("FailedRunsQueueUrl"),
    )
    refused = {
        name: s.get("error", {}) for name, s in summaries.items() if s.get("status") != "completed"
    }
    if refused:
        raise WorkflowError(
            "testers did not run: "
            + "; ".join(
                f"{name}: {err.get('code')}: {err.get('message')}"
                for name, err in sorted(refused.items())
            )
        )
    report = {"run_id": run_id, "message": message, **merge(summaries)}
    report["warnings"] = shortened_runs(
        summaries, float(config["DurationInSec"])
    ) + unpublished_metrics(summaries)
    report_file = run_reports / "load-test.json"
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    images = plot(report, run_reports)
    # The message with the report it led to: the latest files are one run's, not the report of
    # this run beside the message of one started after it and finished before it.
    for path in (message_file, report_file, *images):
        _keep_latest(path, reports)
    print(render(report))
    for line in report["warnings"]:
        print(line)
    for hint in (
        server_error_hint(report["totals"], ctx.target.is_local),
        throttle_hint(report["totals"], ctx.cfg.api_hosting),
    ):
        if hint:
            print(hint)
    print(
        f"report: {report_file}, {', '.join(str(p) for p in images)} (the latest run's also "
        f"in {reports})"
    )
    return report


@cli("test-load")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.loadtest", description=__doc__.splitlines()[0]
    )
    add_common_arguments(parser)
    # Strings, read by run_settings: argparse's own error would be a usage block naming --rate.
    parser.add_argument("--duration", help="seconds each tester runs (default: config.json)")
    parser.add_argument("--rate", help="requests per second per tester (default: config.json)")
    parser.add_argument("--reports", default="build/reports")
    args = parser.parse_args(argv)
    ctx = load_context(args.target, args.config, args.manifest)
    duration, rate = run_settings(ctx.cfg.load_test, args.config, args.duration, args.rate)
    report = run(ctx, duration, rate, Path(args.reports))
    return 1 if report["totals"]["errors"] or report["totals"]["wrong_labels"] else 0


if __name__ == "__main__":
    sys.exit(main())
