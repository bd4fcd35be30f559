"""troposphere's property classes agree with the CloudFormation schemas bundled in cfn-lint.

cfn-lint cannot see a property troposphere refuses to render (troposphere 4.11.x turned the
EndpointConfig DataCaptureConfig into the TransformJob shape); this walk catches such drift for
every resource type the templates use.
"""

from __future__ import annotations

import importlib
import json

import pytest
import troposphere
from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER
from troposphere import sagemaker

from generator.config import load

# troposphere module per service where it is not the lower-cased service name.
MODULES = {"Lambda": "awslambda"}


def _resource_class(type_name: str) -> type:
    service = type_name.split("::")[1]
    module = importlib.import_module(f"troposphere.{MODULES.get(service, service.lower())}")
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "resource_type", None) == type_name:
            return value
    raise LookupError(f"troposphere has no class for {type_name}")


def _used_types(rendered: dict[str, str]) -> set[str]:
    return {
        res["Type"]
        for name, text in rendered.items()
        if name != "manifest.json"
        for res in json.loads(text)["Resources"].values()
    }


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].split("/")[-1]]
    return node


def _mismatches(type_name: str, cls: type, schema: dict) -> list[tuple[str, str, str]]:
    """Props troposphere models that the schema lacks (a wrong class, as in 4.11's
    DataCaptureConfig), and required schema props it cannot render. Newer optional schema
    props that troposphere does not know yet are not mismatches."""
    found = []
    read_only = {p.split("/")[-1] for p in schema.get("readOnlyProperties", [])}

    def compare(name: str, klass: type, node: dict, top: bool) -> None:
        node = _resolve(schema, node)
        expected = set(node.get("properties", {})) - (read_only if top else set())
        actual = set(klass.props)
        for missing in sorted(set(node.get("required", [])) - actual):
            found.append((type_name, name, missing))
        for extra in sorted(actual - expected):
            found.append((type_name, name, "+" + extra))
        for prop, (kind, _) in klass.props.items():
            if prop not in expected:
                continue
            sub = _resolve(schema, node["properties"][prop])
            if isinstance(kind, list) and len(kind) == 1:
                kind, sub = kind[0], _resolve(schema, sub.get("items", {}))
            if (
                isinstance(kind, type)
                and issubclass(kind, troposphere.AWSProperty)
                and "properties" in sub
            ):
                compare(kind.__name__, kind, sub, False)

    compare(type_name, cls, schema, True)
    return found


def test_property_classes_match_schemas(rendered):
    region = load().project.region
    problems = []
    for type_name in sorted(_used_types(rendered)):
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, type_name).schema
        problems += _mismatches(type_name, _resource_class(type_name), schema)
    assert not problems, "troposphere differs from the CloudFormation schema: " + repr(problems)


@pytest.mark.parametrize(
    "prop",
    [
        "EnableCapture",
        "InitialSamplingPercentage",
        "CaptureOptions",
        "CaptureContentTypeHeader",
        "DestinationS3Uri",
    ],
)
def test_data_capture_class_is_the_endpoint_config_shape(prop):
    assert prop in sagemaker.DataCaptureConfig.props


def test_parity_detects_a_wrong_property_class(monkeypatch):
    """The check fails on troposphere 4.11's TransformJob-shaped DataCaptureConfig."""

    class TransformJobShape(troposphere.AWSProperty):
        props = {
            "DestinationS3Uri": (str, True),
            "GenerateInferenceId": (bool, False),
            "KmsKeyId": (str, False),
        }

    monkeypatch.setitem(
        sagemaker.EndpointConfig.props, "DataCaptureConfig", (TransformJobShape, False)
    )
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(
        "us-east-1", "AWS::SageMaker::EndpointConfig"
    ).schema
    found = _mismatches("AWS::SageMaker::EndpointConfig", sagemaker.EndpointConfig, schema)
    assert ("AWS::SageMaker::EndpointConfig", "TransformJobShape", "+GenerateInferenceId") in found
    assert ("AWS::SageMaker::EndpointConfig", "TransformJobShape", "CaptureOptions") in found
