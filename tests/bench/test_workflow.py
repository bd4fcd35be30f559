"""The scratch tree the workflow benchmark runs in."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from bench import workflow
from generator import config as config_module


def test_bench_config_raises_only_the_throttle_and_the_predictors_reserved_concurrency():
    config = {"api_hosting": {"throttle": {"rate_limit": 200, "burst_limit": 400},
                              "predictor": {"reserved_concurrency": 50, "memory_mb": 512},
                              "auth": "api_key"},
              "load_test": {"rate_per_second": 10}}
    changed = workflow.bench_config(config)
    assert changed["api_hosting"]["throttle"] == workflow.BENCH_THROTTLE
    assert changed["api_hosting"]["predictor"] == {
        "reserved_concurrency": workflow.BENCH_RESERVED_CONCURRENCY, "memory_mb": 512}
    assert changed["api_hosting"]["auth"] == "api_key"
    assert changed["load_test"] == config["load_test"]
    # the original is untouched
    assert config["api_hosting"]["throttle"]["rate_limit"] == 200
    assert config["api_hosting"]["predictor"]["reserved_concurrency"] == 50


def test_the_bench_config_of_the_shipped_config_is_valid_and_at_its_upper_bounds():
    shipped = json.loads(config_module.DEFAULT_PATH.read_text())
    api = config_module.parse(workflow.bench_config(shipped)).api_hosting
    assert (api.throttle.rate_limit, api.throttle.burst_limit) == (
        config_module.MAX_API_RATE_LIMIT, config_module.MAX_API_BURST_LIMIT)
    assert api.predictor.reserved_concurrency == config_module.MAX_RESERVED_CONCURRENCY
    over = workflow.bench_config(shipped)
    over["api_hosting"]["predictor"]["reserved_concurrency"] += 1
    with pytest.raises(config_module.ConfigError, match="reserved_concurrency"):
        config_module.parse(over)


def test_make_tree_copies_the_working_tree_without_generated_files(tmp_path):
    root = tmp_path / "project"
    (root / ".venv").mkdir(parents=True)
    (root / "pkg").mkdir()
    (root / ".gitignore").write_text("build/\n.venv/\n")
    (root / "config.json").write_text(json.dumps(
        {"api_hosting": {"throttle": {"rate_limit": 200, "burst_limit": 400},
                         "predictor": {"reserved_concurrency": 50}}}))
    (root / "pkg" / "tracked.py").write_text("x = 1\n")
    (root / "build").mkdir()
    (root / "build" / "pack.json").write_text("{}")
    (root / "templates_out").mkdir()
    (root / "templates_out" / "manifest.json").write_text("{}")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "pkg/tracked.py", "templates_out/manifest.json"], cwd=root,
                   check=True)
    (root / "pkg" / "new.py").write_text("y = 2\n")  # untracked, not ignored: copied too

    chosen = tmp_path / "chosen.json"
    chosen.write_text(json.dumps(
        {"api_hosting": {"throttle": {"rate_limit": 10, "burst_limit": 20},
                         "predictor": {"reserved_concurrency": 5}}, "from": "--config"}))

    tree = workflow.make_tree(tmp_path / "scratch", chosen, root)

    assert (tree / "pkg" / "tracked.py").read_text() == "x = 1\n"
    assert (tree / "pkg" / "new.py").is_file()
    assert not (tree / "build").exists() and not (tree / "templates_out").exists()
    assert (tree / ".venv").resolve() == (root / ".venv").resolve()
    config = json.loads((tree / "config.json").read_text())
    assert config["from"] == "--config"
    api = config["api_hosting"]
    assert api["throttle"] == workflow.BENCH_THROTTLE
    assert api["predictor"]["reserved_concurrency"] == workflow.BENCH_RESERVED_CONCURRENCY
    original = json.loads((root / "config.json").read_text())
    assert original["api_hosting"]["throttle"]["rate_limit"] == 200


def test_a_round_keeps_the_local_cloud_log_before_its_home_is_removed(tmp_path):
    cloud = workflow.Cloud(tmp_path / "tree", tmp_path / "logs")
    try:
        assert cloud.keep_log(1) is None  # no daemon ever wrote one
        (cloud.home / "localcloud.log").write_text("WARNING Lambda throttled a call of fn\n")
        kept = cloud.keep_log(2)
        assert kept == tmp_path / "logs" / "localcloud-2.log"
        assert kept.read_text() == "WARNING Lambda throttled a call of fn\n"
    finally:
        shutil.rmtree(cloud.home)
