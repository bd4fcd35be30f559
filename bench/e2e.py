"""End to end on a freshly deployed local cloud: API URL -> predictor Lambda -> InvokeEndpoint
-> model server, measured from outside with wrk, then checked against the project's own tester.

1. wrk POSTs the load-test sentences of config.json (the bodies ``make test-load`` sends) to the
   API URL with the ``x-api-key`` header, at 1 and 16 connections (:func:`bench.wrk.measure`).
2. Agreement with the load tester, at the same load. ``R`` is the median rate wrk reached at one
   connection. The tester Lambdas are then driven exactly as ``make test-load`` drives them
   (``workflow.loadtest.run``: SNS message, one summary per tester in S3, merged), at ``R``
   requests per second in total (``R / testers`` each, open loop at fixed intervals). Right
   after, wrk offers the same load: the same bodies on the same fixed schedule of ``R`` per
   second (``bench.wrk`` pacing, 16 connections so that a slow answer never delays the next
   slot, as the testers' extra workers ensure). The two p50s must agree within 10%; both are
   recorded with the difference.
"""

from __future__ import annotations

from pathlib import Path

from bench import wrk

AGREEMENT_LIMIT = 0.10
PACED_CONNECTIONS = 16


def case_bodies(cfg) -> list[dict]:
    """The API request of every load-test case (what the testers send)."""
    return [{"sentence": case.sentence} for case in cfg.load_test.cases]


def run(ctx, bodies: Path, runs: int, seconds: float, warmup: float, reports: Path,
        log=print) -> dict:
    from workflow import loadtest
    from workflow.outputs import api_access, stack_outputs

    access = api_access(ctx)
    load = wrk.Load(access.url, bodies, access.key_value)
    log(f"[bench] end to end: {access.url}")
    figures = wrk.measure({"api": load}, (1, 16), runs, seconds, warmup, log)["api"]

    rate = figures["c1"]["req_per_s"]["median"]
    testing = ctx.manifest.stack(loadtest.TESTING_STACK).stack_name
    testers = len(stack_outputs(ctx.target.client("cloudformation"), testing)
                  ["TesterFunctionNames"].split(","))
    log(f"[bench] load tester: {testers} testers x {rate / testers:.1f} req/s for {seconds:g} s")
    report = loadtest.run(ctx, seconds, rate / testers, reports)
    totals = report["totals"]
    paced = wrk.run(load, PACED_CONNECTIONS, seconds, rate=rate)
    log(f"[bench] wrk paced to {rate:.0f} req/s: {paced['req_per_s']:.0f} req/s, "
        f"p50 {paced['p50_ms']:.2f} ms")
    tester_p50, wrk_p50 = totals["latency_ms"]["p50"], paced["p50_ms"]
    difference = abs(tester_p50 - wrk_p50) / wrk_p50 if tester_p50 is not None else None
    return {
        "url": access.url,
        **figures,
        "agreement": {
            "rate_req_per_s": rate,
            "testers": testers,
            "seconds": seconds,
            "tester": {
                "achieved_req_per_s": totals["achieved_rate_per_sec"],
                "sent": totals["sent"],
                "completed": totals["completed"],
                "errors": totals["errors"],
                "wrong_labels": totals["wrong_labels"],
                "latency_ms": totals["latency_ms"],
            },
            "wrk_paced": paced,
            "p50_difference": round(difference, 3) if difference is not None else None,
            "within_limit": difference is not None and difference <= AGREEMENT_LIMIT,
        },
    }
