"""The conformance run's request set, its verdicts on answers, its table and its process handling.

The real comparison against TorchServe is `make conformance`; these tests feed the checks
hand-made answers, so every way of failing is exercised.
"""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from bench import conformance
from bench.conformance import Answer
from localcloud import torchserve as launcher

SENTENCES = [
    ("tc-001", "Kennedy was shot dead in Dallas, and the president spoke.", 1),
    ("tc-002", "Baseball playoffs drew record crowds.", 2),
]
LABELS = ("World", "Sports", "Business", "Sci/Tech")


@pytest.fixture
def cases():
    return {case.id: case for case in conformance.build_cases(SENTENCES, 5, 50)}


def result(label: int, probabilities=(0.7, 0.1, 0.1, 0.1)) -> dict:
    return {
        "success": "true",
        "label": label,
        "labelName": LABELS[label - 1],
        "probabilities": dict(zip(LABELS, probabilities)),
    }


def ok(document) -> Answer:
    return Answer(200, "application/json", json.dumps(document).encode())


def builtin_error(status: int, message: str) -> Answer:
    return Answer(
        status,
        "application/json",
        json.dumps({"error": {"code": "InvalidInput", "message": message}}).encode(),
    )


def toolkit_error(status: int, message: str) -> Answer:
    return Answer(status, "", f"{message}\nTraceback (most recent call last):\n  ...".encode())


SINGLES = {"tc-001": ok(result(1)), "tc-002": ok(result(2, (0.1, 0.6, 0.2, 0.1)))}


def test_build_cases_covers_the_contract(cases):
    assert len(cases) == len(conformance.build_cases(SENTENCES, 5, 50))  # ids are unique
    assert cases["tc-001"].label == 1 and cases["tc-002"].label == 2
    for case_id in ("batch-json", "batch-csv", "batch-text"):
        assert cases[case_id].batch_of == ("tc-001", "tc-002") and cases[case_id].status == 200
    statuses = {case.status for case in cases.values() if case.status != 200}
    assert statuses == {400, 406, 413, 415}
    assert len(json.loads(cases["batch-over-limit"].body)["sentences"]) == 6
    assert len(json.loads(cases["text-over-limit"].body)["sentence"]) == 51
    assert cases["unsupported-content-type"].content_type == "application/xml"
    assert cases["unsupported-accept"].accept == "text/html"
    assert cases["no-content-type"].content_type is None


def test_csv_batch_round_trips_sentences_with_commas(cases):
    rows = list(csv.reader(io.StringIO(cases["batch-csv"].body.decode())))
    assert rows == [[SENTENCES[0][1]], [SENTENCES[1][1]]]


def test_only_the_utf8_case_expects_the_toolkit_to_differ(cases):
    differing = {case.id: case.container_status for case in cases.values() if case.container_status}
    assert differing == {"invalid-utf8": 500}
    with pytest.raises(UnicodeDecodeError):
        cases["invalid-utf8"].body.decode("utf-8")


def test_build_cases_needs_reference_sentences():
    with pytest.raises(ValueError, match="load_test.cases"):
        conformance.build_cases([], 5, 50)


def test_matching_single_answers_pass(cases):
    assert conformance.check_case(cases["tc-001"], ok(result(1)), ok(result(1)), SINGLES) == []


def test_probabilities_are_compared_to_the_output_rounding(cases):
    close = ok(result(1, (0.70005, 0.1, 0.1, 0.1)))
    far = ok(result(1, (0.7002, 0.1, 0.1, 0.1)))
    assert conformance.check_case(cases["tc-001"], ok(result(1)), close, SINGLES) == []
    assert (
        "answers differ" in conformance.check_case(cases["tc-001"], ok(result(1)), far, SINGLES)[0]
    )


def test_wrong_label_fails_even_when_both_servers_agree(cases):
    problems = conformance.check_case(cases["tc-001"], ok(result(3)), ok(result(3)), SINGLES)
    assert problems == ["expected label 1, got 3"]


def test_batch_must_repeat_the_singles_in_order(cases):
    in_order = [result(1), result(2, (0.1, 0.6, 0.2, 0.1))]
    assert conformance.check_case(cases["batch-csv"], ok(in_order), ok(in_order), SINGLES) == []
    swapped = in_order[::-1]
    problems = conformance.check_case(cases["batch-csv"], ok(swapped), ok(swapped), SINGLES)
    assert problems and "not the list of single answers in order" in problems[0]


def test_single_variants_must_repeat_the_plain_answer(cases):
    assert conformance.check_case(cases["accept-any"], ok(result(1)), ok(result(1)), SINGLES) == []
    problems = conformance.check_case(cases["accept-any"], ok(result(2)), ok(result(2)), SINGLES)
    assert problems and "differs from the plain single request" in problems[0]


def test_a_200_must_have_a_json_content_type(cases):
    text = Answer(200, "text/plain", json.dumps(result(1)).encode())
    problems = conformance.check_case(cases["tc-001"], ok(result(1)), text, SINGLES)
    assert problems == ["torchserve answered Content-Type 'text/plain'"]


def test_a_200_must_be_json(cases):
    problems = conformance.check_case(
        cases["tc-001"], ok(result(1)), Answer(200, "application/json", b"label 1"), SINGLES
    )
    assert problems == ["torchserve answered 200 with a body that is not JSON: b'label 1'"]


def test_extract_refuses_what_is_not_a_model_archive(tmp_path):
    broken = tmp_path / "model.tar.gz"
    broken.write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable model.tar.gz"):
        conformance.extract(broken, tmp_path)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ValueError, match="no code/inference.py"):
        conformance.extract(empty, tmp_path / "out")


def test_bad_input_passes_with_the_handler_status_and_message(cases):
    message = "sentence is empty or whitespace only"
    assert (
        conformance.check_case(
            cases["empty-text"], builtin_error(400, message), toolkit_error(400, message), SINGLES
        )
        == []
    )


def test_a_500_for_bad_input_fails(cases):
    message = "sentence is empty or whitespace only"
    problems = conformance.check_case(
        cases["empty-text"], builtin_error(400, message), toolkit_error(500, "boom"), SINGLES
    )
    assert problems == ["torchserve answered 500, expected 400"]


def test_the_project_server_must_follow_the_contract_too(cases):
    problems = conformance.check_case(
        cases["batch-over-limit"],
        builtin_error(400, "too many"),
        toolkit_error(413, "too many"),
        SINGLES,
    )
    assert problems == ["the project's model server answered 400, the contract says 413"]


def test_the_toolkit_body_must_start_with_the_handler_message(cases):
    problems = conformance.check_case(
        cases["unsupported-accept"],
        builtin_error(406, "use JSON"),
        toolkit_error(406, "something else"),
        SINGLES,
    )
    assert problems and "does not start with the handler's message 'use JSON'" in problems[0]


def test_known_difference_is_checked_both_ways(cases):
    case = cases["invalid-utf8"]
    ours = builtin_error(400, "request body is not valid UTF-8")
    assert conformance.check_case(case, ours, toolkit_error(500, "'utf-8' codec"), SINGLES) == []
    # Should the toolkit ever answer the handler's status, the check says so.
    assert conformance.check_case(case, ours, toolkit_error(400, "x"), SINGLES) == [
        "torchserve answered 400, expected 500"
    ]


def test_format_table_lists_failures_and_known_differences(cases):
    rows = [
        ("model-a", conformance.CaseResult(cases["tc-001"], ok(result(1)), ok(result(1)))),
        (
            "model-a",
            conformance.CaseResult(
                cases["empty-text"],
                builtin_error(400, "m"),
                toolkit_error(500, "x"),
                ["torchserve answered 500"],
            ),
        ),
        (
            "model-a",
            conformance.CaseResult(
                cases["invalid-utf8"], builtin_error(400, "m"), toolkit_error(500, "x")
            ),
        ),
    ]
    table = conformance.format_table(rows).splitlines()
    assert table[0].split() == [
        "model",
        "case",
        "expected",
        "model",
        "server",
        "torchserve",
        "result",
    ]
    assert table[2].split() == ["model-a", "tc-001", "200", "200", "200", "pass"]
    assert table[3].split() == ["model-a", "empty-text", "400", "400", "500", "FAIL"]
    assert table[4].split()[:3] == ["model-a", "invalid-utf8", "400"] and table[4].endswith("pass")
    assert "  model-a empty-text: torchserve answered 500" in table
    assert any(line.startswith("  model-a invalid-utf8: known difference") for line in table)


def test_container_environment_is_what_the_model_resource_sets():
    env = conformance.container_environment(64, 5000, 2)
    assert (
        env["MODEL_MAX_BATCH_SIZE"],
        env["MODEL_MAX_TEXT_CHARS"],
        env["SAGEMAKER_MODEL_SERVER_WORKERS"],
    ) == ("64", "5000", "2")
    assert env["PATH"] == os.environ["PATH"]


def test_deadline_caps_every_wait():
    deadline = conformance.Deadline(5.0)
    assert 4.0 < deadline.left(60.0) <= 5.0
    assert deadline.left(1.0) == 1.0
    assert conformance.Deadline(-1.0).left(10.0) == 0.0


def _server(tmp_path, code: str) -> conformance.Server:
    port = launcher.free_loopback_ports(1)[0]
    return conformance.Server(
        "probe", [sys.executable, "-c", code], port, dict(os.environ), tmp_path / "server.log"
    )


def test_a_server_that_dies_is_reported_with_its_log(tmp_path, cases):
    server = _server(tmp_path, "import sys; print('cannot load model.pth'); sys.exit(3)")
    with pytest.raises(
        RuntimeError, match=r"exited with status 3 before it was ready(.|\n)*cannot load"
    ):
        server.wait_ready(cases["tc-001"], conformance.Deadline(30), 30)


def test_a_server_that_never_answers_times_out(tmp_path, cases):
    server = _server(tmp_path, "import time; time.sleep(60)")
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="was not ready after"):
            server.wait_ready(cases["tc-001"], conformance.Deadline(30), 0.5)
        assert time.monotonic() - started < 5
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_stop_ends_the_whole_process_group(tmp_path):
    # The leader starts a child that outlives it, as TorchServe's JVM outlives its launcher.
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    server = _server(tmp_path, code)
    deadline = time.monotonic() + 10
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    server.stop()
    assert server.process.poll() is not None
    state = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(child)], capture_output=True, text=True
    ).stdout
    assert state.strip() in ("", "Z")  # gone, or a zombie waiting for init to reap it
