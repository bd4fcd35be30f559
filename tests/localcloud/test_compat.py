"""The CloudFormation compatibility layer, driven through a real moto server on 127.0.0.1."""

import io
import json
import os
import re
import socket
import subprocess
import threading
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto.cloudwatch.models import cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import SageMakerModelBackend
from moto.server import ThreadedMotoServer

from localcloud import compat
from workflow.teardown import empty_bucket

REPO = Path(__file__).resolve().parents[2]
AWS_CLI = REPO / ".venv" / "bin" / "aws"
REGION = "us-east-1"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": REGION,
}


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
    exists = any(s["StackStatus"] != "REVIEW_IN_PROGRESS" for s in _stacks_named(cfn, stack_name))
    change_set = cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=unique("cs"),
        TemplateBody=json.dumps(template),
        ChangeSetType="UPDATE" if exists else "CREATE",
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()
        ],
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
                "Properties": {
                    "BucketName": {"Fn::Join": ["-", [export_prefix, {"Ref": "Suffix"}]]}
                },
            }
        },
        "Outputs": {
            "BucketName": {
                "Value": {"Ref": "Bucket"},
                "Export": {"Name": f"{export_prefix}-bucket"},
            },
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
                    "Integration": {
                        "Type": "HTTP",
                        "IntegrationHttpMethod": "GET",
                        "Uri": "http://127.0.0.1/",
                    },
                },
            },
        },
        "Outputs": {
            "DeploymentId": {"Value": {"Ref": "Deployment"}},
            "ApiId": {"Value": {"Ref": "Api"}},
        },
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
    reasons = {
        (e["LogicalResourceId"], e["ResourceStatus"]): e.get("ResourceStatusReason")
        for e in events(cfn, name)
    }
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


def failing_create_template(name: str) -> dict:
    """A bucket, then a parameter whose import does not exist: the create fails after the bucket."""
    return {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": name}},
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "DependsOn": "Bucket",
                "Properties": {
                    "Name": f"/{name}",
                    "Type": "String",
                    "Value": {"Fn::ImportValue": "missing-" + name},
                },
            },
        }
    }


def test_failed_create_deletes_what_it_created(cfn, client):
    name = unique("partial")
    with pytest.raises(ClientError):
        deploy(cfn, name, failing_create_template(name))
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert name not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events(cfn, name)]
    assert ("Bucket", "DELETE_COMPLETE") in statuses


def test_rolled_back_stack_lists_no_resources_and_creates_none(cfn, client):
    """Listing a ROLLBACK_COMPLETE stack's resources (as `make teardown` does) must not create
    them again, and deleting the stack must leave nothing behind."""
    name = unique("relist")
    with pytest.raises(ClientError):
        deploy(cfn, name, failing_create_template(name))
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert cfn.list_stack_resources(StackName=name)["StackResourceSummaries"] == []
    assert cfn.describe_stack_resources(StackName=name)["StackResources"] == []
    assert name not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)
    assert name not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}


def test_failed_update_rolls_back_to_previous_state(cfn, client):
    prefix = unique("uroll")
    deploy(cfn, prefix, bucket_template(prefix))
    broken = bucket_template(prefix)
    broken["Resources"]["Param"] = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {
            "Name": f"/{prefix}",
            "Type": "String",
            "Value": {"Fn::ImportValue": "missing-" + prefix},
        },
    }
    with pytest.raises(
        ClientError, match="Resource Param .* failed to update|Resource Param .* failed"
    ):
        deploy(cfn, prefix, broken, {"Suffix": "v2"})
    described = stack(cfn, prefix)
    assert described["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert outputs(cfn, prefix)["BucketName"] == f"{prefix}-v1"
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v1"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == {
        "Suffix": "v1"
    }
    buckets = {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    assert f"{prefix}-v1" in buckets and f"{prefix}-v2" not in buckets
    # the stack stays usable
    deploy(cfn, prefix, bucket_template(prefix), {"Suffix": "v3"})
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"


ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch"


def _serving_template(name, instance_type="ml.m5.large", image_tag="2"):
    """A model, an endpoint config with a generated name, and an endpoint, as model-serving has."""
    return {
        "Resources": {
            "Role": _sagemaker_role(name),
            "Model": {
                "Type": "AWS::SageMaker::Model",
                "Properties": {
                    "ExecutionRoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                    "PrimaryContainer": {
                        "Image": f"{ECR_IMAGE}:{image_tag}",
                        "ModelDataUrl": f"s3://{name}/model.tar.gz",
                    },
                },
            },
            "Config": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {
                    "ProductionVariants": [
                        {
                            "VariantName": "A",
                            "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                            "InitialInstanceCount": 1,
                            "InstanceType": instance_type,
                            "InitialVariantWeight": 1,
                        }
                    ]
                },
            },
            "Endpoint": {
                "Type": "AWS::SageMaker::Endpoint",
                "Properties": {
                    "EndpointName": f"{name}-endpoint",
                    "EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]},
                },
            },
        },
        "Outputs": {"Config": {"Value": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}}},
    }


def test_failed_sagemaker_replacement_rolls_back_to_the_old_resources(cfn, client):
    """A replacement is created before the resource it replaces is deleted, as on AWS: when the
    new endpoint config is refused, the old one is still there, the update rolls back, and the
    stack deploys and tears down again."""
    name = unique("smroll")
    sagemaker = client("sagemaker")
    deploy(cfn, name, _serving_template(name))
    config = outputs(cfn, name)["Config"]

    with pytest.raises(ClientError, match="ml.c5.lrage"):
        deploy(cfn, name, _serving_template(name, instance_type="ml.c5.lrage", image_tag="3"))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    used = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")["EndpointConfigName"]
    assert used == outputs(cfn, name)["Config"]
    described = sagemaker.describe_endpoint_config(EndpointConfigName=used)
    assert [v["InstanceType"] for v in described["ProductionVariants"]] == ["ml.m5.large"]
    model = sagemaker.describe_model(ModelName=described["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"].endswith("pytorch:2")
    assert _endpoint_configs(sagemaker, name) == {used}
    assert len(cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]) == 4

    deploy(cfn, name, _serving_template(name, instance_type="ml.c5.large"))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert outputs(cfn, name)["Config"] not in (config, used)
    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)
    assert not _endpoint_configs(sagemaker, name)


def _autoscaled(template, name, variant="A"):
    """The serving template with variant ``variant`` registered as a scalable target."""
    resource_id = {"Fn::Sub": f"endpoint/${{Endpoint.EndpointName}}/variant/{variant}"}
    template["Resources"]["ScalableTarget"] = {
        "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
        "Properties": {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": resource_id,
            "MinCapacity": 1,
            "MaxCapacity": 2,
        },
    }
    return template


def _renamed_variant(template, variant):
    template["Resources"]["Config"]["Properties"]["ProductionVariants"][0]["VariantName"] = variant
    return template


def test_an_autoscaled_variant_keeps_its_instance_type_until_deregistered(cfn, client):
    """SageMaker fails an update that changes an autoscaled variant's instance type, or removes
    it; a model change is allowed. Turning autoscaling off first, as docs/configuration.md says,
    lets the change through."""
    name = unique("smscale")
    sagemaker = client("sagemaker")
    deploy(cfn, name, _autoscaled(_serving_template(name), name))

    def instance_types():
        used = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")["EndpointConfigName"]
        described = sagemaker.describe_endpoint_config(EndpointConfigName=used)
        return [v["InstanceType"] for v in described["ProductionVariants"]]

    for refused, change in (
        (_serving_template(name, instance_type="ml.c5.large"),
         "changes variant A's instance type from ml.m5.large to ml.c5.large"),
        (_renamed_variant(_serving_template(name), "B"), "removes variant A"),
    ):
        with pytest.raises(ClientError, match=re.escape(change)):
            deploy(cfn, name, _autoscaled(refused, name))
        assert stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
        assert instance_types() == ["ml.m5.large"]
    reason = next(e["ResourceStatusReason"] for e in events(cfn, name)
                  if e["ResourceStatus"] == "UPDATE_FAILED")
    assert "registered as a scalable target" in reason and "deregister" in reason

    deploy(cfn, name, _autoscaled(_serving_template(name, image_tag="3"), name))  # a new model
    deploy(cfn, name, _serving_template(name, image_tag="3"))  # autoscaling off
    deploy(cfn, name, _serving_template(name, instance_type="ml.c5.large", image_tag="3"))
    deploy(cfn, name, _autoscaled(
        _serving_template(name, instance_type="ml.c5.large", image_tag="3"), name))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert instance_types() == ["ml.c5.large"]
    assert len(_endpoint_configs(sagemaker, name)) == 1  # each replaced one deleted
    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)


def _endpoint_configs(sagemaker, prefix):
    listed = sagemaker.list_endpoint_configs()["EndpointConfigs"]
    return {c["EndpointConfigName"] for c in listed if c["EndpointConfigName"].startswith(prefix)}


def _models(sagemaker, prefix):
    listed = sagemaker.list_models()["Models"]
    return {m["ModelName"] for m in listed if m["ModelName"].startswith(prefix)}


def _physical_ids(cfn, stack_name):
    summaries = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}


def _events_since(cfn, stack_name, stack_status):
    """(logical id, status, physical id) of each event after the stack's last ``stack_status``
    event, oldest first."""
    timeline = [
        (e["LogicalResourceId"], e["ResourceStatus"], e.get("PhysicalResourceId", ""))
        for e in reversed(events(cfn, stack_name))
    ]
    start = max(
        i for i, (logical, status, _) in enumerate(timeline)
        if logical == stack_name and status == stack_status
    )
    return timeline[start + 1:]


def test_a_refused_endpoint_update_leaves_the_endpoint_on_its_original_resources(
    cfn, client, monkeypatch
):
    """The Model and EndpointConfig that a failed update replaced come back (same names, no
    service call), their replacements are deleted, and the endpoint, whose update was refused, is
    never updated: the data plane, told of every CreateEndpoint, sees no change."""
    name = unique("smkeep")
    sagemaker = client("sagemaker")
    template = _autoscaled(_serving_template(name), name)
    deploy(cfn, name, template)
    before = _physical_ids(cfn, name)
    (config,), (model,) = _endpoint_configs(sagemaker, name), _models(sagemaker, name)
    endpoint_updates = []
    create_endpoint = SageMakerModelBackend.create_endpoint

    def recording_create_endpoint(self, **call):  # moto passes its arguments by keyword
        endpoint_updates.append(call["endpoint_config_name"])
        return create_endpoint(self, **call)

    monkeypatch.setattr(SageMakerModelBackend, "create_endpoint", recording_create_endpoint)

    changed = _serving_template(name, instance_type="ml.c5.large", image_tag="3")
    with pytest.raises(ClientError, match="registered as a scalable target"):
        deploy(cfn, name, _autoscaled(changed, name))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert endpoint_updates == []
    used = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")["EndpointConfigName"]
    assert used == config
    assert _endpoint_configs(sagemaker, name) == {config}
    assert _models(sagemaker, name) == {model}
    assert sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["Image"].endswith(":2")
    assert outputs(cfn, name)["Config"] == config
    assert _physical_ids(cfn, name) == before

    rollback = _events_since(cfn, name, "UPDATE_ROLLBACK_IN_PROGRESS")
    assert [(logical, status) for logical, status, _ in rollback] == [
        ("Model", "UPDATE_IN_PROGRESS"),
        ("Model", "UPDATE_COMPLETE"),
        ("Config", "UPDATE_IN_PROGRESS"),
        ("Config", "UPDATE_COMPLETE"),
        (name, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("Config", "DELETE_IN_PROGRESS"),
        ("Config", "DELETE_COMPLETE"),
        ("Model", "DELETE_IN_PROGRESS"),
        ("Model", "DELETE_COMPLETE"),
        (name, "UPDATE_ROLLBACK_COMPLETE"),
    ]
    assert all(physical == before[logical] for logical, _, physical in rollback[:4])
    replacements = {physical for _, status, physical in rollback if status == "DELETE_COMPLETE"}
    assert len(replacements) == 2 and replacements.isdisjoint(before.values())

    unchanged = deploy(cfn, name, template)
    assert unchanged["Status"] == "FAILED"
    assert "didn't contain changes" in unchanged["StatusReason"]
    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)
    assert not _endpoint_configs(sagemaker, name) and not _models(sagemaker, name)


# A resource the update adds fails to create: the stack's reason says so, as AWS's does.
LATE_FAILED_TO_CREATE = r"Resource Late \(AWS::SSM::Parameter\) failed to create: "


def test_a_rollback_that_fails_leaves_the_endpoint_on_a_config_that_exists(cfn, client):
    """An update that moves the endpoint to another instance type and then registers it with
    Application Auto Scaling cannot move it back when a later resource fails (nor can AWS: the
    scalable target goes in the rollback's cleanup phase). The endpoint keeps the config it was
    moved to, which is not deleted, and deleting the stack deletes it with the original one."""
    name = unique("smstuck")
    sagemaker = client("sagemaker")
    deploy(cfn, name, _serving_template(name))
    config = outputs(cfn, name)["Config"]
    broken = _autoscaled(_serving_template(name, instance_type="ml.c5.large"), name)
    broken["Resources"]["Late"] = {
        "Type": "AWS::SSM::Parameter",
        "DependsOn": "ScalableTarget",
        "Properties": {"Type": "String", "Value": {"Fn::ImportValue": f"missing-{name}"}},
    }

    with pytest.raises(ClientError, match=LATE_FAILED_TO_CREATE):
        deploy(cfn, name, broken)
    assert stack(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    used = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")["EndpointConfigName"]
    described = sagemaker.describe_endpoint_config(EndpointConfigName=used)
    assert [v["InstanceType"] for v in described["ProductionVariants"]] == ["ml.c5.large"]
    assert outputs(cfn, name)["Config"] == config
    assert _endpoint_configs(sagemaker, name) == {config, used}

    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)
    assert not _endpoint_configs(sagemaker, name) and not _models(sagemaker, name)


def _named_resources_template(prefix, suffix, *, removed=True, failing=False):
    """A bucket and a parameter named after ``suffix``, an exported bucket name, optionally a
    parameter that a later template removes and one that fails (its import does not exist)."""
    resources = {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": f"{prefix}-{suffix}"}},
        "Param": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": f"/{prefix}/{suffix}", "Type": "String", "Value": suffix},
        },
    }
    if removed:
        resources["Removed"] = {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": f"/{prefix}/removed", "Type": "String", "Value": "removed"},
        }
    if failing:
        resources["Late"] = {
            "Type": "AWS::SSM::Parameter",
            "DependsOn": ["Bucket", "Param"],
            "Properties": {"Type": "String", "Value": {"Fn::ImportValue": f"missing-{prefix}"}},
        }
    return {
        "Resources": resources,
        "Outputs": {
            "BucketName": {"Value": {"Ref": "Bucket"}, "Export": {"Name": f"{prefix}-bucket"}}
        },
    }


@pytest.mark.parametrize("failure", ["a later resource fails", "the export is in use"])
def test_a_failed_update_puts_back_the_resources_it_replaced_or_removed(cfn, client, failure):
    """Renamed resources are replaced new-first and removed ones stay until the cleanup phase, as
    on AWS, so a failed update returns to the originals (with their objects and parameter
    versions) instead of creating them again."""
    prefix = unique("putback")
    s3, ssm = client("s3"), client("ssm")
    deploy(cfn, prefix, _named_resources_template(prefix, "v1"))
    before = _physical_ids(cfn, prefix)
    s3.put_object(Bucket=f"{prefix}-v1", Key="kept", Body=b"kept")
    for parameter in (f"/{prefix}/v1", f"/{prefix}/removed"):  # version 2: not made by the stack
        ssm.put_parameter(Name=parameter, Value="kept", Type="String", Overwrite=True)
    importer = f"{prefix}-importer"
    if failure == "the export is in use":
        deploy(cfn, importer, importer_template(prefix))
    failing = failure == "a later resource fails"

    with pytest.raises(ClientError):
        deploy(cfn, prefix, _named_resources_template(prefix, "v2", removed=False, failing=failing))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert _physical_ids(cfn, prefix) == before
    assert outputs(cfn, prefix)["BucketName"] == f"{prefix}-v1"
    assert s3.get_object(Bucket=f"{prefix}-v1", Key="kept")["Body"].read() == b"kept"
    assert f"{prefix}-v2" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    names = [f"/{prefix}/{suffix}" for suffix in ("v1", "v2", "removed")]
    assert {p["Name"]: p["Version"] for p in ssm.get_parameters(Names=names)["Parameters"]} == {
        f"/{prefix}/v1": 2,
        f"/{prefix}/removed": 2,
    }
    unchanged = deploy(cfn, prefix, _named_resources_template(prefix, "v1"))
    assert unchanged["Status"] == "FAILED"

    if failure == "the export is in use":
        cfn.delete_stack(StackName=importer)
    empty_bucket(s3, f"{prefix}-v1")
    cfn.delete_stack(StackName=prefix)
    assert not _stacks_named(cfn, prefix)
    assert not ssm.get_parameters_by_path(Path=f"/{prefix}")["Parameters"]


def test_replaced_and_removed_resources_are_deleted_in_the_cleanup_phase(cfn, client):
    """As on AWS: renamed resources are created under their new names first, and nothing is
    deleted before the update's cleanup phase."""
    prefix = unique("cleanup")
    deploy(cfn, prefix, _named_resources_template(prefix, "v1"))
    deploy(cfn, prefix, _named_resources_template(prefix, "v2", removed=False))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"
    update = _events_since(cfn, prefix, "UPDATE_IN_PROGRESS")
    statuses = [(logical, status) for logical, status, _ in update]
    cleanup = statuses.index((prefix, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))
    assert all(status.startswith("UPDATE_") for _, status in statuses[:cleanup])
    assert statuses[-1] == (prefix, "UPDATE_COMPLETE")
    assert {
        (logical, physical)
        for logical, status, physical in update[cleanup:]
        if status == "DELETE_COMPLETE"
    } == {("Bucket", f"{prefix}-v1"), ("Param", f"/{prefix}/v1"), ("Removed", f"/{prefix}/removed")}
    assert f"{prefix}-v1" not in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    cfn.delete_stack(StackName=prefix)
    assert not _stacks_named(cfn, prefix)


def _policy_template(prefix, suffix, bucket, *, failing=False):
    """A parameter named after ``suffix``, a policy on ``bucket`` (not the stack's), and
    optionally a parameter that fails after both (its import does not exist)."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    resources = {
        "Param": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": f"/{prefix}/{suffix}", "Type": "String", "Value": suffix},
        },
        "Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": bucket,
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]},
            },
        },
    }
    if failing:
        resources["Late"] = {
            "Type": "AWS::SSM::Parameter",
            "DependsOn": ["Param", "Policy"],
            "Properties": {"Type": "String", "Value": {"Fn::ImportValue": f"missing-{prefix}"}},
        }
    return {"Resources": resources}


def _stuck_stack(cfn, s3, prefix):
    """A stack whose update rollback failed: the bucket its policy was on before the update was
    deleted out of band, so the rollback cannot put the policy back. Returns the physical ids
    from before the update."""
    for bucket in ("old", "new"):
        s3.create_bucket(Bucket=f"{prefix}-{bucket}")
    deploy(cfn, prefix, _policy_template(prefix, "v1", f"{prefix}-old"))
    before = _physical_ids(cfn, prefix)
    s3.delete_bucket(Bucket=f"{prefix}-old")
    with pytest.raises(ClientError, match=LATE_FAILED_TO_CREATE):
        deploy(cfn, prefix, _policy_template(prefix, "v2", f"{prefix}-new", failing=True))
    described = stack(cfn, prefix)
    assert described["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    # why, naming the resource, as DescribeStacks says on AWS (make deploy prints it)
    assert described["StackStatusReason"].startswith(
        "Resource Policy (AWS::S3::BucketPolicy) failed to update: "
    )
    return before


def test_a_stack_whose_update_rollback_failed_cannot_be_updated(cfn, client):
    prefix = unique("stuck")
    _stuck_stack(cfn, client("s3"), prefix)
    refused = re.escape("is in UPDATE_ROLLBACK_FAILED state and can not be updated.")
    with pytest.raises(ClientError, match=refused):
        deploy(cfn, prefix, _policy_template(prefix, "v3", f"{prefix}-new"))
    with pytest.raises(ClientError, match=refused):
        cfn.update_stack(StackName=prefix, TemplateBody=json.dumps(
            _policy_template(prefix, "v3", f"{prefix}-new")))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    cfn.delete_stack(StackName=prefix)
    assert not _stacks_named(cfn, prefix)


def _parameters_under(ssm, prefix):
    return {p["Name"] for p in ssm.get_parameters_by_path(Path=f"/{prefix}")["Parameters"]}


def _delete_stuck_stack(cfn, s3, prefix):
    cfn.delete_stack(StackName=prefix)
    assert not _stacks_named(cfn, prefix)
    for bucket in s3.list_buckets()["Buckets"]:
        if bucket["Name"].startswith(prefix):
            s3.delete_bucket(Bucket=bucket["Name"])


def test_continue_update_rollback_finishes_the_rollback_once_its_cause_is_fixed(cfn, client):
    """With the bucket back, the rollback resumes where it failed: the policy returns to it, and
    the cleanup phase deletes the parameter the failed update created. The stack updates again."""
    prefix = unique("resume")
    s3, ssm = client("s3"), client("ssm")
    before = _stuck_stack(cfn, s3, prefix)
    assert _parameters_under(ssm, prefix) == {f"/{prefix}/v1", f"/{prefix}/v2"}
    s3.create_bucket(Bucket=f"{prefix}-old")
    stack_id, role = stack(cfn, prefix)["StackId"], "arn:aws:iam::123456789012:role/rollback"

    cfn.continue_update_rollback(StackName=stack_id, RoleARN=role, ClientRequestToken="resume-1")
    described = stack(cfn, prefix)
    assert (described["StackStatus"], described["RoleARN"]) == ("UPDATE_ROLLBACK_COMPLETE", role)
    assert _physical_ids(cfn, prefix) == before
    assert _parameters_under(ssm, prefix) == {f"/{prefix}/v1"}
    assert f"{prefix}-old/*" in s3.get_bucket_policy(Bucket=f"{prefix}-old")["Policy"]
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=f"{prefix}-new")
    assert [(logical, status) for logical, status, _ in
            _events_since(cfn, prefix, "UPDATE_ROLLBACK_FAILED")] == [
        (prefix, "UPDATE_ROLLBACK_IN_PROGRESS"),
        ("Policy", "UPDATE_IN_PROGRESS"),
        ("Policy", "UPDATE_COMPLETE"),
        (prefix, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("Param", "DELETE_IN_PROGRESS"),
        ("Param", "DELETE_COMPLETE"),
        (prefix, "UPDATE_ROLLBACK_COMPLETE"),
    ]
    resumed = next(e for e in events(cfn, prefix)
                   if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS")
    assert resumed["ResourceStatusReason"] == "User Initiated"
    # a retried request, already run, succeeds without running again
    cfn.continue_update_rollback(StackName=prefix, ClientRequestToken="resume-1")
    assert events(cfn, prefix)[0]["ResourceStatus"] == "UPDATE_ROLLBACK_COMPLETE"

    deploy(cfn, prefix, _policy_template(prefix, "v3", f"{prefix}-new"))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"
    assert _parameters_under(ssm, prefix) == {f"/{prefix}/v3"}
    _delete_stuck_stack(cfn, s3, prefix)


@pytest.mark.parametrize("skip", ["ResourcesToSkip", "ForceRollback"])
def test_continue_update_rollback_leaves_the_resources_to_skip_as_they_are(cfn, client, skip):
    """The bucket stays deleted, so the policy cannot roll back: resuming fails again, until the
    policy is skipped. It is then marked UPDATE_COMPLETE unchanged, the rest of the rollback and
    its cleanup phase run, and the next update brings the policy in line."""
    prefix = unique("skip")
    s3, ssm = client("s3"), client("ssm")
    before = _stuck_stack(cfn, s3, prefix)
    with pytest.raises(ClientError, match=re.escape(
        "Cannot skip Param: only resources in UPDATE_FAILED state because the rollback failed "
        "can be skipped (Policy)"
    )):
        cfn.continue_update_rollback(StackName=prefix, ResourcesToSkip=["Param"])
    with pytest.raises(ClientError, match="mutually exclusive"):
        cfn.continue_update_rollback(
            StackName=prefix, ResourcesToSkip=["Policy"], ForceRollback=True
        )
    cfn.continue_update_rollback(StackName=prefix)
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    assert events(cfn, prefix)[0]["ResourceStatusReason"] == (
        "Resource Policy (AWS::S3::BucketPolicy) failed to update: "
        "The specified bucket does not exist"
    )

    request = {"ResourcesToSkip": ["Policy"]} if skip == "ResourcesToSkip" else {
        "ForceRollback": True
    }
    cfn.continue_update_rollback(StackName=prefix, **request)
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert [(logical, status) for logical, status, _ in
            _events_since(cfn, prefix, "UPDATE_ROLLBACK_FAILED")] == [
        (prefix, "UPDATE_ROLLBACK_IN_PROGRESS"),
        ("Policy", "UPDATE_COMPLETE"),
        (prefix, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("Param", "DELETE_IN_PROGRESS"),
        ("Param", "DELETE_COMPLETE"),
        (prefix, "UPDATE_ROLLBACK_COMPLETE"),
    ]
    assert _physical_ids(cfn, prefix) == {**before, "Policy": f"{prefix}-new"}
    assert _parameters_under(ssm, prefix) == {f"/{prefix}/v1"}

    deploy(cfn, prefix, _policy_template(prefix, "v3", f"{prefix}-new"))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"
    assert f"{prefix}-new/*" in s3.get_bucket_policy(Bucket=f"{prefix}-new")["Policy"]
    _delete_stuck_stack(cfn, s3, prefix)


def test_continue_update_rollback_needs_a_stack_whose_update_rollback_failed(cfn):
    prefix = unique("live")
    deploy(cfn, prefix, bucket_template(prefix))
    with pytest.raises(ClientError) as raised:
        cfn.continue_update_rollback(StackName=prefix)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"] == (
        f"Stack:{stack(cfn, prefix)['StackId']} is in CREATE_COMPLETE state: only a stack in "
        "UPDATE_ROLLBACK_FAILED can continue its update rollback"
    )
    with pytest.raises(ClientError, match=f"Stack with id missing-{prefix} does not exist"):
        cfn.continue_update_rollback(StackName=f"missing-{prefix}")
    assert stack(cfn, prefix)["StackStatus"] == "CREATE_COMPLETE"
    cfn.delete_stack(StackName=prefix)


def test_a_failed_update_puts_back_a_removed_resource_it_would_have_retained(cfn, client):
    """A removed resource whose DeletionPolicy is Retain leaves the stack in the cleanup phase,
    not deleted; until then it is the stack's, so a failed update returns to it instead of
    creating a second one."""
    prefix = unique("retain")

    def template(value, kept=True):
        resources = {
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{prefix}/value", "Type": "String", "Value": value},
            }
        }
        if kept:
            resources["Kept"] = {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain"}
        export = {"Value": value, "Export": {"Name": f"{prefix}-bucket"}}
        return {"Resources": resources, "Outputs": {"Value": export}}

    sqs = client("sqs")

    def queues():
        listed = sqs.list_queues(QueueNamePrefix=f"{prefix}-Kept").get("QueueUrls", [])
        return {url.rsplit("/", 1)[1] for url in listed}

    deploy(cfn, prefix, template("a"))
    before = _physical_ids(cfn, prefix)
    importer = f"{prefix}-importer"
    deploy(cfn, importer, importer_template(prefix))

    with pytest.raises(ClientError, match="in use by"):
        deploy(cfn, prefix, template("b", kept=False))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert _physical_ids(cfn, prefix) == before
    assert queues() == {before["Kept"].rsplit("/", 1)[1]}

    cfn.delete_stack(StackName=importer)
    deploy(cfn, prefix, template("b", kept=False))
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_COMPLETE"
    assert set(_physical_ids(cfn, prefix)) == {"Param"}
    assert queues() == {before["Kept"].rsplit("/", 1)[1]}  # retained
    cfn.delete_stack(StackName=prefix)


def test_a_resource_whose_update_failed_part_way_is_updated_back(cfn, client):
    """The bucket's update sets its lifecycle rules, then fails on its notification
    configuration: as on AWS, the rollback updates the failed resource back too."""
    prefix = unique("partway")
    s3 = client("s3")

    def template(**properties):
        bucket = {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": prefix, **properties}}
        return {"Resources": {"Bucket": bucket}}

    deploy(cfn, prefix, template())
    refused = {"QueueConfigurations": [{"Event": "s3:ObjectCreated:*", "Queue": "arn:q"}]}
    expiring = {"Rules": [{"Id": "expire", "Status": "Enabled", "ExpirationInDays": 3}]}
    with pytest.raises(ClientError, match="Resource Bucket .* QueueConfigurations"):
        deploy(
            cfn,
            prefix,
            template(LifecycleConfiguration=expiring, NotificationConfiguration=refused),
        )
    assert stack(cfn, prefix)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=prefix)
    rollback = _events_since(cfn, prefix, "UPDATE_ROLLBACK_IN_PROGRESS")
    assert [(logical, status) for logical, status, _ in rollback][:2] == [
        ("Bucket", "UPDATE_IN_PROGRESS"),
        ("Bucket", "UPDATE_COMPLETE"),
    ]
    assert deploy(cfn, prefix, template())["Status"] == "FAILED"  # no changes
    cfn.delete_stack(StackName=prefix)


def _create_change_set(cfn, stack_name, template, parameters=None):
    return cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=unique("cs"),
        ChangeSetType="CREATE",
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()
        ],
    )


def test_change_sets_of_a_stack_under_review_share_it_until_one_executes(cfn):
    """Two deploys of a new stack: both change sets go to one REVIEW_IN_PROGRESS stack, as on
    AWS; executing one creates the stack and removes the other."""
    prefix = unique("review")
    first = _create_change_set(cfn, prefix, bucket_template(prefix))
    second = _create_change_set(cfn, prefix, bucket_template(prefix), {"Suffix": "v2"})
    assert first["StackId"] == second["StackId"]
    assert cfn.describe_change_set(ChangeSetName=first["Id"])["ExecutionStatus"] == "AVAILABLE"
    cfn.execute_change_set(ChangeSetName=second["Id"])
    assert stack(cfn, prefix)["StackId"] == second["StackId"]
    assert outputs(cfn, prefix)["BucketName"] == f"{prefix}-v2"
    for call in (cfn.describe_change_set, cfn.execute_change_set):
        with pytest.raises(cfn.exceptions.ChangeSetNotFoundException):
            call(ChangeSetName=first["Id"])
    same_name = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == prefix]
    assert [s["StackStatus"] for s in same_name] == ["CREATE_COMPLETE"]


def test_deleting_a_stack_under_review_removes_its_change_sets(cfn):
    prefix = unique("review")
    pending = _create_change_set(cfn, prefix, bucket_template(prefix))
    cfn.delete_stack(StackName=prefix)
    with pytest.raises(cfn.exceptions.ChangeSetNotFoundException):
        cfn.execute_change_set(ChangeSetName=pending["Id"])


def test_resource_events_are_listed(cfn):
    prefix = unique("events")
    deploy(cfn, prefix, bucket_template(prefix))
    statuses = [
        (e["LogicalResourceId"], e["ResourceType"], e["ResourceStatus"])
        for e in events(cfn, prefix)
    ]
    assert ("Bucket", "AWS::S3::Bucket", "CREATE_IN_PROGRESS") in statuses
    assert ("Bucket", "AWS::S3::Bucket", "CREATE_COMPLETE") in statuses
    # newest first, as on AWS
    assert statuses[0] == (prefix, "AWS::CloudFormation::Stack", "CREATE_COMPLETE")


def test_an_update_leaves_alone_a_resource_declared_without_properties(cfn):
    """Only what changed is updated: a queue declared without Properties is not, when another
    resource changes."""
    name = unique("noprops")

    def template(value):
        return {
            "Resources": {
                "Queue": {"Type": "AWS::SQS::Queue"},
                "Param": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {"Name": f"/{name}", "Type": "String", "Value": value},
                },
            }
        }

    deploy(cfn, name, template("a"))
    deploy(cfn, name, template("b"))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    since_update = _events_since(cfn, name, "UPDATE_IN_PROGRESS")
    assert {logical for logical, status, _ in since_update if status.startswith("UPDATE_")} == {
        name,
        "Param",
    }
    cfn.delete_stack(StackName=name)


def test_unknown_attribute_of_an_added_type_is_a_template_error(cfn):
    name = unique("attr")
    template = {
        "Resources": {"Key": {"Type": "AWS::ApiGateway::ApiKey", "Properties": {}}},
        "Outputs": {"Bad": {"Value": {"Fn::GetAtt": ["Key", "Nonsense"]}}},
    }
    with pytest.raises(ClientError, match="does not support attribute type Nonsense"):
        deploy(cfn, name, template)
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"


def test_unsupported_resource_type_fails_the_stack(cfn):
    name = unique("unsupported")
    with pytest.raises(ClientError, match="AWS::Made::Up is not supported by the local cloud"):
        deploy(cfn, name, {"Resources": {"X": {"Type": "AWS::Made::Up", "Properties": {}}}})
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"


def _cli_deploy(endpoint, stack_name, template_file, *extra, env=None):
    """The real `aws cloudformation deploy` against the local endpoint."""
    return subprocess.run(
        [
            str(AWS_CLI),
            "--endpoint-url",
            endpoint,
            "cloudformation",
            "deploy",
            "--stack-name",
            stack_name,
            "--template-file",
            str(template_file),
            *extra,
        ],
        env={**os.environ, **DUMMY_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_aws_cli_deploy_round_trip(endpoint, cfn, tmp_path):
    """The real `aws cloudformation deploy`, with Parameters and --no-fail-on-empty-changeset."""
    prefix = unique("cli")
    template_file = tmp_path / "bucket.json"
    template_file.write_text(json.dumps(bucket_template(prefix)))

    def run(*extra):
        return _cli_deploy(endpoint, prefix, template_file, *extra)

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


def test_aws_cli_deploy_through_a_versioned_bucket(endpoint, cfn, client, tmp_path):
    """`deploy --s3-bucket` (the workflow's route above 51,200 bytes) passes a TemplateURL on the
    local endpoint, <endpoint>/<bucket>/<key>: the change set reads that object."""
    prefix = unique("big")
    bucket = unique("templates")
    client("s3").create_bucket(Bucket=bucket)
    client("s3").put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    template_file = tmp_path / "bucket.json"
    template_file.write_text(json.dumps(bucket_template(prefix)))
    deployed = _cli_deploy(
        endpoint, prefix, template_file, "--s3-bucket", bucket, "--s3-prefix", "templates",
        # The upload's S3 client ignores --endpoint-url; the workflow sets AWS_ENDPOINT_URL too.
        env={"AWS_ENDPOINT_URL": endpoint},
    )
    assert deployed.returncode == 0, deployed.stderr
    assert stack(cfn, prefix)["StackStatus"] == "CREATE_COMPLETE"
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v1"


@pytest.mark.parametrize(
    "url, location",
    [
        ("http://127.0.0.1:4566/b/templates/t.json?versionId=v1", ("b", "templates/t.json", "v1")),
        ("https://s3.us-east-1.amazonaws.com/b/t%20x.json", ("b", "t x.json", None)),
        ("https://s3.amazonaws.com/b/t.json", ("b", "t.json", None)),
        ("https://my.b.s3.eu-west-1.amazonaws.com/t.json", ("my.b", "t.json", None)),
        ("https://b.s3.amazonaws.com/dir/t.json", ("b", "dir/t.json", None)),
    ],
)
def test_template_url_location(url, location):
    assert compat.template_location(url) == location


def test_a_template_url_naming_no_object_is_a_validation_error(cfn):
    with pytest.raises(ClientError, match="TemplateURL must reference a valid S3 object"):
        cfn.create_change_set(
            StackName=unique("missing"),
            ChangeSetName=unique("cs"),
            TemplateURL="http://127.0.0.1:4566/no-such-bucket/t.json",
            ChangeSetType="CREATE",
        )


# ------------------------------------------------------------------------------------------
# resource types moto's CloudFormation skips or implements incompletely
# ------------------------------------------------------------------------------------------


def _trust(service):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


def _sagemaker_role(name):
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": f"{name}-sm",
            "AssumeRolePolicyDocument": _trust("sagemaker.amazonaws.com"),
        },
    }


def every_type_template(
    name, *, threshold=5, rate_limit=10, weights=(1, 1), config_suffix="v1", stage_action="Build"
):
    """One resource of every type the compatibility layer adds, wired as the templates do."""
    ref = lambda logical: {"Ref": logical}  # noqa: E731
    att = lambda logical, attribute: {"Fn::GetAtt": [logical, attribute]}  # noqa: E731
    endpoint_name = f"{name}-endpoint"
    resources = {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": f"{name}-bucket"}},
        "BucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("Bucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecure",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": {"Fn::Sub": "${Bucket.Arn}/*"},
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{name}-topic"}},
        "TopicPolicy": {
            "Type": "AWS::SNS::TopicPolicy",
            "Properties": {
                "Topics": [ref("Topic")],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AlarmsPublish",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": ref("Topic"),
                        }
                    ],
                },
            },
        },
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-queue"}},
        "QueueSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": ref("Topic"),
                "Protocol": "sqs",
                "Endpoint": att("Queue", "Arn"),
                "RawMessageDelivery": True,
                "FilterPolicy": {"kind": [f"filter-{config_suffix}"]},
            },
        },
        "EmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": ref("Topic"),
                "Protocol": "email",
                "Endpoint": "ops@example.com",
            },
        },
        "FunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": f"{name}-fn",
                "AssumeRolePolicyDocument": _trust("lambda.amazonaws.com"),
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": f"{name}-fn",
                "Runtime": "python3.12",
                "Handler": "index.handler",
                "Role": att("FunctionRole", "Arn"),
                "Code": {"ZipFile": "def handler(event, context):\n    return 1\n"},
            },
        },
        "LambdaSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": ref("Topic"),
                "Protocol": "lambda",
                "Endpoint": att("Function", "Arn"),
            },
        },
        "TopicInvokesFunction": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": ref("Function"),
                "Action": "lambda:InvokeFunction",
                "Principal": "sns.amazonaws.com",
                "SourceArn": ref("Topic"),
            },
        },
        "InvokeConfig": {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": ref("Function"),
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 0,
                "DestinationConfig": {"OnFailure": {"Destination": att("Queue", "Arn")}},
            },
        },
        "Alias": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {
                "FunctionName": ref("Function"),
                "FunctionVersion": "$LATEST",
                "Name": "live",
            },
        },
        "ErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": f"{name}-errors",
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": ref("Function")}],
                "Statistic": "Sum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "AlarmActions": [ref("Topic")],
                "TreatMissingData": "notBreaching",
            },
        },
        "ModelRole": _sagemaker_role(name),
        "Model": {
            "Type": "AWS::SageMaker::Model",
            "Properties": {
                "ModelName": f"{name}-model",
                "ExecutionRoleArn": att("ModelRole", "Arn"),
                "PrimaryContainer": {
                    "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch:2",
                    "ModelDataUrl": {"Fn::Sub": "s3://${Bucket}/model.tar.gz"},
                },
            },
        },
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "EndpointConfigName": f"{name}-config-{config_suffix}",
                "ProductionVariants": [
                    {
                        "VariantName": variant,
                        "ModelName": att("Model", "ModelName"),
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": weight,
                    }
                    for variant, weight in zip(("VariantA", "VariantB"), weights)
                ],
                "DataCaptureConfig": {
                    "EnableCapture": True,
                    "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": {"Fn::Sub": f"s3://${{Bucket}}/capture-{config_suffix}"},
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                },
            },
        },
        "Endpoint": {
            "Type": "AWS::SageMaker::Endpoint",
            "Properties": {
                "EndpointName": endpoint_name,
                "EndpointConfigName": att("EndpointConfig", "EndpointConfigName"),
            },
        },
        "ScalableTarget": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "sagemaker",
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "ResourceId": {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/VariantA"},
                "MinCapacity": 1,
                "MaxCapacity": 2,
            },
        },
        "ScalingPolicy": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": f"{name}-invocations",
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": ref("ScalableTarget"),
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 100.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                },
            },
        },
        "BuildRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": f"{name}-build",
                "AssumeRolePolicyDocument": _trust("codebuild.amazonaws.com"),
            },
        },
        "Build": {
            "Type": "AWS::CodeBuild::Project",
            "Properties": {
                "Name": f"{name}-build",
                "ServiceRole": att("BuildRole", "Arn"),
                "Source": {"Type": "CODEPIPELINE", "BuildSpec": "buildspec/build.yml"},
                "Artifacts": {"Type": "CODEPIPELINE"},
                "Environment": {
                    "Type": "LINUX_CONTAINER",
                    "ComputeType": "BUILD_GENERAL1_SMALL",
                    "Image": "aws/codebuild/standard:7.0",
                    "EnvironmentVariables": [{"Name": "STAGE", "Value": "Dev"}],
                },
            },
        },
        "PipelineRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": f"{name}-pipeline",
                "AssumeRolePolicyDocument": _trust("codepipeline.amazonaws.com"),
            },
        },
        "Pipeline": {
            "Type": "AWS::CodePipeline::Pipeline",
            "Properties": {
                "Name": f"{name}-pipeline",
                "RoleArn": att("PipelineRole", "Arn"),
                "ArtifactStore": {"Type": "S3", "Location": ref("Bucket")},
                "Stages": [
                    {
                        "Name": "Source",
                        "Actions": [
                            {
                                "Name": "Source",
                                "ActionTypeId": {
                                    "Category": "Source",
                                    "Owner": "AWS",
                                    "Provider": "S3",
                                    "Version": "1",
                                },
                                "Configuration": {
                                    "S3Bucket": ref("Bucket"),
                                    "S3ObjectKey": "source.zip",
                                    "PollForSourceChanges": False,
                                },
                                "OutputArtifacts": [{"Name": "Source"}],
                            }
                        ],
                    },
                    {
                        "Name": stage_action,
                        "Actions": [
                            {
                                "Name": "Build",
                                "ActionTypeId": {
                                    "Category": "Build",
                                    "Owner": "AWS",
                                    "Provider": "CodeBuild",
                                    "Version": "1",
                                },
                                "Configuration": {"ProjectName": ref("Build")},
                                "InputArtifacts": [{"Name": "Source"}],
                            }
                        ],
                    },
                ],
            },
        },
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": f"{name}-api"}},
        "ApiResource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": ref("Api"),
                "ParentId": att("Api", "RootResourceId"),
                "PathPart": "classify",
            },
        },
        "Validator": {
            "Type": "AWS::ApiGateway::RequestValidator",
            "Properties": {
                "RestApiId": ref("Api"),
                "Name": "body",
                "ValidateRequestBody": True,
                "ValidateRequestParameters": False,
            },
        },
        "RequestModel": {
            "Type": "AWS::ApiGateway::Model",
            "Properties": {
                "RestApiId": ref("Api"),
                "Name": "ClassifyRequest",
                "ContentType": "application/json",
                "Schema": {"type": "object", "required": ["sentence"]},
            },
        },
        "Method": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "RestApiId": ref("Api"),
                "ResourceId": ref("ApiResource"),
                "HttpMethod": "POST",
                "AuthorizationType": "NONE",
                "ApiKeyRequired": True,
                "RequestValidatorId": ref("Validator"),
                "RequestModels": {"application/json": ref("RequestModel")},
                "Integration": {
                    "Type": "AWS_PROXY",
                    "IntegrationHttpMethod": "POST",
                    "TimeoutInMillis": 29000,
                    "Uri": {
                        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/"
                        "2015-03-31/functions/${Function.Arn}/invocations"
                    },
                },
            },
        },
        "MockMethod": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "RestApiId": ref("Api"),
                "ResourceId": att("Api", "RootResourceId"),
                "HttpMethod": "GET",
                "AuthorizationType": "NONE",
                "Integration": {"Type": "MOCK"},
            },
        },
        "ApiInvokesFunction": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": att("Function", "Arn"),
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {
                    "Fn::Sub": "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}"
                    "/dev/POST/classify"
                },
            },
        },
        "Deployment": {
            "Type": "AWS::ApiGateway::Deployment",
            "DependsOn": ["Method", "MockMethod"],
            "Properties": {"RestApiId": ref("Api"), "Description": "classification API"},
        },
        "AccountRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": f"{name}-apigw",
                "AssumeRolePolicyDocument": _trust("apigateway.amazonaws.com"),
            },
        },
        "ApiAccount": {
            "Type": "AWS::ApiGateway::Account",
            "Properties": {"CloudWatchRoleArn": att("AccountRole", "Arn")},
        },
        "Stage": {
            "Type": "AWS::ApiGateway::Stage",
            "DependsOn": "ApiAccount",
            "Properties": {
                "RestApiId": ref("Api"),
                "StageName": "dev",
                "DeploymentId": ref("Deployment"),
                "TracingEnabled": True,
                "AccessLogSetting": {
                    "DestinationArn": f"arn:aws:logs:us-east-1:123456789012:log-group:{name}",
                    "Format": "$context.requestId",
                },
                "MethodSettings": [
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "MetricsEnabled": True,
                        "ThrottlingRateLimit": rate_limit,
                        "ThrottlingBurstLimit": 2 * rate_limit,
                    }
                ],
            },
        },
        "ApiKey": {
            "Type": "AWS::ApiGateway::ApiKey",
            "Properties": {"Name": f"{name}-key", "Enabled": True},
        },
        "UsagePlan": {
            "Type": "AWS::ApiGateway::UsagePlan",
            "DependsOn": "Stage",
            "Properties": {
                "UsagePlanName": f"{name}-plan",
                "ApiStages": [{"ApiId": ref("Api"), "Stage": "dev"}],
                "Throttle": {"RateLimit": rate_limit, "BurstLimit": 2 * rate_limit},
                "Quota": {"Limit": 1000, "Period": "DAY"},
            },
        },
        "UsagePlanKey": {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {
                "KeyId": ref("ApiKey"),
                "KeyType": "API_KEY",
                "UsagePlanId": ref("UsagePlan"),
            },
        },
        "Unauthorized": {
            "Type": "AWS::ApiGateway::GatewayResponse",
            "Properties": {
                "RestApiId": ref("Api"),
                "ResponseType": "UNAUTHORIZED",
                "StatusCode": "401",
                "ResponseTemplates": {"application/json": '{"message": "unauthorized"}'},
            },
        },
    }
    outputs = {
        "ApiId": ref("Api"),
        "DeploymentId": ref("Deployment"),
        "MethodRef": ref("Method"),
        "PermissionRef": ref("ApiInvokesFunction"),
        "StageName": ref("Stage"),
        "ApiKeyId": ref("ApiKey"),
        "ApiKeyAttr": att("ApiKey", "APIKeyId"),
        "UsagePlanId": ref("UsagePlan"),
        "ValidatorId": ref("Validator"),
        "ModelName": ref("RequestModel"),
        "AlarmName": ref("ErrorsAlarm"),
        "AlarmArn": att("ErrorsAlarm", "Arn"),
        "SubscriptionArn": ref("QueueSubscription"),
        "ScalableTargetId": ref("ScalableTarget"),
        "ScalingPolicyArn": ref("ScalingPolicy"),
        "BuildName": ref("Build"),
        "BuildArn": att("Build", "Arn"),
        "PipelineName": ref("Pipeline"),
        "EndpointArn": ref("Endpoint"),
        "EndpointName": att("Endpoint", "EndpointName"),
        "AliasArn": ref("Alias"),
    }
    return {
        "Resources": resources,
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }


def test_every_added_type_is_created_updated_and_deleted(cfn, client):
    name = unique("types")
    deploy(cfn, name, every_type_template(name))
    assert stack(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    out = outputs(cfn, name)
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    template_ids = set(every_type_template(name)["Resources"])
    assert {s["LogicalResourceId"] for s in summaries} == template_ids
    assert all(s["ResourceType"] and s["PhysicalResourceId"] for s in summaries)
    assert not any("object at 0x" in value for value in out.values())

    s3, sns, awslambda, cloudwatch = (
        client("s3"),
        client("sns"),
        client("lambda"),
        client("cloudwatch"),
    )
    sagemaker, scaling, codebuild = (
        client("sagemaker"),
        client("application-autoscaling"),
        client("codebuild"),
    )
    codepipeline, apigateway = client("codepipeline"), client("apigateway")

    policy = json.loads(s3.get_bucket_policy(Bucket=f"{name}-bucket")["Policy"])
    assert policy["Statement"][0]["Sid"] == "DenyInsecure"
    topic_arn = f"arn:aws:sns:us-east-1:123456789012:{name}-topic"
    assert "AlarmsPublish" in sns.get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert sorted(s["Protocol"] for s in subscriptions) == ["email", "lambda", "sqs"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=out["SubscriptionArn"])[
        "Attributes"
    ]
    assert attributes["RawMessageDelivery"] == "true"
    assert json.loads(attributes["FilterPolicy"]) == {"kind": ["filter-v1"]}
    function_policy = json.loads(awslambda.get_policy(FunctionName=f"{name}-fn")["Policy"])
    assert {s["Sid"] for s in function_policy["Statement"]} == {
        out["PermissionRef"],
        stack_sid(cfn, name),
    }
    invoke_config = awslambda.get_function_event_invoke_config(FunctionName=f"{name}-fn")
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert (
        awslambda.get_alias(FunctionName=f"{name}-fn", Name="live")["AliasArn"] == out["AliasArn"]
    )
    alarm = cloudwatch.describe_alarms(AlarmNames=[f"{name}-errors"])["MetricAlarms"][0]
    assert (alarm["Threshold"], alarm["AlarmActions"], alarm["AlarmArn"]) == (
        5.0,
        [topic_arn],
        out["AlarmArn"],
    )
    endpoint = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")
    assert endpoint["EndpointConfigName"] == f"{name}-config-v1"
    created = endpoint["CreationTime"]
    assert out["EndpointArn"].endswith(f":endpoint/{name}-endpoint")
    assert sagemaker.describe_model(ModelName=f"{name}-model")["ModelName"] == f"{name}-model"
    resource_id = f"endpoint/{name}-endpoint/variant/VariantA"
    target = scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    )
    assert [t["MaxCapacity"] for t in target["ScalableTargets"]] == [2]
    assert (
        out["ScalableTargetId"] == f"{resource_id}|sagemaker:variant:DesiredInstanceCount|sagemaker"
    )
    policies = scaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id
    )
    assert [p["PolicyARN"] for p in policies["ScalingPolicies"]] == [out["ScalingPolicyArn"]]
    tracking = policies["ScalingPolicies"][0]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 100.0
    project = codebuild.batch_get_projects(names=[f"{name}-build"])["projects"][0]
    assert (
        project["source"]["buildspec"] == "buildspec/build.yml"
        and project["arn"] == out["BuildArn"]
    )
    pipeline = codepipeline.get_pipeline(name=f"{name}-pipeline")["pipeline"]
    assert [s["name"] for s in pipeline["stages"]] == ["Source", "Build"]
    assert pipeline["stages"][0]["actions"][0]["configuration"]["PollForSourceChanges"] == "false"

    api = out["ApiId"]
    assert [d["id"] for d in apigateway.get_deployments(restApiId=api)["items"]] == [
        out["DeploymentId"]
    ]
    stage_info = apigateway.get_stage(restApiId=api, stageName="dev")
    assert stage_info["deploymentId"] == out["DeploymentId"]
    assert stage_info["methodSettings"]["*/*"]["throttlingRateLimit"] == 10
    assert stage_info["accessLogSettings"]["format"] == "$context.requestId"
    resource = next(
        r
        for r in apigateway.get_resources(restApiId=api)["items"]
        if r.get("pathPart") == "classify"
    )
    method = apigateway.get_method(restApiId=api, resourceId=resource["id"], httpMethod="POST")
    assert method["apiKeyRequired"] is True and method["requestValidatorId"] == out["ValidatorId"]
    assert method["methodIntegration"]["type"] == "AWS_PROXY"
    assert method["methodIntegration"]["uri"].endswith(f"function:{name}-fn/invocations")
    assert (
        apigateway.get_model(restApiId=api, modelName="ClassifyRequest")["contentType"]
        == "application/json"
    )
    assert apigateway.get_api_key(apiKey=out["ApiKeyId"], includeValue=True)["value"]
    assert out["ApiKeyAttr"] == out["ApiKeyId"]
    plan = apigateway.get_usage_plan(usagePlanId=out["UsagePlanId"])
    assert (
        plan["apiStages"] == [{"apiId": api, "stage": "dev"}]
        and plan["throttle"]["rateLimit"] == 10
    )
    assert [
        k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=out["UsagePlanId"])["items"]
    ] == [out["ApiKeyId"]]
    assert (
        apigateway.get_gateway_response(restApiId=api, responseType="UNAUTHORIZED")["statusCode"]
        == "401"
    )
    assert apigateway.get_account()["cloudwatchRoleArn"].endswith(f"role/{name}-apigw")

    # update: alarm threshold, throttling, A/B weights under a new endpoint config, pipeline stage
    updated = every_type_template(
        name, threshold=9, rate_limit=20, weights=(3, 1), config_suffix="v2", stage_action="Compile"
    )
    deploy(cfn, name, updated)
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert (
        cloudwatch.describe_alarms(AlarmNames=[f"{name}-errors"])["MetricAlarms"][0]["Threshold"]
        == 9.0
    )
    assert (
        apigateway.get_stage(restApiId=api, stageName="dev")["methodSettings"]["*/*"][
            "throttlingRateLimit"
        ]
        == 20
    )
    assert apigateway.get_usage_plan(usagePlanId=out["UsagePlanId"])["throttle"]["rateLimit"] == 20
    assert [
        k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=out["UsagePlanId"])["items"]
    ] == [out["ApiKeyId"]]
    endpoint = sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")
    assert endpoint["EndpointConfigName"] == f"{name}-config-v2"
    assert endpoint["CreationTime"] == created  # updated in place, not deleted and re-created
    assert [v["CurrentWeight"] for v in endpoint["ProductionVariants"]] == [3, 1]
    assert endpoint["DataCaptureConfig"]["DestinationS3Uri"].endswith("capture-v2")
    configs = [
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
    ]
    assert f"{name}-config-v2" in configs and f"{name}-config-v1" not in configs
    pipeline = codepipeline.get_pipeline(name=f"{name}-pipeline")["pipeline"]
    assert [s["name"] for s in pipeline["stages"]] == ["Source", "Compile"]
    filter_policy = sns.get_subscription_attributes(SubscriptionArn=out["SubscriptionArn"])[
        "Attributes"
    ]["FilterPolicy"]
    assert json.loads(filter_policy) == {"kind": ["filter-v2"]}
    assert outputs(cfn, name)["DeploymentId"] == out["DeploymentId"]

    cfn.delete_stack(StackName=name)
    assert_nothing_left(client, name, api, out)
    # As on AWS, deleting the stack leaves the account-wide setting naming the deleted role.
    assert apigateway.get_account()["cloudwatchRoleArn"].endswith(f"role/{name}-apigw")


def stack_sid(cfn, name):
    """Statement id of the second permission (the SNS one) of the every-type stack."""
    resources = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return next(
        r["PhysicalResourceId"]
        for r in resources
        if r["LogicalResourceId"] == "TopicInvokesFunction"
    )


def assert_nothing_left(client, name, api, out):
    s3, sns, awslambda, cloudwatch = (
        client("s3"),
        client("sns"),
        client("lambda"),
        client("cloudwatch"),
    )
    assert f"{name}-bucket" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert not [t for t in sns.list_topics()["Topics"] if name in t["TopicArn"]]
    assert not [s for s in sns.list_subscriptions()["Subscriptions"] if name in s["TopicArn"]]
    assert not [f for f in awslambda.list_functions()["Functions"] if name in f["FunctionName"]]
    assert not cloudwatch.describe_alarms(AlarmNames=[f"{name}-errors"])["MetricAlarms"]
    sagemaker = client("sagemaker")
    assert not [e for e in sagemaker.list_endpoints()["Endpoints"] if name in e["EndpointName"]]
    assert not [
        c
        for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        if name in c["EndpointConfigName"]
    ]
    assert not [m for m in sagemaker.list_models()["Models"] if name in m["ModelName"]]
    scaling = client("application-autoscaling")
    assert not scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{name}-endpoint/variant/VariantA"]
    )["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert all(name not in p["PolicyName"] for p in policies)
    assert f"{name}-build" not in client("codebuild").list_projects()["projects"]
    assert f"{name}-pipeline" not in [
        p["name"] for p in client("codepipeline").list_pipelines()["pipelines"]
    ]
    apigateway = client("apigateway")
    assert api not in [a["id"] for a in apigateway.get_rest_apis()["items"]]
    assert out["ApiKeyId"] not in [k["id"] for k in apigateway.get_api_keys()["items"]]
    assert out["UsagePlanId"] not in [p["id"] for p in apigateway.get_usage_plans()["items"]]
    assert all(not r["RoleName"].startswith(name) for r in client("iam").list_roles()["Roles"])


# ------------------------------------------------------------------------------------------
# the project's generated templates
# ------------------------------------------------------------------------------------------

TEMPLATES_OUT = REPO / "templates_out"


def _exists(call):
    """True if a describe/get call finds the resource, False on the service's not-found error."""
    try:
        return bool(call())
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404):
            return False
        raise


def _in_any_api(apigateway, lister, match):
    return any(
        match(item) for api in apigateway.get_rest_apis()["items"] for item in lister(api["id"])
    )


def resource_probes(client):
    """Resource type -> predicate(physical id): does the owning service show the resource?"""
    s3, iam, kms, logs = client("s3"), client("iam"), client("kms"), client("logs")
    awslambda, sns, sqs, cloudwatch = (
        client("lambda"),
        client("sns"),
        client("sqs"),
        client("cloudwatch"),
    )
    sagemaker, apigateway, scaling = (
        client("sagemaker"),
        client("apigateway"),
        client("application-autoscaling"),
    )
    codebuild, codepipeline = client("codebuild"), client("codepipeline")
    events = client("events")

    def permission(sid):
        functions = awslambda.list_functions()["Functions"]
        return any(
            sid
            in {
                s["Sid"]
                for s in json.loads(awslambda.get_policy(FunctionName=f["FunctionName"])["Policy"])[
                    "Statement"
                ]
            }
            for f in functions
            if _exists(lambda f=f: awslambda.get_policy(FunctionName=f["FunctionName"]))
        )

    def scalable_target(pid):
        resource_id, dimension, namespace = pid.split("|")
        found = scaling.describe_scalable_targets(
            ServiceNamespace=namespace, ResourceIds=[resource_id]
        )
        return any(t["ScalableDimension"] == dimension for t in found["ScalableTargets"])

    def scaling_policy(arn):
        namespace = arn.split(":resource/")[1].split("/")[0]
        return any(
            p["PolicyARN"] == arn
            for p in scaling.describe_scaling_policies(ServiceNamespace=namespace)[
                "ScalingPolicies"
            ]
        )

    def topic_policy(pid):
        """A TopicPolicy's id names no topic: one of its stack's topics has a policy of its own
        (SNS gives every new topic its default policy)."""
        stack_prefix = pid.rsplit("-", 2)[0] + "-"
        return any(
            "__default_policy_ID"
            not in sns.get_topic_attributes(TopicArn=t["TopicArn"])["Attributes"].get("Policy", "")
            for t in sns.list_topics()["Topics"]
            if t["TopicArn"].split(":")[-1].startswith(stack_prefix)
        )

    def usage_plan_key(pid):
        key, plan = pid.split(":")
        return _exists(lambda: apigateway.get_usage_plan_key(usagePlanId=plan, keyId=key))

    return {
        "AWS::S3::Bucket": lambda pid: _exists(lambda: s3.head_bucket(Bucket=pid)),
        "AWS::S3::BucketPolicy": lambda pid: _exists(lambda: s3.get_bucket_policy(Bucket=pid)),
        "AWS::IAM::Role": lambda pid: _exists(lambda: iam.get_role(RoleName=pid)),
        "AWS::KMS::Key": lambda pid: _exists(
            lambda: kms.describe_key(KeyId=pid)["KeyMetadata"]["KeyState"]
            not in ("PendingDeletion", "Disabled")
        ),
        "AWS::Logs::LogGroup": lambda pid: pid
        in [
            g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=pid)["logGroups"]
        ],
        "AWS::Lambda::Function": lambda pid: _exists(
            lambda: awslambda.get_function(FunctionName=pid)
        ),
        "AWS::Lambda::Permission": permission,
        "AWS::Lambda::EventInvokeConfig": lambda pid: _exists(
            lambda: awslambda.get_function_event_invoke_config(
                FunctionName=pid.split(":")[0], Qualifier=pid.split(":")[1]
            )
        ),
        "AWS::SNS::Topic": lambda pid: _exists(lambda: sns.get_topic_attributes(TopicArn=pid)),
        "AWS::SNS::TopicPolicy": topic_policy,
        "AWS::SNS::Subscription": lambda pid: _exists(
            lambda: sns.get_subscription_attributes(SubscriptionArn=pid)
        ),
        "AWS::SQS::Queue": lambda pid: _exists(lambda: sqs.get_queue_attributes(QueueUrl=pid)),
        "AWS::CloudWatch::Alarm": lambda pid: bool(
            cloudwatch.describe_alarms(AlarmNames=[pid])["MetricAlarms"]
        ),
        "AWS::CloudWatch::Dashboard": lambda pid: _exists(
            lambda: cloudwatch.get_dashboard(DashboardName=pid)
        ),
        "AWS::SageMaker::Model": lambda pid: _exists(
            lambda: sagemaker.describe_model(ModelName=pid.split("/")[-1])
        ),
        "AWS::SageMaker::EndpointConfig": lambda pid: _exists(
            lambda: sagemaker.describe_endpoint_config(EndpointConfigName=pid.split("/")[-1])
        ),
        "AWS::SageMaker::Endpoint": lambda pid: _exists(
            lambda: sagemaker.describe_endpoint(EndpointName=pid.split("/")[-1])
        ),
        "AWS::ApplicationAutoScaling::ScalableTarget": scalable_target,
        "AWS::ApplicationAutoScaling::ScalingPolicy": scaling_policy,
        "AWS::ApiGateway::RestApi": lambda pid: _exists(
            lambda: apigateway.get_rest_api(restApiId=pid)
        ),
        "AWS::ApiGateway::Resource": lambda pid: _in_any_api(
            apigateway,
            lambda api: apigateway.get_resources(restApiId=api)["items"],
            lambda r: r["id"] == pid,
        ),
        "AWS::ApiGateway::Method": lambda pid: _exists(
            lambda: apigateway.get_method(
                restApiId=pid.split("-")[0],
                resourceId=pid.split("-")[1],
                httpMethod=pid.split("-")[2],
            )
        ),
        "AWS::ApiGateway::Deployment": lambda pid: _in_any_api(
            apigateway,
            lambda api: apigateway.get_deployments(restApiId=api)["items"],
            lambda d: d["id"] == pid,
        ),
        "AWS::ApiGateway::Stage": lambda pid: _in_any_api(
            apigateway,
            lambda api: apigateway.get_stages(restApiId=api)["item"],
            lambda s: s["stageName"] == pid,
        ),
        "AWS::ApiGateway::ApiKey": lambda pid: _exists(lambda: apigateway.get_api_key(apiKey=pid)),
        "AWS::ApiGateway::UsagePlan": lambda pid: _exists(
            lambda: apigateway.get_usage_plan(usagePlanId=pid)
        ),
        "AWS::ApiGateway::UsagePlanKey": usage_plan_key,
        "AWS::ApiGateway::RequestValidator": lambda pid: _in_any_api(
            apigateway,
            lambda api: apigateway.get_request_validators(restApiId=api)["items"],
            lambda v: v["id"] == pid,
        ),
        "AWS::ApiGateway::Model": lambda pid: _in_any_api(
            apigateway,
            lambda api: apigateway.get_models(restApiId=api)["items"],
            lambda m: m["name"] == pid,
        ),
        "AWS::ApiGateway::GatewayResponse": lambda pid: _exists(
            lambda: apigateway.get_gateway_response(
                restApiId=pid.split("-")[0], responseType=pid.split("-", 1)[1]
            )
        ),
        "AWS::ApiGateway::Account": lambda pid: bool(
            apigateway.get_account().get("cloudwatchRoleArn")
        ),
        "AWS::CodeBuild::Project": lambda pid: bool(
            codebuild.batch_get_projects(names=[pid])["projects"]
        ),
        "AWS::Events::Rule": lambda pid: _exists(lambda: events.describe_rule(Name=pid)),
        "AWS::CodePipeline::Pipeline": lambda pid: _exists(
            lambda: codepipeline.get_pipeline(name=pid)
        ),
    }


def _zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def test_project_templates_deploy_redeploy_and_tear_down(cfn, client):
    manifest_file = TEMPLATES_OUT / "manifest.json"
    if not manifest_file.exists():
        pytest.skip("templates_out/manifest.json does not exist: run `make templates` first")
    manifest = json.loads(manifest_file.read_text())
    probes = resource_probes(client)
    s3 = client("s3")
    artifact_keys = {}
    deployed = []
    try:
        for entry in manifest["stacks"]:
            template = json.loads((TEMPLATES_OUT / entry["template"]).read_text())
            missing = {r["Type"] for r in template["Resources"].values()} - probes.keys()
            assert (
                not missing
            ), f"{entry['template']}: no probe for {sorted(missing)}; add one above"
            parameters = {}
            for parameter, source in entry["parameters"].items():
                artifact = source["artifact"]
                if artifact not in artifact_keys:
                    bucket = outputs(cfn, manifest["stacks"][0]["stack_name"])["ArtifactBucketName"]
                    key = f"compat-test/{artifact}/" + (
                        "model.tar.gz" if artifact.startswith("model") else "fn.zip"
                    )
                    s3.put_object(Bucket=bucket, Key=key, Body=_zip_bytes())
                    artifact_keys[artifact] = key
                parameters[parameter] = artifact_keys[artifact]
            deploy(cfn, entry["stack_name"], template, parameters)
            deployed.append((entry, template, parameters))
            assert stack(cfn, entry["stack_name"])["StackStatus"] == "CREATE_COMPLETE", entry[
                "stack_name"
            ]

        physical = {}
        for entry, template, _ in deployed:
            summaries = cfn.list_stack_resources(StackName=entry["stack_name"])[
                "StackResourceSummaries"
            ]
            listed = {s["LogicalResourceId"]: s for s in summaries}
            assert set(listed) == set(template["Resources"]), entry["stack_name"]
            for logical_id, summary in listed.items():
                assert summary["ResourceType"] == template["Resources"][logical_id]["Type"]
                assert summary["PhysicalResourceId"], (entry["stack_name"], logical_id)
                assert "object at 0x" not in summary["PhysicalResourceId"], (
                    entry["stack_name"],
                    logical_id,
                )
                assert probes[summary["ResourceType"]](summary["PhysicalResourceId"]), (
                    entry["stack_name"],
                    logical_id,
                )
                physical[(entry["stack_name"], logical_id)] = (
                    summary["ResourceType"],
                    summary["PhysicalResourceId"],
                )
            declared = {key for key in template.get("Outputs", {})}
            assert set(outputs(cfn, entry["stack_name"])) == declared, entry["stack_name"]

        for entry, template, parameters in deployed:
            again = deploy(cfn, entry["stack_name"], template, parameters)
            assert (
                again["Status"] == "FAILED" and "didn't contain changes" in again["StatusReason"]
            ), entry
    finally:
        for entry, _, _ in reversed(deployed):
            for name in _stack_buckets(cfn, entry["stack_name"]):
                empty_bucket(s3, name)  # versioned buckets: every version and delete marker
            cfn.delete_stack(StackName=entry["stack_name"])

    live = {
        s["StackName"]
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    }
    assert not live & {entry["stack_name"] for entry in manifest["stacks"]}
    shared = {"AWS::ApiGateway::Account"}  # an account-wide setting, not a resource
    left = [
        key for key, (kind, pid) in physical.items() if kind not in shared and probes[kind](pid)
    ]
    assert not left, f"still present after teardown: {left}"


def _stack_buckets(cfn, stack_name):
    summaries = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return [s["PhysicalResourceId"] for s in summaries if s["ResourceType"] == "AWS::S3::Bucket"]


def test_update_creates_added_resources_in_dependency_order(cfn, client):
    name = unique("grow")
    api_only = {
        "Resources": {"Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": name}}}
    }
    deploy(cfn, name, api_only)
    grown = {
        "Resources": {
            # added by the update and listed first: it must still wait for the method
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "DependsOn": "Method",
                "Properties": {"RestApiId": {"Ref": "Api"}},
            },
            **api_only["Resources"],
            "Method": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                    "HttpMethod": "GET",
                    "AuthorizationType": "NONE",
                    "Integration": {"Type": "MOCK"},
                },
            },
        },
        "Outputs": {"ApiId": {"Value": {"Ref": "Api"}}},
    }
    deploy(cfn, name, grown)
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    api_id = outputs(cfn, name)["ApiId"]
    assert len(client("apigateway").get_deployments(restApiId=api_id)["items"]) == 1


def test_create_change_set_on_a_live_stack_is_refused(cfn):
    prefix = unique("dup")
    deploy(cfn, prefix, bucket_template(prefix))
    with pytest.raises(ClientError, match="AlreadyExistsException|already exists"):
        cfn.create_change_set(
            StackName=prefix,
            ChangeSetName="again",
            ChangeSetType="CREATE",
            TemplateBody=json.dumps(bucket_template(prefix)),
        )


def test_unchanged_list_parameter_reused_with_use_previous_value(cfn):
    name = unique("list")
    template = {
        "Parameters": {"Names": {"Type": "CommaDelimitedList"}},
        "Resources": {
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": f"/{name}",
                    "Type": "String",
                    "Value": {"Fn::Join": ["+", {"Ref": "Names"}]},
                },
            }
        },
    }
    deploy(cfn, name, template, {"Names": "a,b"})
    # what the CLI sends for a parameter that is not overridden
    change_set = cfn.create_change_set(
        StackName=name,
        ChangeSetName="previous",
        ChangeSetType="UPDATE",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "Names", "UsePreviousValue": True}],
    )
    described = cfn.describe_change_set(ChangeSetName=change_set["Id"])
    assert described["Status"] == "FAILED"
    assert "didn't contain changes" in described["StatusReason"]


def test_bucket_policy_denying_insecure_transport_lets_requests_through(cfn, client):
    name = unique("tls")
    guarded = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": name}},
            "Policy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bucket"},
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "DenyInsecureTransport",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": {"Fn::Sub": "${Bucket.Arn}/*"},
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            },
                            {
                                "Sid": "DenyWritesUnderLocked",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:PutObject",
                                "Resource": {"Fn::Sub": "${Bucket.Arn}/locked/*"},
                            },
                        ],
                    },
                },
            },
        }
    }
    deploy(cfn, name, guarded)
    s3 = client("s3")
    s3.put_object(Bucket=name, Key="open/object", Body=b"data")
    assert s3.get_object(Bucket=name, Key="open/object")["Body"].read() == b"data"
    with pytest.raises(ClientError, match="403|Forbidden|AccessDenied"):
        s3.put_object(Bucket=name, Key="locked/object", Body=b"data")


def test_delete_of_a_non_empty_bucket_fails_then_succeeds_once_emptied(cfn, client):
    name = unique("full")
    deploy(
        cfn,
        name,
        {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": name}}}},
    )
    s3 = client("s3")
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    not_empty = "Resource B .* failed to delete: The bucket you tried to delete is not empty"
    with pytest.raises(ClientError, match=not_empty):
        cfn.delete_stack(StackName=name)
    assert stack(cfn, name)["StackStatus"] == "DELETE_FAILED"
    s3.delete_object(Bucket=name, Key="k")
    cfn.delete_stack(StackName=name)
    assert not _stacks_named(cfn, name)


def test_metric_values_are_stored_as_one_datum_with_the_same_statistics(client):
    cloudwatch, namespace = client("cloudwatch"), unique("Values")
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    dimensions = [{"Name": "TestCase", "Value": "tc-001"}]

    def response_time(**samples):
        shared = {"Dimensions": dimensions, "Timestamp": minute, "Unit": "Milliseconds"}
        return {"MetricName": "ResponseTime", **shared, **samples}

    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            response_time(Values=[1.5, 2.0, 10.0, 99.0], Counts=[3, 1, 2, 0]),
            response_time(Values=[4.0, 0.5]),  # no Counts: once each
            response_time(Value=8.0),
            {"MetricName": "Unsent", "Timestamp": minute, "Values": [1.0], "Counts": [0]},
        ],
    )
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][REGION]
    stored = [datum for datum in backend.metric_data if datum.namespace == namespace]
    kinds = [type(datum).__name__ for datum in stored]
    assert kinds == ["MetricAggregatedDatum", "MetricAggregatedDatum", "MetricDatum"]

    (point,) = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="ResponseTime",
        Dimensions=dimensions,
        StartTime=minute - timedelta(minutes=1),
        EndTime=minute + timedelta(minutes=1),
        Period=60,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
    )["Datapoints"]
    # 1.5 three times, 2.0, 10.0 twice (99.0 counted 0 times), 4.0, 0.5, 8.0
    statistics = [point[name] for name in ("SampleCount", "Sum", "Minimum", "Maximum")]
    assert statistics == [9.0, 39.0, 0.5, 10.0]
    assert point["Average"] == pytest.approx(39.0 / 9)

    with pytest.raises(ClientError, match=r"MetricData\.member\.1\.Values and .* same size"):
        cloudwatch.put_metric_data(
            Namespace=namespace, MetricData=[response_time(Values=[1.0, 2.0], Counts=[1])]
        )


def test_parameter_used_only_in_sub_updates_the_resource(cfn, client):
    name = unique("sub")
    template = {
        "Parameters": {"Suffix": {"Type": "String"}},
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": {"Fn::Sub": f"{name}-${{Suffix}}"}},
            }
        },
        "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}},
    }
    deploy(cfn, name, template, {"Suffix": "one"})
    deploy(cfn, name, template, {"Suffix": "two"})
    assert outputs(cfn, name)["BucketName"] == f"{name}-two"
    buckets = {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
    assert f"{name}-two" in buckets and f"{name}-one" not in buckets


def test_parallel_deploys_with_concurrent_readers(endpoint, client):
    """`make -j` deploys stacks in parallel while others list them: no resource is built twice."""

    def new_cfn():
        return boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        ).client("cloudformation", endpoint_url=endpoint)

    names = [unique("parallel") for _ in range(4)]
    errors = []
    done = threading.Event()

    def read_everything():
        reader = new_cfn()
        while not done.is_set():
            for summary in reader.describe_stacks()["Stacks"]:
                if summary["StackName"] in names:
                    reader.list_stack_resources(StackName=summary["StackName"])

    def deploy_one(name):
        try:
            deploy(new_cfn(), name, every_type_template(name))
        except ClientError as error:
            errors.append(error)

    readers = [threading.Thread(target=read_everything) for _ in range(2)]
    writers = [threading.Thread(target=deploy_one, args=(name,)) for name in names]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert not errors
    cfn = new_cfn()
    assert [stack(cfn, name)["StackStatus"] for name in names] == ["CREATE_COMPLETE"] * 4
    for name in names:
        cfn.delete_stack(StackName=name)


def test_only_resources_whose_resolved_properties_change_are_updated(cfn, client):
    name = unique("narrow")
    template = {
        "Parameters": {"Suffix": {"Type": "String"}},
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"BucketName": {"Fn::Sub": f"{name}-${{Suffix}}"}},
            },
            # ordered after the bucket, but nothing it resolves to changes: it must stay as is
            "Key": {"Type": "AWS::ApiGateway::ApiKey", "DependsOn": "Bucket", "Properties": {}},
            # refers to the bucket: follows its replacement
            "Param": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}", "Type": "String", "Value": {"Ref": "Bucket"}},
            },
        },
        "Outputs": {"KeyId": {"Value": {"Ref": "Key"}}},
    }
    deploy(cfn, name, template, {"Suffix": "one"})
    key_id = outputs(cfn, name)["KeyId"]
    deploy(cfn, name, template, {"Suffix": "two"})
    assert outputs(cfn, name)["KeyId"] == key_id
    assert client("ssm").get_parameter(Name=f"/{name}")["Parameter"]["Value"] == f"{name}-two"
    updated = {
        e["LogicalResourceId"]
        for e in events(cfn, name)
        if e["ResourceStatus"] == "UPDATE_COMPLETE"
    }
    assert updated == {"Bucket", "Param", name}


def test_exports_in_use_can_be_neither_deleted_nor_changed(cfn, client):
    prefix = unique("inuse")
    exporter, importer = f"{prefix}-a", f"{prefix}-b"
    deploy(cfn, exporter, bucket_template(prefix))
    deploy(cfn, importer, importer_template(prefix))

    with pytest.raises(ClientError, match=f"Cannot update export {prefix}-bucket .* by {importer}"):
        deploy(cfn, exporter, bucket_template(prefix), {"Suffix": "v2"})
    assert stack(cfn, exporter)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert exports(cfn)[f"{prefix}-bucket"] == f"{prefix}-v1"

    with pytest.raises(
        ClientError, match=f"Export {prefix}-bucket cannot be deleted .* {importer}"
    ):
        cfn.delete_stack(StackName=exporter)
    assert stack(cfn, exporter)["StackStatus"] == "DELETE_FAILED"
    assert f"{prefix}-v1" in {b["Name"] for b in client("s3").list_buckets()["Buckets"]}

    cfn.delete_stack(StackName=importer)  # in reverse dependency order both go
    cfn.delete_stack(StackName=exporter)
    assert not _stacks_named(cfn, exporter) and f"{prefix}-bucket" not in exports(cfn)


def upload_function_code(client, name):
    """The bucket and key that function_template's code comes from."""
    client("s3").create_bucket(Bucket=name)
    client("s3").put_object(Bucket=name, Key="code.zip", Body=_zip_bytes())


def function_template(name, reserved=None):
    function = {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Handler": "handler.handler",
        "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        # S3 code, as the project's functions have: moto cannot update an inline ZipFile
        "Code": {"S3Bucket": name, "S3Key": "code.zip"},
    }
    if reserved is not None:
        function["ReservedConcurrentExecutions"] = reserved
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": _trust("lambda.amazonaws.com")},
            },
            "Function": {"Type": "AWS::Lambda::Function", "Properties": function},
        }
    }


def test_an_update_applies_a_changed_or_removed_reserved_concurrency(cfn, client):
    name = unique("reserved")
    awslambda = client("lambda")
    upload_function_code(client, name)

    def reserved():
        return awslambda.get_function_concurrency(FunctionName=name).get(
            "ReservedConcurrentExecutions"
        )

    deploy(cfn, name, function_template(name, 5))
    assert reserved() == 5
    deploy(cfn, name, function_template(name, 50))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert reserved() == 50
    deploy(cfn, name, function_template(name))
    assert reserved() is None
    deploy(cfn, name, function_template(name, 0))
    assert reserved() == 0
    cfn.delete_stack(StackName=name)


def configured_bucket_template(name, expiry_days, block_public_access=True):
    properties = {
        "BucketName": name,
        "VersioningConfiguration": {"Status": "Enabled"},
        "LifecycleConfiguration": {
            "Rules": [
                {
                    "Id": "ExpireNoncurrentVersions",
                    "Status": "Enabled",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                },
                {
                    "Id": "ExpireResults",
                    "Status": "Enabled",
                    "Prefix": "results/",
                    "ExpirationInDays": expiry_days,
                },
            ]
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    }
    if block_public_access:
        properties["PublicAccessBlockConfiguration"] = {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    return {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": properties}}}


def test_a_bucket_gets_and_updates_its_versioning_lifecycle_access_block_and_ownership(
    cfn, client
):
    name = unique("configured")
    s3 = client("s3")
    deploy(cfn, name, configured_bucket_template(name, 30))
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"] == [
        {
            "ID": "ExpireNoncurrentVersions",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
        {
            "ID": "ExpireResults",
            "Filter": {"Prefix": "results/"},
            "Status": "Enabled",
            "Expiration": {"Days": 30},
        },
    ]
    assert s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]

    # versioned: an overwritten object keeps its earlier version
    s3.put_object(Bucket=name, Key="results/a", Body=b"1")
    s3.put_object(Bucket=name, Key="results/a", Body=b"2")
    assert len(s3.list_object_versions(Bucket=name)["Versions"]) == 2

    deploy(cfn, name, configured_bucket_template(name, 7, block_public_access=False))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert rules[1]["Expiration"] == {"Days": 7}
    with pytest.raises(ClientError, match="NoSuchPublicAccessBlockConfiguration"):
        s3.get_public_access_block(Bucket=name)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"


def test_a_lifecycle_rule_property_the_local_cloud_cannot_apply_fails_the_stack_by_name(cfn):
    name = unique("transition")
    template = configured_bucket_template(name, 30)
    rule = template["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"][1]
    rule["Transitions"] = [{"StorageClass": "GLACIER", "TransitionInDays": 10}]
    with pytest.raises(ClientError, match="rule 2: the local cloud does not support Transitions"):
        deploy(cfn, name, template)


def eventbridge_bucket_template(name, eventbridge=True):
    """A bucket, and a rule sending its uploads of one key to a queue."""
    bucket = {"BucketName": name}
    if eventbridge:
        bucket["NotificationConfiguration"] = {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}
        }
    return {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": bucket},
            "Uploads": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}},
            "Uploaded": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": name,
                    "EventPattern": {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": {
                            "bucket": {"name": [{"Ref": "Bucket"}]},
                            "object": {"key": ["source/app.zip"]},
                        },
                    },
                    "Targets": [{"Id": "Queue", "Arn": {"Fn::GetAtt": ["Uploads", "Arn"]}}],
                },
            },
        }
    }


def test_a_bucket_sends_its_events_to_eventbridge_until_an_update_stops_them(cfn, client):
    name = unique("eventbridge")
    s3, sqs = client("s3"), client("sqs")
    deploy(cfn, name, eventbridge_bucket_template(name))
    # moto's GetBucketNotificationConfiguration never shows EventBridgeConfiguration: the
    # events that arrive are the evidence.
    queue = sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def uploads_seen():
        s3.put_object(Bucket=name, Key="source/app.zip", Body=b"1")
        s3.put_object(Bucket=name, Key="source/other.zip", Body=b"1")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages]

    assert uploads_seen() == ["source/app.zip"]

    deploy(cfn, name, eventbridge_bucket_template(name, eventbridge=False))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert uploads_seen() == []
    empty_bucket(s3, name)
    cfn.delete_stack(StackName=name)


def test_a_notification_destination_the_local_cloud_cannot_apply_fails_the_stack_by_name(cfn):
    name = unique("notification")
    template = eventbridge_bucket_template(name)
    notification = template["Resources"]["Bucket"]["Properties"]["NotificationConfiguration"]
    notification["QueueConfigurations"] = [
        {"Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": ["Uploads", "Arn"]}}
    ]
    with pytest.raises(ClientError, match="does not support QueueConfigurations"):
        deploy(cfn, name, template)


def role_template(trusted_service, policies):
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": _trust(trusted_service),
                    "Policies": [
                        {
                            "PolicyName": name,
                            "PolicyDocument": {
                                "Version": "2012-10-17",
                                "Statement": [
                                    {"Effect": "Allow", "Action": action, "Resource": "*"}
                                ],
                            },
                        }
                        for name, action in policies.items()
                    ],
                },
            }
        },
        "Outputs": {"RoleName": {"Value": {"Ref": "Role"}}},
    }


def test_an_update_changes_a_roles_trust_policy_and_inline_policies(cfn, client):
    name = unique("role")
    iam = client("iam")

    def actions(role):
        return {
            policy: iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"][
                "Statement"
            ][0]["Action"]
            for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]
        }

    def trusted(role):
        document = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        return document["Statement"][0]["Principal"]["Service"]

    deploy(cfn, name, role_template("lambda.amazonaws.com", {"Read": "s3:GetObject"}))
    role = outputs(cfn, name)["RoleName"]
    assert actions(role) == {"Read": "s3:GetObject"}
    deploy(
        cfn,
        name,
        role_template(
            "sagemaker.amazonaws.com", {"Read": "s3:ListBucket", "Publish": "sns:Publish"}
        ),
    )
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert outputs(cfn, name)["RoleName"] == role  # updated in place
    assert actions(role) == {"Read": "s3:ListBucket", "Publish": "sns:Publish"}
    assert trusted(role) == "sagemaker.amazonaws.com"
    deploy(cfn, name, role_template("sagemaker.amazonaws.com", {"Publish": "sns:Publish"}))
    assert actions(role) == {"Publish": "sns:Publish"}
    cfn.delete_stack(StackName=name)


def test_a_function_keeps_its_dead_letter_config_through_create_and_update(cfn, client):
    name = unique("dlq")
    upload_function_code(client, name)

    def template(with_dead_letters):
        resources = function_template(name)["Resources"]
        resources["DeadLetters"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
        if with_dead_letters:
            resources["Function"]["Properties"]["DeadLetterConfig"] = {
                "TargetArn": {"Fn::GetAtt": ["DeadLetters", "Arn"]}
            }
        return {
            "Resources": resources,
            "Outputs": {"QueueArn": {"Value": {"Fn::GetAtt": ["DeadLetters", "Arn"]}}},
        }

    def dead_letter_config():
        return client("lambda").get_function_configuration(FunctionName=name).get(
            "DeadLetterConfig"
        )

    deploy(cfn, name, template(True))
    assert dead_letter_config() == {"TargetArn": outputs(cfn, name)["QueueArn"]}
    deploy(cfn, name, template(False))
    assert stack(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert dead_letter_config() is None
    deploy(cfn, name, template(True))
    assert dead_letter_config() == {"TargetArn": outputs(cfn, name)["QueueArn"]}
    cfn.delete_stack(StackName=name)


def test_describe_endpoint_reports_data_capture_as_a_summary(client):
    sagemaker = client("sagemaker")
    name = unique("capture")
    sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/{name}",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
    )
    variant = {
        "VariantName": "A",
        "ModelName": f"{name}-model",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    capture = {
        "InitialSamplingPercentage": 30,
        "DestinationS3Uri": "s3://bucket/data-capture",
        "KmsKeyId": "alias/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    described = {}
    for suffix, config in (
        ("on", capture),  # EnableCapture omitted: enabled, the API's default
        ("off", {**capture, "EnableCapture": False}),
        ("none", None),
    ):
        sagemaker.create_endpoint_config(
            EndpointConfigName=f"{name}-{suffix}",
            ProductionVariants=[variant],
            **({"DataCaptureConfig": config} if config else {}),
        )
        sagemaker.create_endpoint(
            EndpointName=f"{name}-{suffix}", EndpointConfigName=f"{name}-{suffix}"
        )
        described[suffix] = sagemaker.describe_endpoint(EndpointName=f"{name}-{suffix}")

    assert described["on"]["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 30,
        "DestinationS3Uri": "s3://bucket/data-capture",
        "KmsKeyId": "alias/capture",
    }
    assert described["off"]["DataCaptureConfig"]["EnableCapture"] is False
    assert described["off"]["DataCaptureConfig"]["CaptureStatus"] == "Stopped"
    assert "DataCaptureConfig" not in described["none"]
    # the endpoint config keeps what it was given, for the data plane and DescribeEndpointConfig
    assert sagemaker.describe_endpoint_config(EndpointConfigName=f"{name}-on")[
        "DataCaptureConfig"
    ]["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}


def test_endpoint_config_with_invalid_data_capture_is_refused(cfn, client):
    """As SageMaker (and CloudFormation's schema check) refuse it: stored, a config like this one
    captured nothing and made DescribeEndpoint answer 500."""
    sagemaker = client("sagemaker")
    name = unique("badcapture")
    sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/{name}",
        PrimaryContainer={"Image": f"{ECR_IMAGE}:2"},
    )
    capture = {
        "InitialSamplingPercentage": 30,
        "DestinationS3Uri": "bucket/data-capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    with pytest.raises(ClientError, match=r"DestinationS3Uri='bucket/data-capture'") as refused:
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "A",
                    "ModelName": f"{name}-model",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
            DataCaptureConfig=capture,
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert name not in {
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
    }

    template = _serving_template(name)
    template["Resources"]["Config"]["Properties"]["DataCaptureConfig"] = {
        **capture,
        "DestinationS3Uri": f"s3://{name}/data-capture",
        "InitialSamplingPercentage": "thirty",
    }
    with pytest.raises(ClientError, match=r"InitialSamplingPercentage='thirty'"):
        deploy(cfn, name, template)
    assert stack(cfn, name)["StackStatus"] == "ROLLBACK_COMPLETE"
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=f"{name}-endpoint")
    cfn.delete_stack(StackName=name)


def test_capture_summary_reads_the_values_cloudformation_passes():
    summary = compat.capture_summary(
        {"EnableCapture": "false", "InitialSamplingPercentage": "25", "DestinationS3Uri": "s3://b"}
    )
    assert summary == {
        "EnableCapture": False,
        "CaptureStatus": "Stopped",
        "CurrentSamplingPercentage": 25,
        "DestinationS3Uri": "s3://b",
    }
