"""The CloudFormation compatibility layer, driven through a real moto server on 127.0.0.1."""

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from localcloud import compat

REPO = Path(__file__).resolve().parents[2]
AWS_CLI = REPO / ".venv" / "bin" / "aws"
REGION = "us-east-1"
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    compat.apply()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def client(endpoint):
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


@pytest.fixture(scope="module")
def cfn(client):
    return client("cloudformation")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(cfn, stack_name, template, parameters=None):
    """What `aws cloudformation deploy` does: change set, wait, execute. Returns the change set."""
    exists = any(
        s["StackStatus"] != "REVIEW_IN_PROGRESS"
        for s in _stacks_named(cfn, stack_name)
    )
    change_set = cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=unique("cs"),
        TemplateBody=json.dumps(template),
        ChangeSetType="UPDATE" if exists else "CREATE",
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
    )
    described = cfn.describe_change_set(ChangeSetName=change_set["Id"])
    if described["Status"] == "FAILED":
        return described
    cfn.execute_change_set(ChangeSetName=change_set["Id"])
    return described


def _stacks_named(cfn, stack_name):
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError:
        return []


def stack(cfn, stack_name):
    return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]


def outputs(cfn, stack_name):
    return {o["OutputKey"]: o["OutputValue"] for o in stack(cfn, stack_name).get("Outputs") or []}


def exports(cfn):
    return {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}


def events(cfn, stack_name):
    return cfn.describe_stack_events(StackName=stack_name)["StackEvents"]


def bucket_template(export_prefix):
    return {
        "Parameters": {"Suffix": {"Type": "String", "Default": "v1"}},
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": {"Fn::Join": ["-", [export_prefix, {"Ref": "Suffix"}]]}},
            }
        },
        "Outputs": {
            "BucketName": {"Value": {"Ref": "Bucket"}, "Export": {"Name": f"{export_prefix}-bucket"}},
            "BucketArn": {"Value": {"Fn::GetAtt": ["Bucket", "Arn"]}},
        },
    }


def importer_template(export_prefix):
    return {
        "Resources": {
            "Imported": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": f"/{export_prefix}/imported",
                    "Type": "String",
                    "Value": {"Fn::ImportValue": f"{export_prefix}-bucket"},
                },
            }
        },
        "Outputs": {"Imported": {"Value": {"Fn::ImportValue": f"{export_prefix}-bucket"}}},
    }


# ------------------------------------------------------------------------------------------
# apply()
# ------------------------------------------------------------------------------------------

def test_apply_is_idempotent(endpoint):
    patched = moto.cloudformation.models.CloudFormationBackend.execute_change_set
    compat.apply()
    assert moto.cloudformation.models.CloudFormationBackend.execute_change_set is patched


def test_apply_refuses_other_moto_versions(monkeypatch):
    monkeypatch.setattr(compat, "_applied", False)
    monkeypatch.setattr(moto, "__version__", "5.2.6")
    with pytest.raises(RuntimeError, match=r"moto 5\.2\.5 only, but moto 5\.2\.6"):
        compat.apply()


# ------------------------------------------------------------------------------------------
# change-set path
# ------------------------------------------------------------------------------------------

def test_change_set_registers_outputs_exports_and_resolves_imports(cfn, client):
    prefix = unique("exp")
    deploy(cfn, f"{prefix}-a", bucket_template(prefix))
    assert stack(cfn, f"{prefix}-a")["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(cfn, f"{prefix}-a") == {
        "BucketName": f"{prefix}-v1",
        "BucketArn": f"arn:aws:s3:::{prefix}-v1",
    }
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v1"

    deploy(cfn, f"{prefix}-b", importer_template(prefix))
    assert outputs(cfn, f"{prefix}-b") == {"Imported": f"{prefix}-v1"}
    ssm = client("ssm")
    assert ssm.get_parameter(Name=f"/{prefix}/imported")["Parameter"]["Value"] == f"{prefix}-v1"


def test_update_refreshes_exports_and_delete_removes_them(cfn, client):
    prefix = unique("upd")
    deploy(cfn, prefix, bucket_template(prefix))
    deploy(cfn, prefix, bucket_template(prefix), {"Suffix": "v2"})
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"
    assert outputs(cfn, prefix)["BucketName"] == f"{prefix}-v2"
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v2"
    buckets = {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    assert f"{prefix}-v2" in buckets and f"{prefix}-v1" not in buckets

    cfn.delete_stack(StackName=prefix)
    assert f"{prefix}-bucket" not in exports(cfn)
    assert f"{prefix}-v2" not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}


def test_unchanged_update_gives_failed_change_set_with_aws_reason(cfn):
    prefix = unique("same")
    deploy(cfn, prefix, bucket_template(prefix))
    # with and without explicitly passing the default value
    for parameters in ({}, {"Suffix": "v1"}):
        change_set = deploy(cfn, prefix, bucket_template(prefix), parameters)
        assert change_set["Status"] == "FAILED"
        assert "didn't contain changes" in change_set["StatusReason"]
    changed = deploy(cfn, prefix, bucket_template(prefix), {"Suffix": "v3"})
    assert changed["Status"] == "CREATE_COMPLETE"


def test_depends_on_order_is_honoured_on_create(cfn, client):
    name = unique("order")
    template = {
        "Resources": {
            # listed first, but it needs the method: moto's template-order creation fails here
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "DependsOn": "Method",
                "Properties": {"RestApiId": {"Ref": "Api"}},
            },
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": name}},
            "Method": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                    "HttpMethod": "GET",
                    "AuthorizationType": "NONE",
                    "Integration": {"Type": "HTTP", "IntegrationHttpMethod": "GET", "Uri": "http://127.0.0.1/"},
                },
            },
        },
        "Outputs": {"DeploymentId": {"Value": {"Ref": "Deployment"}}, "ApiId": {"Value": {"Ref": "Api"}}},
    }
    deploy(cfn, name, template)
    assert stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    out = outputs(cfn, name)
    deployments = client("apigateway").get_deployments(restApiId=out["ApiId"])["items"]
    assert [d["id"] for d in deployments] == [out["DeploymentId"]]


def test_failed_create_rolls_back_with_reason(cfn, client):
    prefix = unique("fail")
    name = f"{prefix}-b"
    with pytest.raises(ClientError, match=f"Resource Imported .* No export named {prefix}-bucket"):
        deploy(cfn, name, importer_template(prefix))
    described = stack(cfn, name)  # must not 500 although Outputs import the missing export
    assert described["StackStatus"] == "ROLLBACK_COMPLETE"
    assert not described.get("Outputs")
    reasons = {(e["LogicalResourceId"], e["ResourceStatus"]): e.get("ResourceStatusReason") for e in events(cfn, name)}
    assert f"No export named {prefix}-bucket" in reasons[("Imported", "CREATE_FAILED")]
    assert "[Imported]" in reasons[(name, "ROLLBACK_IN_PROGRESS")]
    assert (name, "ROLLBACK_COMPLETE") in reasons

    # as on AWS: a ROLLBACK_COMPLETE stack cannot be updated; delete it, then it deploys again
    with pytest.raises(ClientError, match="ROLLBACK_COMPLETE state and can not be updated"):
        deploy(cfn, name, importer_template(prefix))
    cfn.delete_stack(StackName=name)
    deploy(cfn, f"{prefix}-a", bucket_template(prefix))
    deploy(cfn, name, importer_template(prefix))
    assert stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"


def test_failed_create_deletes_what_it_created(cfn, client):
    name = unique("partial")
    template = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": name}},
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "DependsOn": "Bucket",
                "Properties": {"Name": f"/{name}", "Type": "String", "Value": {"Fn::ImportValue": "missing-" + name}},
            },
        }
    }
    with pytest.raises(ClientError):
        deploy(cfn, name, template)
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert name not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events(cfn, name)]
    assert ("Bucket", "DELETE_COMPLETE") in statuses


def test_failed_update_rolls_back_to_previous_state(cfn, client):
    prefix = unique("uroll")
    deploy(cfn, prefix, bucket_template(prefix))
    broken = bucket_template(prefix)
    broken["Resources"]["Param"] = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": f"/{prefix}", "Type": "String", "Value": {"Fn::ImportValue": "missing-" + prefix}},
    }
    with pytest.raises(ClientError, match="Resource Param .* failed to update|Resource Param .* failed"):
        deploy(cfn, prefix, broken, {"Suffix": "v2"})
    described = stack(cfn, prefix)
    assert described["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert outputs(cfn, prefix)["BucketName"] == f"{prefix}-v1"
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v1"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == {"Suffix": "v1"}
    buckets = {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    assert f"{prefix}-v1" in buckets and f"{prefix}-v2" not in buckets
    # the stack stays usable
    deploy(cfn, prefix, bucket_template(prefix), {"Suffix": "v3"})
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"


def test_leftover_review_in_progress_stack_is_reused(cfn):
    prefix = unique("review")
    cfn.create_change_set(
        StackName=prefix, ChangeSetName="abandoned", ChangeSetType="CREATE",
        TemplateBody=json.dumps(bucket_template(prefix)),
    )
    deploy(cfn, prefix, bucket_template(prefix))
    same_name = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == prefix]
    assert [s["StackStatus"] for s in same_name] == ["CREATE_COMPLETE"]


def test_resource_events_are_listed(cfn):
    prefix = unique("events")
    deploy(cfn, prefix, bucket_template(prefix))
    statuses = [(e["LogicalResourceId"], e["ResourceType"], e["ResourceStatus"]) for e in events(cfn, prefix)]
    assert ("Bucket", "AWS::S3::Bucket", "CREATE_IN_PROGRESS") in statuses
    assert ("Bucket", "AWS::S3::Bucket", "CREATE_COMPLETE") in statuses
    # newest first, as on AWS
    assert statuses[0] == (prefix, "AWS::CloudFormation::Stack", "CREATE_COMPLETE")


def test_unsupported_resource_type_fails_the_stack(cfn):
    name = unique("unsupported")
    with pytest.raises(ClientError, match="AWS::Made::Up is not supported by the local cloud"):
        deploy(cfn, name, {"Resources": {"X": {"Type": "AWS::Made::Up", "Properties": {}}}})
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"


def test_aws_cli_deploy_round_trip(endpoint, cfn, tmp_path):
    """The real `aws cloudformation deploy`, including --no-fail-on-empty-changeset with Parameters."""
    prefix = unique("cli")
    template_file = tmp_path / "bucket.json"
    template_file.write_text(json.dumps(bucket_template(prefix)))
    env = {**os.environ, **DUMMY_ENV}
    command = [
        str(AWS_CLI), "--endpoint-url", endpoint, "cloudformation", "deploy",
        "--stack-name", prefix, "--template-file", str(template_file),
    ]

    def run(*extra):
        return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=60)

    first = run("--no-fail-on-empty-changeset")
    assert first.returncode == 0, first.stderr
    again = run("--no-fail-on-empty-changeset")
    assert again.returncode == 0, again.stderr
    assert f"No changes to deploy. Stack {prefix} is up to date" in again.stdout
    without_flag = run()
    assert without_flag.returncode != 0
    updated = run("--no-fail-on-empty-changeset", "--parameter-overrides", "Suffix=v2")
    assert updated.returncode == 0, updated.stderr
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v2"
    same = run("--no-fail-on-empty-changeset", "--parameter-overrides", "Suffix=v2")
    assert same.returncode == 0 and "No changes to deploy" in same.stdout, same.stderr

