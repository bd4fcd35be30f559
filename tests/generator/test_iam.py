"""IAM: no wildcard actions, `*` resources only for allowlisted actions, no literal ARNs."""

from __future__ import annotations

import json

import pytest
from generator_testkit import VARIANTS, as_list, policy_documents, walk

from generator import iam

# The one wildcard grant: a key policy delegating key administration to the account's IAM.
KEY_ADMIN_SID = "AccountAdministersKeyThroughIam"


def _documents(variant_renders, name):
    for filename, text in variant_renders[name].items():
        if filename != "manifest.json":
            yield filename, json.loads(text)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_policies(name, variant_renders):
    for filename, doc in _documents(variant_renders, name):
        for lid, kind, document in policy_documents(doc):
            sids = [s["Sid"] for s in document["Statement"]]
            assert len(sids) == len(set(sids)), (filename, lid, sids)
            for statement in document["Statement"]:
                actions = as_list(statement["Action"])
                where = (filename, lid, statement["Sid"])
                if statement["Effect"] == "Deny" or kind == "trust":
                    continue
                if kind == "key" and statement["Sid"] == KEY_ADMIN_SID:
                    assert actions == ["kms:*"], where
                    assert statement["Principal"] == {
                        "AWS": {"Fn::Sub": ("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")}
                    }, where
                    continue
                assert all("*" not in a for a in actions), where
                resources = as_list(statement["Resource"])
                if kind == "identity" and "*" in resources:
                    assert resources == ["*"], where
                    assert set(actions) <= iam.STAR_ACTIONS, where


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_no_literal_arn_partition_region_or_account(name, variant_renders):
    for filename, doc in _documents(variant_renders, name):
        for node in walk(doc):
            if isinstance(node, str):
                assert "arn:aws:" not in node and "arn:aws-" not in node, (filename, node)
                assert "us-east-1" not in node or "codeconnections" in node, (filename, node)


def test_put_metric_data_is_namespace_scoped(templates):
    for doc in templates.values():
        for _, kind, document in policy_documents(doc):
            for statement in document["Statement"]:
                if "cloudwatch:PutMetricData" in as_list(statement["Action"]):
                    assert "cloudwatch:namespace" in statement["Condition"]["StringEquals"]


def test_tester_reads_only_its_api_key(templates):
    role = templates["api-testing"]["Resources"]["TesterRole"]["Properties"]
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    assert statements["ReadApiKeyValue"]["Action"] == ["apigateway:GET"]
    assert statements["ReadApiKeyValue"]["Resource"] == [
        {
            "Fn::Sub": [
                "arn:${AWS::Partition}:apigateway:${AWS::Region}::/apikeys/${KeyId}",
                {"KeyId": {"Fn::ImportValue": "TextClassificationDemo-api-hosting-ApiKeyId"}},
            ]
        }
    ]
    assert statements["WriteSummaries"]["Resource"] == [
        {"Fn::Sub": "${ResultsBucket.Arn}/load-tests/*"}
    ]


def test_cloudformation_role_scoped_to_project_stacks(templates):
    doc = templates["cicd-pipeline"]
    deployer = doc["Resources"]["DeployBuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    stacks = next(s for s in deployer["Statement"] if s["Sid"] == "DeployProjectStacks")
    assert stacks["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:"
            "${AWS::AccountId}:stack/TextClassificationDemo-*/*"
        }
    ]
    passing = next(s for s in deployer["Statement"] if s["Sid"] == "PassExecutionRole")
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}
    }


def test_statement_factory_refuses_wildcards():
    with pytest.raises(ValueError, match="wildcard action s3:Get\\*"):
        iam.statement("Bad", ["s3:Get*"], ["arn"])
    with pytest.raises(ValueError, match="s3:GetObject is not allowed on Resource"):
        iam.statement("Bad", ["s3:GetObject"], [iam.ANY])
