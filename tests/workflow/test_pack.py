"""Packing: SageMaker and Lambda layouts, reproducible bytes, content-hashed keys."""

import io
import json
import tarfile
import zipfile

import pytest

from workflow.archive import names_in
from workflow.pack import PackError, function_zip, model_archive, pack


@pytest.fixture()
def model_dir(tmp_path):
    artifact = tmp_path / "model-x"
    artifact.mkdir()
    for name in ("model.pth", "vocab.json", "metadata.json", "MODEL_CARD.md"):
        (artifact / name).write_text(name)
    code = tmp_path / "code"
    (code / "__pycache__").mkdir(parents=True)
    (code / "inference.py").write_text("def model_fn(d): pass\n")
    (code / "textproc.py").write_text("X = 1\n")
    (code / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"junk")
    (code / "notes.txt").write_text("not code")
    return artifact, code


def test_model_archive_has_sagemaker_layout(model_dir):
    artifact, code = model_dir
    names = sorted(names_in(model_archive(artifact, code)))
    assert names == [
        "code/inference.py",
        "code/textproc.py",
        "metadata.json",
        "model.pth",
        "vocab.json",
    ]


def test_model_archive_is_reproducible_with_fixed_metadata(model_dir):
    artifact, code = model_dir
    first = model_archive(artifact, code)
    (artifact / "model.pth").touch()  # a new mtime must not change the bytes
    assert model_archive(artifact, code) == first
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode) for m in tar.getmembers()} == {
            (315532800, 0, 0, 0o644)
        }


def test_model_archive_names_what_is_missing(model_dir):
    artifact, code = model_dir
    (artifact / "vocab.json").unlink()
    with pytest.raises(PackError, match="vocab.json"):
        model_archive(artifact, code)


def test_function_zip_merges_shared_modules(tmp_path):
    src = tmp_path / "lambda_src"
    (src / "shared").mkdir(parents=True)
    (src / "fn").mkdir()
    (src / "shared" / "jsonlog.py").write_text("x = 1\n")
    (src / "fn" / "handler.py").write_text("def handler(e, c): return e\n")
    data = function_zip("fn", src)
    assert sorted(names_in(data)) == ["handler.py", "jsonlog.py"]
    assert data == function_zip("fn", src)
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_function_zip_refuses_a_module_shadowing_a_shared_one(tmp_path):
    src = tmp_path / "lambda_src"
    (src / "shared").mkdir(parents=True)
    (src / "fn").mkdir()
    (src / "shared" / "handler.py").write_text("")
    (src / "fn" / "handler.py").write_text("")
    with pytest.raises(PackError, match="handler.py also exist"):
        function_zip("fn", src)


def test_pack_index_keys_follow_content(model_dir, tmp_path):
    artifact, code = model_dir
    functions = tmp_path / "lambda_src"
    (functions / "fn").mkdir(parents=True)
    (functions / "fn" / "handler.py").write_text("def handler(e, c): return e\n")
    out = tmp_path / "build"
    index = pack({"model-x": artifact}, out, code, functions)
    (artifact / "model.pth").write_text("retrained")
    changed = pack({"model-x": artifact}, out, code, functions)
    entry = index["model-x"]
    assert entry["key"] == f"models/model-x/{entry['sha256'][:16]}/model.tar.gz"
    assert changed["model-x"]["key"] != entry["key"]
    assert changed["fn"] == index["fn"] and index["fn"]["key"].startswith("functions/fn-")
    assert json.loads((out / "pack.json").read_text()) == changed
    assert len(list(out.glob("fn-*.zip"))) == 1
