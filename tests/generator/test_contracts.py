"""Cross-stack contracts: exports/imports, manifest, parameters, determinism, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from generator_testkit import CONCERNS, CONFIG_PATH, VARIANTS, exports_of, imports_of, variant

from generator import naming
from generator.__main__ import main
from generator.render import render
from generator.stacks import REGISTRY

ROOT = Path(__file__).resolve().parents[2]

# Exports no stack imports, kept on purpose: the workflow and operators read them.
PUBLIC_EXPORTS = {"api-hosting": {"ApiId", "ApiStage"}}

# docs/architecture.md: the outputs each stack offers.
REQUIRED_OUTPUTS = {
    "model-archiving": {"ArtifactBucketName"},
    "model-serving": {"EndpointName", "EndpointConfigName", "CaptureBucketName", "CaptureS3Uri"},
    "api-hosting": {
        "ApiId",
        "ApiStage",
        "ApiUrl",
        "ApiResourcePath",
        "ApiName",
        "ApiKeyId",
        "PredictorFunctionName",
    },
    "monitor-dashboard": {"DashboardName", "AlarmTopicArn"},
    "cicd-pipeline": {"PipelineName", "SourceBucketName"},
    "api-testing": {
        "TriggerTopicArn",
        "ResultsBucketName",
        "TesterFunctionNames",
        "FailedRunsQueueUrl",
    },
    "tester-dashboard": {"DashboardName"},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_imports_resolve_to_earlier_exports(name, variant_renders):
    files = variant_renders[name]
    manifest = json.loads(files["manifest.json"])
    exported_so_far: dict[str, str] = {}
    imported_anywhere: set[str] = set()
    for stack in manifest["stacks"]:
        doc = json.loads(files[stack["template"]])
        for export in sorted(imports_of(doc)):
            assert (
                export in exported_so_far
            ), f"{stack['concern']} imports {export} before it exists"
            assert exported_so_far[export] in stack["imports_from"], (stack["concern"], export)
        imported_anywhere |= imports_of(doc)
        for export in exports_of(doc):
            assert export.startswith(f"{manifest['project']}-{stack['concern']}-"), export
            exported_so_far[export] = stack["concern"]
        producers = {exported_so_far[e] for e in imports_of(doc)}
        assert producers == set(stack["imports_from"]), stack["concern"]
    prefix = manifest["project"]
    for export, concern in exported_so_far.items():
        key = export[len(f"{prefix}-{concern}-") :]
        assert export in imported_anywhere or key in PUBLIC_EXPORTS.get(
            concern, set()
        ), f"{export} is exported but never imported; import it or list it as public"


def test_registry_follows_the_architecture():
    assert tuple(spec.concern for spec in REGISTRY) == CONCERNS


def test_required_outputs(templates):
    for concern, outputs in REQUIRED_OUTPUTS.items():
        assert outputs <= set(templates[concern]["Outputs"]), concern


def test_manifest_shape(cfg, manifest, templates):
    assert manifest["project"] == "TextClassificationDemo"
    assert manifest["region"] == cfg.project.region
    assert [s["concern"] for s in manifest["stacks"]] == list(CONCERNS)
    for stack in manifest["stacks"]:
        assert set(stack) == {"concern", "stack_name", "template", "imports_from", "parameters"}
        assert stack["stack_name"] == f"TextClassificationDemo-{stack['concern']}"
        assert stack["template"] == f"{stack['concern']}.json"
        assert set(stack["parameters"]) == set(templates[stack["concern"]].get("Parameters", {}))
    parameters = {s["concern"]: s["parameters"] for s in manifest["stacks"]}
    assert parameters["model-serving"] == {
        "ArtifactKeyModelA": {"artifact": "model-a"},
        "ArtifactKeyModelB": {"artifact": "model-b"},
    }
    assert parameters["api-hosting"] == {"ArtifactKeyPredictor": {"artifact": "predictor"}}
    assert parameters["api-testing"] == {"ArtifactKeyTester": {"artifact": "tester"}}


def test_naming_helpers(cfg):
    assert naming.pascal("model-a") == "ModelA"
    assert naming.pascal("Model-B") == "ModelB"
    assert naming.parameter_name("predictor") == "ArtifactKeyPredictor"
    assert naming.stack_name(cfg, "model-serving") == "TextClassificationDemo-model-serving"
    assert (
        naming.export_name(cfg, "api-hosting", "ApiUrl")
        == "TextClassificationDemo-api-hosting-ApiUrl"
    )
    assert naming.imported(cfg, "api-hosting", "ApiUrl").to_dict() == {
        "Fn::ImportValue": "TextClassificationDemo-api-hosting-ApiUrl"
    }
    long_name = naming.hashed_name("x" * 80, {"a": 1})
    assert len(long_name) == 63 and long_name == naming.hashed_name("x" * 80, {"a": 1})
    assert naming.hashed_name("x", {"a": 1}) != naming.hashed_name("x", {"a": 2})
    with pytest.raises(ValueError, match="longer than 64"):
        naming.resource_name(cfg, "y" * 60, 64)


def test_render_is_deterministic(cfg, rendered):
    again = render(cfg)
    assert again == rendered
    for text in rendered.values():
        assert text.endswith("}\n") and '\n  "' in text


def test_cli_writes_files_byte_identically(tmp_path):
    out = tmp_path / "out"
    assert main(["--config", str(CONFIG_PATH), "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == sorted([f"{c}.json" for c in CONCERNS] + ["manifest.json"])
    (out / "stale-concern.json").write_text("{}")
    assert main(["--config", str(CONFIG_PATH), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(variant(**{"model_serving.models[1].initial_weight": -1})))
    proc = subprocess.run(
        [sys.executable, "-m", "generator", "--config", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"{bad}: model_serving.models[1].initial_weight: -1 is not allowed; "
        "expected a finite number > 0 and <= 1000\n"
    )
    assert not (tmp_path / "out").exists()
