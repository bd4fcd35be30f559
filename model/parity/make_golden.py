"""Write ``golden.json``: what real torchtext 0.18 makes of a set of inputs.

The serving code re-implements torchtext's ``basic_english`` tokenizer and ``ngrams_iterator``
(``model/code/textprep.py``); ``tests/model/test_tokenizer_parity.py`` compares it with this file.
Regenerate it only with the genuine library, in an environment of its own (torchtext 0.18 needs
torch 2.3, which the project does not use):

    python3.11 -m venv /work/.venv-torchtext
    /work/.venv-torchtext/bin/pip install --no-deps torch==2.3.0 torchtext==0.18.0
    /work/.venv-torchtext/bin/pip install filelock typing-extensions sympy networkx jinja2 \
        fsspec tqdm requests "numpy<2" nvidia-cuda-nvrtc-cu12==12.1.105 \
        nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105 \
        nvidia-cudnn-cu12==8.9.2.26 nvidia-cublas-cu12==12.1.3.1 nvidia-cufft-cu12==11.0.2.54 \
        nvidia-curand-cu12==10.3.2.106 nvidia-cusolver-cu12==11.4.5.107 \
        nvidia-cusparse-cu12==12.1.0.106 nvidia-nccl-cu12==2.20.5 nvidia-nvtx-cu12==12.1.105
    /work/.venv-torchtext/bin/python model/parity/make_golden.py

(PyPI's torch 2.3.0 is a CUDA build that refuses to import without the CUDA libraries, even on a
machine without a GPU.) Inputs: hand-written edge cases (punctuation, quotes, HTML line breaks,
unicode, whitespace, empty) plus the first ``FIXTURE_TEXTS`` texts of the committed AG_NEWS test
fixture.
"""

import csv
import json
from pathlib import Path

import torch
import torchtext
from torchtext.data.utils import get_tokenizer, ngrams_iterator

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "model" / "fixtures" / "ag_news_sample.csv"
OUT = Path(__file__).resolve().parent / "golden.json"
MAX_NGRAMS = 3
FIXTURE_TEXTS = 100

EDGE_CASES = [
    "",
    " ",
    "\t\n \r\n",
    "Hello, World!",
    "It's a \"quoted\" test, isn't it?",
    "'single quotes' and ''doubled'' and \"\"empty double\"\"",
    "line one<br />line two<br /><br />three",
    "UPPER<BR />CASE break and <br/> and <br> and < br /> variants",
    "quote inside a break: <br \"/> and <br\" />",
    "semi;colon:colon -- dash - hyphen_underscore",
    "(parentheses) [brackets] {braces} <angles>",
    "U.S. stocks fell 2.5% to $1,234.56 on Monday... really?!",
    "e-mail me@example.com #hashtag @handle http://x.org/a?b=c&d=e",
    "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, Wall Street's",
    "AT&amp;T #39;s quarter &lt;b&gt;bold&lt;/b&gt; \\backslash\\ continuation",
    "Ünïcödé ÇAFÉ naïve façade — “curly quotes” ‘single’ … ellipsis",
    "İstanbul ΣΟΦΟΣ ß ﬁ ligature Ǆ titlecase",
    "日本語のテキスト。中文，标点！",
    "emoji 😀 ok 👍🏽!!",
    "no\u00a0break\u2003em\u2028line\u2029para\u0085nel space",
    "\x1c\x1d\x1e\x1f control separators \x0b\x0c",
    "multiple     spaces\t\ttabs",
    "...",
    "?!?!",
    "\"\"\"",
    ";:;:",
    "a",
    "one two",
]


def fixture_texts() -> list[str]:
    with FIXTURE.open(newline="", encoding="utf-8") as handle:
        return [" ".join(record[1:]) for record in csv.reader(handle)][:FIXTURE_TEXTS]


def main() -> None:
    tokenize = get_tokenizer("basic_english")
    cases = []
    for text in EDGE_CASES + fixture_texts():
        tokens = tokenize(text)
        ngrams = {str(n): list(ngrams_iterator(tokens, n)) for n in range(2, MAX_NGRAMS + 1)}
        cases.append({"text": text, "tokens": tokens, "ngrams": ngrams})
    golden = {"generator": "model/parity/make_golden.py", "torch": torch.__version__,
              "torchtext": torchtext.__version__, "cases": cases}
    OUT.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT}: {len(cases)} cases (torchtext {torchtext.__version__})")


if __name__ == "__main__":
    main()
