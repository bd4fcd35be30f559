"""bench.inference runs both algorithms on the same model and inputs and reports their ratio
(timings themselves are the benchmark's business, not asserted here)."""

import json
import logging

from bench import inference as bench

from .conftest import FIXTURE, ROOT


def test_short_run_reports_both_algorithms_and_agreeing_labels(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(ROOT / "model" / "model-a"), "--data", str(FIXTURE),
                       "--calls", "100", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["labels_agree_with_reference"] == "400/400"
    for key in ("reference_single", "single", "batched_per_sentence"):
        assert result[key]["median_us"] > 0 and result[key]["p99_us"] >= result[key]["median_us"]
    assert result["batched_per_sentence"]["batch_size"] == 64
    assert result["ratio_single"] == round(result["reference_single"]["median_us"]
                                           / result["single"]["median_us"], 2)
    assert "ratio reference/handler: single" in capsys.readouterr().out


def test_reference_algorithm_predicts_the_reference_cases(cases):
    reference = bench.ReferenceHandler(ROOT / "model" / "model-a", logging.getLogger("test"))
    for case in cases:
        answer = json.loads(reference(json.dumps({"sentence": case["sentence"]})))
        assert answer == {"success": "true", "label": case["expected_label"]}
