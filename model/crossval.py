"""Cross-validate a variant's recipe, with and without the word prior and teacher.

    python -m model.crossval --data ../shared/data/ag_news/labeled.csv.gz --variant model-a \
        --source-rows 581 --out model/model-a/crossval.json

One validation split of 658 rows moves by about a point between seeds, too much to compare
recipes by. This trains the variant on each of ``--folds`` seeded folds (the same folds for every
recipe, so the comparison is paired) and reports per-fold accuracy, mean and standard deviation
for the variant as configured and for the same hyperparameters without the word prior and the
teacher's soft labels (the plain n-gram model). ``--source-rows N`` also reports accuracy
pooled over the folds for the file's first N rows and for the rest, for a file that
concatenates two sources (``labeled.csv.gz``: 581 rows of the AG_NEWS training file, then
test-file rows like the held-out ones). Sentence embeddings for the teacher are computed
once per row and shared by the folds, each of which fits its own teacher. ``train``
copies the result into the model card when the file sits beside the artifacts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from model.teacher import Teacher
from model.train import VARIANTS, classified_right, fit, read_data_option

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


def cross_validate(rows: list, hp, count: int, teacher: Teacher | None = None,
                   source_rows: int = 0) -> dict:
    """Accuracy per fold; with ``source_rows``, also pooled over all folds for the first
    ``source_rows`` rows of the file and for the rest."""
    right: dict[int, bool] = {}
    accuracies = []
    for train_rows, valid_rows in folds(list(enumerate(rows)), count):
        model, _, valid_set, _ = fit([row for _, row in train_rows], [row for _, row in valid_rows],
                                     hp, log=lambda *_: None, teacher=teacher)
        marks = classified_right(model, valid_set)
        accuracies.append(sum(marks) / len(marks))
        right.update(zip((index for index, _ in valid_rows), marks))
    result = summary(accuracies)
    if source_rows:
        parts = {"first": [right[i] for i in range(source_rows)],
                 "rest": [right[i] for i in range(source_rows, len(rows))]}
        result["by_source"] = {name: {"rows": len(marks),
                                      "accuracy": round(sum(marks) / len(marks), 4)}
                               for name, marks in parts.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.crossval",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="AG_NEWS CSV or CSV.gz")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--source-rows", type=int, default=0, metavar="N",
                        help="the file's first N rows come from another source than the rest: "
                             "also report accuracy on each part")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    if args.source_rows < 0:
        parser.error(f"--source-rows must be >= 0, got {args.source_rows}")
    data = read_data_option(args.data)
    if data is None:
        return 2
    if args.source_rows >= len(data.rows):
        parser.error(f"--source-rows must be less than the {len(data.rows)} rows of "
                     f"{args.data}, got {args.source_rows}")
    hp = VARIANTS[args.variant]
    result = {"variant": args.variant, "folds": args.folds, "seed": SEED,
              "data": {"file": args.data.name, "rows": len(data.rows), "sha256": data.sha256},
              "hyperparameters": asdict(hp),
              "recipe": cross_validate(data.rows, hp, args.folds, Teacher(), args.source_rows),
              "without_prior": cross_validate(data.rows, hp.plain(), args.folds,
                                              source_rows=args.source_rows)}
    gains = [a - b for a, b in zip(result["recipe"]["folds"], result["without_prior"]["folds"])]
    result["gain"] = summary(gains)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
