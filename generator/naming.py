"""The only place where stack, export, parameter and physical names are made."""

from __future__ import annotations

import hashlib
import json
import re

from troposphere import Export, ImportValue, Output, Template


def pascal(identifier: str) -> str:
    """`model-a` -> `ModelA`; keeps inner capitals (`Model-A` -> `ModelA`)."""
    return "".join(
        part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", identifier) if part
    )


def prefix(cfg) -> str:
    """Project prefix: name and stage concatenated, as the reference system does."""
    return f"{cfg.project.name}{cfg.project.stage}"


def stack_name(cfg, concern: str) -> str:
    return f"{prefix(cfg)}-{concern}"


def export_name(cfg, concern: str, key: str) -> str:
    return f"{stack_name(cfg, concern)}-{key}"


def parameter_name(artifact_id: str) -> str:
    """Template parameter receiving the S3 key of artifact `artifact_id`."""
    return "ArtifactKey" + pascal(artifact_id)


def export(cfg, template: Template, concern: str, key: str, value, description: str) -> Output:
    """Add Output `key` to `template`, exported under the project-wide export name."""
    return template.add_output(
        Output(
            key, Description=description, Value=value, Export=Export(export_name(cfg, concern, key))
        )
    )


def output(template: Template, key: str, value, description: str) -> Output:
    """Add a plain (not exported) Output."""
    return template.add_output(Output(key, Description=description, Value=value))


def imported(cfg, concern: str, key: str) -> ImportValue:
    """Fn::ImportValue of another concern's exported output."""
    return ImportValue(export_name(cfg, concern, key))


def model_artifact_prefix(model_name: str) -> str:
    """Where a model's archives go in the artifact bucket: ``<prefix><hash>/model.tar.gz``."""
    return f"models/{model_name}/"


def endpoint_name(cfg) -> str:
    return f"{prefix(cfg)}-{cfg.model_serving.endpoint_name}"


def endpoint_log_group(cfg) -> str:
    """The log group SageMaker writes the endpoint's container logs to, by its own naming rule."""
    return f"/aws/sagemaker/Endpoints/{endpoint_name(cfg)}"


def execution_log_group(cfg) -> str:
    """The log group API Gateway writes the stage's execution logs to, by its own naming rule;
    ``${RestApi}`` (the API's id) is for Fn::Sub."""
    return f"API-Gateway-Execution-Logs_${{RestApi}}/{cfg.project.stage}"


def content_hash(content) -> str:
    """Short stable hash of JSON-serialisable content (troposphere objects via to_dict)."""
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_to_plain)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _to_plain(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot hash {type(value).__name__}")


def hashed_name(base: str, content, limit: int = 63) -> str:
    """`<base>-<hash>` shortened to `limit` chars: changes exactly when `content` does."""
    suffix = "-" + content_hash(content)
    return base[: limit - len(suffix)].rstrip("-") + suffix


def resource_name(cfg, suffix: str, limit: int = 64) -> str:
    """Physical name `<prefix>-<suffix>`, checked against the service's length limit."""
    name = f"{prefix(cfg)}-{suffix}"
    if len(name) > limit:
        raise ValueError(f"name {name!r} is longer than {limit} characters")
    return name
