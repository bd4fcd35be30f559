"""The shipped models packed as SageMaker model.tar.gz: layout, size, reproducibility, and the
archive serving the reference cases with only its own code."""

import io
import json
import tarfile

import pytest

from model.evaluate import import_handler

from .conftest import ROOT, SHIPPED

pack = pytest.importorskip("workflow.pack")
MAX_ARCHIVE_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def archives():
    return {name: pack.model_archive(ROOT / "model" / name) for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_layout_size_and_same_bytes_on_rebuild(archives, name):
    data = archives[name]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = sorted(archive.getnames())
    code = sorted(f"code/{p.name}" for p in (ROOT / "model" / "code").glob("*.py"))
    assert names == sorted(code + ["metadata.json", "model.pth", "vocab.json"])
    assert "code/inference.py" in names and not any("requirements" in n for n in names)
    assert len(data) <= MAX_ARCHIVE_BYTES
    assert pack.model_archive(ROOT / "model" / name) == data


def test_archive_serves_the_reference_cases_with_its_own_code(archives, cases, tmp_path):
    with tarfile.open(fileobj=io.BytesIO(archives["model-a"]), mode="r:gz") as archive:
        archive.extractall(tmp_path, filter="data")
    handler = import_handler(tmp_path / "code")
    try:
        assert handler.__file__ == str(tmp_path / "code" / "inference.py")
        model = handler.model_fn(str(tmp_path))
        body = json.dumps({"sentences": [case["sentence"] for case in cases]})
        text, _ = handler.output_fn(handler.predict_fn(handler.input_fn(body, "application/json"),
                                                       model), "application/json")
        assert [r["label"] for r in json.loads(text)] == [c["expected_label"] for c in cases]
    finally:
        import_handler(ROOT / "model" / "code")  # later imports see the work tree's modules
