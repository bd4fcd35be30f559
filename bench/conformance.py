"""Conformance of packed model archives with the real SageMaker PyTorch serving stack.

    python -m bench.conformance [--models build/model-a.tar.gz build/model-b.tar.gz]

For each ``model.tar.gz`` (default: every configured model, ``build/<name>.tar.gz``): extract it,
serve it twice side by side -- on TorchServe under the SageMaker PyTorch inference toolkit
(``localcloud.torchserve`` in ``.venv-torchserve``) and on the project's own model server
(``localcloud.model_server``) -- with the container environment the Model resource sets, and send
both the same requests over HTTP:

* the load-test sentences of config.json give their expected labels;
* a JSON batch, a ``text/csv`` batch and a ``text/plain`` batch answer lists, in order, equal
  to the single answers;
* every bad input answers the 4xx status the handler contract defines (never a 500), with the
  handler's message first in the body.

A request passes when the real stack answers the contract's status, the project's server answers
the same, and 200 bodies agree. Prints a pass/fail table, writes
``build/reports/conformance.json`` and exits 1 on any failure. Servers are always stopped; the
whole run is bounded by ``--time-limit``.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from localcloud import torchserve as launcher
from localcloud.processes import terminate_group
from localcloud.sagemaker import model_server_argv

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "build" / "reports" / "conformance.json"
LOG_DIR = ROOT / "build" / "reports" / "conformance"
HOST = "127.0.0.1"
JSON, CSV, TEXT = "application/json", "text/csv", "text/plain"
PROBABILITY_TOLERANCE = 1e-4  # outputs are rounded to 4 decimals; batching may move the last bit
REQUEST_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
# sagemaker-inference's Transformer decodes these content types (exact match) before input_fn.
TOOLKIT_DECODES = (
    "the toolkit decodes application/json and text/csv bodies as UTF-8 before input_fn; "
    "a decode error becomes its generic 500 (sagemaker-inference 1.10.1 transformer.py)"
)


@dataclass(frozen=True)
class Case:
    """One request and what the handler contract says it must answer."""

    id: str
    body: bytes
    content_type: str | None
    accept: str | None
    status: int
    label: int | None = None  # expected label of a single reference sentence
    batch_of: tuple[str, ...] = ()  # single cases whose answers this batch must repeat, in order
    same_as: str | None = None  # the single case this variant of a request must answer like
    container_status: int | None = None  # where the real stack is known to differ...
    difference: str = ""  # ...and why


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class CaseResult:
    case: Case
    builtin: Answer
    torchserve: Answer
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _json(document) -> bytes:
    return json.dumps(document).encode()


def build_cases(
    sentences: list[tuple[str, str, int]], max_batch_size: int, max_text_chars: int
) -> list[Case]:
    """The conformance requests for ``(case id, sentence, expected label)`` reference sentences."""
    if not sentences:
        raise ValueError("no reference sentences (load_test.cases is empty)")
    ids = tuple(case_id for case_id, _, _ in sentences)
    texts = [text for _, text, _ in sentences]
    csv_body = io.StringIO()
    csv.writer(csv_body, lineterminator="\n").writerows([text] for text in texts)
    first, single = texts[0], _json({"sentence": texts[0]})

    def bad(case_id: str, body: bytes, status: int, content_type=JSON, accept=JSON, **extra):
        return Case(case_id, body, content_type, accept, status, **extra)

    return [
        *(
            Case(case_id, _json({"sentence": text}), JSON, JSON, 200, label=label)
            for case_id, text, label in sentences
        ),
        Case("batch-json", _json({"sentences": texts}), JSON, JSON, 200, batch_of=ids),
        Case("batch-csv", csv_body.getvalue().encode(), CSV, JSON, 200, batch_of=ids),
        Case("batch-text", "\n".join(texts).encode(), TEXT, JSON, 200, batch_of=ids),
        Case("json-charset", single, f"{JSON}; charset=utf-8", JSON, 200, same_as=ids[0]),
        Case("no-content-type", single, None, JSON, 200, same_as=ids[0]),
        Case("accept-any", single, JSON, "*/*", 200, same_as=ids[0]),
        bad("invalid-json", b'{"sentence": "unterminated', 400),
        bad("not-an-object", _json([first]), 400),
        bad("sentence-not-string", _json({"sentence": 42}), 400),
        bad("sentences-not-list", _json({"sentences": first}), 400),
        bad("sentences-item-not-string", _json({"sentences": [first, None]}), 400),
        bad("missing-field", _json({"text": first}), 400),
        bad("both-fields", _json({"sentence": first, "sentences": [first]}), 400),
        bad("empty-text", _json({"sentence": ""}), 400),
        bad("whitespace-text", _json({"sentence": " \t "}), 400),
        bad("empty-batch", _json({"sentences": []}), 400),
        bad("blank-line-in-text-batch", f"{first}\n\n{first}".encode(), 400, TEXT),
        bad("batch-over-limit", _json({"sentences": [first] * (max_batch_size + 1)}), 413),
        bad("text-over-limit", _json({"sentence": "a" * (max_text_chars + 1)}), 413),
        bad("unsupported-content-type", b"<sentence>x</sentence>", 415, "application/xml"),
        bad("unsupported-accept", single, 406, accept="text/html"),
        bad(
            "invalid-utf8",
            b'{"sentence": "caf\xe9"}',
            400,
            container_status=500,
            difference=TOOLKIT_DECODES,
        ),
    ]


def _same_results(a, b) -> bool:
    """Equal answers, with probabilities compared to the rounding of the output."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_results(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_results(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isclose(a, b, abs_tol=PROBABILITY_TOLERANCE)
        )
    return a == b


def _error_message(answer: Answer) -> str | None:
    """The handler's message in a project-server error body, ``{"error": {"message": ...}}``."""
    try:
        return answer.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None


def _check_result(case: Case, builtin: Answer, torchserve: Answer, singles: dict[str, Answer]):
    """Problems with two 200 answers: JSON, equal, the expected label, batches = singles."""
    if torchserve.content_type.split(";")[0].strip() != JSON:
        return [f"torchserve answered Content-Type {torchserve.content_type!r}"]
    documents = {}
    for server, answer in (("the project's model server", builtin), ("torchserve", torchserve)):
        try:
            documents[server] = answer.json()
        except ValueError:
            return [f"{server} answered 200 with a body that is not JSON: {answer.body[:80]!r}"]
    ours, theirs = documents.values()
    problems = []
    if not _same_results(ours, theirs):
        problems.append(f"answers differ: torchserve {theirs} vs model server {ours}")
    if case.label is not None:
        label = theirs.get("label") if isinstance(theirs, dict) else theirs
        if label != case.label:
            problems.append(f"expected label {case.label}, got {label}")
    if case.batch_of:
        expected = [singles[case_id].json() for case_id in case.batch_of]
        if not _same_results(theirs, expected):
            problems.append(f"batch answer is not the list of single answers in order: {theirs}")
    if case.same_as and not _same_results(theirs, singles[case.same_as].json()):
        problems.append(f"answer differs from the plain single request: {theirs}")
    return problems


def _check_error(builtin: Answer, torchserve: Answer) -> list[str]:
    """The toolkit answers ``message + "\n" + traceback``: the handler's message must lead."""
    message = _error_message(builtin)
    if not message:
        return [f"the project's model server error body has no message: {builtin.body[:120]!r}"]
    first_line = torchserve.body.decode("utf-8", "replace").split("\n", 1)[0]
    if first_line != message:
        return [
            f"torchserve error body does not start with the handler's message {message!r}: "
            f"{first_line[:120]!r}"
        ]
    return []


def check_case(
    case: Case, builtin: Answer, torchserve: Answer, singles: dict[str, Answer]
) -> list[str]:
    """What is wrong with the two servers' answers to ``case`` (empty: it passes).

    ``singles`` are the real stack's answers to the single-sentence cases, which batches and
    variants of a single request must repeat.
    """
    problems = []
    want = case.container_status or case.status
    if torchserve.status != want:
        problems.append(f"torchserve answered {torchserve.status}, expected {want}")
    if builtin.status != case.status:
        problems.append(
            f"the project's model server answered {builtin.status}, the contract says {case.status}"
        )
    if problems:
        return problems
    if case.status == 200:
        return _check_result(case, builtin, torchserve, singles)
    if case.container_status is None:
        return _check_error(builtin, torchserve)
    return []


class Deadline:
    """The time left of the whole run; every wait is cut to it."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        return max(0.0, min(cap, self.end - time.monotonic()))


def post(port: int, case: Case, timeout: float) -> Answer:
    """One ``POST /invocations`` on a fresh connection."""
    headers = {"Content-Length": str(len(case.body))}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    if case.accept:
        headers["Accept"] = case.accept
    connection = http.client.HTTPConnection(HOST, port, timeout=max(timeout, 0.1))
    try:
        connection.putrequest("POST", "/invocations", skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(case.body)
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()


def container_environment(max_batch_size: int, max_text_chars: int, workers: int) -> dict[str, str]:
    """The environment the Model resource gives the container, over this process's."""
    env = dict(os.environ)
    env.update(
        {
            "MODEL_MAX_BATCH_SIZE": str(max_batch_size),
            "MODEL_MAX_TEXT_CHARS": str(max_text_chars),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        }
    )
    return env


class Server:
    """A model server subprocess in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str], log_path: Path):
        self.name, self.port, self.log_path = name, port, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.monotonic()
        self.ready_after: float | None = None

    def wait_ready(self, probe: Case, deadline: Deadline, timeout: float) -> None:
        """Until a valid request answers 200: /ping answers before the model has loaded."""
        limit = Deadline(timeout)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode} "
                    f"before it was ready:\n{self.log_tail()}"
                )
            try:
                if post(self.port, probe, deadline.left(limit.left(2.0))).status == 200:
                    self.ready_after = time.monotonic() - self.started
                    return
            except (OSError, http.client.HTTPException):
                pass
            if not deadline.left(limit.left(1.0)):
                raise RuntimeError(
                    f"{self.name} was not ready after {time.monotonic() - self.started:.1f} s:"
                    f"\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the whole group (launcher, JVM, workers); SIGKILL what is left after a while."""
        terminate_group(self.process.pid, STOP_TIMEOUT, leader=self.process)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def extract(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` as SageMaker does; ``data`` filter: no links or paths out of ``into``."""
    model_dir = into / "model"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(model_dir, filter="data")
    except tarfile.TarError as exc:
        raise ValueError(f"{archive}: not a readable model.tar.gz: {exc}") from None
    if not (model_dir / "code" / "inference.py").is_file():
        raise ValueError(f"{archive}: no code/inference.py in the archive")
    return model_dir


def run_model(
    archive: Path,
    cases: list[Case],
    env: dict[str, str],
    torchserve_python: Path,
    deadline: Deadline,
    startup_timeout: float,
) -> tuple[list[CaseResult], dict]:
    """Serve ``archive`` on both stacks, send every case to both, compare."""
    name = archive.name.removesuffix(".tar.gz")
    with tempfile.TemporaryDirectory(prefix=f"conformance-{name}-") as tmp:
        model_dir = extract(archive, Path(tmp))
        # Launched exactly as the local cloud launches them.
        commands = {
            "torchserve": lambda port: launcher.server_argv(model_dir, port, torchserve_python),
            "model server": lambda port: model_server_argv(model_dir, port),
        }
        servers = {}
        try:
            # One after the other, so each startup time is measured without the other competing.
            for key, command in commands.items():
                port = launcher.free_loopback_ports(1)[0]
                servers[key] = Server(
                    key, command(port), port, env, LOG_DIR / f"{name}-{key.replace(' ', '-')}.log"
                )
                servers[key].wait_ready(cases[0], deadline, startup_timeout)
            answers = {
                key: {
                    case.id: post(server.port, case, deadline.left(REQUEST_TIMEOUT))
                    for case in cases
                }
                for key, server in servers.items()
            }
        finally:
            for server in servers.values():
                server.stop()
    singles = {
        case.id: answers["torchserve"][case.id]
        for case in cases
        if case.label is not None and answers["torchserve"][case.id].status == 200
    }
    results = []
    for case in cases:
        builtin, torchserve = answers["model server"][case.id], answers["torchserve"][case.id]
        try:
            problems = check_case(case, builtin, torchserve, singles)
        except KeyError as missing:
            problems = [f"single case {missing} failed, so this batch cannot be compared"]
        results.append(CaseResult(case, builtin, torchserve, problems))
    timings = {server.name: round(server.ready_after, 2) for server in servers.values()}
    return results, timings


def format_table(rows: list[tuple[str, CaseResult]]) -> str:
    header = ("model", "case", "expected", "model server", "torchserve", "result")
    lines = [header]
    for model, result in rows:
        case = result.case
        expected = str(case.status) + (
            f" (torchserve {case.container_status})" if case.container_status else ""
        )
        lines.append(
            (
                model,
                case.id,
                expected,
                str(result.builtin.status),
                str(result.torchserve.status),
                "pass" if result.passed else "FAIL",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    ]
    out.insert(1, "  ".join("-" * width for width in widths))
    for model, result in rows:
        out += [f"  {model} {result.case.id}: {problem}" for problem in result.problems]
        if result.case.difference and result.passed:
            out.append(f"  {model} {result.case.id}: known difference: {result.case.difference}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.conformance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", type=Path, default=ROOT / "config.json")
    parser.add_argument(
        "--models",
        type=Path,
        nargs="+",
        help="packed model archives (default: build/<name>.tar.gz for every configured model)",
    )
    parser.add_argument(
        "--torchserve-python",
        type=Path,
        default=launcher.TORCHSERVE_PYTHON,
        help="interpreter of the TorchServe virtual environment",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds each server may take to answer its first request",
    )
    parser.add_argument("--time-limit", type=float, default=170.0, help="seconds for the whole run")
    return parser.parse_args(argv)


class UsageError(Exception):
    """The run cannot start: bad config, missing archives or a missing virtual environment."""


def load_inputs(args: argparse.Namespace):
    """(cases, archives, limits, workers per model name) from the config and the arguments."""
    from generator import config as project_config

    try:
        cfg = project_config.load(args.config)
    except project_config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    serving = cfg.model_serving
    workers = {model.name: model.server_workers for model in serving.models}
    archives = args.models or [ROOT / "build" / f"{name}.tar.gz" for name in workers]
    missing = [str(path) for path in archives if not path.is_file()]
    if missing:
        raise UsageError(f"no such archive: {', '.join(missing)} (build them with `make pack`)")
    if not args.torchserve_python.is_file():
        raise UsageError(
            f"{args.torchserve_python} does not exist; `make conformance` creates that virtual "
            "environment"
        )
    cases = build_cases(
        [(c.id, c.sentence, c.expected_label) for c in cfg.load_test.cases],
        serving.max_batch_size,
        serving.max_text_chars,
    )
    return cases, archives, (serving.max_batch_size, serving.max_text_chars), workers


def _report_entry(results: list[CaseResult], timings: dict) -> dict:
    return {
        "ready_after_seconds": timings,
        "cases": {
            r.case.id: {
                "expected": r.case.container_status or r.case.status,
                "torchserve": r.torchserve.status,
                "model_server": r.builtin.status,
                "problems": r.problems,
            }
            for r in results
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cases, archives, limits, workers = load_inputs(args)
    except (UsageError, ValueError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    deadline = Deadline(args.time_limit)
    rows, report, failed = [], {"models": {}}, False
    for archive in archives:
        name = archive.name.removesuffix(".tar.gz")
        env = container_environment(*limits, workers.get(name, 1))
        print(
            f"[conformance] {name}: {archive} on TorchServe + toolkit and on the project's model "
            f"server, {env['SAGEMAKER_MODEL_SERVER_WORKERS']} worker(s) each",
            flush=True,
        )
        try:
            results, timings = run_model(
                archive, cases, env, args.torchserve_python, deadline, args.startup_timeout
            )
        except (RuntimeError, ValueError, OSError, http.client.HTTPException) as exc:
            print(f"[conformance] {name}: FAILED: {exc}", file=sys.stderr)
            report["models"][name] = {"error": str(exc)}
            failed = True
            continue
        print(f"[conformance] {name}: first 200 after {timings} s", flush=True)
        rows += [(name, result) for result in results]
        failed |= not all(result.passed for result in results)
        report["models"][name] = _report_entry(results, timings)
    if rows:
        print(format_table(rows))
    passed = sum(result.passed for _, result in rows)
    print(f"[conformance] {passed}/{len(rows)} checks passed" + (" -- FAILED" if failed else ""))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[conformance] report {REPORT.relative_to(ROOT)}, logs {LOG_DIR.relative_to(ROOT)}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
