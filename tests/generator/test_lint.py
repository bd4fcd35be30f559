"""cfn-lint in pytest (with the repository's .cfnlintrc) over every configuration variant."""

from __future__ import annotations

import json

import pytest
from generator_testkit import VARIANTS

from generator.lint import cfn_lint_document, cfn_lint_settings
from generator.lint import main as lint_main


def test_settings_come_from_cfnlintrc():
    settings = cfn_lint_settings()
    assert "I" in settings["include_checks"]
    assert settings["regions"]


def test_lint_catches_a_finding():
    """The gate can fail: an informational finding (I1022) and an error (E3530) are reported."""
    document = {
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {"BucketName": {"Fn::Join": ["", ["a", {"Ref": "AWS::Region"}]]}},
            },
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
        }
    }
    findings = cfn_lint_document(document)
    assert {f.split()[0] for f in findings} == {"I1022", "E3530"}, findings


_FINDINGS: dict[str, list[str]] = {}


def _lint_once(text: str) -> list[str]:
    """Variants share most templates: lint each distinct text once."""
    if text not in _FINDINGS:
        _FINDINGS[text] = cfn_lint_document(json.loads(text))
    return _FINDINGS[text]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_templates_lint_clean(name, variant_renders):
    findings = []
    for filename, text in sorted(variant_renders[name].items()):
        if filename != "manifest.json":
            findings += [f"{filename}: {f}" for f in _lint_once(text)]
    assert not findings, "\n".join(findings)


# Checkov checks this project suppresses on purpose; each suppression carries its reason.
ALLOWED_SUPPRESSIONS = {
    "CKV_AWS_18": "AWS::S3::Bucket",  # access logging: CloudTrail data events are the audit trail
    "CKV_AWS_21": "AWS::S3::Bucket",  # versioning on expiring capture/results data only
    "CKV_AWS_116": "AWS::Lambda::Function",  # DLQ on the synchronous predictor
    "CKV_AWS_117": "AWS::Lambda::Function",  # no VPC
    "CKV_AWS_120": "AWS::ApiGateway::Stage",  # no response cache for POST inference
    "CKV_AWS_59": "AWS::ApiGateway::Method",  # API key auth reads as NONE
    "CKV_AWS_111": "AWS::IAM::Role",  # CloudFormation role: actions without resource ARNs
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_checkov_suppressions_are_few_and_explained(name, variant_renders):
    for filename, text in variant_renders[name].items():
        if filename == "manifest.json":
            continue
        for lid, res in json.loads(text)["Resources"].items():
            for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert ALLOWED_SUPPRESSIONS.get(skip["id"]) == res["Type"], (filename, lid, skip)
                assert len(skip["comment"]) > 30, (filename, lid, skip)
    predictor = json.loads(variant_renders[name]["api-hosting.json"])["Resources"]["Predictor"]
    assert {s["id"] for s in predictor["Metadata"]["checkov"]["skip"]} == {
        "CKV_AWS_116",
        "CKV_AWS_117",
    }


FAKE_CHECKOV = """#!/bin/sh
cat <<'JSON'
{"check_type": "cloudformation",
 "results": {"failed_checks": [{"check_id": "CKV_AWS_999", "check_name": "Something is off",
   "file_path": "/model-archiving.json", "resource": "AWS::S3::Bucket.ArtifactBucket"}]},
 "summary": {"passed": 1, "failed": 1, "skipped": 2, "parsing_errors": 0, "resource_count": 2}}
JSON
"""


def test_lint_main_reports_checkov_failures(tmp_path, rendered, capsys):
    checkov_bin = tmp_path / "checkov"
    checkov_bin.write_text(FAKE_CHECKOV)
    checkov_bin.chmod(0o755)
    out = tmp_path / "templates"
    out.mkdir()
    (out / "model-archiving.json").write_text(rendered["model-archiving.json"])
    assert lint_main(["--checkov", str(checkov_bin), "--templates", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "[*] cfn-lint: 1 templates, 0 findings" in printed
    assert "[*] checkov: 1 failed checks, 2 suppressed" in printed
    assert (
        "CKV_AWS_999 model-archiving.json AWS::S3::Bucket.ArtifactBucket: Something is off"
        in printed
    )


def test_lint_main_needs_templates_and_checkov(tmp_path, rendered, capsys):
    assert lint_main(["--templates", str(tmp_path)]) == 1
    assert "no templates" in capsys.readouterr().err
    (tmp_path / "model-archiving.json").write_text(rendered["model-archiving.json"])
    assert lint_main(["--templates", str(tmp_path), "--checkov", str(tmp_path / "none")]) == 1
    assert "checkov not found" in capsys.readouterr().err
