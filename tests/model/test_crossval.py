"""Cross-validation folds, and the model card row that reports them only for the same recipe."""

import json

import pytest

from model import crossval, train

from .conftest import ROOT, SHIPPED


def test_folds_partition_the_rows_the_same_way_every_time():
    rows = list(range(23))
    split = crossval.folds(rows, 5)
    assert split == crossval.folds(rows, 5)
    assert sorted(row for _, valid in split for row in valid) == rows
    for training, valid in split:
        assert sorted(training + valid) == rows


def test_bad_fold_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        crossval.main(["--data", "x.csv", "--variant", "model-a", "--folds", "1"])
    assert exited.value.code == 2
    assert "--folds must be >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_report_the_cross_validation_of_their_recipe(name):
    folder = ROOT / "model" / name
    metadata = json.loads((folder / "metadata.json").read_text())
    result = json.loads((folder / "crossval.json").read_text())
    assert result["hyperparameters"] == metadata["hyperparameters"]
    assert result["data"]["sha256"] == metadata["data"]["sha256"]
    assert f"{result['recipe']['mean']:.2%}" in (folder / "MODEL_CARD.md").read_text()


def test_a_result_for_another_recipe_is_left_out(tmp_path):
    folder = ROOT / "model" / "model-a"
    metadata = json.loads((folder / "metadata.json").read_text())
    result = json.loads((folder / "crossval.json").read_text())
    result["hyperparameters"]["epochs"] += 1
    (tmp_path / "crossval.json").write_text(json.dumps(result))
    assert train.cross_validation_rows(metadata, tmp_path) == []
    assert train.cross_validation_rows(metadata, folder)[0][0] == "cross-validation"
