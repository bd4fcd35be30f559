"""End to end on a freshly deployed local cloud: API URL -> predictor Lambda -> InvokeEndpoint
-> model server, measured from outside with wrk, then checked against the project's own tester.

1. wrk POSTs the load-test sentences of config.json (the bodies ``make test-load`` sends) to the
   API URL with the ``x-api-key`` header, at 1 and 16 connections (:func:`bench.wrk.measure`).
2. Agreement with the load tester, at the same load. ``R`` is the median rate wrk reached at one
   connection. The tester Lambdas are then driven exactly as ``make test-load`` drives them
   (``workflow.loadtest.run``: SNS message, one summary per tester in S3, merged), at ``R``
   requests per second in total (``R / testers`` each, open loop at fixed intervals). Right
   after, wrk offers the same load: the same bodies, one wrk thread per tester, each on its own
   fixed schedule of ``R / testers`` per second (``bench.wrk`` pacing; 8 connections per thread
   so that a slow answer never delays the next slot, as the testers' extra workers ensure). The
   two p50s must agree within 10%. As wrk's runs follow its warm-up, the tester runs follow one
   of the testers (``warmup`` seconds at the same rate, not counted), so that neither generator's
   first run pays its start-up. Tester and wrk runs alternate (``runs`` pairs) and the
   difference is taken within each pair, then the median over pairs (:func:`paired_difference`):
   at this rate the system is busy enough that a change in the rest of the machine's load moves
   the latency of a single run by tens of percent.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from bench import wrk

AGREEMENT_LIMIT = 0.10
CONNECTIONS_PER_TESTER = 8


def case_bodies(cfg) -> list[dict]:
    """The API request of every load-test case (what the testers send)."""
    return [{"sentence": case.sentence} for case in cfg.load_test.cases]


PROCESS_KINDS = (("lambda_worker", "Lambda workers"), ("model_server", "model servers"),
                 ("torchserve", "model servers"))


def _process_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds so far, command line) of every readable process."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline") as cmd:
                fields = stat.read().rsplit(")", 1)[1].split()
                command = cmd.read().replace("\0", " ")
        except OSError:
            continue  # gone meanwhile
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, command)
    return table


def _tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of ``root`` and its descendants, each labelled by kind."""
    table = _process_table()
    members, grew = {root}, True
    while grew:
        grew = False
        for pid, (parent, _, _) in table.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    out = {}
    for pid in members & table.keys():
        command = table[pid][2]
        kind = "daemon" if pid == root else next(
            (label for marker, label in PROCESS_KINDS if marker in command), "other children")
        out[pid] = (kind, table[pid][1])
    return out


def cpu_per_request(daemon_pid: int, load: wrk.Load, connections: int, seconds: float) -> dict:
    """One wrk run with the CPU time each kind of process spent, per request, in microseconds
    (the daemon's process tree from /proc, wrk from this process's children times)."""
    before, started = _tree_cpu(daemon_pid), os.times()
    result = wrk.run(load, connections, seconds)
    after, ended = _tree_cpu(daemon_pid), os.times()
    spent: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        spent[kind] = spent.get(kind, 0.0) + cpu - before.get(pid, (kind, 0.0))[1]
    spent["wrk"] = (ended.children_user + ended.children_system
                    - started.children_user - started.children_system)
    requests = max(1, result["requests"])
    per_request = {kind: round(cpu / requests * 1e6) for kind, cpu in sorted(spent.items())}
    per_request["total"] = sum(per_request.values())
    return {"run": result, "cpu_us_per_request": per_request}


def paired_difference(tester_p50s: list[float | None], wrk_p50s: list[float]) -> float:
    """Median over the alternating pairs of |tester p50 - wrk p50| / wrk p50.

    Pairs, because the two runs of a pair share the machine's conditions and consecutive pairs
    do not: comparing the medians of each side would mix one pair's tester with another's wrk.
    A tester run without a single answer counts as a 100% difference.
    """
    if not wrk_p50s or len(tester_p50s) != len(wrk_p50s):
        raise ValueError("need one tester run per wrk run")
    return statistics.median(1.0 if t is None else abs(t - w) / w
                             for t, w in zip(tester_p50s, wrk_p50s))


def run(ctx, bodies: Path, runs: int, seconds: float, warmup: float, reports: Path,
        daemon_pid: int | None = None, log=print) -> dict:
    from workflow import loadtest
    from workflow.outputs import api_access, stack_outputs

    access = api_access(ctx)
    load = wrk.Load(access.url, bodies, access.key_value)
    log(f"[bench] end to end: {access.url}")
    figures = wrk.measure({"api": load}, (1, 16), runs, seconds, warmup, log)["api"]
    if daemon_pid is not None:
        figures["cpu_at_16"] = cpu_per_request(daemon_pid, load, 16, seconds)
        log(f"[bench] CPU per request at 16 connections (us): "
            f"{figures['cpu_at_16']['cpu_us_per_request']}")

    rate = figures["c1"]["req_per_s"]["median"]
    testing = ctx.manifest.stack(loadtest.TESTING_STACK).stack_name
    testers = len(stack_outputs(ctx.target.client("cloudformation"), testing)
                  ["TesterFunctionNames"].split(","))
    if warmup:  # wrk's runs follow its warm-up; the testers' workers start warm too
        log(f"[bench] load tester warm-up: {warmup:g} s")
        loadtest.run(ctx, warmup, rate / testers, reports)
    tester_runs, wrk_runs = [], []
    for index in range(runs):  # alternating, so that a change in machine load hits both
        log(f"[bench] load tester run {index + 1}/{runs}: {testers} testers x "
            f"{rate / testers:.1f} req/s for {seconds:g} s")
        tester_runs.append(loadtest.run(ctx, seconds, rate / testers, reports)["totals"])
        wrk_runs.append(wrk.run(load, CONNECTIONS_PER_TESTER * testers, seconds, rate=rate,
                                threads=testers))
        log(f"[bench] wrk paced run {index + 1}/{runs}: {wrk_runs[-1]['req_per_s']:.0f} req/s, "
            f"p50 {wrk_runs[-1]['p50_ms']:.2f} ms; tester p50 "
            f"{tester_runs[-1]['latency_ms']['p50']} ms")
    tester = {
        "achieved_req_per_s": wrk.spread([t["achieved_rate_per_sec"] for t in tester_runs]),
        "p50_ms": wrk.spread([t["latency_ms"]["p50"] or 0.0 for t in tester_runs]),
        "p99_ms": wrk.spread([t["latency_ms"]["p99"] or 0.0 for t in tester_runs]),
        "sent": sum(t["sent"] for t in tester_runs),
        "completed": sum(t["completed"] for t in tester_runs),
        "errors": sum(t["errors"] for t in tester_runs),
        "wrong_labels": sum(t["wrong_labels"] for t in tester_runs),
    }
    paced = {**wrk.summarize(wrk_runs), "threads": testers,
             "connections": CONNECTIONS_PER_TESTER * testers}
    difference = paired_difference([t["latency_ms"]["p50"] for t in tester_runs],
                                   [w["p50_ms"] for w in wrk_runs])
    return {
        "url": access.url,
        **figures,
        "agreement": {
            "rate_req_per_s": rate,
            "testers": testers,
            "seconds": seconds,
            "tester": tester,
            "wrk_paced": paced,
            "p50_difference": round(difference, 3),
            "p50_difference_by_pair": [
                round(abs(t["latency_ms"]["p50"] - w["p50_ms"]) / w["p50_ms"], 3)
                for t, w in zip(tester_runs, wrk_runs)],
            "within_limit": difference <= AGREEMENT_LIMIT,
        },
    }
