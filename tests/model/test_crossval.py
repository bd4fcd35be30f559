"""Cross-validation folds, and the model card row that reports them only for the same recipe."""

import json
from dataclasses import replace

import pytest

from model import crossval, train

from .conftest import FIXTURE, ROOT, SHIPPED


def test_folds_partition_the_rows_the_same_way_every_time():
    rows = list(range(23))
    split = crossval.folds(rows, 5)
    assert split == crossval.folds(rows, 5)
    assert sorted(row for _, valid in split for row in valid) == rows
    for training, valid in split:
        assert sorted(training + valid) == rows


@pytest.mark.parametrize("argv, message", [
    (["--data", "x.csv", "--folds", "1"], "--folds must be >= 2"),
    (["--data", "x.csv", "--source-rows", "-1"], "--source-rows must be >= 0"),
    (["--data", str(FIXTURE), "--source-rows", "400"],
     "--source-rows must be less than the 400 rows of"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        crossval.main([*argv, "--variant", "model-a"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_accuracy_by_source_pools_the_folds():
    rows = train.read_dataset(FIXTURE).rows
    hp = replace(train.VARIANTS["model-a"].plain(), epochs=2)
    result = crossval.cross_validate(rows, hp, 3, source_rows=100)
    first, rest = result["by_source"]["first"], result["by_source"]["rest"]
    assert (first["rows"], rest["rows"]) == (100, 300)
    fold_sizes = [len(valid) for _, valid in crossval.folds(rows, 3)]
    right = sum(round(accuracy * size) for accuracy, size in zip(result["folds"], fold_sizes))
    assert round(first["accuracy"] * 100) + round(rest["accuracy"] * 300) == right
    assert result == crossval.cross_validate(rows, hp, 3, source_rows=100)
    assert "by_source" not in crossval.cross_validate(rows, hp, 3)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_report_the_cross_validation_of_their_recipe(name):
    folder = ROOT / "model" / name
    metadata = json.loads((folder / "metadata.json").read_text())
    result = json.loads((folder / "crossval.json").read_text())
    assert result["hyperparameters"] == metadata["hyperparameters"]
    assert result["data"]["sha256"] == metadata["data"]["sha256"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"{result['recipe']['mean']:.2%}" in card
    assert f"**{result['recipe']['by_source']['rest']['accuracy']:.2%}**" in card


def test_a_result_for_another_recipe_is_left_out(tmp_path):
    folder = ROOT / "model" / "model-a"
    metadata = json.loads((folder / "metadata.json").read_text())
    result = json.loads((folder / "crossval.json").read_text())
    result["hyperparameters"]["epochs"] += 1
    (tmp_path / "crossval.json").write_text(json.dumps(result))
    assert train.cross_validation_rows(metadata, tmp_path) == []
    assert train.cross_validation_rows(metadata, folder)[0][0] == "cross-validation"


def test_the_card_shows_accuracy_by_source_when_measured(tmp_path):
    folder = ROOT / "model" / "model-a"
    metadata = json.loads((folder / "metadata.json").read_text())
    result = json.loads((folder / "crossval.json").read_text())
    result["recipe"]["by_source"] = {"first": {"rows": 581, "accuracy": 0.8296},
                                     "rest": {"rows": 6000, "accuracy": 0.8917}}
    (tmp_path / "crossval.json").write_text(json.dumps(result))
    rows = dict(train.cross_validation_rows(metadata, tmp_path))
    assert rows["cross-validation by source"].startswith(
        "the same folds, pooled: rows 582-6,581 of the file **89.17%**, rows 1-581 82.96%")
    del result["recipe"]["by_source"]
    (tmp_path / "crossval.json").write_text(json.dumps(result))
    assert [key for key, _ in train.cross_validation_rows(metadata, tmp_path)] == \
        ["cross-validation"]
