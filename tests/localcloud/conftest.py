"""Shared fixtures for the local cloud's data-plane tests: moto in-process, a running Lambda
runtime on its own event loop thread, and small handler zips written by the tests."""

import asyncio
import io
import textwrap
import threading
import zipfile

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"


def handler_zip(source: str, extra: dict | None = None) -> bytes:
    """A function zip with ``handler.py`` = ``source`` (dedented) and optional extra files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("handler.py", textwrap.dedent(source))
        for name, text in (extra or {}).items():
            archive.writestr(name, textwrap.dedent(text))
    return buf.getvalue()


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def lambda_client(aws):
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="fn-role",
        AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}',
    )["Role"]["Arn"]
    client = boto3.client("lambda", region_name=REGION)
    client.role_arn = role
    return client


@pytest.fixture
def create_function(lambda_client):
    """Create a function from handler source; returns moto's LambdaFunction object."""
    from moto.awslambda.models import lambda_backends

    def create(name, source, timeout=3, env=None, reserved=None, extra=None):
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=lambda_client.role_arn,
            Handler="handler.handler",
            Code={"ZipFile": handler_zip(source, extra)},
            Timeout=timeout,
            Environment={"Variables": env or {}},
        )
        if reserved is not None:
            lambda_client.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=reserved
            )
        return lambda_backends[ACCOUNT][REGION].get_function(name)

    return create


class LoopThread:
    """An event loop running in a background thread, as the daemon's gateway loop does."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def runtime(tmp_path, loop_thread, aws):
    from localcloud.lambdas import LambdaRuntime, install_moto_hooks
    from localcloud.processes import PidRegistry

    registry = PidRegistry(tmp_path / "children.json")
    rt = LambdaRuntime(tmp_path, registry=registry, region=REGION)
    loop_thread.run(rt.start())
    install_moto_hooks(rt)
    yield rt
    loop_thread.run(rt.stop())
    assert registry.entries() == {}, "a worker process outlived the runtime"
