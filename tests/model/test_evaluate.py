"""model.evaluate: runs the handler path on a directory or a packed archive; last line format."""

import re

import pytest

from model import evaluate

from .conftest import FIXTURE, ROOT

LAST_LINE = re.compile(r"^accuracy=(0|1)\.\d{6}$")


def run(capsys, model):
    assert evaluate.main(["--model", str(model), "--data", str(FIXTURE)]) == 0
    return capsys.readouterr().out.splitlines()


def test_directory_report_ends_with_the_accuracy_line(capsys):
    lines = run(capsys, ROOT / "model" / "model-a")
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert float(lines[-1].split("=")[1]) > 0.8
    assert "rows: 400" in "\n".join(lines)
    assert any(line.startswith("4 Sci/Tech") for line in lines)
    assert "confusion (rows true, columns predicted):" in lines


def test_packed_archive_evaluates_like_its_directory(capsys, tmp_path):
    pack = pytest.importorskip("workflow.pack")
    archive = tmp_path / "model-b.tar.gz"
    archive.write_bytes(pack.model_archive(ROOT / "model" / "model-b"))
    assert run(capsys, archive)[-1] == run(capsys, ROOT / "model" / "model-b")[-1]


def test_report_counts_precision_recall_and_confusion():
    lines = evaluate.report(expected=[1, 1, 2, 3, 4, 4], predicted=[1, 2, 2, 3, 4, 1])
    assert lines[-1] == "accuracy=0.666667"
    world = next(line for line in lines if line.startswith("1 World"))
    assert world.split()[2:] == ["0.5000", "0.5000", "2"]  # precision 1/2, recall 1/2
    assert lines[-5].split()[2:] == ["1", "1", "0", "0"]


def test_bad_arguments_exit_2_with_a_message(capsys, tmp_path):
    not_model = tmp_path / "model.txt"
    not_model.write_text("x")
    assert evaluate.main(["--model", str(not_model), "--data", str(FIXTURE)]) == 2
    assert "neither a directory nor a tar archive" in capsys.readouterr().err
    assert evaluate.main(["--model", str(tmp_path), "--data", str(tmp_path / "none.csv")]) == 2
    assert "cannot read --data" in capsys.readouterr().err
