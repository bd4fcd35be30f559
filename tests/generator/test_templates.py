"""Rendered templates: one snapshot per stack, plus assertions on the properties that matter."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
import yaml
from generator_testkit import CONCERNS, ROOT, VARIANTS, one, resources_of, variant, walk

from generator import config as config_module
from generator.render import render
from generator.stacks import api_hosting, model_serving

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


@pytest.mark.parametrize("concern", CONCERNS)
def test_snapshot(concern, rendered):
    """A deliberate change: `python -m generator --out tests/generator/snapshots`."""
    actual = rendered[f"{concern}.json"]
    expected_path = SNAPSHOTS / f"{concern}.json"
    result_path = SNAPSHOTS / f"{concern}-result.json"
    expected = expected_path.read_text(encoding="utf-8") if expected_path.exists() else ""
    if actual != expected:
        result_path.write_text(actual, encoding="utf-8")
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True),
                actual.splitlines(True),
                str(expected_path.name),
                str(result_path.name),
                n=2,
            )
        )
        pytest.fail(
            f"{concern} differs from its snapshot (new render in {result_path.name}):\n"
            + diff[:6000]
        )
    result_path.unlink(missing_ok=True)


def test_snapshot_manifest(rendered):
    assert rendered["manifest.json"] == (SNAPSHOTS / "manifest.json").read_text(encoding="utf-8")


def test_committed_templates_match_the_generator(rendered):
    """templates_out/ is generated output: it must equal a fresh render of config.json."""
    out = Path(__file__).resolve().parents[2] / "templates_out"
    committed = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.json")}
    assert committed == rendered


# --- model-serving -----------------------------------------------------------------------------


def test_data_capture_shape(templates):
    """Guards the troposphere pin: 4.11.x renders the TransformJob shape here."""
    capture = one(templates["model-serving"], "AWS::SageMaker::EndpointConfig")["Properties"][
        "DataCaptureConfig"
    ]
    assert capture == {
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "DestinationS3Uri": {"Fn::Sub": "s3://${CaptureBucket}/data-capture"},
        "EnableCapture": True,
        "InitialSamplingPercentage": 30,
        "KmsKeyId": {"Fn::GetAtt": ["ServingKey", "Arn"]},
    }


def _statement(template: dict, role: str, sid: str) -> dict:
    policy = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def test_serving_key_encrypts_volumes_capture_and_logs(templates):
    """security-notes G4: the endpoint's storage volumes, its captured data (each object and the
    bucket's default) and its log group are under the stack's customer key, which the
    execution role can encrypt with."""
    serving = templates["model-serving"]
    key = {"Fn::GetAtt": ["ServingKey", "Arn"]}
    assert one(serving, "AWS::KMS::Key")["Properties"]["EnableKeyRotation"] is True
    config = one(serving, "AWS::SageMaker::EndpointConfig")["Properties"]
    assert config["KmsKeyId"] == key
    assert config["DataCaptureConfig"]["KmsKeyId"] == key
    encryption = serving["Resources"]["CaptureBucket"]["Properties"]["BucketEncryption"]
    assert encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key,
    }
    assert _statement(serving, "ExecutionRole", "EncryptCapturedData") == {
        "Sid": "EncryptCapturedData",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"],
        "Resource": [key],
    }


@pytest.mark.parametrize("retain", [False, True])
def test_a_retained_capture_bucket_keeps_the_key_its_data_needs(retain):
    """Captured objects are SSE-KMS under ServingKey: a capture bucket kept on stack deletion
    keeps that key too, or its data cannot be decrypted once the key's deletion completes."""
    files = render(config_module.parse(variant(**{"model_archiving.retain_on_delete": retain})))
    serving = json.loads(files["model-serving.json"])
    policy = "Retain" if retain else "Delete"
    assert serving["Resources"]["CaptureBucket"]["DeletionPolicy"] == policy
    key = serving["Resources"]["ServingKey"]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == (policy, policy)


def test_execution_role_reads_only_the_configured_models_archives(cfg, templates, variant_renders):
    """Each model's prefix (where `make pack` keys its archives), not every model's."""

    def read(template: dict) -> list[str]:
        statement = _statement(template, "ExecutionRole", "ReadModelArtifacts")
        return [resource["Fn::Sub"][0] for resource in statement["Resource"]]

    assert read(templates["model-serving"]) == [
        f"arn:${{AWS::Partition}}:s3:::${{Bucket}}/models/{m.name}/*"
        for m in cfg.model_serving.models
    ]
    single = json.loads(variant_renders["no-cicd-single-model"]["model-serving.json"])
    assert read(single) == ["arn:${AWS::Partition}:s3:::${Bucket}/models/model-a/*"]


def test_instance_storage_keeps_the_key_off_the_volumes(variant_renders):
    """CreateEndpointConfig fails with a KmsKeyId when a variant's instance has local NVMe
    storage (the scaling-guardrail variant serves model-b on ml.m5d.large); capture keeps it."""
    doc = json.loads(variant_renders["scaling-guardrail"]["model-serving.json"])
    config = one(doc, "AWS::SageMaker::EndpointConfig")["Properties"]
    assert "KmsKeyId" not in config
    assert config["DataCaptureConfig"]["KmsKeyId"] == {"Fn::GetAtt": ["ServingKey", "Arn"]}


@pytest.mark.parametrize(
    "instance_type, local",
    [
        ("ml.c5.large", False),
        ("ml.m5.xlarge", False),
        ("ml.t2.medium", False),
        ("ml.p3.2xlarge", False),
        ("ml.g4dn.xlarge", True),
        ("ml.inf2.xlarge", False),
        ("ml.c7i.large", False),
        ("ml.r7iz.large", False),
        ("ml.c5d.large", True),
        ("ml.m5d.large", True),
        ("ml.r5d.large", True),
        ("ml.m6id.large", True),
        ("ml.c6gd.large", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p4de.24xlarge", True),
        ("ml.g5.xlarge", True),
        ("ml.g6e.xlarge", True),
        ("ml.p5en.48xlarge", True),
        ("ml.trn1.2xlarge", True),
        ("ml.dl1.24xlarge", True),
    ],
)
def test_instance_storage_families(instance_type, local):
    assert model_serving.has_instance_storage(instance_type) is local


def test_endpoint_log_group_declared(cfg, templates):
    """SageMaker's own group never expires and outlives the stack (reference system 11.1)."""
    serving = templates["model-serving"]
    group = serving["Resources"]["EndpointLogGroup"]
    assert group["Properties"] == {
        "LogGroupName": "/aws/sagemaker/Endpoints/TextClassificationDemo-TextClassification",
        "RetentionInDays": cfg.project.log_retention_days,
        "KmsKeyId": {"Fn::GetAtt": ["ServingKey", "Arn"]},
    }
    assert group["DeletionPolicy"] == "Delete"
    assert one(serving, "AWS::SageMaker::Endpoint")["DependsOn"] == ["EndpointLogGroup"]
    assert _statement(serving, "ExecutionRole", "WriteEndpointLogs")["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
            "/aws/sagemaker/Endpoints/TextClassificationDemo-TextClassification"
        },
        {"Fn::GetAtt": ["EndpointLogGroup", "Arn"]},
    ]


def test_one_weighted_variant_per_model(cfg, templates):
    variants = one(templates["model-serving"], "AWS::SageMaker::EndpointConfig")["Properties"][
        "ProductionVariants"
    ]
    assert [
        (v["VariantName"], v["InitialVariantWeight"], v["InstanceType"], v["InitialInstanceCount"])
        for v in variants
    ] == [
        (m.variant_name, m.initial_weight, m.instance_type, m.instance_count)
        for m in cfg.model_serving.models
    ]
    assert [v["ModelName"] for v in variants] == [
        {"Fn::GetAtt": ["ModelModelA", "ModelName"]},
        {"Fn::GetAtt": ["ModelModelB", "ModelName"]},
    ]


def test_model_container(templates):
    model = resources_of(templates["model-serving"], "AWS::SageMaker::Model")["ModelModelA"][
        "Properties"
    ]
    container = model["PrimaryContainer"]
    assert container["Image"] == {
        "Fn::Sub": "763104351884.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
        "pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
    }
    assert container["ModelDataUrl"] == {
        "Fn::Join": [
            "",
            [
                "s3://",
                {"Fn::ImportValue": "TextClassificationDemo-model-archiving-ArtifactBucketName"},
                "/",
                {"Ref": "ArtifactKeyModelA"},
            ],
        ]
    }
    assert container["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "MODEL_MAX_BATCH_SIZE": "64",
        "MODEL_MAX_TEXT_CHARS": "5000",
    }
    assert model["EnableNetworkIsolation"] is True


def _model_name(document: dict, logical_id: str = "ModelModelA") -> tuple[str, dict]:
    joined = document["Resources"][logical_id]["Properties"]["ModelName"]["Fn::Join"]
    assert joined[0] == "-"
    return joined[1][0], joined[1][1]


def test_model_name_changes_with_content_and_artifact(templates):
    static, dynamic = _model_name(templates["model-serving"])
    assert static.startswith("TextClassificationDemo-model-a-") and len(static) + 1 + 16 <= 63
    # The artifact key's content-hash segment (models/<id>/<sha16>/model.tar.gz) joins the name.
    assert dynamic == {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "ArtifactKeyModelA"}]}]}
    changed = render(config_module.parse(variant(**{"model_serving.models[0].server_workers": 3})))
    changed_static, _ = _model_name(json.loads(changed["model-serving.json"]))
    assert changed_static != static
    unchanged_b, _ = _model_name(json.loads(changed["model-serving.json"]), "ModelModelB")
    assert unchanged_b == _model_name(templates["model-serving"], "ModelModelB")[0]


def test_endpoint(templates):
    endpoint = one(templates["model-serving"], "AWS::SageMaker::Endpoint")["Properties"]
    assert endpoint["EndpointName"] == "TextClassificationDemo-TextClassification"
    assert endpoint["EndpointConfigName"] == {
        "Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]
    }
    assert "DeploymentConfig" not in endpoint


def test_updates_apply_configured_weights_and_counts(templates, variant_renders):
    """Without autoscaling an update applies the config's counts and weights; with it, the
    counts the autoscaler set are kept but the weights still follow the config."""
    endpoint = one(templates["model-serving"], "AWS::SageMaker::Endpoint")["Properties"]
    assert not endpoint.get("RetainAllVariantProperties", False)
    doc = json.loads(variant_renders["scaling-guardrail"]["model-serving.json"])
    scaled = one(doc, "AWS::SageMaker::Endpoint")["Properties"]
    assert scaled["RetainAllVariantProperties"] is True
    assert scaled["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredWeight"}]


def test_autoscaling_and_guardrail(variant_renders):
    doc = json.loads(variant_renders["scaling-guardrail"]["model-serving.json"])
    targets = resources_of(doc, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert sorted(targets) == ["ScalableTargetModelA", "ScalableTargetModelB"]
    target = targets["ScalableTargetModelA"]
    assert target["DependsOn"] == ["Endpoint"]
    assert target["Properties"]["ResourceId"] == (
        "endpoint/TextClassificationDemo-TextClassification/variant/Model-A"
    )
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 3)
    policy = resources_of(doc, "AWS::ApplicationAutoScaling::ScalingPolicy")["ScalingPolicyModelA"]
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 50
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    deployment = doc["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"]
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        "WaitIntervalInSeconds": 300,
    }
    alarms = deployment["AutoRollbackConfiguration"]["Alarms"]
    assert len(alarms) == 4
    for alarm in alarms:
        assert doc["Resources"][alarm["AlarmName"]["Ref"]]["Type"] == "AWS::CloudWatch::Alarm"
    latency = doc["Resources"]["RollbackModelALatency"]["Properties"]
    assert (latency["MetricName"], latency["Threshold"]) == ("ModelLatency", 500 * 1000)


def _execution_statements(doc: dict) -> dict[str, dict]:
    policy = doc["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_execution_role_reads_the_rollback_alarms(templates, variant_renders):
    """SageMaker reads the AutoRollbackConfiguration alarms with the execution role."""
    assert "ReadRollbackAlarms" not in _execution_statements(templates["model-serving"])
    doc = json.loads(variant_renders["scaling-guardrail"]["model-serving.json"])
    alarms = doc["Resources"]["Endpoint"]["Properties"]["DeploymentConfig"][
        "AutoRollbackConfiguration"
    ]["Alarms"]
    names = [doc["Resources"][a["AlarmName"]["Ref"]]["Properties"]["AlarmName"] for a in alarms]
    read = _execution_statements(doc)["ReadRollbackAlarms"]
    assert read["Action"] == ["cloudwatch:DescribeAlarms"]
    assert read["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:" + n}
        for n in names
    ]


def test_capture_without_json_header(variant_renders):
    doc = json.loads(variant_renders["no-cicd-single-model"]["model-serving.json"])
    capture = one(doc, "AWS::SageMaker::EndpointConfig")["Properties"]["DataCaptureConfig"]
    assert "CaptureContentTypeHeader" not in capture
    assert len(one(doc, "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]) == 1


# --- api-hosting -------------------------------------------------------------------------------


def test_api_method_requires_key_and_validates(templates):
    api = templates["api-hosting"]
    method = one(api, "AWS::ApiGateway::Method")["Properties"]
    assert (method["HttpMethod"], method["AuthorizationType"], method["ApiKeyRequired"]) == (
        "POST",
        "NONE",
        True,
    )
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert set(method["RequestModels"]) == {"application/json"}
    schema = json.loads(one(api, "AWS::ApiGateway::Model")["Properties"]["Schema"])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["sentences"]["maxItems"] == 64
    assert schema["properties"]["sentence"]["maxLength"] == 5000
    assert method["RequestValidatorId"] == {"Ref": "BodyValidator"}
    assert one(api, "AWS::ApiGateway::Resource")["Properties"]["PathPart"] == "text"
    plan = one(api, "AWS::ApiGateway::UsagePlan")["Properties"]
    assert plan["Throttle"] == {"RateLimit": 200, "BurstLimit": 400}
    assert plan["Quota"] == {"Limit": 1000000, "Period": "DAY"}
    assert one(api, "AWS::ApiGateway::UsagePlanKey")["Properties"]["KeyId"] == {"Ref": "ApiKey"}


def test_iam_auth_variant(variant_renders):
    api = json.loads(variant_renders["iam-auth"]["api-hosting.json"])
    method = one(api, "AWS::ApiGateway::Method")["Properties"]
    assert (method["AuthorizationType"], method["ApiKeyRequired"]) == ("AWS_IAM", False)
    assert not resources_of(api, "AWS::ApiGateway::ApiKey")
    assert "ApiKeyId" not in api["Outputs"]
    testing = json.loads(variant_renders["iam-auth"]["api-testing.json"])
    env = one(testing, "AWS::IAM::Role")
    statements = env["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert "InvokeApi" in {s["Sid"] for s in statements}
    tester = resources_of(testing, "AWS::Lambda::Function")["Tester001"]["Properties"]
    assert "API_KEY_ID" not in tester["Environment"]["Variables"]


def test_stage_throttling_logging_tracing(cfg, templates):
    api = templates["api-hosting"]
    stage = one(api, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == cfg.project.stage
    assert stage["TracingEnabled"] is True
    assert stage["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    setting = stage["MethodSettings"][0]
    assert (setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"]) == (200, 400)
    assert (setting["LoggingLevel"], setting["DataTraceEnabled"]) == ("ERROR", False)
    deployment = one(api, "AWS::ApiGateway::Deployment")
    gateway_responses = sorted(resources_of(api, "AWS::ApiGateway::GatewayResponse"))
    assert sorted(deployment["DependsOn"]) == sorted(["ClassifyMethod", *gateway_responses])


def _predictor_errors() -> dict[str, set[int]]:
    """The predictor's error codes and the statuses it answers with each."""
    codes: dict[str, set[int]] = {}
    for path in (ROOT / "lambda_src" / "predictor").glob("*.py"):
        for status, code in re.findall(r'ApiError\(\s*(\d{3}),\s*"(\w+)"', path.read_text()):
            codes.setdefault(code, set()).add(int(status))
    return codes


# The default status of each response type given its own code (AWS's gateway response types).
RESPONSE_TYPE_STATUS = {
    "BAD_REQUEST_BODY": 400,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "REQUEST_TOO_LARGE": 413,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "INTEGRATION_TIMEOUT": 504,
}


def test_gateway_errors_answer_in_the_predictors_shape(templates):
    declared = resources_of(templates["api-hosting"], "AWS::ApiGateway::GatewayResponse")
    responses = {r["Properties"]["ResponseType"]: r["Properties"] for r in declared.values()}
    assert set(responses) == set(RESPONSE_TYPE_STATUS) | {"DEFAULT_4XX", "DEFAULT_5XX"}
    predictor = _predictor_errors()
    assert {"TooManyRequests", "PayloadTooLarge", "InvalidRequest"} <= set(predictor)
    for response_type, properties in responses.items():
        assert "StatusCode" not in properties  # each refusal keeps API Gateway's status
        # What API Gateway renders, with a message that needs escaping.
        body = (
            properties["ResponseTemplates"]["application/json"]
            .replace("$context.requestId", "c0ffee00-0000-4000-8000-000000000001")
            .replace("$context.error.messageString", json.dumps('say "hi"\\'))
        )
        document = json.loads(body)
        assert document["MessageId"] == "c0ffee00-0000-4000-8000-000000000001"
        assert set(document["error"]) == {"code", "message"}
        assert document["error"]["message"] == 'say "hi"\\'
        code = document["error"]["code"]
        # A code the predictor uses too means the same status from either of them.
        if code in predictor and response_type in RESPONSE_TYPE_STATUS:
            assert predictor[code] == {RESPONSE_TYPE_STATUS[response_type]}, code
        headers = properties["ResponseParameters"]
        assert headers["gatewayresponse.header.Cache-Control"] == "'no-store'"
        assert headers["gatewayresponse.header.X-Content-Type-Options"] == "'nosniff'"
    throttled = responses["THROTTLED"]["ResponseParameters"]
    assert throttled["gatewayresponse.header.Retry-After"] == "'1'"


@pytest.mark.parametrize("rate, seconds", [(200, 1), (1, 1), (0.5, 2), (0.3, 4)])
def test_retry_after_lasts_until_the_throttle_has_a_token_again(rate, seconds):
    assert api_hosting.retry_after_s(rate) == seconds


def test_the_gateway_error_codes_are_documented():
    table = (ROOT / "lambda_src" / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| [^|]+ \| `(\w+)` \|", table, re.M))
    assert set(api_hosting.GATEWAY_ERROR_CODES.values()) <= documented


def test_a_gateway_response_change_redeploys_the_api(cfg, monkeypatch):
    """Gateway responses take effect only when deployed, so they are part of the hash."""
    def deployments() -> set[str]:
        doc = json.loads(render(cfg)["api-hosting.json"])
        return set(resources_of(doc, "AWS::ApiGateway::Deployment"))

    before = deployments()
    monkeypatch.setitem(api_hosting.GATEWAY_ERROR_CODES, "THROTTLED", "SlowDown")
    assert deployments() != before


def _apigateway_paths(doc: dict, role: str) -> set[str]:
    """The API Gateway resource paths a role's statements name."""
    policy = doc["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    return {
        resource["Fn::Sub"].rsplit("::", 1)[1]
        for statement in policy["Statement"]
        if any(action.startswith("apigateway:") for action in statement["Action"])
        for resource in statement["Resource"]
    }


def _account_actions(doc: dict, role: str) -> set[str]:
    """The API Gateway actions a role's statements allow on the account setting."""
    policy = doc["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    return {
        action
        for statement in policy["Statement"]
        for resource in statement["Resource"]
        if isinstance(resource, dict)
        and isinstance(resource.get("Fn::Sub"), str)
        and resource["Fn::Sub"].endswith("::/account")
        for action in statement["Action"]
    }


def test_the_deploy_role_may_look_for_the_endpoint_log_group(templates):
    """`make deploy` checks that the endpoint's log group exists only in its stack."""
    statement = _statement(templates["cicd-pipeline"], "DeployBuildRole", "FindLogGroups")
    assert statement["Action"] == ["logs:DescribeLogGroups"]
    assert statement["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}
    ]


def test_account_logging_role_created_or_left_to_the_account(templates, variant_renders):
    """`create` sets API Gateway's account-wide logging role before the stage logs; `existing`
    (the iam-auth variant) leaves the account's setting alone, and the pipeline may only read
    it (make deploy checks it is set)."""
    api, pipeline = templates["api-hosting"], templates["cicd-pipeline"]
    account = one(api, "AWS::ApiGateway::Account")["Properties"]
    assert account == {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}}
    stage = one(api, "AWS::ApiGateway::Stage")
    assert stage["DependsOn"] == ["ApiGatewayAccount", "ExecutionLogGroup"]
    assert "apigateway:PATCH" in _account_actions(pipeline, "CloudFormationExecutionRole")

    files = variant_renders["iam-auth"]
    api, pipeline = json.loads(files["api-hosting.json"]), json.loads(files["cicd-pipeline.json"])
    assert not resources_of(api, "AWS::ApiGateway::Account")
    assert "ApiGatewayLoggingRole" not in api["Resources"]
    assert one(api, "AWS::ApiGateway::Stage")["DependsOn"] == ["ExecutionLogGroup"]
    assert _apigateway_paths(pipeline, "DeployBuildRole") == {"/account"}
    assert _account_actions(pipeline, "DeployBuildRole") == {"apigateway:GET"}


def test_a_switch_to_an_existing_account_logging_role_works_through_the_pipeline(
    templates, variant_renders
):
    """The first pipeline run after a switch from `create` to `existing` runs `make deploy`'s
    check (apigateway:GET /account) with the deploy role the `create` config left; its
    api-hosting update then deletes the AWS::ApiGateway::Account, whose delete handler reads
    the setting (apigateway:GET) as the execution role the `existing` config grants."""
    pipeline = templates["cicd-pipeline"]
    assert _account_actions(pipeline, "DeployBuildRole") == {"apigateway:GET"}
    existing = json.loads(variant_renders["iam-auth"]["cicd-pipeline.json"])
    assert _account_actions(existing, "CloudFormationExecutionRole") == {"apigateway:GET"}


def test_execution_log_group_declared(cfg, templates):
    """API Gateway's own execution log group, declared so it has retention and goes on teardown."""
    api = templates["api-hosting"]
    group = api["Resources"]["ExecutionLogGroup"]
    assert group["Properties"]["LogGroupName"] == {
        "Fn::Sub": "API-Gateway-Execution-Logs_${RestApi}/Demo"
    }
    assert group["Properties"]["RetentionInDays"] == cfg.project.log_retention_days
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["StackKey", "Arn"]}
    assert group["DeletionPolicy"] == "Delete"
    # The group exists before the stage can log, so API Gateway never creates its own.
    assert "ExecutionLogGroup" in one(api, "AWS::ApiGateway::Stage")["DependsOn"]


def test_predictor_function(templates):
    api = templates["api-hosting"]
    fn = one(api, "AWS::Lambda::Function")["Properties"]
    assert fn["Timeout"] < 29
    assert fn["Handler"] == "handler.handler"
    assert fn["Code"]["S3Key"] == {"Ref": "ArtifactKeyPredictor"}
    assert set(fn["Environment"]["Variables"]) == {
        "ENDPOINT_NAME",
        "MAX_BATCH_SIZE",
        "MAX_BODY_BYTES",
        "MAX_TEXT_CHARS",
        "LOG_REQUEST_TEXT",
    }
    assert fn["Environment"]["Variables"]["LOG_REQUEST_TEXT"] == "false"
    permission = one(api, "AWS::Lambda::Permission")["Properties"]
    assert permission["SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
        "${AWS::AccountId}:${RestApi}/Demo/POST/text"
    }


def test_api_outputs(templates):
    outputs = templates["api-hosting"]["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Demo"
    }
    assert set(outputs) == {
        "ApiId",
        "ApiStage",
        "ApiUrl",
        "ApiResourcePath",
        "ApiName",
        "ApiKeyId",
        "PredictorFunctionName",
    }


def test_nested_resource_path():
    doc = json.loads(
        render(config_module.parse(variant(**{"api_hosting.resource_path": "v1/text"})))[
            "api-hosting.json"
        ]
    )
    parts = resources_of(doc, "AWS::ApiGateway::Resource")
    assert parts["ApiResource"]["Properties"]["PathPart"] == "v1"
    assert parts["ApiResource1"]["Properties"]["ParentId"] == {"Ref": "ApiResource"}
    assert doc["Resources"]["ClassifyMethod"]["Properties"]["ResourceId"] == {"Ref": "ApiResource1"}
    other = json.loads(
        render(config_module.parse(variant(**{"api_hosting.resource_path": "v2/text"})))[
            "api-hosting.json"
        ]
    )
    # Any API change yields a new Deployment, so the stage serves it.
    assert set(resources_of(doc, "AWS::ApiGateway::Deployment")) != set(
        resources_of(other, "AWS::ApiGateway::Deployment")
    )


# --- monitor-dashboard ------------------------------------------------------------------------


def test_alarms(cfg, templates):
    alarms = resources_of(templates["monitor-dashboard"], "AWS::CloudWatch::Alarm")
    by_metric = {}
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert props["TreatMissingData"] == "notBreaching"
        by_metric.setdefault(props["MetricName"], []).append(props)
    assert {m: len(v) for m, v in by_metric.items()} == {
        "Count": 1,
        "4XXError": 1,
        "5XXError": 1,
        "Invocation5XXErrors": 2,
        "Invocation4XXErrors": 2,
        "ModelLatency": 2,
    }
    latency = by_metric["ModelLatency"][0]
    assert latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == cfg.monitoring.alarms.model_latency_p99_ms * 1000
    assert by_metric["Count"][0]["Threshold"] == cfg.monitoring.alarms.api_requests_per_period


def test_alarm_topic_encrypted_for_cloudwatch(templates):
    doc = templates["monitor-dashboard"]
    topic = one(doc, "AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlarmTopicKey", "Arn"]}
    policy = one(doc, "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in policy)
    assert not resources_of(doc, "AWS::SNS::Subscription")


def test_email_subscriptions(variant_renders):
    doc = json.loads(variant_renders["scaling-guardrail"]["monitor-dashboard.json"])
    subscription = one(doc, "AWS::SNS::Subscription")["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")


def _dashboard_body(doc: dict) -> dict:
    return json.loads(
        one(doc, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"][0]
    )


def test_monitor_dashboard_latency_in_milliseconds(templates):
    body = _dashboard_body(templates["monitor-dashboard"])
    latency = [
        w for w in body["widgets"] if w["properties"].get("title", "").endswith("latency (ms)")
    ]
    assert len(latency) == 2
    for widget in latency:
        expressions = [
            m[0]["expression"] for m in widget["properties"]["metrics"] if isinstance(m[0], dict)
        ]
        assert expressions == ["model / 1000", "overhead / 1000"]
        assert widget["properties"]["yAxis"]["left"]["label"] == "Milliseconds"
    for widget in body["widgets"]:
        assert widget["x"] + widget["width"] <= 24


def test_architecture_names_the_dashboards_latency_unit(templates):
    """docs/architecture.md says what unit the SageMaker latency widgets show: milliseconds,
    converted from SageMaker's microseconds (a reader would otherwise misread them by 1000)."""
    body = _dashboard_body(templates["monitor-dashboard"])
    units = {
        w["properties"]["yAxis"]["left"]["label"]
        for w in body["widgets"]
        if w["properties"].get("title", "").endswith("latency (ms)")
    }
    assert units == {"Milliseconds"}
    docs = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    (row,) = [line for line in docs.splitlines() if line.startswith("| monitor dashboard |")]
    assert "milliseconds" in row and "latency in microseconds" not in row


# --- api-testing / tester-dashboard -----------------------------------------------------------


def test_testers(cfg, templates):
    doc = templates["api-testing"]
    functions = resources_of(doc, "AWS::Lambda::Function")
    assert len(functions) == cfg.load_test.tester_count
    env = functions["Tester001"]["Properties"]["Environment"]["Variables"]
    assert set(env) == {
        "API_URL",
        "API_RESOURCE_PATH",
        "AUTH_MODE",
        "API_KEY_ID",
        "METRIC_NAMESPACE",
        "STAGE",
        "RESULTS_BUCKET",
        "TESTER_INDEX",
        "TESTER_COUNT",
    }
    assert env["API_URL"] == {"Fn::ImportValue": "TextClassificationDemo-api-hosting-ApiUrl"}
    positions = [
        (fn["Properties"]["Environment"]["Variables"]["TESTER_INDEX"],
         fn["Properties"]["Environment"]["Variables"]["TESTER_COUNT"])
        for _, fn in sorted(functions.items())
    ]
    count = str(cfg.load_test.tester_count)
    assert positions == [(str(i), count) for i in range(1, cfg.load_test.tester_count + 1)]
    assert functions["Tester001"]["Properties"]["Timeout"] == cfg.load_test.tester_timeout_seconds
    for index in range(1, cfg.load_test.tester_count + 1):
        permission = doc["Resources"][f"Tester{index:03d}TopicPermission"]["Properties"]
        assert permission["SourceArn"] == {"Ref": "TriggerTopic"}
        invoke = doc["Resources"][f"Tester{index:03d}InvokeConfig"]["Properties"]
        assert invoke["MaximumRetryAttempts"] == 0
        assert "DeadLetterConfig" in functions[f"Tester{index:03d}"]["Properties"]
    assert len(resources_of(doc, "AWS::SNS::Subscription")) == cfg.load_test.tester_count


def test_trigger_topic_takes_publishes_over_tls_only(templates):
    """The trigger topic has its own policy: a Publish without TLS is refused."""
    doc = templates["api-testing"]
    policy = one(doc, "AWS::SNS::TopicPolicy")["Properties"]
    assert policy["Topics"] == [{"Ref": "TriggerTopic"}]
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*"
    assert deny["Action"] == ["sns:Publish"]
    assert deny["Resource"] == [{"Ref": "TriggerTopic"}]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_tester_dashboard_built_from_cases(cfg, templates):
    body = _dashboard_body(templates["tester-dashboard"])
    series = [
        m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]
    ]
    per_case = {
        (m[5], m[6]["stat"]) for m in series if m[1] == "ResponseTime" and m[4] == "TestCase"
    }
    assert per_case == {(c.id, p) for c in cfg.load_test.cases for p in ("p50", "p90", "p99")}
    per_variant = {m[5] for m in series if m[1] == "ResponseTime" and m[4] == "Variant"}
    assert per_variant == {m.variant_name for m in cfg.model_serving.models}
    # requests per variant add up to the requests sent: errors and timeouts have no variant
    (requests,) = [
        w for w in body["widgets"] if w["properties"].get("title") == "Requests per variant"
    ]
    assert {(m[1], m[5], m[6]["stat"]) for m in requests["properties"]["metrics"]} == {
        *(("ResponseTime", m.variant_name, "SampleCount") for m in cfg.model_serving.models),
        ("StatusError", config_module.NO_ANSWER_VARIANT, "Sum"),
    }
    counters = {m[1] for m in series if m[0] == cfg.project.name} - {"ResponseTime"}
    assert counters == {"StatusSuccess", "StatusError", "TestSuccess", "TestFail"}
    assert all(m[2:4] == ["Stage", cfg.project.stage] for m in series if m[0] == cfg.project.name)


# --- cicd-pipeline ----------------------------------------------------------------------------


def _stages(doc: dict) -> list[str]:
    return [s["Name"] for s in one(doc, "AWS::CodePipeline::Pipeline")["Properties"]["Stages"]]


def test_pipeline_with_s3_source(templates):
    doc = templates["cicd-pipeline"]
    assert _stages(doc) == ["Source", "Test", "Deploy"]
    source = one(doc, "AWS::CodePipeline::Pipeline")["Properties"]["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "S3"
    assert "SourceBucketName" in doc["Outputs"]
    projects = resources_of(doc, "AWS::CodeBuild::Project")
    assert {p["Properties"]["Source"]["BuildSpec"] for p in projects.values()} == {
        "buildspec/test.yml",
        "buildspec/deploy.yml",
    }
    for project in projects.values():
        assert project["Properties"]["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
        assert project["Properties"]["Environment"]["PrivilegedMode"] is False
    store = one(doc, "AWS::CodePipeline::Pipeline")["Properties"]["ArtifactStore"]
    assert store["EncryptionKey"]["Type"] == "KMS"


def test_s3_source_starts_the_pipeline_through_eventbridge(templates):
    """CodePipeline stops polling a pipeline inactive for 30 days (`pollingDisabledAt`): the
    source bucket's uploads start it through an EventBridge rule instead."""
    doc = templates["cicd-pipeline"]
    pipelines = resources_of(doc, "AWS::CodePipeline::Pipeline")
    (pipeline_id,) = pipelines
    source = pipelines[pipeline_id]["Properties"]["Stages"][0]["Actions"][0]["Configuration"]
    assert source["PollForSourceChanges"] == "false"
    bucket_id = source["S3Bucket"]["Ref"]
    bucket = doc["Resources"][bucket_id]["Properties"]
    assert bucket["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}

    rule = one(doc, "AWS::Events::Rule")["Properties"]
    assert rule["State"] == "ENABLED"
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": bucket_id}]},
            "object": {"key": [source["S3ObjectKey"]]},
        },
    }
    pipeline_arn = {
        "Fn::Sub": "arn:${AWS::Partition}:codepipeline:${AWS::Region}:${AWS::AccountId}:"
        "${%s}" % pipeline_id
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == pipeline_arn
    role = doc["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "events.amazonaws.com"}
    ]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", ["codepipeline:StartPipelineExecution"], [pipeline_arn])
    ]


def test_build_projects_keep_the_paths_their_buildspecs_cache(templates):
    """A buildspec's `cache: paths` only take effect with a project cache: S3, or LOCAL with
    the custom-cache mode (a project without one defaults to NO_CACHE)."""
    for project in resources_of(templates["cicd-pipeline"], "AWS::CodeBuild::Project").values():
        props = project["Properties"]
        spec = yaml.safe_load((ROOT / props["Source"]["BuildSpec"]).read_text())
        assert spec["cache"]["paths"], props["Name"]
        cache = props.get("Cache", {"Type": "NO_CACHE"})
        assert cache["Type"] == "S3" or (
            cache["Type"] == "LOCAL" and "LOCAL_CUSTOM_CACHE" in cache["Modes"]
        ), props["Name"]


def test_build_projects_install_the_cpu_build_of_torch(templates):
    """The builds install the project with pip, where torch's default Linux wheel is the
    several-GB CUDA build: each buildspec adds the index of its CPU build."""
    for project in resources_of(templates["cicd-pipeline"], "AWS::CodeBuild::Project").values():
        spec = yaml.safe_load((ROOT / project["Properties"]["Source"]["BuildSpec"]).read_text())
        assert spec["env"]["variables"]["PIP_EXTRA_INDEX_URL"].endswith("/whl/cpu")


def test_pipeline_with_connection_and_approval(variant_renders):
    doc = json.loads(variant_renders["repository-approval"]["cicd-pipeline.json"])
    assert _stages(doc) == ["Source", "Test", "Approve", "Deploy"]
    source = one(doc, "AWS::CodePipeline::Pipeline")["Properties"]["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["FullRepositoryId"] == "example/text-classification"
    assert source["Configuration"]["ConnectionArn"] == {
        "Fn::Sub": (
            "arn:${AWS::Partition}:codeconnections:us-east-1:123456789012:connection/"
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
        )
    }
    assert "SourceBucketName" not in doc["Outputs"]
    assert source["Configuration"]["DetectChanges"] == "true"
    assert not resources_of(doc, "AWS::Events::Rule")


def test_cicd_disabled_omits_stack_and_names_it_for_removal(variant_renders):
    files = variant_renders["no-cicd-single-model"]
    assert "cicd-pipeline.json" not in files
    manifest = json.loads(files["manifest.json"])
    assert "cicd-pipeline" not in [s["concern"] for s in manifest["stacks"]]
    assert manifest["disabled"] == [
        {"concern": "cicd-pipeline", "stack_name": "TextClassificationDemo-cicd-pipeline"}
    ]


# --- every template ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_security_baseline(name, variant_renders):
    """What checkov misses (security-notes G4): policies, encryption, retention, runtimes, alarm
    actions."""
    for filename, text in variant_renders[name].items():
        if filename == "manifest.json":
            continue
        doc = json.loads(text)
        for lid, res in doc["Resources"].items():
            props, kind = res.get("Properties", {}), res["Type"]
            if kind == "AWS::S3::Bucket":
                assert res["DeletionPolicy"] == res["UpdateReplacePolicy"], lid
                assert props["OwnershipControls"]["Rules"] == [
                    {"ObjectOwnership": "BucketOwnerEnforced"}
                ]
                assert all(props["PublicAccessBlockConfiguration"].values()), lid
                assert props["BucketEncryption"], lid
                policy = doc["Resources"][lid + "Policy"]["Properties"]["PolicyDocument"][
                    "Statement"
                ]
                assert policy[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            elif kind == "AWS::Logs::LogGroup":
                assert props["RetentionInDays"] and props["KmsKeyId"], lid
            elif kind == "AWS::Lambda::Function":
                assert props["TracingConfig"] == {"Mode": "Active"}, lid
                assert props["ReservedConcurrentExecutions"] >= 1, lid
                assert props["Runtime"] == "python3.14", lid
                assert props["LoggingConfig"]["LogGroup"]["Ref"] in doc["Resources"], lid
            elif kind == "AWS::SNS::Topic":
                assert "KmsMasterKeyId" in props, lid
            elif kind == "AWS::KMS::Key":
                assert props["EnableKeyRotation"] is True, lid
            elif kind == "AWS::SageMaker::EndpointConfig":
                assert props["DataCaptureConfig"]["KmsKeyId"], lid
                local = any(
                    model_serving.has_instance_storage(v["InstanceType"])
                    for v in props["ProductionVariants"]
                )
                assert ("KmsKeyId" in props) is not local, lid
            elif kind == "AWS::CloudWatch::Alarm" and not lid.startswith("Rollback"):
                assert props["AlarmActions"], lid
            elif kind == "AWS::IAM::Role":
                assert "ManagedPolicyArns" not in props, lid


def test_no_secret_looking_values(rendered):
    for filename, text in rendered.items():
        for node in walk(json.loads(text)):
            if isinstance(node, str):
                assert not node.startswith(("AKIA", "ASIA")), (filename, node)
                assert "BEGIN PRIVATE KEY" not in node, filename
