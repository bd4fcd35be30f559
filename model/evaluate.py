"""Evaluate a packed or unpacked model through the serving handler, as SageMaker would call it.

    python -m model.evaluate --model build/model-a.tar.gz --data held-out.csv.gz

``--model`` is a ``model.tar.gz`` (its own ``code/`` is imported, so the archive is tested as
shipped) or an artifact directory such as ``model/model-a`` (served with ``model/code``). Rows go
through ``model_fn``/``input_fn``/``predict_fn``/``output_fn`` as JSON batches. Prints accuracy,
per-class precision and recall and the confusion matrix; the last line is ``accuracy=<float>``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

from model import CODE_DIR
from model.train import LABELS, read_data_option


def import_handler(code_dir: Path) -> ModuleType:
    """Import ``inference`` from ``code_dir`` the way the container does (code/ on sys.path)."""
    if not (code_dir / "inference.py").is_file():
        raise FileNotFoundError(f"{code_dir / 'inference.py'} does not exist")
    # Serve with these modules, not with same-named ones imported earlier from the work tree.
    for module in code_dir.glob("*.py"):
        sys.modules.pop(module.stem, None)
    sys.path.insert(0, str(code_dir))
    return importlib.import_module("inference")


def classify(handler: ModuleType, model_dir: Path, texts: list[str]) -> list[int]:
    model = handler.model_fn(str(model_dir))
    batch_size = handler.LIMITS.max_batch_size
    labels = []
    for start in range(0, len(texts), batch_size):
        body = json.dumps({"sentences": texts[start:start + batch_size]})
        data = handler.input_fn(body, "application/json")
        response, _ = handler.output_fn(handler.predict_fn(data, model), "application/json")
        labels.extend(result["label"] for result in json.loads(response))
    return labels


def report(expected: list[int], predicted: list[int]) -> list[str]:
    """Accuracy, per-class precision/recall, confusion matrix (rows true, columns predicted)."""
    n = len(LABELS)
    confusion = [[0] * n for _ in range(n)]
    for truth, guess in zip(expected, predicted):
        confusion[truth - 1][guess - 1] += 1
    correct = sum(confusion[i][i] for i in range(n))
    lines = [f"rows: {len(expected)}  correct: {correct}", "",
             f"{'class':<14}{'precision':>10}{'recall':>10}{'support':>9}"]
    for i, name in enumerate(LABELS):
        predicted_i = sum(confusion[r][i] for r in range(n))
        support = sum(confusion[i])
        precision = confusion[i][i] / predicted_i if predicted_i else 0.0
        recall = confusion[i][i] / support if support else 0.0
        lines.append(f"{i + 1} {name:<12}{precision:>10.4f}{recall:>10.4f}{support:>9}")
    lines += ["", "confusion (rows true, columns predicted):",
              " " * 14 + "".join(f"{i + 1:>8}" for i in range(n))]
    for i, name in enumerate(LABELS):
        lines.append(f"{i + 1} {name:<12}" + "".join(f"{count:>8}" for count in confusion[i]))
    lines.append(f"accuracy={correct / len(expected):.6f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="model.tar.gz or artifact directory")
    parser.add_argument("--data", type=Path, required=True, help="AG_NEWS CSV or CSV.gz")
    args = parser.parse_args(argv)
    data = read_data_option(args.data)
    if data is None:
        return 2
    rows = data.rows
    with tempfile.TemporaryDirectory() as tmp:
        if args.model.is_dir():
            model_dir, code_dir = args.model, CODE_DIR
        elif args.model.is_file() and tarfile.is_tarfile(args.model):
            with tarfile.open(args.model) as archive:
                archive.extractall(tmp, filter="data")
            model_dir, code_dir = Path(tmp), Path(tmp) / "code"
        else:
            print(f"error: --model {args.model} is neither a directory nor a tar archive",
                  file=sys.stderr)
            return 2
        try:
            handler = import_handler(code_dir)
        except FileNotFoundError as err:
            print(f"error: --model {args.model}: {err}", file=sys.stderr)
            return 2
        predicted = classify(handler, model_dir, [text for _, text in rows])
    print(f"model: {args.model}  data: {args.data}")
    print("\n".join(report([label + 1 for label, _ in rows], predicted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
