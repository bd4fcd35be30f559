"""In-process cost of the model handler, beside the reference handler's algorithm.

    python -m bench.inference [--model model/model-a] [--calls 4000] [--json build/bench.json]

Measures ``input_fn`` + ``predict_fn`` + ``output_fn`` per request (median and p99 over
``--calls`` calls after a warm-up), single sentences and batches of 64, plus ``model_fn`` load
time. In the same process, on the same weights and sentences, it runs a re-creation of the
reference handler's algorithm: torchtext's regex tokenizer, a generator of n-grams, one vocabulary
lookup per token into a Python list, tensors built per request, the unfolded EmbeddingBag + Linear
forward under ``no_grad``, and an INFO log line per call. Measurements of the two alternate in
rounds so that machine noise hits both alike. Prints the ratio reference / ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from model import use_serving_code
from model.train import read_dataset

use_serving_code()
import inference  # noqa: E402
from text_classifier import TextClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "tests" / "model" / "fixtures" / "ag_news_sample.csv"
BATCH = 64
LOAD_REPEATS = 5  # model_fn loads timed after the first


class ReferenceHandler:
    """The reference ``inference.py`` algorithm, on this project's artifacts."""

    # torchtext basic_english: 12 regex substitutions applied one after the other.
    _PATTERNS = [(re.compile(p), r) for p, r in [
        (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
        (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "),
        (r"\:", " "), (r"\s+", " ")]]

    def __init__(self, model_dir: Path, log: logging.Logger):
        metadata = json.loads((model_dir / "metadata.json").read_text())
        vocab = json.loads((model_dir / "vocab.json").read_text())
        self.ngrams = vocab["ngrams"]
        self.stoi = {token: i for i, token in enumerate(vocab["tokens"])}
        state = torch.load(model_dir / "model.pth", weights_only=True)
        self.model = TextClassifier.from_state_dict(state)
        self.num_class = len(metadata["labels"])
        self.log = log

    def tokenize(self, line: str) -> list[str]:
        line = line.lower()
        for pattern, replacement in self._PATTERNS:
            line = pattern.sub(replacement, line)
        return line.split()

    def ngrams_iterator(self, tokens, n):
        for token in tokens:
            yield token
        for size in range(2, n + 1):
            for gram in zip(*[tokens[i:] for i in range(size)]):
                yield " ".join(gram)

    def lookup(self, token: str) -> int:
        return self.stoi.get(token, 0)

    def __call__(self, body: str) -> str:
        sentence = json.loads(body)["sentence"]  # input_fn
        self.log.info("input sentence: %s", sentence)
        with torch.no_grad():  # predict_fn
            ids = torch.tensor([self.lookup(token) for token in
                                self.ngrams_iterator(self.tokenize(sentence), self.ngrams)])
            label = self.model(ids, torch.tensor([0])).argmax(1).item() + 1
        self.log.info("predicted label: %s", label)
        return json.dumps({"success": "true", "label": label})  # output_fn


def ours(model):
    def call(body: str, content_type: str = "application/json"):
        return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type),
                                                        model), "application/json")
    return call


def time_calls(fn, bodies: list[str], calls: int) -> list[float]:
    """Microseconds per call, cycling through ``bodies``."""
    clock = time.perf_counter_ns
    out = []
    for i in range(calls):
        body = bodies[i % len(bodies)]
        start = clock()
        fn(body)
        out.append((clock() - start) / 1000)
    return out


def summary(samples: list[float], per: int = 1) -> dict:
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered) / per, 2),
            "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / per, 2),
            "calls": len(ordered)}


def run(model_dir: Path, data: Path, calls: int, rounds: int = 4) -> dict:
    torch.set_num_threads(1)
    # Loaded before anything else: the first load, in fresh memory, is what a new serving
    # worker pays; the repeats show the steady cost.
    load_times = []
    for _ in range(1 + LOAD_REPEATS):
        start = time.perf_counter()
        model = inference.model_fn(str(model_dir))
        load_times.append(time.perf_counter() - start)

    texts = [text for _, text in read_dataset(data).rows]
    singles = [json.dumps({"sentence": text}) for text in texts]
    batches = [json.dumps({"sentences": (texts * 2)[i:i + BATCH]})
               for i in range(0, len(texts), BATCH)]

    log = logging.getLogger("bench.reference")
    log.propagate = False
    log.setLevel(logging.INFO)
    sink = logging.FileHandler(os.devnull)
    sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(sink)
    reference, handler = ReferenceHandler(model_dir, log), ours(model)

    agree = sum(json.loads(reference(body))["label"] == json.loads(handler(body)[0])["label"]
                for body in singles)
    for fn in (reference, handler):  # warm-up
        time_calls(fn, singles, min(calls, 500))
    per_round = max(1, calls // rounds)
    samples = {"ours": [], "reference": [], "batch": []}
    for _ in range(rounds):
        samples["ours"] += time_calls(handler, singles, per_round)
        samples["reference"] += time_calls(reference, singles, per_round)
        samples["batch"] += time_calls(handler, batches, max(1, per_round // 10))
    result = {
        "model": str(model_dir),
        "sentences": len(texts),
        "mean_ngrams_per_sentence": round(
            statistics.mean(len(model.vocab.encode(text)) for text in texts), 1),
        "torch": torch.__version__,
        "model_fn_first_seconds": round(load_times[0], 4),
        "model_fn_seconds": round(statistics.median(load_times[1:]), 4),
        "reference_single": summary(samples["reference"]),
        "single": summary(samples["ours"]),
        "batched_per_sentence": {**summary(samples["batch"], BATCH), "batch_size": BATCH},
        "labels_agree_with_reference": f"{agree}/{len(singles)}",
    }
    result["ratio_single"] = round(result["reference_single"]["median_us"]
                                   / result["single"]["median_us"], 2)
    result["ratio_batched"] = round(result["reference_single"]["median_us"]
                                    / result["batched_per_sentence"]["median_us"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inference",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model" / "model-a",
                        help="artifact directory (model.pth, vocab.json, metadata.json)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="AG_NEWS CSV whose texts are the requests")
    parser.add_argument("--calls", type=int, default=4000, help="timed single calls per handler")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.calls < 100:
        parser.error(f"--calls must be >= 100, got {args.calls}")
    result = run(args.model, args.data, args.calls)
    ref, single, batch = (result["reference_single"], result["single"],
                          result["batched_per_sentence"])
    print(f"model {result['model']}  torch {result['torch']}  {result['sentences']} sentences, "
          f"{result['mean_ngrams_per_sentence']} n-grams each on average")
    print(f"model_fn load: first {result['model_fn_first_seconds'] * 1000:.1f} ms, "
          f"then {result['model_fn_seconds'] * 1000:.1f} ms (median of {LOAD_REPEATS})")
    print(f"{'per request':<34}{'median us':>10}{'p99 us':>10}{'calls':>8}")
    print(f"{'reference algorithm, single':<34}{ref['median_us']:>10}{ref['p99_us']:>10}"
          f"{ref['calls']:>8}")
    print(f"{'handler, single':<34}{single['median_us']:>10}{single['p99_us']:>10}"
          f"{single['calls']:>8}")
    print(f"{'handler, batch of 64, per sentence':<34}{batch['median_us']:>10}"
          f"{batch['p99_us']:>10}{batch['calls']:>8}")
    print(f"labels agree with reference: {result['labels_agree_with_reference']}")
    print(f"ratio reference/handler: single {result['ratio_single']}x, "
          f"batched per sentence {result['ratio_batched']}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
