"""``make pack``: build every deployable artifact into build/ and index them in build/pack.json.

Models become SageMaker ``model.tar.gz`` archives (artifact files at the root, ``model/code`` under
``code/``); functions become Lambda zips (``lambda_src/shared`` plus the function folder at the
root). Each S3 key carries the archive's content hash, so a stack updates exactly when content does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from generator.naming import model_artifact_prefix
from workflow.archive import collect, sha256, tar_gz_bytes, zip_bytes

ROOT = Path(__file__).resolve().parent.parent
MODEL_CODE = ROOT / "model" / "code"
MODEL_ROOT_FILES = ("model.pth", "vocab.json", "metadata.json")
LAMBDA_SRC = ROOT / "lambda_src"
SHARED = "shared"
HASH_CHARS = 16


class PackError(Exception):
    """An artifact cannot be built from what is on disk."""


def model_archive(artifact_dir: Path, code_dir: Path = MODEL_CODE) -> bytes:
    """The ``model.tar.gz`` bytes for one trained model directory."""
    missing = [name for name in MODEL_ROOT_FILES if not (artifact_dir / name).is_file()]
    if missing:
        raise PackError(
            f"{artifact_dir}: missing {', '.join(missing)} (train it with `make train`)"
        )
    if not (code_dir / "inference.py").is_file():
        raise PackError(f"{code_dir}: no inference.py")
    entries = {name: artifact_dir / name for name in MODEL_ROOT_FILES}
    entries.update(
        {name: path for name, path in collect(code_dir, "code/").items() if name.endswith(".py")}
    )
    return tar_gz_bytes(entries)


def function_names(src: Path = LAMBDA_SRC) -> list[str]:
    return sorted(p.name for p in src.iterdir() if (p / "handler.py").is_file())


def function_zip(name: str, src: Path = LAMBDA_SRC) -> bytes:
    """The deployment zip of one function: shared modules plus the function's own folder."""
    folder = src / name
    if not (folder / "handler.py").is_file():
        raise PackError(f"{folder}: no handler.py")
    entries = collect(src / SHARED) if (src / SHARED).is_dir() else {}
    own = collect(folder)
    clash = sorted(set(entries) & set(own))
    if clash:
        raise PackError(f"{folder}: {', '.join(clash)} also exist in {src / SHARED}")
    entries.update(own)
    return zip_bytes(entries)


def _write(out: Path, filename: str, data: bytes) -> Path:
    path = out / filename
    if not path.is_file() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def pack(
    models: dict[str, Path],
    out: Path,
    code_dir: Path = MODEL_CODE,
    functions_src: Path = LAMBDA_SRC,
) -> dict[str, dict[str, str]]:
    """Build all artifacts into ``out``; return the index (artifact id -> path, key, sha256)."""
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, artifact_dir in sorted(models.items()):
        data = model_archive(artifact_dir, code_dir)
        digest = sha256(data)
        path = _write(out, f"{name}.tar.gz", data)
        index[name] = {
            "key": f"{model_artifact_prefix(name)}{digest[:HASH_CHARS]}/model.tar.gz",
            "path": str(path),
            "sha256": digest,
        }
    for name in function_names(functions_src):
        data = function_zip(name, functions_src)
        digest = sha256(data)
        for stale in out.glob(f"{name}-*.zip"):
            stale.unlink()
        path = _write(out, f"{name}-{digest[:HASH_CHARS]}.zip", data)
        index[name] = {
            "key": f"functions/{name}-{digest[:HASH_CHARS]}.zip",
            "path": str(path),
            "sha256": digest,
        }
    (out / "pack.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def model_dirs(models) -> dict[str, Path]:
    """Each configured model's artifact directory; one that is not there names its key."""
    dirs = {}
    for i, model in enumerate(models):
        path = ROOT / model.artifact_dir
        if not path.is_dir():
            raise PackError(
                f"model_serving.models[{i}].artifact_dir: {model.artifact_dir!r} is not a "
                f"directory under {ROOT}"
            )
        dirs[model.name] = path
    return dirs


def main(argv: list[str] | None = None) -> int:
    from generator.config import ConfigError
    from generator.config import load as load_config

    parser = argparse.ArgumentParser(
        prog="python -m workflow.pack", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", default="config.json")
    parser.add_argument("--out", default="build")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        index = pack(model_dirs(cfg.model_serving.models), Path(args.out))
    except (ConfigError, PackError) as exc:
        print(f"pack: {exc}", file=sys.stderr)
        return 2
    for name, entry in index.items():
        print(f"[pack] {name:<10} {entry['path']}  ->  {entry['key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
