"""Hypothesis: every valid configuration renders templates that keep the contracts."""

from __future__ import annotations

import json
import re

from generator_testkit import base_document, exports_of, imports_of, variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import config as config_module
from generator.lint import cfn_lint_document
from generator.render import render

LOGICAL_ID = re.compile(r"^[A-Za-z0-9]{1,255}$")


@st.composite
def configurations(draw):
    base_model = base_document()["model_serving"]["models"][0]
    count = draw(st.integers(1, 3))
    models = []
    for index in range(count):
        minimum = draw(st.integers(1, 3))
        models.append(
            dict(
                base_model,
                name=f"model-{chr(97 + index)}",
                variant_name=f"Variant-{index}",
                initial_weight=draw(st.sampled_from([0.5, 1, 3])),
                instance_count=minimum,
                autoscaling=dict(
                    base_model["autoscaling"],
                    enabled=draw(st.booleans()),
                    min_capacity=minimum,
                    max_capacity=minimum + draw(st.integers(0, 3)),
                ),
            )
        )
    cases = [
        {"id": f"case-{i}", "sentence": "Stocks rallied on Friday.", "expected_label": 3}
        for i in range(draw(st.integers(1, 4)))
    ]
    return variant(
        **{
            "model_serving.models": models,
            "model_serving.data_capture.sampling_percentage": draw(st.integers(0, 100)),
            "model_serving.deployment_guardrail.enabled": draw(st.booleans()),
            "api_hosting.auth": draw(st.sampled_from(["api_key", "iam"])),
            "api_hosting.resource_path": draw(
                st.sampled_from(["text", "v1/classify", "a.b/c_d/e-f"])
            ),
            "load_test.tester_count": draw(st.integers(1, 4)),
            "load_test.cases": cases,
            "cicd.enabled": draw(st.booleans()),
            "project.stage": draw(st.sampled_from(["Demo", "Prod2", "X"])),
        }
    )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_valid_configurations_render_consistently(document):
    cfg = config_module.parse(document)
    files = render(cfg)
    manifest = json.loads(files["manifest.json"])
    assert files == render(cfg)
    exported: set[str] = set()
    for stack in manifest["stacks"]:
        doc = json.loads(files[stack["template"]])
        assert all(LOGICAL_ID.match(lid) for lid in doc["Resources"])
        assert imports_of(doc) <= exported
        exports = exports_of(doc)
        assert all(e.startswith(f"{manifest['project']}-{stack['concern']}-") for e in exports)
        exported |= exports
        for res in doc["Resources"].values():
            if res["Type"] == "AWS::SageMaker::Model":
                assert len(res["Properties"]["ModelName"]["Fn::Join"][1][0]) + 17 <= 63
    testing = json.loads(files["api-testing.json"])
    testers = [r for r in testing["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(testers) == cfg.load_test.tester_count


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_valid_configurations_lint_clean(document):
    findings = []
    for name, text in render(config_module.parse(document)).items():
        if name != "manifest.json":
            findings += [f"{name}: {f}" for f in cfn_lint_document(json.loads(text))]
    assert not findings, "\n".join(findings)
