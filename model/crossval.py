"""Cross-validate a variant's recipe, with and without the word prior and teacher.

    python -m model.crossval --data ../shared/data/ag_news/labeled.csv.gz --variant model-a \
        --out model/model-a/crossval.json

One validation split of 658 rows moves by about a point between seeds, too much to compare
recipes by. This trains the variant on each of ``--folds`` seeded folds (the same folds for every
recipe, so the comparison is paired) and reports per-fold accuracy, mean and standard deviation
for the variant as configured and for the same hyperparameters without the word prior and the
teacher's soft labels (the plain n-gram model). Sentence embeddings for the teacher are computed
once per row and shared by the folds, each of which fits its own teacher. ``train``
copies the result into the model card when the file sits beside the artifacts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path

from model.teacher import Teacher
from model.train import VARIANTS, fit, read_data_option

SEED = 12345


def folds(rows: list, count: int, seed: int = SEED) -> list[tuple[list, list]]:
    """(training rows, validation rows) per fold: a seeded shuffle dealt into ``count`` parts."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    parts = [shuffled[i::count] for i in range(count)]
    return [([row for j, part in enumerate(parts) if j != i for row in part], parts[i])
            for i in range(count)]


def summary(accuracies: list[float]) -> dict:
    return {"folds": [round(a, 4) for a in accuracies],
            "mean": round(statistics.mean(accuracies), 4),
            "stdev": round(statistics.stdev(accuracies), 4)}


def cross_validate(rows: list, hp, count: int, teacher: Teacher | None = None) -> dict:
    return summary([fit(train_rows, valid_rows, hp, log=lambda *_: None, teacher=teacher)[3][-1]
                    for train_rows, valid_rows in folds(rows, count)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.crossval",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="AG_NEWS CSV or CSV.gz")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    data = read_data_option(args.data)
    if data is None:
        return 2
    hp = VARIANTS[args.variant]
    result = {"variant": args.variant, "folds": args.folds, "seed": SEED,
              "data": {"file": args.data.name, "rows": len(data.rows), "sha256": data.sha256},
              "hyperparameters": asdict(hp),
              "recipe": cross_validate(data.rows, hp, args.folds, Teacher()),
              "without_prior": cross_validate(
                  data.rows, replace(hp, word_prior=False, teacher_weight=0.0), args.folds)}
    gains = [a - b for a, b in zip(result["recipe"]["folds"], result["without_prior"]["folds"])]
    result["gain"] = summary(gains)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
