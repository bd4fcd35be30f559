"""Report: target verdicts from the figures, and the generated section of the docs page."""

from __future__ import annotations

from bench import report


def spread(value):
    return {"median": value, "min": value, "max": value, "runs": [value]}


def figures(rps, p50, p99, errors=0):
    return {"req_per_s": spread(rps), "p50_ms": spread(p50), "p99_ms": spread(p99),
            "requests": 100, "errors": errors, "runs": 1}


def results():
    return {
        "inference": {"reference_single_us": spread(290), "single_us": spread(150),
                      "batched_per_sentence_us": spread(24), "ratio_single": spread(1.93),
                      "ratio_batched": spread(12.1), "model_fn_first_ms": spread(95.0),
                      "model_fn_ms": spread(70.0)},
        "http": {"archive": "build/model-a.tar.gz", "workers": 2,
                 "servers": {"model_server": {"c1": figures(2400, 0.4, 0.9),
                                              "c16": figures(2500, 6, 12), "ready_s": 1.0},
                             "torchserve": {"c1": figures(1000, 0.9, 5),
                                            "c16": figures(1500, 10, 11), "ready_s": 5.0}},
                 "ratio_req_per_s": {"c1": 2.4, "c16": 1.67}},
        "e2e": {"c1": figures(500, 2.5, 6), "c16": figures(1200, 12, 31),
                "cpu_at_16": {"run": {"seconds": 10.0, "req_per_s": 1190.0},
                              "cpu_us_per_request": {"Lambda workers": 900, "daemon": 600,
                                                     "wrk": 40, "total": 1540}},
                "agreement": {"p50_difference": 0.04, "within_limit": True, "testers": 2,
                              "rate_req_per_s": 500, "seconds": 10,
                              "tester": {"achieved_req_per_s": spread(500), "p50_ms": spread(2.6),
                                         "p99_ms": spread(9), "sent": 5000, "errors": 0},
                              "wrk_paced": {**figures(499, 2.5, 8), "connections": 16,
                                            "threads": 2}}},
        "workflow": {"seconds": {"templates": spread(1.2), "deploy": spread(61.0),
                                 "noop_redeploy": spread(9.0), "teardown": spread(3.0),
                                 "down": spread(1.0)}},
    }


def test_targets_give_a_verdict_for_each_goal():
    verdicts = {what: verdict for what, _, _, verdict in report.targets(results())}
    assert verdicts["handler single request vs reference algorithm, cheaper by"] == "NOT MET"
    assert verdicts["handler batch of 64, per sentence"] == "met"
    assert verdicts["`model_fn`, first load in a fresh process"] == "met"
    assert verdicts["model server / TorchServe req/s, 16 connections"] == "NOT MET"
    assert verdicts["model server / TorchServe req/s, 1 connection"] == "met"
    assert verdicts["model server p99 below TorchServe's, 16 connection(s)"] == "NOT MET"
    assert verdicts["end to end req/s, 16 connections"] == "met"
    assert verdicts["end to end p50, 1 connection"] == "met"
    assert verdicts["end to end p99, 16 connections"] == "NOT MET"
    assert verdicts["load tester p50 vs wrk p50, same load (median of pairs)"] == "met"
    assert verdicts["full `make deploy`, fresh local cloud"] == "NOT MET"
    assert verdicts["no-op redeploy"] == "met"


def test_targets_only_for_sections_that_ran():
    assert report.targets({"workflow": results()["workflow"]})[0][0] == "`make templates`"
    assert report.targets({}) == []


def test_markdown_section_replaces_only_the_generated_part(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nmethod notes\n\n{report.START}\nold figures\n{report.END}\n"
                    "\n## Findings\n\nhand-written\n")
    report.write_markdown(page, f"{report.START}\nnew figures\n{report.END}", "Benchmarks")
    text = page.read_text()
    assert "old figures" not in text and "new figures" in text
    assert text.startswith("# Benchmarks\n\nmethod notes") and text.endswith("hand-written\n")


def test_markdown_page_is_created_when_missing(tmp_path):
    page = tmp_path / "docs" / "benchmarks.md"
    report.write_markdown(page, f"{report.START}\nfigures\n{report.END}", "Benchmarks")
    assert page.read_text().startswith("# Benchmarks") and "figures" in page.read_text()


def test_full_markdown_renders_every_section():
    data = results()
    data.update(machine={"nproc": 2, "cpu": "AMD EPYC", "ram_gib": 23.4, "kernel": "6.18",
                         "python": "3.11.7", "torch": "2.13.0", "moto": "5.2.5",
                         "uvicorn": "0.54.0", "torchserve": "0.12.0",
                         "sagemaker_pytorch_inference": "2.0.25", "wrk": "wrk 4.1.0",
                         "load_average_at_start": [1.0, 1.0, 1.0]},
                load_average_at_end=[2.0, 2.0, 2.0], finished_at="2026-11-24 03:00 UTC",
                commands=["make bench"], runs=3, seconds=10, warmup=3)
    text = report.markdown(data)
    assert text.startswith(report.START) and text.endswith(report.END)
    for needle in ("2 CPUs (AMD EPYC)", "TorchServe + SageMaker toolkit", "| 16 | 1200 (1200-1200)",
                   "load tester (2 testers, open loop)", "no-op `make deploy`", "NOT MET",
                   "Lambda workers 900 us, daemon 600 us, wrk 40 us; total 1540 us",
                   "at most 1299 req/s",
                   "| handler, batch of 64, per sentence | 24.0 (24.0-24.0) |",
                   "`model_fn`: 95.0 (95.0-95.0) ms for the first load in a fresh process"):
        assert needle in text
