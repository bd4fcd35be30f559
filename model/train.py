"""Train an AG_NEWS classifier variant and write its serving artifacts.

    python -m model.train --data ../shared/data/ag_news/labeled.csv.gz --variant model-a \
        --out model/model-a
    python -m model.train --data ../shared/data/ag_news/labeled.csv.gz --all   # every variant

Input: AG_NEWS CSV in the original format (no header; class 1-4, title, description), optionally
gzip-compressed. The text of a row is ``title + " " + description``, as torchtext's AG_NEWS gives
it. A seeded shuffle splits off a validation set; the vocabulary (n-grams seen at least
``min_freq`` times) is built from the training part only. Training is single-threaded and seeded,
so the same data and command give the same weights.

With ``word_prior`` set (both variants), frozen MiniLM and GloVe word vectors
(``model/word_prior.py``, ``model/glove.py``) feed a per-word logit network beside the n-gram
embeddings, folded into a plain ``TextClassifier`` before saving; with ``teacher_weight`` set, the
training targets mix the hard label with the soft labels of a MiniLM sentence-embedding teacher
(``model/teacher.py``), or, with ``teacher_overrule``, take its soft labels alone for rows whose
label it contradicts. Both are training only (packages that ``make install`` installs): the
artifacts and the serving code are unchanged in form. With ``weighted_bag`` (both variants) the
bag is a mean weighted by a learned weight per entry, saved as ``bag_weight`` beside the weights.

Output in ``--out``: ``model.pth`` (state_dict; fp16 when that keeps validation accuracy),
``vocab.json``, ``metadata.json`` (hyperparameters, vocabulary size, validation accuracy, data
sha256, torch version) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from model import use_serving_code

use_serving_code()
from text_classifier import TextClassifier  # noqa: E402
from textprep import Vocabulary  # noqa: E402

from model import glove, word_prior  # noqa: E402
from model.glove import GloveVectors  # noqa: E402
from model.teacher import SOURCE as TEACHER_SOURCE  # noqa: E402
from model.teacher import Teacher  # noqa: E402
from model.word_prior import PriorTextClassifier, WordPieces  # noqa: E402

LABELS = ("World", "Sports", "Business", "Sci/Tech")
MODEL_DIR = Path(__file__).resolve().parent  # --all writes MODEL_DIR/<variant>


@dataclass(frozen=True)
class HyperParameters:
    embed_dim: int
    ngrams: int
    min_freq: int
    epochs: int
    batch_size: int
    lr: float
    lr_gamma: float
    token_dropout: float
    init_range: float = 0.5
    # MiniLM + GloVe word vectors through a per-word logit network (model/word_prior.py).
    word_prior: bool = False
    prior_hidden: int = 128
    # Pool the bag by a learned positive weight per entry instead of a plain mean (with the
    # word prior: part of each weight is read from it, see PriorTextClassifier).
    weighted_bag: bool = False
    # Share of the MiniLM sentence-embedding teacher's soft labels in the training targets
    # (model/teacher.py), and its regression's L2 weight; 0 trains on the hard labels alone.
    teacher_weight: float = 0.0
    teacher_l2: float = 0.01
    # A training row to which the teacher, fitted on that very row, still gives another label
    # a probability above this learns the teacher's soft labels alone: such labels are mostly
    # noise or ambiguity. None keeps every row's hard label in its target.
    teacher_overrule: float | None = None
    valid_fraction: float = 0.1
    seed: int = 20261124

    def __post_init__(self):
        if self.weighted_bag and not self.word_prior:
            raise ValueError("HyperParameters: weighted_bag needs word_prior=True")
        if self.teacher_overrule is not None and not (self.teacher_weight and
                                                      0 < self.teacher_overrule < 1):
            raise ValueError("HyperParameters: teacher_overrule must be a probability in (0, 1) "
                             f"and needs teacher_weight > 0, got {self.teacher_overrule} with "
                             f"teacher_weight {self.teacher_weight}")

    def plain(self) -> "HyperParameters":
        """The same recipe as a plain n-gram model: no word prior, pooling weights or teacher."""
        return replace(self, word_prior=False, weighted_bag=False, teacher_weight=0.0,
                       teacher_overrule=None)


VARIANTS = {
    "model-a": HyperParameters(embed_dim=32, ngrams=2, min_freq=2, epochs=10, batch_size=32,
                               lr=0.005, lr_gamma=0.8, token_dropout=0.3,
                               init_range=0.05, word_prior=True, weighted_bag=True,
                               teacher_weight=0.5, teacher_overrule=0.8),
    "model-b": HyperParameters(embed_dim=16, ngrams=3, min_freq=2, epochs=7, batch_size=32,
                               lr=0.01, lr_gamma=0.8, token_dropout=0.3,
                               init_range=0.05, word_prior=True, weighted_bag=True,
                               teacher_weight=0.5),
}


@dataclass(frozen=True)
class Dataset:
    rows: list[tuple[int, str]]  # (class index 0-3, text)
    sha256: str  # of the uncompressed CSV content


def read_dataset(path: Path) -> Dataset:
    """Rows of an AG_NEWS CSV (``.csv`` or ``.csv.gz``); errors name the file and line."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = []
    reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
    for line_no, record in enumerate(reader, start=1):
        if len(record) < 2 or record[0] not in {"1", "2", "3", "4"}:
            raise ValueError(f"{path}:{line_no}: expected 'class (1-4), title, description', "
                             f"got {record[:3]!r}")
        rows.append((int(record[0]) - 1, " ".join(record[1:])))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return Dataset(rows, hashlib.sha256(raw).hexdigest())


def read_data_option(path: Path) -> Dataset | None:
    """``--data`` for a command line: the dataset, or None after saying on stderr why not."""
    try:
        return read_dataset(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"error: cannot read --data {path}: {err}", file=sys.stderr)
        return None


def split(rows: list, valid_fraction: float, seed: int) -> tuple[list, list]:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    n_valid = max(1, round(len(shuffled) * valid_fraction))
    return shuffled[n_valid:], shuffled[:n_valid]


def encode_rows(rows, vocab: Vocabulary) -> list[tuple[int, list[int]]]:
    return [(label, vocab.encode(text) or [vocab.unk_index]) for label, text in rows]


def collate(batch, token_dropout: float = 0.0, generator: torch.Generator | None = None):
    """Flat ids, bag offsets and targets (class indices, or per-class probability rows when the
    batch carries them); token dropout hides random n-grams (keeps >= 1 each)."""
    targets = [target for target, _ in batch]
    labels = torch.stack(targets) if torch.is_tensor(targets[0]) else torch.tensor(targets)
    bags = [torch.tensor(ids) for _, ids in batch]
    if token_dropout:
        kept = []
        for ids in bags:
            keep = torch.rand(len(ids), generator=generator) >= token_dropout
            kept.append(ids[keep] if keep.any() else ids)
        bags = kept
    offsets = torch.tensor([0] + [len(ids) for ids in bags[:-1]]).cumsum(0)
    return torch.cat(bags), offsets, labels


def classified_right(model: nn.Module, encoded, batch_size: int = 256) -> list[bool]:
    """Per encoded row, in order: does the model give it its label?"""
    model.eval()
    right = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            ids, offsets, labels = collate(encoded[start:start + batch_size])
            right += (model(ids, offsets).argmax(1) == labels).tolist()
    return right


def accuracy(model: nn.Module, encoded, batch_size: int = 256) -> float:
    return sum(classified_right(model, encoded, batch_size)) / len(encoded)


def build_model(train_rows, hp: HyperParameters):
    """Vocabulary and initialised model; with the word prior, MiniLM's whole words join the
    vocabulary (after the training n-grams) and start with zero n-gram embeddings, so a word
    training never saw contributes its prior alone."""
    vocab = Vocabulary.build((text for _, text in train_rows), hp.ngrams, hp.min_freq)
    if not hp.word_prior:
        model = TextClassifier(len(vocab), hp.embed_dim, len(LABELS), sparse=True)
        model.init_weights(hp.init_range)
        return model, vocab
    pieces = WordPieces()
    known = set(vocab.tokens)
    trained_rows = len(vocab)
    vocab = Vocabulary(vocab.tokens + [word for word in pieces.whole_words() if word not in known],
                       vocab.ngram_size)
    prior = torch.cat([pieces.vectors(vocab.tokens), GloveVectors().vectors(vocab.tokens)], 1)
    model = PriorTextClassifier(len(vocab), hp.embed_dim, len(LABELS), prior, hp.prior_hidden,
                                weighted=hp.weighted_bag)
    model.init_weights(hp.init_range)
    model.embedding.weight.data[trained_rows:] = 0.0
    return model, vocab


def training_targets(train_rows, hp: HyperParameters, teacher: Teacher | None) -> torch.Tensor:
    """Per training row, the hard label's one-hot row mixed with the teacher's soft labels, or
    the soft labels alone where the teacher overrules the label (``teacher_overrule``)."""
    hard = nn.functional.one_hot(torch.tensor([label for label, _ in train_rows]),
                                 len(LABELS)).float()
    if not hp.teacher_weight:
        return hard
    soft = (teacher or Teacher()).soft_labels(train_rows, len(LABELS), hp.teacher_l2)
    targets = (1 - hp.teacher_weight) * hard + hp.teacher_weight * soft
    if hp.teacher_overrule is not None:
        overruled = (soft * (1 - hard)).amax(1) > hp.teacher_overrule
        targets[overruled] = soft[overruled]
    return targets


def fit(train_rows, valid_rows, hp: HyperParameters, log=print, teacher: Teacher | None = None):
    """Train on ``train_rows``; return (serving model, vocab, encoded validation rows,
    validation accuracy per epoch). ``teacher`` keeps sentence embeddings between calls."""
    torch.manual_seed(hp.seed)
    torch.set_num_threads(1)  # bitwise reproducible: no thread-count-dependent reductions
    generator = torch.Generator().manual_seed(hp.seed)
    order_rng = random.Random(hp.seed)
    targets = training_targets(train_rows, hp, teacher)
    model, vocab = build_model(train_rows, hp)
    train_set = [(target, ids) for target, (_, ids) in zip(targets, encode_rows(train_rows, vocab))]
    valid_set = encode_rows(valid_rows, vocab)
    # Lazy (sparse) Adam for the per-entry tables: each step costs what the batch touches, not
    # the whole vocabulary; dense Adam for the small rest.
    sparse = [parameter for module in model.modules() if getattr(module, "sparse", False)
              for parameter in module.parameters(recurse=False)]
    optimizers = [torch.optim.SparseAdam(sparse, lr=hp.lr),
                  torch.optim.Adam([parameter for parameter in model.parameters()
                                    if all(parameter is not table for table in sparse)],
                                   lr=hp.lr)]
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=hp.lr_gamma)
                  for opt in optimizers]
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(1, hp.epochs + 1):
        model.train()
        order_rng.shuffle(train_set)
        total = 0.0
        for start in range(0, len(train_set), hp.batch_size):
            ids, offsets, labels = collate(train_set[start:start + hp.batch_size],
                                           hp.token_dropout, generator)
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss = loss_fn(model(ids, offsets), labels)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            total += loss.item() * len(labels)
        for scheduler in schedulers:
            scheduler.step()
        history.append(accuracy(model, valid_set))
        log(f"epoch {epoch:2d}  loss {total / len(train_set):.4f}  "
            f"valid accuracy {history[-1]:.4f}")
    if isinstance(model, PriorTextClassifier):
        model = model.serving_model()
    return model, vocab, valid_set, history


def compact_state(model: TextClassifier, valid_set) -> tuple[dict, str, float]:
    """The state_dict in fp16 unless that costs validation accuracy, then in fp32."""
    fp32_accuracy = accuracy(model, valid_set)
    half = {key: value.half() for key, value in model.state_dict().items()}
    fp16_accuracy = accuracy(TextClassifier.from_state_dict(half), valid_set)
    if fp16_accuracy >= fp32_accuracy:
        return half, "float16", fp16_accuracy
    return {k: v.clone() for k, v in model.state_dict().items()}, "float32", fp32_accuracy


def write_artifacts(out: Path, variant: str, hp: HyperParameters, data: Dataset, data_name: str,
                    model, vocab, valid_set, history, command: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    state, dtype, valid_accuracy = compact_state(model, valid_set)
    torch.save(state, out / "model.pth")
    vocab.save(out / "vocab.json")
    n_valid = len(valid_set)
    metadata = {
        "variant": variant,
        "labels": list(LABELS),
        "architecture": ("EmbeddingBag(mean weighted by a learned weight per entry) + Linear"
                         if hp.weighted_bag else "EmbeddingBag(mean) + Linear"),
        "word_prior": ({"sources": [{"source": word_prior.SOURCE, "package": word_prior.PACKAGE,
                                     "sha256": word_prior.SHA256},
                                    {"source": glove.SOURCE, "package": glove.PACKAGE,
                                     "sha256": glove.SHA256}],
                        "hidden": hp.prior_hidden} if hp.word_prior else None),
        "teacher": ({"source": TEACHER_SOURCE, "weight": hp.teacher_weight, "l2": hp.teacher_l2,
                     "overrule": hp.teacher_overrule} if hp.teacher_weight else None),
        "tokenizer": "basic_english",
        "vocab_size": len(vocab),
        "weights_dtype": dtype,
        "hyperparameters": asdict(hp),
        "validation": {"rows": n_valid, "accuracy": round(valid_accuracy, 4),
                       "accuracy_by_epoch": [round(a, 4) for a in history]},
        "data": {"file": data_name, "rows": len(data.rows), "sha256": data.sha256},
        "torch_version": torch.__version__,
        "command": command,
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(model_card(metadata, out), encoding="utf-8")
    return metadata


def cross_validation_rows(metadata: dict, out: Path) -> list[tuple[str, str]]:
    """The card rows for ``crossval.json`` (written by ``model.crossval``) when it measured this
    recipe on this data; none otherwise."""
    path = out / "crossval.json"
    if not path.is_file():
        return []
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("hyperparameters") != metadata["hyperparameters"] or \
            result.get("data", {}).get("sha256") != metadata["data"]["sha256"]:
        return []
    recipe, without, gain = result["recipe"], result["without_prior"], result["gain"]
    rows = [("cross-validation",
             f"{result['folds']} seeded folds of the same file: {recipe['mean']:.2%} ± "
             f"{recipe['stdev']:.2%}; without the word prior and teacher {without['mean']:.2%} ± "
             f"{without['stdev']:.2%} (paired gain {gain['mean'] * 100:+.2f} ± "
             f"{gain['stdev'] * 100:.2f} points); `crossval.json`, from "
             "`python -m model.crossval`")]
    if "by_source" in recipe:
        first, rest = recipe["by_source"]["first"], recipe["by_source"]["rest"]
        rows.append(("cross-validation by source",
                     f"the same folds, pooled: rows {first['rows'] + 1:,}-"
                     f"{first['rows'] + rest['rows']:,} of the file **{rest['accuracy']:.2%}**, "
                     f"rows 1-{first['rows']:,} {first['accuracy']:.2%} (`--source-rows "
                     f"{first['rows']}`: rows from two sources, see model/README.md)"))
    return rows


def model_card(metadata: dict, out: Path) -> str:
    sizes = {name: (out / name).stat().st_size / 1e6 for name in ("model.pth", "vocab.json")}
    hp, valid, data = metadata["hyperparameters"], metadata["validation"], metadata["data"]
    prior, teacher = metadata["word_prior"], metadata["teacher"]
    minilm, glove_source = prior["sources"] if prior else (None, None)
    rows = [
        ("data", f"`{data['file']}`: {data['rows']:,} AG_NEWS rows, sha256 of the uncompressed "
                 f"CSV `{data['sha256']}`"),
        ("split", f"seeded shuffle (seed {hp['seed']}), {valid['rows']:,} rows "
                  f"({hp['valid_fraction']:.0%}) held out for validation"),
        ("vocabulary", f"{metadata['vocab_size']:,} entries: `basic_english` tokens and n-grams "
                       f"up to {hp['ngrams']} seen at least {hp['min_freq']} times in the "
                       "training split, " + ("MiniLM's whole-word entries, " if prior else "")
                       + "plus `<unk>`"),
        ("model", f"{metadata['architecture']}, embedding size {hp['embed_dim']}"
                  + (" + one word-prior logit column per label" if prior else "")
                  + f", weights stored as {metadata['weights_dtype']}"),
        ("training", f"Adam (sparse for the per-entry tables) lr {hp['lr']} "
                     f"(x{hp['lr_gamma']} per epoch), {hp['epochs']} epochs, batch "
                     f"{hp['batch_size']}, token dropout {hp['token_dropout']}, init range "
                     f"{hp['init_range']}; one CPU thread"),
        *([("word prior", f"{minilm['source']}, from `{minilm['package']}` (model.safetensors "
                          f"sha256 `{minilm['sha256']['model.safetensors']}`; a word's vector is "
                          f"the mean of its word pieces'), beside {glove_source['source']}, from "
                          f"`{glove_source['package']}` (vectors sha256 "
                          f"`{glove_source['sha256'][glove.VECTORS]}`): both at unit norm, "
                          f"through a {prior['hidden']}-unit GELU network to per-word logits; "
                          "training only, folded into the table")] if prior else []),
        *([("teacher", f"training targets mix the hard label with {teacher['weight']:.0%} of the "
                       f"soft labels of an {teacher['source']}, fitted on the training split "
                       f"(L2 weight {teacher['l2']})"
                       + (f"; rows to which it gives another label more than "
                          f"{teacher['overrule']:.0%} learn its soft labels alone"
                          if teacher["overrule"] is not None else "")
                       + "; training only")] if teacher else []),
        ("validation accuracy", f"**{valid['accuracy']:.2%}**"),
        *cross_validation_rows(metadata, out),
        ("size", f"model.pth {sizes['model.pth']:.2f} MB, vocab.json {sizes['vocab.json']:.2f} MB"),
        ("torch", metadata["torch_version"]),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return f"""# AG_NEWS classifier `{metadata['variant']}`

Labels: 1 World, 2 Sports, 3 Business, 4 Sci/Tech.

| | |
|---|---|
{table}

Reproduce (same bytes for the same data and torch version):

```
{metadata['command']}
```

Validation accuracy comes from this model's own split of the training file; the rows of the
AG_NEWS test file that are not in that file measure it independently. The model knows only
English news text of 2004-2005; other domains and languages are out of scope.
"""


def train_variant(data: Dataset, data_arg: Path, variant: str, out: Path,
                  epochs: int | None = None, recorded_out: str | None = None,
                  teacher: Teacher | None = None) -> dict:
    """Train one variant on ``data`` into ``out``; record the command that reproduces it
    (with ``recorded_out`` as its ``--out``, when that is how the caller names ``out``).
    Variants trained with one ``teacher`` share its sentence embeddings."""
    hp = VARIANTS[variant]
    if epochs is not None:
        hp = replace(hp, epochs=epochs)
    command = (f"python -m model.train --data {data_arg.as_posix()} --variant {variant} "
               f"--out {recorded_out or out.as_posix()}")
    if epochs:
        command += f" --epochs {epochs}"
    train_rows, valid_rows = split(data.rows, hp.valid_fraction, hp.seed)
    print(f"{variant}: {len(train_rows)} training rows, {len(valid_rows)} validation rows")
    model, vocab, valid_set, history = fit(train_rows, valid_rows, hp, teacher=teacher)
    metadata = write_artifacts(out, variant, hp, data, data_arg.name, model, vocab, valid_set,
                               history, command)
    print(f"wrote {out}: vocabulary {metadata['vocab_size']}, weights "
          f"{metadata['weights_dtype']}, validation accuracy {metadata['validation']['accuracy']}")
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="AG_NEWS CSV or CSV.gz")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="the variant to train")
    parser.add_argument("--out", type=Path, help="artifact directory to write")
    parser.add_argument("--all", action="store_true",
                        help="train every variant into model/<variant>")
    parser.add_argument("--epochs", type=int, help="override the variant's epoch count")
    args = parser.parse_args(argv)
    if args.all and (args.variant or args.out):
        parser.error("--all trains every variant into model/<variant>: drop --variant/--out")
    if not args.all and not (args.variant and args.out):
        parser.error("give --variant and --out, or --all")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    data = read_data_option(args.data)
    if data is None:
        return 2
    try:
        if args.all:
            teacher = Teacher()
            for variant in sorted(VARIANTS):
                train_variant(data, args.data, variant, MODEL_DIR / variant, args.epochs,
                              recorded_out=f"model/{variant}", teacher=teacher)
        else:
            train_variant(data, args.data, args.variant, args.out, args.epochs)
    except word_prior.PriorUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
