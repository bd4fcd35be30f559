"""Render every enabled stack and the manifest to deterministic JSON text."""

from __future__ import annotations

import json

from . import naming
from .config import fingerprint
from .stacks import disabled_stacks, enabled_stacks


def to_text(document) -> str:
    """Deterministic bytes: sorted keys, indent 2, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def artifact_of(parameter_name: str, cfg) -> str:
    """Artifact id whose S3 key the template parameter receives."""
    ids = [m.name for m in cfg.model_serving.models] + ["predictor", "tester"]
    for artifact in ids:
        if naming.parameter_name(artifact) == parameter_name:
            return artifact
    raise ValueError(f"parameter {parameter_name} names no artifact")


def render(cfg) -> dict[str, str]:
    """File name -> text for every template plus manifest.json."""
    files, stacks = {}, []
    for spec in enabled_stacks(cfg):
        document = spec.build(cfg).to_dict()
        filename = f"{spec.concern}.json"
        files[filename] = to_text(document)
        stacks.append(
            {
                "concern": spec.concern,
                "stack_name": naming.stack_name(cfg, spec.concern),
                "template": filename,
                "imports_from": list(spec.imports_from),
                "parameters": {
                    name: {"artifact": artifact_of(name, cfg)}
                    for name in sorted(document.get("Parameters", {}))
                },
            }
        )
    manifest = {
        "project": naming.prefix(cfg),
        "region": cfg.project.region,
        "config_sha256": fingerprint(cfg),
        "stacks": stacks,
        "disabled": [
            {"concern": spec.concern, "stack_name": naming.stack_name(cfg, spec.concern)}
            for spec in disabled_stacks(cfg)
        ],
    }
    files["manifest.json"] = to_text(manifest)
    return files
