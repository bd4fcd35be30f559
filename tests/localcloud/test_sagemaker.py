"""The SageMaker runtime: real model servers behind InvokeEndpoint, checked with boto3's client."""

import asyncio
import io
import json
import logging
import os
import signal
import tarfile
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import compat
from localcloud.metrics import MetricsSink
from localcloud.processes import READY, PidRegistry
from localcloud.sagemaker import SageMakerRuntime, extract_archive, install_moto_hooks
from workflow.archive import tar_gz_bytes

REGION, ACCOUNT = "us-east-1", "123456789012"
ARTIFACTS, CAPTURE = "artifacts", "capture"
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=60)

HANDLER = """
    import json, os, time

    class Refused(Exception):
        def __init__(self, status, message):
            super().__init__(message)
            self.status_code, self.message = status, message

    def model_fn(model_dir):
        time.sleep(float(os.environ.get("LOAD_SECONDS", "0")))  # a model that loads slowly
        with open(os.path.join(model_dir, "tag.txt")) as fh:
            return fh.read().strip()

    def input_fn(body, content_type):
        data = json.loads(body)
        if "status" in data:
            raise Refused(data["status"], f"refused with {data['status']}")
        return data

    def predict_fn(data, model):
        if data.get("crash"):
            os._exit(1)
        if data.get("explode"):
            raise RuntimeError("secret")
        return {"model": model, "env": os.environ.get("MODEL_TAG"), "echo": data}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


def model_archive(tmp_path, tag):
    root = tmp_path / f"src-{tag}"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(textwrap.dedent(HANDLER))
    (root / "tag.txt").write_text(tag)
    return tar_gz_bytes(
        {"code/inference.py": root / "code/inference.py", "tag.txt": root / "tag.txt"}
    )


def broken_archive(tmp_path):
    """A model archive whose model_fn raises: its server never becomes ready."""
    broken = HANDLER.replace(
        'with open(os.path.join(model_dir, "tag.txt")) as fh:',
        "raise RuntimeError('corrupt weights')\n        with open(model_dir) as fh:",
    )
    root = tmp_path / "broken"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(textwrap.dedent(broken))
    return tar_gz_bytes({"code/inference.py": root / "code/inference.py"})


def wait_until(condition, timeout=30, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class HttpFront:
    """A minimal HTTP/1.1 front for ``runtime.handle``, standing in for the data-plane gateway."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.connections = {}

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()
        tasks = list(self.connections)
        for writer in self.connections.values():
            writer.close()  # the client's readline() sees EOF and the task ends
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, reader, writer):
        self.connections[asyncio.current_task()] = writer
        try:
            while line := await reader.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers = []
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers.append((name.strip(), value.strip()))
                length = int({k.lower(): v for k, v in headers}.get("content-length", 0))
                body = await reader.readexactly(length)
                status, out_headers, out_body = await self.runtime.handle(
                    method, target, headers, body
                )
                head = f"HTTP/1.1 {status} Status\r\nContent-Length: {len(out_body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in out_headers.items())
                writer.write(head.encode() + b"\r\n" + out_body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.connections.pop(asyncio.current_task(), None)


class Cloud:
    """moto (in-process) plus the runtime behind a local HTTP port, and deploy helpers."""

    def __init__(self, tmp_path, runtime, port, sink, registry):
        self.tmp_path, self.runtime, self.sink, self.registry = tmp_path, runtime, sink, registry
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.client = boto3.client(
            "sagemaker-runtime",
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{port}",
            config=NO_RETRIES,
        )
        self.s3.create_bucket(Bucket=ARTIFACTS)
        self.s3.create_bucket(Bucket=CAPTURE)

    def model(self, name, tag, env=None, archive=None):
        key = f"models/{name}/model.tar.gz"
        self.s3.put_object(
            Bucket=ARTIFACTS, Key=key, Body=archive or model_archive(self.tmp_path, tag)
        )
        self.sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm",
            PrimaryContainer={
                "Image": "pytorch-inference:latest",
                "ModelDataUrl": f"s3://{ARTIFACTS}/{key}",
                "Environment": env or {},
            },
        )

    def endpoint(self, name, variants, capture_percentage=None, config_name=None):
        """``variants``: {variant name: (model name, weight)}."""
        config_name = config_name or f"{name}-config"
        self.endpoint_config(config_name, variants, capture_percentage)
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name)

    def endpoint_config(self, config_name, variants, capture_percentage=None):
        config = {
            "EndpointConfigName": config_name,
            "ProductionVariants": [
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.c5.large",
                    "InitialVariantWeight": weight,
                }
                for variant, (model, weight) in variants.items()
            ],
        }
        if capture_percentage is not None:
            config["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": capture_percentage,
                "DestinationS3Uri": f"s3://{CAPTURE}/data-capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
            }
        self.sagemaker.create_endpoint_config(**config)

    def update_endpoint(self, name, config_name):
        """What CloudFormation does to an Endpoint whose EndpointConfigName changed (with
        compat's fix_sagemaker_endpoint_update, as in the daemon)."""
        from moto.sagemaker.models import FakeEndpoint, sagemaker_backends

        FakeEndpoint.update_from_cloudformation_json(
            sagemaker_backends[ACCOUNT][REGION].endpoints[name],
            name,
            {"Properties": {"EndpointName": name, "EndpointConfigName": config_name}},
            ACCOUNT,
            REGION,
        )

    def status(self, name):
        return self.sagemaker.describe_endpoint(EndpointName=name)

    def invoke(self, endpoint, payload, **kwargs):
        response = self.client.invoke_endpoint(
            EndpointName=endpoint,
            Body=json.dumps(payload),
            ContentType="application/json",
            Accept="application/json",
            **kwargs,
        )
        return response, json.loads(response["Body"].read())

    def wait_servers(self, endpoint, count, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            servers = [s for k, s in self.runtime.servers().items() if k[2] == endpoint]
            if len(servers) == count and all(s.process.state == READY for s in servers):
                return servers
            time.sleep(0.05)
        raise AssertionError(f"{endpoint}: {count} ready model servers expected")


class Invoking:
    """Invokes an endpoint back to back in a thread, as a load test does; ``results`` holds
    (model tag or error code, seconds) per call."""

    def __init__(self, cloud, endpoint):
        self.cloud, self.endpoint, self.results = cloud, endpoint, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                outcome = self.cloud.invoke(self.endpoint, {})[1]["model"]
            except ClientError as exc:
                outcome = exc.response["Error"]["Code"]
            self.results.append((outcome, time.monotonic() - started))

    def wait_for(self, calls):
        """Wait for ``calls`` more results."""
        goal = len(self.results) + calls
        wait_until(lambda: len(self.results) >= goal, what=f"{calls} more invocations")


@pytest.fixture
def cloud(tmp_path, aws, loop_thread):
    sink = MetricsSink()
    sink.configure(ACCOUNT, REGION)
    registry = PidRegistry(tmp_path / "children.json")
    runtime = SageMakerRuntime(tmp_path / "state", sink, registry=registry, ready_wait=20)
    compat.apply()  # as the daemon does: CloudFormation updates an Endpoint in place
    install_moto_hooks(runtime)
    loop_thread.run(runtime.start())
    front = HttpFront(runtime)
    port = loop_thread.run(front.start())
    yield Cloud(tmp_path, runtime, port, sink, registry)
    loop_thread.run(front.stop())
    loop_thread.run(runtime.close())
    assert registry.entries() == {}, "a model server outlived the runtime"


def metric_sums(cloud, endpoint, variant, names):
    cloud.sink.flush()
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.now(timezone.utc)
    sums = {}
    for name in names:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=name,
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": variant},
            ],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=2),
            Period=60,
            Statistics=["Sum", "SampleCount"],
        )["Datapoints"]
        sums[name] = (sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points))
    return sums


def test_servers_start_with_the_endpoint_and_answer_like_aws(cloud):
    cloud.model("model-a", "weights-a", env={"MODEL_TAG": "from-environment"})
    cloud.endpoint("Classifier", {"Model-A": ("model-a", 1)})
    [server] = cloud.wait_servers("Classifier", 1)  # started by CreateEndpoint, before any call
    assert (cloud.tmp_path / "state" / "models" / server.archive_sha256 / "tag.txt").is_file()

    response, body = cloud.invoke(
        "Classifier",
        {"sentence": "hello"},
        InferenceId="inference-1",
        CustomAttributes="trace=1",
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "Model-A"
    assert body == {"model": "weights-a", "env": "from-environment", "echo": {"sentence": "hello"}}


def test_errors_reach_boto3_as_aws_shapes_them(cloud):
    cloud.model("model-a", "weights-a")
    cloud.endpoint("Classifier", {"Model-A": ("model-a", 1)})

    with pytest.raises(ClientError) as missing:
        cloud.invoke("NoSuchEndpoint", {})
    error = missing.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == f"Endpoint NoSuchEndpoint of account {ACCOUNT} not found."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400

    with pytest.raises(ClientError) as refused:
        cloud.invoke("Classifier", {"status": 415})
    error = refused.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 415
    assert json.loads(error["OriginalMessage"]) == {
        "error": {"code": "UnsupportedMediaType", "message": "refused with 415"}
    }
    assert error["Error"]["Message"].startswith("Received client error (415) from primary")
    assert error["LogStreamArn"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/Classifier"
    )

    with pytest.raises(ClientError) as failed:
        cloud.invoke("Classifier", {"explode": True})
    error = failed.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 500
    assert "secret" not in error["OriginalMessage"]

    with pytest.raises(ClientError) as variant:
        cloud.invoke("Classifier", {}, TargetVariant="Model-Z")
    assert variant.value.response["Error"]["Code"] == "ValidationError"
    assert "Variant Model-Z not found for endpoint Classifier" in str(variant.value)

    sums = metric_sums(
        cloud,
        "Classifier",
        "Model-A",
        ["Invocations", "Invocation4XXErrors", "Invocation5XXErrors"],
    )
    assert sums["Invocations"] == (2, 2)
    assert sums["Invocation4XXErrors"][0] == 1 and sums["Invocation5XXErrors"][0] == 1


def test_routing_follows_current_weights_and_target_variant(cloud):
    cloud.model("model-a", "weights-a")
    cloud.model("model-b", "weights-b")
    cloud.endpoint("AB", {"Model-A": ("model-a", 3), "Model-B": ("model-b", 1)})
    cloud.wait_servers("AB", 2)
    counts = {"Model-A": 0, "Model-B": 0}
    for _ in range(400):
        response, body = cloud.invoke("AB", {})
        counts[response["InvokedProductionVariant"]] += 1
        assert (
            body["model"]
            == {"Model-A": "weights-a", "Model-B": "weights-b"}[
                response["InvokedProductionVariant"]
            ]
        )
    assert 0.65 <= counts["Model-A"] / 400 <= 0.85, counts

    for _ in range(20):
        response, body = cloud.invoke("AB", {}, TargetVariant="Model-B")
        assert response["InvokedProductionVariant"] == "Model-B" and body["model"] == "weights-b"

    cloud.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="AB",
        DesiredWeightsAndCapacities=[{"VariantName": "Model-A", "DesiredWeight": 0}],
    )
    assert {cloud.invoke("AB", {})[0]["InvokedProductionVariant"] for _ in range(30)} == {"Model-B"}

    # A new config with the same models (a weight changed in the template) applies at once,
    # on the same servers.
    servers = cloud.runtime.servers()
    cloud.endpoint_config("AB-config-2", {"Model-A": ("model-a", 1), "Model-B": ("model-b", 0)})
    cloud.update_endpoint("AB", "AB-config-2")
    assert {cloud.invoke("AB", {})[0]["InvokedProductionVariant"] for _ in range(30)} == {"Model-A"}
    assert cloud.runtime.servers() == servers
    assert all(s.process.restarts == 0 and s.process.state == READY for s in servers.values())

    sums = metric_sums(
        cloud,
        "AB",
        "Model-B",
        ["Invocations", "InvocationsPerInstance", "ModelLatency", "OverheadLatency"],
    )
    invocations = sums["Invocations"][0]
    assert invocations == counts["Model-B"] + 50
    assert sums["InvocationsPerInstance"][0] == invocations
    assert sums["ModelLatency"][1] == invocations and sums["ModelLatency"][0] > 0
    assert sums["OverheadLatency"][1] == invocations


def test_sampled_invocations_are_captured_to_s3(cloud):
    cloud.model("model-a", "weights-a")
    cloud.endpoint("Captured", {"Model-A": ("model-a", 1)}, capture_percentage=100)
    for i in range(5):
        cloud.invoke("Captured", {"sentence": f"s{i}"}, InferenceId=f"id-{i}")
    with pytest.raises(ClientError):
        cloud.invoke("Captured", {"status": 400})  # failed invocations are not captured
    cloud.runtime.capture.flush()
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=CAPTURE)["Contents"]]
    assert all(
        k.startswith("data-capture/Captured/Model-A/") and k.endswith(".jsonl") for k in keys
    )
    records = [
        json.loads(line)
        for key in keys
        for line in cloud.s3.get_object(Bucket=CAPTURE, Key=key)["Body"].read().splitlines()
    ]
    assert sorted(r["eventMetadata"]["inferenceId"] for r in records) == [
        f"id-{i}" for i in range(5)
    ]
    record = next(r for r in records if r["eventMetadata"]["inferenceId"] == "id-0")
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"sentence": "s0"}',
        "encoding": "JSON",
    }
    assert json.loads(record["captureData"]["endpointOutput"]["data"])["model"] == "weights-a"


def test_a_killed_model_server_is_restarted_logged_and_loses_no_capture(cloud, caplog):
    caplog.set_level(logging.ERROR)
    cloud.model("model-a", "weights-a")
    cloud.endpoint("Crashy", {"Model-A": ("model-a", 1)}, capture_percentage=100)
    [server] = cloud.wait_servers("Crashy", 1)
    cloud.invoke("Crashy", {"n": 1}, InferenceId="before-crash")

    # The model process dies in the middle of a request.
    with pytest.raises(ClientError) as died:
        cloud.invoke("Crashy", {"crash": True})
    assert died.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert died.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    # Killed from outside, too; the runtime waits for the restarted server.
    deadline = time.monotonic() + 20
    while (server.process.restarts, server.process.state) != (
        1,
        READY,
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while server.process.restarts < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    response, body = cloud.invoke("Crashy", {"n": 2}, InferenceId="after-crash")
    assert body["model"] == "weights-a" and server.process.restarts == 2

    died_logs = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(died_logs) == 2 and "killed by SIGKILL" in died_logs[1]
    cloud.runtime.capture.flush()
    ids = set()
    for obj in cloud.s3.list_objects_v2(Bucket=CAPTURE)["Contents"]:
        for line in cloud.s3.get_object(Bucket=CAPTURE, Key=obj["Key"])["Body"].read().splitlines():
            ids.add(json.loads(line)["eventMetadata"].get("inferenceId"))
    assert {"before-crash", "after-crash"} <= ids


def test_deleting_or_changing_an_endpoint_stops_or_replaces_its_servers(cloud):
    cloud.model("model-a", "weights-a")
    cloud.model("model-a2", "weights-a2")
    cloud.endpoint("Changing", {"Model-A": ("model-a", 1)})
    [old] = cloud.wait_servers("Changing", 1)

    # What CloudFormation does on a model change: new config, endpoint replaced under its name.
    cloud.sagemaker.delete_endpoint(EndpointName="Changing")
    cloud.endpoint("Changing", {"Model-A": ("model-a2", 1)}, config_name="Changing-config-2")
    deadline = time.monotonic() + 20
    while old.process.state != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    [new] = cloud.wait_servers("Changing", 1)
    assert new.archive_sha256 != old.archive_sha256 and old.process.state == "stopped"
    assert cloud.invoke("Changing", {})[1]["model"] == "weights-a2"

    cloud.sagemaker.delete_endpoint(EndpointName="Changing")
    deadline = time.monotonic() + 20
    while new.process.state != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cloud.runtime.servers() == {} and new.process.state == "stopped"
    with pytest.raises(ClientError, match="Endpoint Changing of account"):
        cloud.invoke("Changing", {})


def test_a_model_change_is_served_by_the_old_servers_until_the_new_ones_are_ready(cloud):
    cloud.model("model-a", "weights-a")
    cloud.model("model-b", "weights-b")
    cloud.endpoint("BlueGreen", {"Model-A": ("model-a", 1), "Model-B": ("model-b", 1)})
    cloud.wait_servers("BlueGreen", 2)
    servers = {key[3]: server for key, server in cloud.runtime.servers().items()}
    created = cloud.status("BlueGreen")["CreationTime"]
    with Invoking(cloud, "BlueGreen") as calls:
        calls.wait_for(5)
        # What a redeploy with other settings for Model-A does (they are in its name): the
        # replaced Model is deleted and the new one created, the EndpointConfig likewise, then
        # the Endpoint is updated. The new model takes 3 s to load.
        cloud.sagemaker.delete_model(ModelName="model-a")
        cloud.model("model-a2", "weights-a2", env={"LOAD_SECONDS": "3"})
        cloud.sagemaker.delete_endpoint_config(EndpointConfigName="BlueGreen-config")
        cloud.endpoint_config(
            "BlueGreen-config-2", {"Model-A": ("model-a2", 1), "Model-B": ("model-b", 1)}
        )
        cloud.update_endpoint("BlueGreen", "BlueGreen-config-2")
        wait_until(
            lambda: cloud.status("BlueGreen")["EndpointStatus"] == "Updating",
            5,
            what="the endpoint to be Updating while the new model loads",
        )
        old = servers["Model-A"]
        wait_until(lambda: old.process.state == "stopped", what="the old server to stop")
        calls.wait_for(10)
    outcomes = [outcome for outcome, _ in calls.results]
    assert set(outcomes) == {"weights-a", "weights-a2", "weights-b"}  # no error
    model_a = [outcome for outcome in outcomes if outcome != "weights-b"]
    switched = model_a.index("weights-a2")
    assert model_a == ["weights-a"] * switched + ["weights-a2"] * (len(model_a) - switched)
    assert max(seconds for _, seconds in calls.results) < 1.5  # no call waited for the load
    new = cloud.runtime.servers()[(ACCOUNT, REGION, "BlueGreen", "Model-A")]
    assert new.archive_sha256 != old.archive_sha256 and new.process.restarts == 0
    unchanged = servers["Model-B"]
    assert cloud.runtime.servers()[(ACCOUNT, REGION, "BlueGreen", "Model-B")] is unchanged
    assert unchanged.process.restarts == 0 and unchanged.process.state == READY
    assert sorted(cloud.registry.entries()) == sorted(
        str(s.process.pid) for s in (new, unchanged)
    )
    described = cloud.status("BlueGreen")
    assert described["EndpointStatus"] == "InService" and "FailureReason" not in described
    assert described["EndpointConfigName"] == "BlueGreen-config-2"
    assert described["CreationTime"] == created  # updated, not created again


def test_an_update_whose_model_cannot_load_leaves_the_endpoint_on_the_old_one(cloud, caplog):
    caplog.set_level(logging.ERROR)
    cloud.model("model-a", "weights-a")
    cloud.endpoint("Stays", {"Model-A": ("model-a", 1)})
    [old] = cloud.wait_servers("Stays", 1)
    cloud.model("model-broken", "x", archive=broken_archive(cloud.tmp_path))
    cloud.endpoint_config("Stays-config-2", {"Model-A": ("model-broken", 1)})
    with Invoking(cloud, "Stays") as calls:
        cloud.update_endpoint("Stays", "Stays-config-2")
        wait_until(lambda: "FailureReason" in cloud.status("Stays"), what="the update to fail")
        calls.wait_for(5)
    assert {outcome for outcome, _ in calls.results} == {"weights-a"}
    described = cloud.status("Stays")
    assert described["EndpointStatus"] == "InService"
    assert "Stays-config-2 failed" in described["FailureReason"]
    assert "failed to start 2 times" in described["FailureReason"]
    assert list(cloud.runtime.servers().values()) == [old]
    wait_until(
        lambda: list(cloud.registry.entries()) == [str(old.process.pid)],
        what="the new model's server to stop",
    )
    logged = [r.getMessage() for r in caplog.records]
    assert any("keeps serving endpoint config Stays-config:" in m for m in logged)


def test_deleting_the_model_and_config_of_a_running_endpoint_changes_nothing(cloud):
    cloud.model("model-a", "weights-a", env={"MODEL_TAG": "configured"})
    cloud.endpoint("Kept", {"Model-A": ("model-a", 1)})
    cloud.sagemaker.delete_model(ModelName="model-a")
    cloud.sagemaker.delete_endpoint_config(EndpointConfigName="Kept-config")
    response, body = cloud.invoke("Kept", {})
    assert body == {"model": "weights-a", "env": "configured", "echo": {}}
    assert cloud.status("Kept")["EndpointStatus"] == "InService"


def test_moto_invoke_endpoint_is_served_by_the_same_runtime(cloud):
    cloud.model("model-a", "weights-a")
    cloud.endpoint("ViaMoto", {"Model-A": ("model-a", 1)})
    moto_client = boto3.client("sagemaker-runtime", region_name=REGION, config=NO_RETRIES)
    response = moto_client.invoke_endpoint(
        EndpointName="ViaMoto", Body=b'{"x": 1}', ContentType="application/json"
    )
    assert response["InvokedProductionVariant"] == "Model-A"
    assert json.loads(response["Body"].read())["model"] == "weights-a"
    with pytest.raises(ClientError) as missing:
        moto_client.invoke_endpoint(EndpointName="Nope", Body=b"{}")
    assert missing.value.response["Error"]["Code"] == "ValidationError"
    # The body is the model's, any bytes: these reach it, and its failure comes back as
    # ModelError (moto decoded them as UTF-8 first and answered with a 500 page).
    with pytest.raises(ClientError) as not_utf8:
        moto_client.invoke_endpoint(EndpointName="ViaMoto", Body=b'{"x": "\xff"}')
    assert not_utf8.value.response["Error"]["Code"] == "ModelError"


def test_an_unsafe_archive_is_refused_and_the_endpoint_marked_failed(cloud):
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    cloud.model("model-evil", "x", archive=evil.getvalue())
    cloud.endpoint("Evil", {"Model-A": ("model-evil", 1)})
    with pytest.raises(ClientError) as refused:
        cloud.invoke("Evil", {})
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "Failed status" in str(refused.value) and "cannot be extracted" in str(refused.value)
    described = cloud.sagemaker.describe_endpoint(EndpointName="Evil")
    assert described["EndpointStatus"] == "Failed" and "escaped" in described["FailureReason"]
    assert not (cloud.tmp_path / "state" / "escaped.txt").exists()
    assert not (cloud.tmp_path / "state" / "models" / "escaped.txt").exists()


def test_extraction_happens_once_per_content_hash(tmp_path):
    archive = model_archive(tmp_path, "same")
    first = extract_archive(archive, tmp_path / "models")
    (first / "marker").write_text("kept")
    assert extract_archive(archive, tmp_path / "models") == first
    assert (first / "marker").read_text() == "kept"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.name]


def test_servers_start_lazily_for_endpoints_the_runtime_did_not_see_created(cloud, tmp_path):
    unstarted = SageMakerRuntime(tmp_path / "unstarted", MetricsSink())  # ignores endpoint events
    install_moto_hooks(unstarted)
    try:
        cloud.model("model-a", "weights-a")
        cloud.endpoint("Lazy", {"Model-A": ("model-a", 1)})
    finally:
        install_moto_hooks(cloud.runtime)
    assert cloud.runtime.servers() == {}
    response, body = cloud.invoke("Lazy", {})
    assert response["InvokedProductionVariant"] == "Model-A" and body["model"] == "weights-a"


def test_a_model_that_cannot_load_fails_fast_with_model_not_ready(cloud):
    cloud.model("model-broken", "x", archive=broken_archive(cloud.tmp_path))
    cloud.endpoint("Broken", {"Model-A": ("model-broken", 1)})
    with pytest.raises(ClientError) as not_ready:
        cloud.invoke("Broken", {})
    error = not_ready.value.response
    assert error["Error"]["Code"] == "ModelNotReadyException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert "failed to start 2 times" in error["Error"]["Message"]
    log_path = error["Error"]["Message"].rsplit("see ", 1)[1].rstrip(".")
    assert "RuntimeError: corrupt weights" in open(log_path).read()


def test_a_new_endpoint_is_creating_until_its_model_loads_and_failed_if_it_cannot(cloud):
    cloud.model("model-a", "weights-a", env={"LOAD_SECONDS": "2"})
    cloud.endpoint("Slow", {"Model-A": ("model-a", 1)})
    assert cloud.status("Slow")["EndpointStatus"] == "Creating"
    wait_until(lambda: cloud.status("Slow")["EndpointStatus"] == "InService", 20,
               what="the endpoint to be InService once its model loaded")
    assert "FailureReason" not in cloud.status("Slow")

    cloud.model("model-broken", "x", archive=broken_archive(cloud.tmp_path))
    cloud.endpoint("Unloadable", {"Model-A": ("model-broken", 1)})
    wait_until(lambda: cloud.status("Unloadable")["EndpointStatus"] == "Failed", 20,
               what="an endpoint whose model cannot load to be Failed")
    reason = cloud.status("Unloadable")["FailureReason"]
    assert "variant Model-A failed to start 2 times" in reason
    assert reason.endswith("model-Unloadable-Model-A.log")


def test_wire_level_requests_outside_the_operation_are_refused(cloud, loop_thread):
    handle = cloud.runtime.handle
    status, headers, body = loop_thread.run(handle("GET", "/endpoints/E/invocations", {}, b""))
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"
    status, headers, body = loop_thread.run(
        handle("POST", "/endpoints/bad_name!/invocations", {}, b"")
    )
    assert status == 400 and "endpointName" in json.loads(body)["message"]
    long_id = {"X-Amzn-SageMaker-Inference-Id": "x" * 65}
    status, headers, body = loop_thread.run(
        handle("POST", "/endpoints/E/invocations", long_id, b"")
    )
    assert status == 400 and "inferenceId" in json.loads(body)["message"]


def test_the_pool_resends_once_on_a_connection_the_server_closed_while_idle():
    from localcloud.sagemaker import ConnectionPool, ServerGone

    async def scenario():
        served = []

        async def one_answer_then_close(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            served.append(await reader.readexactly(2))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # as a restarted server's old connections are

        server = await asyncio.start_server(one_answer_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(port)
        assert await pool.post("/invocations", {}, b"r1", 5) == (
            200,
            {"content-length": "2"},
            b"ok",
        )
        await asyncio.sleep(0.05)
        assert (await pool.post("/invocations", {}, b"r2", 5))[2] == b"ok"
        assert served == [b"r1", b"r2"]

        async def silent(reader, writer):
            await asyncio.sleep(5)

        hanging = await asyncio.start_server(silent, "127.0.0.1", 0)
        with pytest.raises(TimeoutError):
            await ConnectionPool(hanging.sockets[0].getsockname()[1]).post("/x", {}, b"", 0.2)
        server.close()
        hanging.close()
        await server.wait_closed()
        with pytest.raises(ServerGone, match="cannot connect"):
            await ConnectionPool(port).post("/x", {}, b"", 1)

    asyncio.run(scenario())


def test_a_response_followed_by_a_reset_is_delivered_and_a_truncated_one_is_not():
    """TorchServe answers a 4xx in full and then resets the connection (SO_LINGER 0)."""
    import socket
    import struct

    from localcloud.sagemaker import ConnectionPool, ServerGone

    async def scenario():
        def answer_then_reset(payload: bytes):
            async def serve(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                writer.write(payload)
                await writer.drain()
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

            return serve

        complete = b'HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\n{"e": "bad"}'[:-1]
        server = await asyncio.start_server(answer_then_reset(complete), "127.0.0.1", 0)
        pool = ConnectionPool(server.sockets[0].getsockname()[1])
        status, _, body = await pool.post("/invocations", {}, b"r1", 5)
        assert (status, body) == (400, b'{"e": "bad"')
        assert pool._idle == []  # a reset connection is not reused
        truncated = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 50\r\n\r\nshort"
        cut = await asyncio.start_server(answer_then_reset(truncated), "127.0.0.1", 0)
        with pytest.raises(ServerGone):
            await ConnectionPool(cut.sockets[0].getsockname()[1]).post("/invocations", {}, b"r1", 5)
        for srv in (server, cut):
            srv.close()
            await srv.wait_closed()

    asyncio.run(scenario())
