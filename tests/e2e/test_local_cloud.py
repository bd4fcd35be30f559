"""End to end on a fresh local cloud: the user's Makefile workflow, from deploy to teardown.

The tests run in file order against one deployment: deploy, call the API, check A/B routing, auth,
data capture, the load test, a no-op redeploy, and teardown. The local cloud gets its own home
directory and ports, so a local cloud the developer is running is not touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from localcloud import urls

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "config.json").read_text())
CASES = CONFIG["load_test"]["cases"]
MAKE_TIMEOUT = 600

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("localcloud")
    env = dict(os.environ, LOCALCLOUD_HOME=str(home), LOCALCLOUD_PORT=str(urls.free_port_pair()))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        env.pop(var, None)
    old = dict(os.environ)
    os.environ.update(
        LOCALCLOUD_HOME=env["LOCALCLOUD_HOME"], LOCALCLOUD_PORT=env["LOCALCLOUD_PORT"]
    )
    yield env
    subprocess.run(
        [sys.executable, "-m", "localcloud", "down"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    os.environ.clear()
    os.environ.update(old)


def make(env, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT,
    )
    assert (
        result.returncode == 0
    ), f"make {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def deployed(cloud_env):
    started = time.monotonic()
    result = make(cloud_env, "deploy")
    return {"output": result.stdout, "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def ctx(deployed):
    from workflow.context import load_context

    return load_context("local", ROOT / "config.json", ROOT / "templates_out" / "manifest.json")


@pytest.fixture(scope="module")
def api(ctx):
    from workflow.outputs import api_access

    return api_access(ctx)


def post(url: str, body, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_deploy_creates_every_stack_with_every_template_resource(ctx, deployed):
    cfn = ctx.target.client("cloudformation")
    for spec in ctx.manifest.stacks:
        stack = cfn.describe_stacks(StackName=spec.stack_name)["Stacks"][0]
        assert stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), spec.stack_name
        resources = cfn.list_stack_resources(StackName=spec.stack_name)["StackResourceSummaries"]
        assert all(
            r["LogicalResourceId"] and r["ResourceType"] for r in resources
        ), f"{spec.stack_name}: skipped resources in {resources}"
        expected = json.loads(spec.template.read_text())["Resources"]
        assert {r["LogicalResourceId"] for r in resources} == set(expected), spec.stack_name


def test_the_commands_deploy_prints_work_as_printed_in_a_bare_shell(deployed, api, tmp_path):
    lines = deployed["output"].splitlines()
    (key_command,) = [line.removeprefix("API key: ") for line in lines
                      if line.startswith("API key: ")]
    (curl,) = [line for line in lines if line.startswith("curl ")]
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no AWS_* variable, no venv
    key = subprocess.run(["bash", "-c", key_command], env=bare, capture_output=True, text=True,
                         timeout=60)
    assert (key.returncode, key.stdout.strip()) == (0, api.key_value), key.stderr
    answer = subprocess.run(["bash", "-c", curl], env=bare, capture_output=True, text=True,
                            timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["label"] == CASES[0]["expected_label"]


def test_reference_sentences_get_their_labels(api):
    for case in CASES:
        status, body = post(api.url, {"sentence": case["sentence"]}, {"x-api-key": api.key_value})
        assert status == 200, body
        assert body["label"] == case["expected_label"], (case["id"], body)
        assert (
            body["success"] == "true"
            and body["MessageId"]
            and body["variant"] in ("Model-A", "Model-B")
        )


def test_both_variants_serve_by_weight_and_agree(api):
    served: Counter[str] = Counter()
    labels: dict[str, set[int]] = {}
    for i in range(200):
        case = CASES[i % len(CASES)]
        status, body = post(api.url, {"sentence": case["sentence"]}, {"x-api-key": api.key_value})
        assert status == 200, body
        served[body["variant"]] += 1
        labels.setdefault(case["id"], set()).add(body["label"])
    # Weights 1:1 -> each variant serves half; 200 draws put 4 standard deviations at about +-28.
    assert set(served) == {"Model-A", "Model-B"}
    assert 70 <= served["Model-A"] <= 130, served
    assert all(len(found) == 1 for found in labels.values()), labels


def test_batch_request_answers_in_order(api):
    sentences = [case["sentence"] for case in CASES]
    status, body = post(api.url, {"sentences": sentences}, {"x-api-key": api.key_value})
    assert status == 200, body
    assert [r["label"] for r in body["results"]] == [case["expected_label"] for case in CASES]


def test_requests_without_valid_credentials_are_refused(api):
    """In the predictor's error shape, through the stack's gateway responses."""
    for headers in ({}, {"x-api-key": "not-a-key"}):
        status, body = post(api.url, {"sentence": "hello"}, headers)
        assert status == 403 and body["MessageId"], body
        assert body["error"] == {"code": "ClientError", "message": "Forbidden"}
    status, body = post(api.url + "/nope", {"sentence": "hello"}, {"x-api-key": api.key_value})
    assert (status, body["error"]["code"]) == (403, "MissingAuthenticationToken"), body


def test_bad_input_gets_a_json_4xx(api):
    # refused by the API's request model, before the predictor runs
    for bad in (b"{not json", b'{"sentence": 5}', b'{"sentence": "a", "sentences": ["b"]}'):
        status, body = post(api.url, bad, {"x-api-key": api.key_value})
        assert status == 400 and body["MessageId"], body
        assert body["error"] == {"code": "InvalidRequest", "message": "Invalid request body"}
    # the model lets it through; the predictor refuses it
    status, body = post(api.url, {"sentence": "   "}, {"x-api-key": api.key_value})
    assert status == 400 and "empty" in body["error"]["message"].lower()


def test_data_capture_records_land_in_the_capture_bucket(ctx, api):
    from workflow.outputs import stack_outputs

    serving = stack_outputs(
        ctx.target.client("cloudformation"), ctx.manifest.stack("model-serving").stack_name
    )
    s3 = ctx.target.client("s3")
    keys: list[str] = []
    for _ in range(30):  # capture is uploaded in the background, about once a second
        listing = s3.list_objects_v2(Bucket=serving["CaptureBucketName"])
        keys = [o["Key"] for o in listing.get("Contents", [])]
        if keys:
            break
        time.sleep(0.5)
    assert keys, "no data-capture object after 15 s"
    endpoint = serving["EndpointName"]
    assert all(f"/{endpoint}/" in key and key.endswith(".jsonl") for key in keys), keys
    record = json.loads(
        s3.get_object(Bucket=serving["CaptureBucketName"], Key=keys[0])["Body"]
        .read()
        .decode()
        .splitlines()[0]
    )
    captured_input = record["captureData"]["endpointInput"]
    assert captured_input["encoding"] == "JSON" and "sentence" in json.loads(captured_input["data"])
    assert record["captureData"]["endpointOutput"]["observedContentType"].startswith(
        "application/json"
    )
    assert record["eventMetadata"]["inferenceId"]
    # Encrypted as the template says: SSE-KMS under the serving stack's key.
    stack = ctx.manifest.stack("model-serving").stack_name
    key_id = ctx.target.client("cloudformation").describe_stack_resource(
        StackName=stack, LogicalResourceId="ServingKey"
    )["StackResourceDetail"]["PhysicalResourceId"]
    head = s3.head_object(Bucket=serving["CaptureBucketName"], Key=keys[0])
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(f":key/{key_id}"), (head["SSEKMSKeyId"], key_id)


def test_load_test_completes_without_errors(cloud_env):
    result = make(cloud_env, "test-load", "DURATION=4", "RATE=5")
    report = json.loads((ROOT / "build" / "reports" / "load-test.json").read_text())
    assert report["totals"]["errors"] == 0 and report["totals"]["wrong_labels"] == 0, result.stdout
    assert report["totals"]["completed"] > 0
    assert (ROOT / "build" / "reports" / "latency-over-time.png").stat().st_size > 0
    assert (ROOT / "build" / "reports" / "latency-histogram.png").stat().st_size > 0
    assert "p99" in result.stdout


def test_second_deploy_changes_nothing(cloud_env, ctx):
    result = make(cloud_env, "deploy")
    # "[=] <stack>: no changes (0.9 s)" or "... deployed (...)", one per stack
    verdicts = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("[=] ") and line.endswith(" s)")
    ]
    assert len(verdicts) == len(ctx.manifest.stacks), result.stdout
    assert all(": no changes (" in line for line in verdicts), result.stdout


def test_teardown_leaves_nothing_behind(cloud_env, ctx):
    result = make(cloud_env, "teardown")
    assert "Kept: nothing" in result.stdout
    # As on AWS, the account keeps naming the logging role the api-hosting stack deleted.
    setting = ctx.target.client("apigateway").get_account()["cloudwatchRoleArn"]
    assert (
        f"Account setting: API Gateway's logging role in this account and region is still {setting}"
        in result.stdout
    ), result.stdout
    cfn = ctx.target.client("cloudformation")
    live = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []
    assert ctx.target.client("s3").list_buckets()["Buckets"] == []
    assert ctx.target.client("lambda").list_functions()["Functions"] == []
    assert ctx.target.client("sagemaker").list_endpoints()["Endpoints"] == []
