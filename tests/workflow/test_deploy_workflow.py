"""The deploy workflow's pure parts: manifest checks, generated Make rules, target resolution."""

import json
import os
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from workflow.deploy import call_lines, make_rules
from workflow.manifest import ManifestError, load_manifest
from workflow.outputs import ApiAccess
from workflow.target import TargetError, resolve
from workflow.teardown import BUCKET, retained_resources

ROOT = Path(__file__).resolve().parents[2]
STACKS = [
    {
        "concern": "model-archiving",
        "stack_name": "P-model-archiving",
        "template": "model-archiving.json",
        "imports_from": [],
        "parameters": {},
    },
    {
        "concern": "model-serving",
        "stack_name": "P-model-serving",
        "template": "model-serving.json",
        "imports_from": ["model-archiving"],
        "parameters": {"ArtifactKeyModelA": {"artifact": "model-a"}},
    },
    {
        "concern": "api-hosting",
        "stack_name": "P-api-hosting",
        "template": "api-hosting.json",
        "imports_from": ["model-serving", "model-archiving"],
        "parameters": {},
    },
    {
        "concern": "cicd-pipeline",
        "stack_name": "P-cicd-pipeline",
        "template": "cicd-pipeline.json",
        "imports_from": [],
        "parameters": {},
    },
]


def write_manifest(tmp_path, stacks):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"project": "P", "region": "us-east-1", "stacks": stacks}))
    return path


def test_manifest_refuses_an_import_from_a_later_stack(tmp_path):
    with pytest.raises(ManifestError, match="model-serving imports from"):
        load_manifest(write_manifest(tmp_path, [STACKS[1], STACKS[0]]))


def test_missing_manifest_says_how_to_make_it(tmp_path):
    with pytest.raises(ManifestError, match="make templates"):
        load_manifest(tmp_path / "nope.json")


def test_make_rules_order_stacks_by_imports_and_artifacts(tmp_path):
    rules = make_rules(load_manifest(write_manifest(tmp_path, STACKS)))
    assert "deploy-cicd-pipeline:\n" in rules
    # The pipeline stack's execution role deploys the others: its update goes first.
    assert "deploy-model-archiving: deploy-cicd-pipeline\n" in rules
    assert (
        "deploy-model-serving: deploy-model-archiving deploy-cicd-pipeline upload-artifacts\n"
        in rules
    )
    assert (
        "deploy-api-hosting: deploy-model-serving deploy-model-archiving deploy-cicd-pipeline\n"
        in rules
    )
    assert "upload-artifacts: deploy-model-archiving\n" in rules
    without_pipeline = make_rules(load_manifest(write_manifest(tmp_path, STACKS[:3])))
    assert "deploy-model-serving: deploy-model-archiving upload-artifacts\n" in without_pipeline


def test_the_stacks_the_pipeline_stack_imports_from_do_not_wait_for_it(tmp_path):
    stacks = [dict(spec) for spec in STACKS]
    stacks[3]["imports_from"] = ["model-archiving"]
    rules = make_rules(load_manifest(write_manifest(tmp_path, stacks)))
    assert "deploy-model-archiving:\n" in rules
    assert "deploy-cicd-pipeline: deploy-model-archiving\n" in rules
    assert "deploy-model-serving: deploy-model-archiving deploy-cicd-pipeline" in rules


def test_make_rules_run_in_dependency_order_under_parallel_make(tmp_path):
    rules = make_rules(load_manifest(write_manifest(tmp_path, STACKS)))
    (tmp_path / "stacks.mk").write_text(rules)
    log = tmp_path / "log"
    result = subprocess.run(
        [
            "make",
            "-s",
            "-j",
            "4",
            "-f",
            "stacks.mk",
            "deploy-all",
            f"DEPLOY_STACK=echo >> {log}",
            f"UPLOAD=echo upload >> {log}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    order = log.read_text().split()
    assert result.returncode == 0
    assert order.index("model-archiving") < order.index("upload") < order.index("model-serving")
    assert order.index("model-serving") < order.index("api-hosting")
    assert order.index("cicd-pipeline") < order.index("model-serving")
    assert sorted(order) == sorted(
        ["model-archiving", "upload", "model-serving", "api-hosting", "cicd-pipeline"]
    )


def test_unknown_target_names_the_allowed_ones():
    with pytest.raises(TargetError, match="use one of: local, aws"):
        resolve("prod", "us-east-1", None, {})


@pytest.fixture
def aws_home(tmp_path, monkeypatch):
    """A process environment holding no AWS credentials but the profiles in its own files."""
    for variable in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(variable)
    config = tmp_path / "aws-config"
    config.write_text("".join(
        f"[profile {name}]\naws_access_key_id = AKIA{name.upper()}\naws_secret_access_key = s\n"
        for name in ("dev", "prod")
    ))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def container_credentials(aws_home, monkeypatch):
    """Serve credentials as CodeBuild's and ECS's container endpoint does; yield the key id."""
    import http.server
    import threading

    key_id = "ASIACODEBUILDROLE"
    body = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": "s", "Token": "t",
                       "Expiration": "2099-01-01T00:00:00Z"}).encode()

    class Endpoint(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                       f"http://127.0.0.1:{server.server_port}/credentials")
    yield key_id
    server.shutdown()


def cli_access_key(env: dict[str, str]) -> str:
    """The last four characters of the access key the AWS CLI resolves in ``env``."""
    from workflow.target import aws_cli

    listing = subprocess.run([*aws_cli(), "configure", "list"], env=env, capture_output=True,
                             text=True, check=True).stdout
    row = next(line.split() for line in listing.splitlines() if line.startswith("access_key"))
    return row[1][-4:]


def test_aws_target_refuses_without_credentials(aws_home):
    with pytest.raises(TargetError, match="found no AWS credentials: set project.profile"):
        resolve("aws", "us-east-1", None)


@pytest.mark.parametrize("source, profile", [("project.profile in config.json", "staging"),
                                             ("AWS_PROFILE", None)])
def test_aws_target_names_a_profile_the_aws_files_lack(aws_home, monkeypatch, source, profile):
    monkeypatch.setenv("AWS_PROFILE", "staging")
    with pytest.raises(TargetError, match=f"{source} names the AWS profile 'staging', which is"):
        resolve("aws", "us-east-1", profile)


def test_aws_target_takes_the_role_codebuild_provides(container_credentials):
    """The pipeline's deploy stage has neither a profile nor keys, only its container role."""
    target = resolve("aws", "us-east-1", None)
    assert target.session().get_credentials().access_key == container_credentials
    assert cli_access_key(target.env) == container_credentials[-4:]


@pytest.mark.parametrize("profile, environ, key_id", [
    ("prod", {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT", "AWS_SECRET_ACCESS_KEY": "s"}, "AKIAPROD"),
    (None, {"AWS_PROFILE": "dev", "AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT",
            "AWS_SECRET_ACCESS_KEY": "s"}, "AKIAENVIRONMENT"),
    (None, {"AWS_PROFILE": "dev"}, "AKIADEV"),
])
def test_aws_target_workflow_and_aws_cli_use_the_same_credentials(aws_home, monkeypatch, profile,
                                                                  environ, key_id):
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    target = resolve("aws", "us-east-1", profile)
    assert target.session().get_credentials().access_key == key_id
    assert cli_access_key(target.env) == key_id[-4:]


def test_a_target_makes_one_session_for_all_its_clients(aws_home, monkeypatch):
    """A fresh session per client reloads the service models and resolves credentials again."""
    monkeypatch.setenv("AWS_PROFILE", "dev")
    target = resolve("aws", "us-east-1", None)
    first = target.session()
    target.client("cloudformation"), target.client("s3")
    assert target.session() is first


def test_aws_target_takes_the_config_region_over_the_environments(aws_home):
    target = resolve("aws", "eu-west-1", None,
                     {"AWS_PROFILE": "dev", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "x"})
    assert target.region == "eu-west-1"
    assert (target.env["AWS_REGION"], target.env["AWS_DEFAULT_REGION"]) == ("eu-west-1",) * 2


def test_aws_target_uses_config_profile_and_drops_local_endpoint(aws_home):
    target = resolve("aws", "eu-west-1", "prod", {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})
    assert target.env["AWS_PROFILE"] == "prod" and target.region == "eu-west-1"
    assert "AWS_ENDPOINT_URL" not in target.env


def test_aws_target_calls_aws_with_a_local_endpoint_left_in_the_shell(aws_home, monkeypatch):
    """After `eval "$(python -m localcloud env)"`, TARGET=aws must reach AWS with the workflow's
    own calls as well as the CLI's, not the local cloud's endpoint in this process's
    environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    target = resolve("aws", "eu-west-1", "prod")
    assert target.client("s3").meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert target.client("cloudformation").meta.endpoint_url.endswith(".amazonaws.com")
    assert target.env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] == "true"  # the CLI's too
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" not in resolve("aws", "eu-west-1", "prod").env


def test_local_target_never_inherits_a_real_profile():
    target = resolve("local", "us-east-1", None, {"AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "x"})
    assert "AWS_PROFILE" not in target.env and "AWS_SESSION_TOKEN" not in target.env
    assert target.env["AWS_ACCESS_KEY_ID"] == "test"
    assert target.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_teardown_keeps_only_buckets_marked_retain():
    template = {
        "Resources": {
            "Kept": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
            "Gone": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Delete"},
            "Topic": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Retain"},
        }
    }
    assert retained_resources(template, BUCKET) == {"Kept"}


def test_teardown_reports_a_retained_key_as_kept_not_scheduled():
    """A key kept with the data it encrypts is not waiting out a deletion period."""
    from unittest.mock import MagicMock

    from workflow import teardown

    template = {
        "Resources": {
            "Key": {"Type": "AWS::KMS::Key", "DeletionPolicy": "Retain"},
            "OtherKey": {"Type": "AWS::KMS::Key", "DeletionPolicy": "Delete"},
        }
    }
    cfn = MagicMock()
    cfn.list_stack_resources.return_value = {"StackResourceSummaries": [
        {"LogicalResourceId": "Key", "ResourceType": "AWS::KMS::Key", "PhysicalResourceId": "k1"},
        {"LogicalResourceId": "OtherKey", "ResourceType": "AWS::KMS::Key",
         "PhysicalResourceId": "k2"},
    ]}
    cfn.get_template.return_value = {"TemplateBody": json.dumps(template)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(teardown, "delete_stack", lambda *args: None)
        left = teardown.remove_stack(cfn, MagicMock(), MagicMock(), "P-model-serving")
    assert left.kept == ["KMS key k1 (P-model-serving, DeletionPolicy Retain)"]
    assert left.scheduled == ["KMS key k2 (P-model-serving)"]


def _bucket_stack(cfn, name, policy):
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": policy}}}
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    (bucket,) = [r["PhysicalResourceId"] for r in
                 cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]]
    return bucket


@pytest.fixture
def cloud_with_a_left_out_stack(tmp_path, monkeypatch):
    """moto with P-model-archiving (a retained bucket) and P-cicd-pipeline (a bucket with an
    object), and a context whose manifest deploys the first and leaves the second out."""
    from moto import mock_aws

    from generator.config import load
    from workflow.context import Context

    keys = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    for key, value in keys.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({
        "project": "P", "region": "us-east-1", "stacks": [STACKS[0]],
        "disabled": [{"concern": "cicd-pipeline", "stack_name": "P-cicd-pipeline"}],
    }))
    with mock_aws():
        ctx = Context(cfg=load(ROOT / "config.json"),
                      target=resolve("aws", "us-east-1", None, keys),
                      manifest=load_manifest(path))
        cfn, s3 = ctx.target.client("cloudformation"), ctx.target.client("s3")
        pipeline_bucket = _bucket_stack(cfn, "P-cicd-pipeline", "Delete")
        s3.put_object(Bucket=pipeline_bucket, Key="artifact.zip", Body=b"x")
        kept_bucket = _bucket_stack(cfn, "P-model-archiving", "Retain")
        yield ctx, pipeline_bucket, kept_bucket


def _live_stacks(cfn) -> list[str]:
    return [s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE"]


def test_a_deploy_removes_the_stacks_the_config_leaves_out(cloud_with_a_left_out_stack):
    from workflow.teardown import retire

    ctx, pipeline_bucket, kept_bucket = cloud_with_a_left_out_stack
    cfn, s3 = ctx.target.client("cloudformation"), ctx.target.client("s3")
    assert not retire(ctx)
    assert _live_stacks(cfn) == ["P-model-archiving"]
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert pipeline_bucket not in buckets and kept_bucket in buckets
    assert not retire(ctx)  # nothing left to retire


def test_teardown_removes_the_left_out_stacks_first_then_the_rest(cloud_with_a_left_out_stack):
    from workflow.teardown import teardown

    ctx, _, kept_bucket = cloud_with_a_left_out_stack
    left = teardown(ctx)
    assert left.kept == [f"bucket {kept_bucket} (P-model-archiving, DeletionPolicy Retain)"]
    assert _live_stacks(ctx.target.client("cloudformation")) == []


def test_a_manifest_from_another_config_is_refused(tmp_path):
    from generator import config
    from generator.render import render
    from workflow.context import load_context

    document = json.loads((ROOT / "config.json").read_text())
    files = render(config.parse(document))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(files["manifest.json"])
    same, other = tmp_path / "same.json", tmp_path / "other.json"
    same.write_text(json.dumps(document, indent=4))  # the same configuration, other bytes
    assert load_context("local", same, manifest).manifest.project == "TextClassificationDemo"
    document["api_hosting"]["auth"] = "iam"
    other.write_text(json.dumps(document))
    with pytest.raises(ManifestError) as raised:
        load_context("local", other, manifest)
    assert str(raised.value) == (
        f"{manifest} was generated from another configuration than {other}: "
        f"run `make templates CONFIG={other}`"
    )


def deploy_context(tmp_path, env):
    from generator.config import load
    from workflow.context import Context

    manifest = load_manifest(write_manifest(tmp_path, STACKS))
    for spec in manifest.stacks:
        spec.template.write_text('{"Resources": {}}')
    return Context(
        cfg=load(ROOT / "config.json"),
        target=resolve("aws", "us-east-1", None, env),
        manifest=manifest,
    )


def test_deploy_command_passes_artifact_keys_tags_and_the_pipeline_role(tmp_path, aws_home):
    from workflow.deploy import deploy_command

    env = {"AWS_PROFILE": "dev", "CFN_ROLE_ARN": "arn:aws:iam::111122223333:role/deployer"}
    ctx = deploy_context(tmp_path, env)
    pack = {"model-a": {"key": "models/model-a/abc/model.tar.gz"}}
    command = deploy_command(ctx, ctx.manifest.stack("model-serving"), pack)
    assert (
        command[1:3] == ["cloudformation", "deploy"] and "--no-fail-on-empty-changeset" in command
    )
    assert (
        command[command.index("--parameter-overrides") + 1]
        == "ArtifactKeyModelA=models/model-a/abc/model.tar.gz"
    )
    assert command[command.index("--role-arn") + 1] == env["CFN_ROLE_ARN"]
    assert "Project=TextClassification" in command and "Stage=Demo" in command


def test_deploy_command_names_a_missing_artifact(tmp_path, aws_home):
    from workflow.context import WorkflowError
    from workflow.deploy import deploy_command

    ctx = deploy_context(tmp_path, {"AWS_PROFILE": "dev"})
    with pytest.raises(WorkflowError, match="no artifact model-a: run `make pack`"):
        deploy_command(ctx, ctx.manifest.stack("model-serving"), {})
    assert "--role-arn" not in deploy_command(ctx, ctx.manifest.stack("model-archiving"), {})


def test_describe_stack_is_none_only_for_a_missing_stack():
    import boto3
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    from workflow.outputs import describe_stack, stack_outputs

    cfn = boto3.client(
        "cloudformation",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(cfn) as stub:
        stub.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id s does not exist"
        )
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "s",
                        "CreationTime": "2026-11-24T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": "K", "OutputValue": "V"}],
                    }
                ]
            },
        )
        stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded")
        assert describe_stack(cfn, "s") is None
        assert stack_outputs(cfn, "s") == {"K": "V"}
        with pytest.raises(ClientError, match="Rate exceeded"):
            describe_stack(cfn, "s")


class FilledAgainStack:
    """A stack whose bucket receives one more object after it was emptied (capture still on)."""

    def __init__(self, refills: int):
        self.refills = refills
        self.objects = ["a", "b"]
        self.deleted = False
        self.attempts = 0
        from botocore.exceptions import ClientError

        self.error = ClientError
        self.exceptions = type(
            "Exceptions", (), {"NoSuchBucket": KeyError, "ClientError": ClientError}
        )

    # s3
    def get_paginator(self, name):
        stack = self

        class Pages:
            def paginate(self, Bucket):
                yield {"Versions": [{"Key": k, "VersionId": "v"} for k in stack.objects]}

        return Pages()

    def delete_objects(self, Bucket, Delete):
        gone = {item["Key"] for item in Delete["Objects"]}
        self.objects = [key for key in self.objects if key not in gone]
        if self.refills:
            self.refills -= 1
            self.objects.append("late-capture-file")

    # cloudformation
    def delete_stack(self, StackName):
        self.attempts += 1
        if self.objects:
            raise self.error(
                {"Error": {"Code": "ValidationError", "Message": "The bucket is not empty"}},
                "DeleteStack",
            )
        self.deleted = True

    def get_waiter(self, name):
        return type("Waiter", (), {"wait": lambda *args, **kwargs: None})()

    def describe_stacks(self, StackName):
        if self.deleted:
            missing = {"Code": "ValidationError", "Message": f"Stack {StackName} does not exist"}
            raise self.error({"Error": missing}, "DescribeStacks")
        return {"Stacks": [{"StackName": StackName, "StackStatus": "DELETE_FAILED"}]}


def test_teardown_empties_a_bucket_again_when_capture_refilled_it(capsys):
    from workflow.teardown import delete_stack

    stack = FilledAgainStack(refills=1)
    delete_stack(stack, stack, "serving", ["capture"])
    assert stack.deleted and stack.attempts == 2
    assert "DELETE_FAILED" in capsys.readouterr().out


def test_teardown_gives_up_naming_the_stack_after_its_attempts():
    from workflow.context import WorkflowError
    from workflow.teardown import DELETE_ATTEMPTS, delete_stack

    stack = FilledAgainStack(refills=99)
    with pytest.raises(WorkflowError, match="serving ended DELETE_FAILED .*bucket is not empty"):
        delete_stack(stack, stack, "serving", ["capture"])
    assert stack.attempts == DELETE_ATTEMPTS


SENTENCE = "Apple's \"iPod\" sells; $(rm -rf ~) `x` \\ too"


@pytest.mark.parametrize("is_local", [True, False], ids=["local", "aws"])
def test_the_api_key_curl_line_pastes_as_the_request_it_shows(is_local):
    access = ApiAccess(url="http://127.0.0.1:4567/restapis/a1/Demo/_user_request_/text",
                       auth="api_key", key_id="k1", key_value="v'1" if is_local else None,
                       key_command="aws apigateway get-api-key --api-key k1 --include-value")
    api, key, curl = call_lines(access, SENTENCE, "us-east-1", is_local)
    assert api == f"API: POST {access.url}" and key == f"API key: {access.key_command}"
    words = shlex.split(curl)
    assert words[words.index("-d") + 1] == json.dumps({"sentence": SENTENCE})
    assert words[words.index("-X") + 2] == access.url
    headers = [words[i + 1] for i, word in enumerate(words) if word == "-H"]
    expected = "x-api-key: v'1" if is_local else f"x-api-key: $({access.key_command})"
    assert headers == ["content-type: application/json", expected]


@pytest.mark.parametrize("other_code", [True, False])
def test_the_deploy_summary_ends_with_a_local_cloud_that_runs_other_code(monkeypatch, other_code):
    """`up` says it at the start of a deploy, where stack events soon bury it."""
    from localcloud import daemon
    from workflow import deploy, outputs

    access = ApiAccess(url="http://127.0.0.1:4567/restapis/a1/Demo/_user_request_/text",
                       auth="api_key", key_id="k1", key_value="v1", key_command="aws ...")
    monkeypatch.setattr(outputs, "api_access", lambda ctx: access)
    monkeypatch.setattr(daemon, "running", lambda home: SimpleNamespace(pid=4242))
    monkeypatch.setattr(daemon, "runs_other_code", lambda home, info: other_code)
    case = SimpleNamespace(sentence="Some news.")
    ctx = SimpleNamespace(cfg=SimpleNamespace(load_test=SimpleNamespace(cases=[case])),
                          target=SimpleNamespace(region="us-east-1", is_local=True))
    last = deploy.summary(ctx).splitlines()[-1]
    assert last.startswith("local cloud: the running one (pid 4242) started from other") == (
        other_code)
    assert last.startswith("curl ") != other_code


@pytest.mark.parametrize("is_local, user", [(True, "test:test"), (False, "a-key:a-secret")],
                         ids=["local", "aws"])
def test_the_sigv4_curl_line_pastes_as_the_request_it_shows(is_local, user):
    access = ApiAccess(url="https://a1.execute-api.eu-west-1.amazonaws.com/Demo/text",
                       auth="iam", key_id=None, key_value=None, key_command=None)
    _, auth, curl = call_lines(access, SENTENCE, "eu-west-1", is_local)
    assert auth.startswith("Auth: IAM (SigV4) with ")
    # What bash passes to curl, with the credentials a shell on AWS would have exported.
    shell = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "a-key",
             "AWS_SECRET_ACCESS_KEY": "a-secret"}
    argv = subprocess.run(["bash", "-c", curl.replace("curl ", "printf '%s\\0' ", 1)], env=shell,
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert argv[argv.index("-d") + 1] == json.dumps({"sentence": SENTENCE})
    assert argv[argv.index("--aws-sigv4") + 1] == "aws:amz:eu-west-1:execute-api"
    assert argv[argv.index("--user") + 1] == user


@pytest.mark.parametrize("target", ["templates", "pack", "deploy"])
def test_a_missing_config_file_is_named_by_make(tmp_path, target):
    missing = tmp_path / "missing.json"
    result = subprocess.run(["make", "--no-print-directory", target, f"CONFIG={missing}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"make: CONFIG={missing}: no such file"


def test_another_config_regenerates_the_templates_even_when_its_file_is_older(tmp_path):
    def make(*args):
        return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=True).stdout

    make("-s", "templates")
    older = tmp_path / "older.json"
    document = json.loads((ROOT / "config.json").read_text())
    document["project"]["stage"] = "Other"
    older.write_text(json.dumps(document))
    os.utime(older, (0, 0))  # older than templates_out/: make's timestamps alone would skip it
    assert f"-m generator --config {older}" in make("-n", "templates", f"CONFIG={older}")
    assert "-m generator" not in make("-n", "templates")


class NoCloud:
    """A context whose target must not be called: checks that fail come first."""

    class target:  # noqa: N801
        @staticmethod
        def client(service):
            raise AssertionError(f"{service} was called")


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_upload_refuses_an_artifact_that_changed_after_pack(tmp_path, damage):
    from workflow.archive import sha256
    from workflow.context import WorkflowError
    from workflow.deploy import upload

    artifact = tmp_path / "model-a.tar.gz"
    artifact.write_bytes(b"packed bytes")
    pack = {"model-a": {"path": str(artifact), "key": "models/model-a/k/model.tar.gz",
                        "sha256": sha256(b"packed bytes")}}
    if damage == "corrupt":
        artifact.write_bytes(b"other bytes")
    else:
        artifact.unlink()
    state = "changed after `make pack`" if damage == "corrupt" else "is missing"
    with pytest.raises(WorkflowError, match=f"artifact model-a: .*model-a.tar.gz {state}.*"
                                            "make clean deploy"):
        upload(NoCloud(), pack)


class EndpointCloud:
    """A local target whose serving stack outputs EndpointName E, and whose DescribeEndpoint
    answers ``described`` one after another (the last one from then on)."""

    def __init__(self, *described):
        self.described = list(described)
        self.target = self
        self.is_local = True

    def client(self, service):
        return self

    def describe_stacks(self, StackName):
        return {"Stacks": [{"StackName": StackName, "StackStatus": "CREATE_COMPLETE",
                            "Outputs": [{"OutputKey": "EndpointName", "OutputValue": "E"}]}]}

    def describe_endpoint(self, EndpointName):
        assert EndpointName == "E"
        return self.described.pop(0) if len(self.described) > 1 else self.described[0]


def _endpoint(status, config="E-config-2", reason=None):
    return {"EndpointStatus": status, "EndpointConfigName": config,
            **({"FailureReason": reason} if reason else {})}


@pytest.fixture
def no_wait(monkeypatch):
    import workflow.deploy

    monkeypatch.setattr(workflow.deploy, "EVENT_POLL_SECONDS", 0)


def test_deploy_waits_for_a_creating_local_endpoint(no_wait, capsys):
    from workflow.deploy import check_endpoint

    check_endpoint(EndpointCloud(_endpoint("Creating"), _endpoint("Creating"),
                                 _endpoint("InService")), "P-model-serving")
    assert "[*] endpoint E: Creating, loading its models" in capsys.readouterr().out


def test_deploy_fails_naming_why_a_local_endpoint_cannot_serve(no_wait):
    from workflow.context import WorkflowError
    from workflow.deploy import check_endpoint

    failed = _endpoint("Failed", reason="the model server of variant Model-A failed to start")
    with pytest.raises(WorkflowError, match="P-model-serving: endpoint E is Failed: the model "
                                            "server of variant Model-A failed to start.*teardown"):
        check_endpoint(EndpointCloud(_endpoint("Creating"), failed), "P-model-serving")
    kept = _endpoint("InService", reason="Updating to endpoint config E-config-2 failed: boom")
    with pytest.raises(WorkflowError, match="still serves its previous endpoint config: "
                                            "Updating to endpoint config E-config-2 failed"):
        check_endpoint(EndpointCloud(_endpoint("Updating"), kept), "P-model-serving")
    # a failure of an earlier config, since replaced, is history
    check_endpoint(EndpointCloud(_endpoint("InService", config="E-config-3",
                                           reason="Updating to endpoint config E-config-2 "
                                                  "failed: boom")), "P-model-serving")


def test_an_internal_error_of_the_target_is_one_line_naming_the_log(capsys, monkeypatch, tmp_path):
    from botocore.parsers import ResponseParserError

    from workflow.context import cli

    monkeypatch.setenv("LOCALCLOUD_HOME", str(tmp_path))

    @cli("teardown")
    def main():
        raise ResponseParserError("Unable to parse response: b'<!doctype html>...500...'")

    assert main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "doctype" not in err
    assert err.startswith("teardown: the target failed a request without saying why")
    assert str(tmp_path / "localcloud.log") in err


@pytest.mark.parametrize("url, hint", [
    ("http://127.0.0.1:{port}/", "the local cloud is not running, and what was deployed on it is "
                                 "gone: `make deploy` starts it and deploys again"),
    ("https://cloudformation.eu-west-1.amazonaws.com", "is the network up and the region right?"),
    ("http://127.0.0.1:{port}0/", "is the network up and the region right?"),
])
def test_an_unreachable_target_is_named_with_what_to_do(capsys, monkeypatch, url, hint):
    from botocore.exceptions import EndpointConnectionError

    from workflow.context import cli

    monkeypatch.setenv("LOCALCLOUD_PORT", "4766")
    url = url.format(port=4766)

    @cli("outputs")
    def main():
        raise EndpointConnectionError(endpoint_url=url)

    assert main() == 2
    assert capsys.readouterr().err == f"outputs: cannot reach {url}: {hint}\n"


def test_a_stack_whose_update_could_not_roll_back_is_named_with_how_to_finish_it():
    import boto3
    from botocore.stub import Stubber

    from workflow.context import WorkflowError
    from workflow.deploy import _settle_earlier_attempt

    cfn = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="a",
                       aws_secret_access_key="b")
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{
            "StackName": "P-model-serving", "StackStatus": "UPDATE_ROLLBACK_FAILED",
            "StackStatusReason": "Endpoint failed to roll back", "CreationTime": "2026-01-01"}]})
        with pytest.raises(WorkflowError) as raised:
            _settle_earlier_attempt(cfn, "P-model-serving")
    assert str(raised.value).startswith(
        "P-model-serving is UPDATE_ROLLBACK_FAILED (Endpoint failed to roll back): finish the "
        "rollback with `aws cloudformation continue-update-rollback --stack-name P-model-serving`"
    )


@pytest.fixture
def moto_context(tmp_path):
    """A context on in-process moto: the shipped config, the STACKS manifest, an aws target;
    ``with_logging_role(ctx, mode)`` switches api_hosting.account_logging_role."""
    from types import SimpleNamespace

    from moto import mock_aws

    from generator.config import load

    keys = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    with mock_aws():
        yield SimpleNamespace(
            cfg=load(ROOT / "config.json"),
            target=resolve("aws", "us-east-1", None, keys),
            manifest=load_manifest(write_manifest(tmp_path, STACKS)),
        )


def with_logging_role(ctx, mode: str):
    from dataclasses import replace

    api = replace(ctx.cfg.api_hosting, account_logging_role=mode)
    ctx.cfg = replace(ctx.cfg, api_hosting=api)
    return ctx


def set_account_logging_role(ctx, arn: str) -> None:
    ctx.target.client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}]
    )


@pytest.mark.parametrize("mode", ["create", "existing"])
def test_an_existing_account_logging_role_must_be_set_before_the_api_deploys(mode, moto_context):
    """With `existing` the stage would fail to create without the account's role; `create`
    needs none, the stack sets it."""
    from workflow.context import WorkflowError
    from workflow.deploy import check_account_logging_role

    ctx = with_logging_role(moto_context, mode)
    if mode == "existing":
        with pytest.raises(WorkflowError) as refused:
            check_account_logging_role(ctx)
        message = str(refused.value)
        assert message.startswith('api_hosting.account_logging_role is "existing"')
        assert "us-east-1" in message and "aws apigateway update-account" in message
        set_account_logging_role(ctx, "arn:aws:iam::123456789012:role/account-apigateway-logs")
    check_account_logging_role(ctx)


def test_teardown_finds_the_role_an_account_resource_sets():
    from workflow.teardown import account_logging_roles

    api = json.loads((ROOT / "templates_out" / "api-hosting.json").read_text())
    assert account_logging_roles(api) == {"ApiGatewayLoggingRole"}
    assert account_logging_roles({"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}) == set()


def test_an_existing_account_logging_role_may_not_be_the_one_the_stack_created(moto_context):
    """Switching from `create` to `existing` deletes the stack's role: the account's setting
    must name another one first."""
    from workflow.context import WorkflowError
    from workflow.deploy import check_account_logging_role

    ctx = with_logging_role(moto_context, "existing")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": trust}}
    template = {"Resources": {"ApiGatewayLoggingRole": role}}
    ctx.target.client("cloudformation").create_stack(
        StackName="P-api-hosting", TemplateBody=json.dumps(template)
    )
    created = ctx.target.client("iam").list_roles()["Roles"][0]["Arn"]
    set_account_logging_role(ctx, created)
    with pytest.raises(WorkflowError, match="which P-api-hosting created and this"):
        check_account_logging_role(ctx)
    set_account_logging_role(ctx, "arn:aws:iam::123456789012:role/account-apigateway-logs")
    check_account_logging_role(ctx)


def test_an_endpoint_log_group_sagemaker_made_stops_the_deploy_before_any_stack(moto_context):
    """CloudFormation cannot create the declared endpoint log group when SageMaker already made
    it (a deployment from before the stack declared it, or one a teardown then left): the
    deploy says so up front instead of failing and rolling back the model-serving update."""
    from generator.naming import endpoint_log_group
    from workflow.context import WorkflowError
    from workflow.deploy import check_endpoint_log_group

    ctx = moto_context
    name = endpoint_log_group(ctx.cfg)
    cfn, logs = ctx.target.client("cloudformation"), ctx.target.client("logs")
    check_endpoint_log_group(ctx)  # a fresh account: nothing in the way
    logs.create_log_group(logGroupName=name)
    with pytest.raises(WorkflowError, match="exists, but not in P-model-serving") as refused:
        check_endpoint_log_group(ctx)
    assert f"aws logs delete-log-group --log-group-name {name}" in str(refused.value)
    bucket = {"Bucket": {"Type": "AWS::S3::Bucket"}}
    cfn.create_stack(StackName="P-model-serving", TemplateBody=json.dumps({"Resources": bucket}))
    with pytest.raises(WorkflowError, match="exists, but not in P-model-serving"):
        check_endpoint_log_group(ctx)  # the deployed stack predates the declared group
    logs.delete_log_group(logGroupName=name)
    cfn.delete_stack(StackName="P-model-serving")
    group = {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": name}}
    template = {"Resources": {"EndpointLogGroup": group}}
    cfn.create_stack(StackName="P-model-serving", TemplateBody=json.dumps(template))
    check_endpoint_log_group(ctx)  # the stack's own group


@pytest.mark.parametrize("daemon_answers", [False, True])
def test_a_local_cloud_stopped_during_a_stack_deploy_is_named_with_what_to_do(
    monkeypatch, tmp_path, daemon_answers
):
    """`make local-down` (or a killed daemon) while the aws CLI deploys a stack: the CLI only
    says it could not connect; the deploy says the local cloud stopped and what to run."""
    from types import SimpleNamespace

    import workflow.deploy
    from localcloud import daemon
    from workflow.context import WorkflowError

    monkeypatch.setenv("LOCALCLOUD_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALCLOUD_PORT", "4766")
    monkeypatch.setattr(workflow.deploy, "EVENT_POLL_SECONDS", 0)
    monkeypatch.setattr(workflow.deploy, "_settle_earlier_attempt", lambda *_: None)
    monkeypatch.setattr(workflow.deploy, "deploy_command", lambda *_: ["aws"])
    refused = 'Could not connect to the endpoint URL: "http://127.0.0.1:4766/"'
    monkeypatch.setattr(workflow.deploy.subprocess, "run", lambda *_, **__: SimpleNamespace(
        returncode=255, stdout="\nWaiting for changeset to be created..\n", stderr=refused))
    monkeypatch.setattr(daemon, "alive", lambda _: daemon_answers)

    class Gone:
        def describe_stack_events(self, **_):
            raise ConnectionError

    ctx = SimpleNamespace(target=SimpleNamespace(is_local=True, env={},
                                                 client=lambda _: Gone()))
    with pytest.raises(WorkflowError) as raised:
        workflow.deploy.deploy_stack(ctx, SimpleNamespace(stack_name="P-model-serving"), {})
    if daemon_answers:  # the CLI's own reason, when the local cloud still runs
        assert str(raised.value) == f"deploy P-model-serving failed: {refused}"
    else:
        assert str(raised.value) == (
            f"deploy P-model-serving failed: {refused}; cannot reach http://127.0.0.1:4766: the "
            "local cloud is not running, and what was deployed on it is gone: `make deploy` "
            "starts it and deploys again"
        )


@pytest.fixture
def local_cloud_control_plane(monkeypatch):
    """moto's server with the local cloud's compatibility layer, where the local target points."""
    from moto.server import ThreadedMotoServer

    from localcloud import compat, urls

    compat.apply()
    port = urls.free_port_pair()
    server = ThreadedMotoServer(ip_address=urls.HOST, port=port, verbose=False)
    server.start()
    monkeypatch.setenv("LOCALCLOUD_PORT", str(port))
    yield
    server.stop()


def test_a_deploy_creates_a_new_stack_another_deploy_reviews_without_deleting_it(
    local_cloud_control_plane, tmp_path
):
    """A REVIEW_IN_PROGRESS stack may be another deploy's, between its CreateChangeSet and
    ExecuteChangeSet: the deploy keeps it, and `aws cloudformation deploy` creates it."""
    from generator.config import load
    from workflow.context import Context
    from workflow.deploy import deploy_stack
    from workflow.outputs import describe_stack

    ctx = Context(
        cfg=load(ROOT / "config.json"),
        target=resolve("local", "us-east-1", None),
        manifest=load_manifest(write_manifest(tmp_path, STACKS)),
    )
    spec = ctx.manifest.stack("model-archiving")
    spec.template.write_text('{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}')
    cfn = ctx.target.client("cloudformation")
    other = cfn.create_change_set(StackName=spec.stack_name, ChangeSetName="other-deploy",
                                  ChangeSetType="CREATE", TemplateBody=spec.template.read_text())
    deploy_stack(ctx, spec, {})
    stack = describe_stack(cfn, spec.stack_name)
    assert (stack["StackId"], stack["StackStatus"]) == (other["StackId"], "CREATE_COMPLETE")


def _policy_template(bucket, failing=False):
    """A policy on ``bucket``, which the stack does not own; optionally a resource that fails."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{bucket}/*"}
    resources = {"Policy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
        "Bucket": bucket, "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]}}}}
    if failing:
        resources["Late"] = {"Type": "AWS::SSM::Parameter", "DependsOn": "Policy", "Properties": {
            "Type": "String", "Value": {"Fn::ImportValue": "missing-export"}}}
    return json.dumps({"Resources": resources})


def test_the_command_a_deploy_prints_for_a_failed_rollback_finishes_it_on_the_local_cloud(
    local_cloud_control_plane, tmp_path
):
    """An update fails and cannot roll back (the bucket the policy was on went out of band): the
    next deploy stops with the continue-update-rollback command, which, once the bucket is back,
    finishes the rollback, and the deploy after it proceeds."""
    import re
    import uuid

    from generator.config import load
    from workflow.context import Context, WorkflowError
    from workflow.deploy import deploy_stack
    from workflow.outputs import describe_stack
    from workflow.target import aws_cli

    name = f"P-rollback-{uuid.uuid4().hex[:8]}"
    stacks = [{**STACKS[0], "stack_name": name}]
    ctx = Context(
        cfg=load(ROOT / "config.json"),
        target=resolve("local", "us-east-1", None),
        manifest=load_manifest(write_manifest(tmp_path, stacks)),
    )
    spec = ctx.manifest.stack("model-archiving")
    cfn, s3 = ctx.target.client("cloudformation"), ctx.target.client("s3")
    old, new = f"{name.lower()}-old", f"{name.lower()}-new"
    for bucket in (old, new):
        s3.create_bucket(Bucket=bucket)
    spec.template.write_text(_policy_template(old))
    deploy_stack(ctx, spec, {})
    s3.delete_bucket(Bucket=old)
    spec.template.write_text(_policy_template(new, failing=True))
    with pytest.raises(WorkflowError, match="Late"):
        deploy_stack(ctx, spec, {})
    assert describe_stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"

    with pytest.raises(WorkflowError) as stopped:
        deploy_stack(ctx, spec, {})
    assert "UPDATE_ROLLBACK_FAILED (Resource Policy (AWS::S3::BucketPolicy) failed to update: " \
        in str(stopped.value)  # why, from the stack's status reason
    command = re.search(r"`aws (cloudformation continue-update-rollback [^`]+)`",
                        str(stopped.value))[1]
    s3.create_bucket(Bucket=old)
    subprocess.run(aws_cli() + shlex.split(command), env=ctx.target.env, check=True)
    assert describe_stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"

    spec.template.write_text(_policy_template(new))
    deploy_stack(ctx, spec, {})
    assert describe_stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    cfn.delete_stack(StackName=name)
    for bucket in (old, new):
        s3.delete_bucket(Bucket=bucket)
