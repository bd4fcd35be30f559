"""cfn-lint in pytest (with the repository's .cfnlintrc) over every configuration variant."""

from __future__ import annotations

import json

import pytest
from generator_testkit import VARIANTS

from generator.lint import cfn_lint_document, cfn_lint_settings


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
