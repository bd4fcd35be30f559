"""Config variants and template queries shared by the generator tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = ROOT / "config.json"


def base_document() -> dict:
    return json.loads(CONFIG_PATH.read_text(encoding="utf-8"))


def variant(**changes) -> dict:
    """The shipped config with dotted-path changes, e.g. variant(**{"api_hosting.auth": "iam"})."""
    document = copy.deepcopy(base_document())
    for path, value in changes.items():
        set_path(document, path, value)
    return document


def set_path(document, path: str, value) -> None:
    """Set `a.b[1].c` in a nested document; value DELETE removes the key."""
    parts = path.replace("]", "").replace("[", ".").split(".")
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()

# docs/architecture.md: the concerns, in deploy order.
CONCERNS = (
    "model-archiving",
    "model-serving",
    "api-hosting",
    "monitor-dashboard",
    "cicd-pipeline",
    "api-testing",
    "tester-dashboard",
)

# Configurations that switch on every optional branch of the generator.
VARIANTS = {
    "default": {},
    "iam-auth": {"api_hosting.auth": "iam", "api_hosting.account_logging_role": "existing"},
    "scaling-guardrail": {
        "model_serving.models[0].autoscaling.enabled": True,
        "model_serving.models[1].autoscaling.enabled": True,
        "model_serving.models[1].instance_type": "ml.m5d.large",
        "model_serving.deployment_guardrail.enabled": True,
        "monitoring.subscription_emails": ["ops@example.com"],
    },
    "repository-approval": {
        "cicd.connection_arn": "arn:aws:codeconnections:us-east-1:123456789012:connection/"
        "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "cicd.repository": "example/text-classification",
        "cicd.manual_approval": True,
    },
    "no-cicd-single-model": {
        "cicd.enabled": False,
        "model_serving.models": [base_document()["model_serving"]["models"][0]],
        "model_serving.data_capture.capture_json_as_json": False,
    },
}


def resources_of(template: dict, type_name: str) -> dict[str, dict]:
    return {
        lid: res for lid, res in template.get("Resources", {}).items() if res["Type"] == type_name
    }


def one(template: dict, type_name: str) -> dict:
    found = resources_of(template, type_name)
    assert len(found) == 1, f"expected one {type_name}, found {sorted(found)}"
    return next(iter(found.values()))


def walk(node):
    """Every nested value of a JSON document (dicts, lists, scalars)."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def imports_of(template: dict) -> set[str]:
    return {
        node["Fn::ImportValue"]
        for node in walk(template)
        if isinstance(node, dict) and "Fn::ImportValue" in node
    }


def exports_of(template: dict) -> set[str]:
    return {
        out["Export"]["Name"] for out in template.get("Outputs", {}).values() if "Export" in out
    }


def policy_documents(template: dict):
    """(logical id, kind, document) of every IAM policy, bucket policy and key policy."""
    for lid, res in template.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield lid, "identity", policy["PolicyDocument"]
            yield lid, "trust", props["AssumeRolePolicyDocument"]
        elif res["Type"] == "AWS::S3::BucketPolicy":
            yield lid, "bucket", props["PolicyDocument"]
        elif res["Type"] == "AWS::KMS::Key":
            yield lid, "key", props["KeyPolicy"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]
