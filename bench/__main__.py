"""``make bench``: every benchmark of the project in one run, with a report.

    python -m bench [--runs 3] [--seconds 10] [--warmup 3] [--only SECTION ...]

Sections, in order:

* ``inference``: ``python -m bench.inference`` in a fresh process per run (handler single and
  batched, beside the reference algorithm).
* ``http``: the model hop, the project's model server beside TorchServe + SageMaker toolkit on
  the same packed model (``bench.http``).
* ``workflow``: ``make templates``, full ``make deploy`` to a fresh local cloud, no-op redeploy,
  ``make teardown`` (``bench.workflow``, in a scratch copy of the tree).
* ``e2e``: API -> Lambda -> endpoint on the first fresh deployment of ``workflow``, and the load
  tester's summary beside wrk's figures (``bench.e2e``).

Prints the tables and writes ``build/reports/bench.json``; a full run (no ``--only``) also
rewrites the generated section of ``docs/benchmarks.md``.
Exits 2 when it cannot start (wrk or the TorchServe environment missing, no packed model),
1 when a measurement failed or saw errors, 0 otherwise; a missed target is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import e2e, report
from bench import workflow as flow
from bench import wrk

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("inference", "http", "workflow", "e2e")
REPORTS = ROOT / "build" / "reports"
WORK = ROOT / "build" / "bench"
LOGS = WORK / "logs"
INFERENCE_CALLS = 4000


def run_inference(runs: int, calls: int) -> dict:
    """``bench.inference`` once per run, each in its own process; medians of the runs."""
    results = []
    for index in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, "-m", "bench.inference", "--calls", str(calls),
                            "--json", out.name], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            results.append(json.loads(Path(out.name).read_text()))
        print(f"[bench] inference run {index + 1}/{runs}: handler "
              f"{results[-1]['single']['median_us']} us, reference "
              f"{results[-1]['reference_single']['median_us']} us", flush=True)
    return {
        "model": results[0]["model"],
        "calls": calls,
        "single_us": wrk.spread([r["single"]["median_us"] for r in results]),
        "reference_single_us": wrk.spread([r["reference_single"]["median_us"] for r in results]),
        "batched_per_sentence_us": wrk.spread(
            [r["batched_per_sentence"]["median_us"] for r in results]),
        "ratio_single": wrk.spread([r["ratio_single"] for r in results]),
        "ratio_batched": wrk.spread([r["ratio_batched"] for r in results]),
        "model_fn_first_ms": wrk.spread([r["model_fn_first_seconds"] * 1000 for r in results]),
        "model_fn_ms": wrk.spread([r["model_fn_seconds"] * 1000 for r in results]),
        "labels_agree_with_reference": results[0]["labels_agree_with_reference"],
    }


def _log(message: str) -> None:
    print(message, flush=True)


def run_http(cfg, args, bodies: Path) -> dict:
    from bench import conformance, http

    model = cfg.model_serving.models[0]
    archive = ROOT / "build" / f"{model.name}.tar.gz"
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} does not exist: run `make pack` first")
    env = conformance.container_environment(cfg.model_serving.max_batch_size,
                                            cfg.model_serving.max_text_chars,
                                            model.server_workers)
    return http.run(archive, bodies, env, args.runs, args.seconds, args.warmup,
                    LOGS, log=_log)


def run_deployments(cfg, args, sections: set[str]) -> dict:
    """The workflow rounds, with the end-to-end benchmark on the first fresh deployment."""
    tree = flow.make_tree(WORK / "tree", args.config)
    _log(f"[bench] scratch tree {tree}")

    def on_deployed(cloud: flow.Cloud) -> dict:
        if "e2e" not in sections:
            return {}
        from workflow.context import load_context

        ctx = load_context("local", tree / "config.json", tree / "templates_out" / "manifest.json")
        bodies = wrk.write_bodies(WORK / "e2e-bodies.jsonl", e2e.case_bodies(cfg))
        daemon_pid = int((cloud.home / "localcloud.pid").read_text().strip())
        return {"e2e": e2e.run(ctx, bodies, args.runs, args.seconds, args.warmup,
                               WORK / "load-test", daemon_pid=daemon_pid, log=_log)}

    rounds = args.runs if "workflow" in sections else 1
    timed = flow.run(tree, LOGS, rounds, on_deployed, log=_log)
    out = {}
    if "e2e" in timed:
        out["e2e"] = timed.pop("e2e")
    if "workflow" in sections:
        out["workflow"] = timed
    return out


def commands(args, sections: set[str]) -> list[str]:
    """The exact commands behind the figures, for the report."""
    lines = [f"make bench   # = .venv/bin/python -m bench --runs {args.runs} --seconds "
             f"{args.seconds:g} --warmup {args.warmup:g}"]
    if "inference" in sections:
        lines.append(f".venv/bin/python -m bench.inference --calls {args.calls} --json <file>"
                     f"   # x{args.runs}, one process each")
    wrk_line = (f"wrk -t1 -c{{1,16}} -d{args.seconds:g}s --timeout={wrk.REQUEST_TIMEOUT} "
                f"-s <bench.wrk.LUA_SCRIPT> URL   # after a -c4 -d{args.warmup:g}s warm-up")
    if "http" in sections:
        lines += ["# model hop: URL = http://127.0.0.1:<port>/invocations of each server", wrk_line]
    if sections & {"workflow", "e2e"}:
        lines += ["# in build/bench/tree, each round with its own LOCALCLOUD_HOME/LOCALCLOUD_PORT:",
                  "rm -rf templates_out && make templates",
                  "rm -rf build templates_out && make deploy   # full deploy, fresh local cloud",
                  "make deploy                                # no-op redeploy",
                  "make teardown && .venv/bin/python -m localcloud down"]
    if "e2e" in sections:
        lines += ["# end to end (first round, after the no-op redeploy): URL = the API URL,"
                  " with x-api-key", wrk_line,
                  "workflow.loadtest.run(ctx, duration=S, rate=R/testers)   # = make test-load "
                  "DURATION=S RATE=R/testers",
                  "wrk -t<testers> -c<8 x testers> -dSs -s <script, paced to R> URL"
                  "   # same load; alternating with the testers, x runs"]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (>= 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up per target")
    parser.add_argument("--calls", type=int, default=INFERENCE_CALLS,
                        help="timed calls per handler in each inference run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--config", type=Path, default=ROOT / "config.json")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds < 1 or args.warmup < 1:
        parser.error("--runs, --seconds and --warmup must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = set(args.only or SECTIONS)
    try:
        wrk.require_wrk()
    except wrk.WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    from generator import config as project_config

    try:
        cfg = project_config.load(args.config)
    except project_config.ConfigError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results: dict = {"machine": report.machine(ROOT), "runs": args.runs,
                     "seconds": args.seconds, "warmup": args.warmup,
                     "commands": commands(args, sections)}
    failed = False
    try:
        if "inference" in sections:
            results["inference"] = run_inference(args.runs, args.calls)
        if "http" in sections:
            from bench import http
            from bench.inference import DEFAULT_DATA
            from model.train import read_dataset

            texts = [text for _, text in read_dataset(DEFAULT_DATA).rows]
            bodies = wrk.write_bodies(WORK / "http-bodies.jsonl", http.sentence_bodies(texts))
            results["http"] = run_http(cfg, args, bodies)
        if sections & {"workflow", "e2e"}:
            results.update(run_deployments(cfg, args, sections))
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        results["error"] = str(exc)
        failed = True
    errors = sum(section[c]["errors"] for section in
                 [*(results.get("http", {}).get("servers", {}).values()), results.get("e2e", {})]
                 for c in ("c1", "c16") if c in section)
    agreement = results.get("e2e", {}).get("agreement")
    if agreement:
        errors += agreement["tester"]["errors"] + agreement["wrk_paced"]["errors"]
    if errors:
        print(f"bench: {errors} requests failed during the load runs (see the report; the "
              f"end-to-end runs' local cloud log is {flow.kept_log(LOGS, 1)})",
              file=sys.stderr)
        failed = True
    # A partial run must not replace the page's figures with a subset of them.
    page = ROOT / "docs" / "benchmarks.md" if sections == set(SECTIONS) else None
    report.finish(results, REPORTS / "bench.json", page)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
