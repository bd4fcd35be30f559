"""The pipeline's roles against the AWS calls made with them.

The deploy build runs `make pack templates deploy TARGET=aws`: the workflow's boto3 calls and
`aws cloudformation deploy` are replayed here against stubbed clients, and every call they make
must be allowed by the deploy build's role. CloudFormation's own calls, made with the execution
role, are those the resource provider schemas (shipped with cfn-lint) list for each resource type.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER
from generator_testkit import VARIANTS, as_list

STACK = "TextClassificationDemo-api-hosting"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
# IAM action authorising each S3 operation the deploy build makes (HeadObject is s3:GetObject).
S3_ACTIONS = {"HeadObject": "s3:GetObject", "PutObject": "s3:PutObject"}
# Schema permissions that are API operations, not IAM actions: DeleteBucketTagging is
# authorised as s3:PutBucketTagging (S3 API reference, DeleteBucketTagging).
NOT_IAM_ACTIONS = {"s3:DeleteBucketTagging"}


def _statements(doc: dict, role: str) -> list[dict]:
    policies = doc["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _allowed(doc: dict, role: str) -> set[str]:
    return {
        action
        for statement in _statements(doc, role)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


def _client(service: str):
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


class Recorder:
    """A stubbed client per service that remembers each operation queued for it; the stubs
    fail on any call not queued, and the test checks every queued call was made."""

    def __init__(self):
        self.clients = {s: _client(s) for s in ("cloudformation", "s3")}
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}
        self.operations: set[tuple[str, str]] = set()

    def respond(self, service: str, method: str, response: dict) -> None:
        self.stubs[service].add_response(method, response)
        self.operations.add((service, self.clients[service].meta.method_to_api_mapping[method]))

    def fail(self, service: str, method: str, code: str, message: str, status: int = 400) -> None:
        self.stubs[service].add_client_error(method, code, message, http_status_code=status)
        self.operations.add((service, self.clients[service].meta.method_to_api_mapping[method]))

    def __enter__(self):
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc):
        for stub in self.stubs.values():
            stub.deactivate()
        if exc[0] is None:
            for stub in self.stubs.values():
                stub.assert_no_pending_responses()

    def iam_actions(self) -> set[str]:
        return {
            f"cloudformation:{op}" if service == "cloudformation" else S3_ACTIONS[op]
            for service, op in self.operations
        }


def _stack(status: str, outputs: list | None = None) -> dict:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "StackStatus": status,
                "CreationTime": NOW,
                "Outputs": outputs or [],
            }
        ]
    }


def _replay_deploy_build(calls: Recorder) -> None:
    """What `make deploy TARGET=aws` does with its credentials, stack by stack."""
    from awscli.customizations.cloudformation.deployer import Deployer

    from workflow.archive import sha256
    from workflow.deploy import EventPrinter, _settle_earlier_attempt, upload

    cfn = calls.clients["cloudformation"]
    # A stack whose first creation failed is deleted before this run creates it again.
    calls.respond("cloudformation", "describe_stacks", _stack("ROLLBACK_COMPLETE"))
    calls.respond("cloudformation", "delete_stack", {})
    calls.fail("cloudformation", "describe_stacks", "ValidationError", f"{STACK} does not exist")
    _settle_earlier_attempt(cfn, STACK)

    # Artifacts go to the artifact bucket named by the model-archiving stack's output.
    output = [{"OutputKey": "ArtifactBucketName", "OutputValue": "artifacts"}]
    calls.respond("cloudformation", "describe_stacks", _stack("UPDATE_COMPLETE", output))
    calls.fail("s3", "head_object", "404", "Not Found", 404)
    calls.respond("s3", "put_object", {})
    ctx = SimpleNamespace(
        target=SimpleNamespace(client=calls.clients.__getitem__),
        manifest=SimpleNamespace(stack=lambda concern: SimpleNamespace(stack_name=STACK)),
    )
    digest = sha256(Path(__file__).read_bytes())
    upload(ctx, {"predictor": {"path": __file__, "key": "functions/p.zip", "sha256": digest}})

    # `aws cloudformation deploy` updating a stack through a change set, events printed meanwhile.
    deployer = Deployer(cfn)
    calls.respond("cloudformation", "describe_stacks", _stack("UPDATE_COMPLETE"))
    calls.respond("cloudformation", "get_template_summary", {"Parameters": []})
    calls.respond("cloudformation", "create_change_set", {"Id": "cs", "StackId": STACK})
    calls.respond("cloudformation", "describe_change_set", {"Status": "CREATE_COMPLETE"})
    result = deployer.create_and_wait_for_changeset(
        STACK, "{}", [], ["CAPABILITY_IAM"], "arn:aws:iam::111122223333:role/cfn", None, None, []
    )
    calls.respond("cloudformation", "execute_change_set", {})
    deployer.execute_changeset(result.changeset_id, STACK)
    calls.respond("cloudformation", "describe_stack_events", {"StackEvents": []})
    EventPrinter(cfn, STACK, NOW).poll()
    calls.respond("cloudformation", "describe_stacks", _stack("UPDATE_COMPLETE"))
    deployer.wait_for_execute(STACK, result.changeset_type)


def test_deploy_build_role_allows_every_call_of_make_deploy(templates):
    with Recorder() as calls:
        _replay_deploy_build(calls)
    allowed = _allowed(templates["cicd-pipeline"], "DeployBuildRole")
    assert calls.iam_actions() - allowed == set()
    stacks = next(
        s
        for s in _statements(templates["cicd-pipeline"], "DeployBuildRole")
        if s["Sid"] == "DeployProjectStacks"
    )
    assert "cloudformation:DeleteStack" in stacks["Action"]


def _provider_schema(type_name: str) -> dict:
    return PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_name).schema


def _deployed(variant_renders, name: str) -> tuple[dict, set[str]]:
    """The cicd-pipeline template and every resource type the pipeline deploys."""
    files = variant_renders[name]
    types = {
        res["Type"]
        for filename, text in files.items()
        if filename != "manifest.json"
        for res in json.loads(text)["Resources"].values()
    }
    return json.loads(files["cicd-pipeline.json"]), types


PIPELINE_VARIANTS = sorted(n for n, changes in VARIANTS.items() if changes.get("cicd.enabled", 1))


@pytest.mark.parametrize("name", PIPELINE_VARIANTS)
def test_execution_role_manages_the_stack_tags_of_every_resource(name, variant_renders):
    """`make deploy` tags every stack (Project, Stage, project.tags) and CloudFormation passes
    the tags on to each taggable resource; without the tagging permissions its provider
    schema lists, the stack operation fails."""
    doc, types = _deployed(variant_renders, name)
    allowed = _allowed(doc, "CloudFormationExecutionRole")
    missing = {
        type_name: sorted(set(tagging.get("permissions", [])) - allowed - NOT_IAM_ACTIONS)
        for type_name in sorted(types)
        if (tagging := _provider_schema(type_name).get("tagging", {})).get("taggable")
    }
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.mark.parametrize("name", PIPELINE_VARIANTS)
def test_execution_role_reads_back_every_resource(name, variant_renders):
    """CloudFormation reads each resource back after creating or updating it, with every
    permission its provider schema's read handler lists (a scalable target's scheduled actions,
    a log group's data protection policy, ...)."""
    doc, types = _deployed(variant_renders, name)
    allowed = _allowed(doc, "CloudFormationExecutionRole")
    missing = {
        type_name: sorted(set(read.get("permissions", [])) - allowed)
        for type_name in sorted(types)
        if (read := _provider_schema(type_name).get("handlers", {}).get("read"))
    }
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.mark.parametrize("name", PIPELINE_VARIANTS)
def test_execution_role_creates_updates_and_deletes_the_source_rule(name, variant_renders):
    """The S3 source's EventBridge rule, through every handler its provider schema lists, on
    the rule's own name; the role is granted with either source, so that a switch to a
    repository source can delete the rule. The source bucket's event delivery to EventBridge is
    a bucket notification configuration."""
    doc, _ = _deployed(variant_renders, name)
    allowed = _allowed(doc, "CloudFormationExecutionRole")
    handlers = _provider_schema("AWS::Events::Rule")["handlers"]
    needed = {p for h in ("create", "read", "update", "delete") for p in handlers[h]["permissions"]}
    assert needed - allowed == set()
    assert {"s3:PutBucketNotification", "s3:GetBucketNotification"} <= allowed
    rules = next(
        s
        for s in _statements(doc, "CloudFormationExecutionRole")
        if "events:PutRule" in as_list(s["Action"])
    )
    (scope,) = rules["Resource"]
    assert scope["Fn::Sub"].endswith(":rule/TextClassificationDemo-*")
    for rule in (r for r in doc["Resources"].values() if r["Type"] == "AWS::Events::Rule"):
        assert rule["Properties"]["Name"].startswith("TextClassificationDemo-")


@pytest.mark.parametrize("name", PIPELINE_VARIANTS)
def test_execution_role_manages_every_log_group_the_stacks_declare(name, variant_renders):
    """Each declared log group's name (an API's id standing in for `${RestApi}`) falls within
    the log groups the execution role may create and delete."""
    import fnmatch
    import re

    doc = json.loads(variant_renders[name]["cicd-pipeline.json"])
    managed = [
        re.sub(r"^arn:\$\{AWS::Partition\}:logs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:log-group:",
               "", arn["Fn::Sub"])
        for statement in _statements(doc, "CloudFormationExecutionRole")
        if statement["Sid"] == "ManageLogGroups"
        for arn in statement["Resource"]
    ]
    groups = [
        res["Properties"]["LogGroupName"]
        for filename, text in variant_renders[name].items()
        if filename != "manifest.json"
        for res in json.loads(text)["Resources"].values()
        if res["Type"] == "AWS::Logs::LogGroup"
    ]
    names = [g["Fn::Sub"].replace("${RestApi}", "a1b2c3d4e5") if isinstance(g, dict) else g
             for g in groups]
    assert len(names) >= 5 and all(isinstance(n, str) for n in names)
    assert [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in managed)] == []
