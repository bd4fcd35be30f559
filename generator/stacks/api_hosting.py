"""api-hosting: REST API `POST /<stage>/<resource_path>` with Lambda proxy integration to the
predictor, request validation, throttled and logged stage, and required auth (API key or IAM)."""

from __future__ import annotations

import json
import math

from troposphere import GetAtt, Ref, Sub, Template
from troposphere import apigateway as apigw
from troposphere import awslambda as lambda_

from .. import iam, naming, resources

CONCERN = "api-hosting"
ARTIFACT = "predictor"
# With account_logging_role "create": the role the account-wide setting names.
LOGGING_ROLE = "ApiGatewayLoggingRole"


# JSON schema of the request body; the handler validates again (never trust the gateway alone).
def request_schema(cfg) -> dict:
    """JSON schema of the body, the same rules the predictor enforces (it validates again)."""
    text = {"type": "string", "minLength": 1, "maxLength": cfg.model_serving.max_text_chars}
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "ClassifyRequest",
        "type": "object",
        "properties": {
            "sentence": text,
            "sentences": {
                "type": "array",
                "minItems": 1,
                "maxItems": cfg.model_serving.max_batch_size,
                "items": text,
            },
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["sentence"]}, {"required": ["sentences"]}],
    }


ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "apiKeyId": "$context.identity.apiKeyId",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
        "latency": "$context.responseLatency",
        "errorType": "$context.error.responseType",
    },
    sort_keys=True,
    separators=(",", ":"),
)


# API Gateway's own refusals (throttle, quota, missing auth, size, its timeout) answer in the
# predictor's error shape, with API Gateway's request id, which is the predictor's MessageId.
# Each code is the predictor's for the same condition where it has one. The response types
# without an entry here fall back to DEFAULT_4XX or DEFAULT_5XX, keeping their own status.
GATEWAY_ERROR_CODES = {
    "BAD_REQUEST_BODY": "InvalidRequest",
    "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationToken",
    "REQUEST_TOO_LARGE": "PayloadTooLarge",
    "THROTTLED": "TooManyRequests",
    "QUOTA_EXCEEDED": "QuotaExceeded",
    "INTEGRATION_TIMEOUT": "GatewayTimeout",
    "DEFAULT_4XX": "ClientError",
    "DEFAULT_5XX": "GatewayError",
}
# The predictor's caching and sniffing headers, on API Gateway's own answers too.
GATEWAY_ERROR_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def retry_after_s(rate_limit: float) -> int:
    """Seconds until the throttle's drained token bucket holds a token again (it refills at
    rate_limit per second, so one second unless the rate is below one per second)."""
    return max(1, math.ceil(1 / rate_limit))


def gateway_error_template(code: str) -> str:
    """The JSON body API Gateway renders; `messageString` is the message already quoted."""
    return (
        '{"MessageId":"$context.requestId","error":{"code":"%s",'
        '"message":$context.error.messageString}}' % code
    )


def api_name(cfg) -> str:
    return naming.resource_name(cfg, "api", 1024)


def predictor_name(cfg) -> str:
    return naming.resource_name(cfg, "predictor", 64)


def build(cfg) -> Template:
    """API stack: the only public entry point of the system, authenticated and throttled."""
    api = cfg.api_hosting
    stage = cfg.project.stage
    t = Template(Description=f"{naming.prefix(cfg)} API hosting: REST API and predictor function")
    t.set_version("2010-09-09")
    code_key = resources.artifact_key_parameter(t, ARTIFACT, "predictor zip")

    key = resources.kms_key(
        t,
        "StackKey",
        "Encrypts this stack's log groups and function environment",
        [resources.logs_key_grant()],
    )
    function_logs = resources.log_group(
        t,
        "PredictorLogGroup",
        f"/aws/lambda/{predictor_name(cfg)}",
        cfg.project.log_retention_days,
        key,
    )
    endpoint_name = naming.imported(cfg, "model-serving", "EndpointName")
    role = t.add_resource(
        iam.role(
            "PredictorRole",
            "lambda.amazonaws.com",
            resources.function_statements([function_logs], key)
            + [
                iam.statement(
                    "InvokeEndpoint",
                    ["sagemaker:InvokeEndpoint"],
                    [iam.arn("sagemaker", "endpoint/${Endpoint}", Endpoint=endpoint_name)],
                ),
            ],
            "Predictor function: invoke the endpoint, write its own logs and traces",
        )
    )
    predictor = resources.function(
        t,
        "Predictor",
        name=predictor_name(cfg),
        description="Validates classification requests and invokes the SageMaker endpoint",
        code_bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
        code_key=Ref(code_key),
        role=role,
        memory_mb=api.predictor.memory_mb,
        timeout_s=api.predictor.timeout_seconds,
        reserved=api.predictor.reserved_concurrency,
        environment={
            "ENDPOINT_NAME": endpoint_name,
            "MAX_BATCH_SIZE": str(cfg.model_serving.max_batch_size),
            "MAX_BODY_BYTES": str(api.max_body_bytes),
            "MAX_TEXT_CHARS": str(cfg.model_serving.max_text_chars),
            "LOG_REQUEST_TEXT": "true" if api.predictor.log_request_text else "false",
        },
        log_group_ref=function_logs,
        key=key,
        extra={
            "Metadata": {
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_116",
                            "comment": "Invoked synchronously by API Gateway: the caller gets the "
                            "error, there is no event to park in a dead-letter queue.",
                        },
                        {
                            "id": "CKV_AWS_117",
                            "comment": "Calls only AWS APIs (SageMaker runtime); no VPC resources "
                            "to reach, and a VPC would add NAT cost and cold-start time.",
                        },
                    ]
                }
            }
        },
    )

    rest_api = t.add_resource(
        apigw.RestApi(
            "RestApi",
            Name=api_name(cfg),
            Description="Text classification API",
            EndpointConfiguration=apigw.EndpointConfiguration(Types=["REGIONAL"]),
            ApiKeySourceType="HEADER",
            DisableExecuteApiEndpoint=False,
        )
    )
    parent = GetAtt(rest_api, "RootResourceId")
    path_resources = []
    for index, part in enumerate(api.resource_path.split("/")):
        resource = t.add_resource(
            apigw.Resource(
                f"ApiResource{index}" if index else "ApiResource",
                RestApiId=Ref(rest_api),
                ParentId=parent,
                PathPart=part,
            )
        )
        path_resources.append(resource)
        parent = Ref(resource)
    validator = t.add_resource(
        apigw.RequestValidator(
            "BodyValidator",
            RestApiId=Ref(rest_api),
            Name="body",
            ValidateRequestBody=True,
            ValidateRequestParameters=False,
        )
    )
    model = t.add_resource(
        apigw.Model(
            "ClassifyRequestModel",
            RestApiId=Ref(rest_api),
            Name="ClassifyRequest",
            ContentType="application/json",
            Schema=request_schema(cfg),
        )
    )
    use_key = api.auth == "api_key"
    method = t.add_resource(
        apigw.Method(
            "ClassifyMethod",
            RestApiId=Ref(rest_api),
            ResourceId=Ref(resource),
            HttpMethod="POST",
            AuthorizationType="NONE" if use_key else "AWS_IAM",
            ApiKeyRequired=use_key,
            RequestValidatorId=Ref(validator),
            # Only JSON is validated here: any other content type reaches the predictor, which
            # answers 415 (a $default JSON model would turn that into a misleading 400).
            RequestModels={"application/json": Ref(model)},
            Integration=apigw.Integration(
                Type="AWS_PROXY",
                IntegrationHttpMethod="POST",
                TimeoutInMillis=29000,
                Uri=Sub(
                    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                    "functions/"
                    "${Predictor.Arn}/invocations"
                ),
            ),
            Metadata=(
                {
                    "checkov": {
                        "skip": [
                            {
                                "id": "CKV_AWS_59",
                                "comment": "Authorization is an API key with a usage plan (config "
                                "api_hosting.auth = api_key) or AWS_IAM; never open.",
                            }
                        ]
                    }
                }
                if use_key
                else {}
            ),
        )
    )
    t.add_resource(
        lambda_.Permission(
            "ApiInvokesPredictor",
            Action="lambda:InvokeFunction",
            FunctionName=GetAtt(predictor, "Arn"),
            Principal="apigateway.amazonaws.com",
            SourceArn=Sub(
                f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:"
                f"${{RestApi}}/{stage}/POST/{api.resource_path}"
            ),
        )
    )

    access_logs = resources.log_group(
        t,
        "AccessLogGroup",
        f"/aws/apigateway/{api_name(cfg)}/{stage}/access",
        cfg.project.log_retention_days,
        key,
    )
    # API Gateway writes execution logs to this fixed name and, left to itself, creates the
    # group without retention or encryption and outside the stack (it would outlive teardown).
    execution_logs = resources.log_group(
        t,
        "ExecutionLogGroup",
        Sub(naming.execution_log_group(cfg)),
        cfg.project.log_retention_days,
        key,
    )
    account_logging = _account_logging_role(t, cfg)
    gateway_errors = _gateway_responses(t, rest_api, cfg.api_hosting.throttle.rate_limit)
    deployed = [method, model, validator, *path_resources, *gateway_errors]
    deployment = t.add_resource(
        apigw.Deployment(
            # A new logical id whenever the API changes (gateway responses too: they take effect
            # only when deployed), so CloudFormation deploys it to the stage.
            "Deployment" + naming.content_hash(deployed).upper(),
            RestApiId=Ref(rest_api),
            Description="Deployment of the classification API",
            DependsOn=[method, *gateway_errors],
        )
    )
    stage_res = t.add_resource(
        apigw.Stage(
            "Stage",
            RestApiId=Ref(rest_api),
            StageName=stage,
            DeploymentId=Ref(deployment),
            TracingEnabled=True,
            AccessLogSetting=apigw.AccessLogSetting(
                DestinationArn=GetAtt(access_logs, "Arn"), Format=ACCESS_LOG_FORMAT
            ),
            MethodSettings=[
                apigw.MethodSetting(
                    HttpMethod="*",
                    ResourcePath="/*",
                    LoggingLevel="ERROR",
                    DataTraceEnabled=False,
                    MetricsEnabled=True,
                    ThrottlingRateLimit=api.throttle.rate_limit,
                    ThrottlingBurstLimit=api.throttle.burst_limit,
                )
            ],
            DependsOn=[*account_logging, execution_logs],
            Metadata={
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_120",
                            "comment": "POST inference with per-request bodies: a response cache "
                            "would not hit and could serve one caller's result to another.",
                        }
                    ]
                }
            },
        )
    )

    if use_key:
        _api_key(t, cfg, rest_api, stage_res)
    api_url = Sub(f"https://${{RestApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{stage}")
    naming.export(cfg, t, CONCERN, "ApiId", Ref(rest_api), "REST API id")
    naming.export(cfg, t, CONCERN, "ApiStage", stage, "Stage name")
    naming.export(cfg, t, CONCERN, "ApiUrl", api_url, "Stage URL")
    naming.export(
        cfg, t, CONCERN, "ApiResourcePath", api.resource_path, "Resource path under the stage"
    )
    naming.export(cfg, t, CONCERN, "ApiName", api_name(cfg), "REST API name (dashboard dimension)")
    naming.export(
        cfg, t, CONCERN, "PredictorFunctionName", Ref(predictor), "Predictor function name"
    )
    return t


def _gateway_responses(t, rest_api, rate_limit: float) -> list:
    """API Gateway's own error answers, in the predictor's shape (GATEWAY_ERROR_CODES)."""
    responses = []
    for response_type, code in GATEWAY_ERROR_CODES.items():
        headers = {**GATEWAY_ERROR_HEADERS}
        if response_type == "THROTTLED":  # the stage's and the usage plan's throttle alike
            headers["Retry-After"] = str(retry_after_s(rate_limit))
        responses.append(
            t.add_resource(
                apigw.GatewayResponse(
                    "GatewayResponse" + "".join(w.capitalize() for w in response_type.split("_")),
                    RestApiId=Ref(rest_api),
                    ResponseType=response_type,
                    ResponseParameters={
                        f"gatewayresponse.header.{name}": f"'{value}'"
                        for name, value in sorted(headers.items())
                    },
                    ResponseTemplates={"application/json": gateway_error_template(code)},
                )
            )
        )
    return responses


def _account_logging_role(t, cfg) -> list:
    """With `create`, the role API Gateway writes logs with and the account-wide setting naming
    it (the stage needs it before it can log); with `existing`, nothing: the account has one."""
    if cfg.api_hosting.account_logging_role != "create":
        return []
    role = t.add_resource(
        iam.role(
            LOGGING_ROLE,
            "apigateway.amazonaws.com",
            [
                iam.statement(
                    "WriteApiLogs",
                    [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogGroups",
                        "logs:DescribeLogStreams",
                        "logs:PutLogEvents",
                        "logs:GetLogEvents",
                        "logs:FilterLogEvents",
                    ],
                    [iam.arn("logs", "log-group:*")],
                )
            ],
            "Lets API Gateway write execution and access logs (account-level setting)",
        )
    )
    return [
        t.add_resource(
            apigw.Account("ApiGatewayAccount", CloudWatchRoleArn=GetAtt(role, "Arn"))
        )
    ]


def _api_key(t, cfg, rest_api, stage_res) -> None:
    api = cfg.api_hosting
    key = t.add_resource(
        apigw.ApiKey(
            "ApiKey",
            Name=naming.resource_name(cfg, "api-key", 1024),
            Enabled=True,
            Description="Key for API clients and the load testers (value generated by API Gateway)",
        )
    )
    plan = t.add_resource(
        apigw.UsagePlan(
            "UsagePlan",
            UsagePlanName=naming.resource_name(cfg, "usage-plan", 1024),
            ApiStages=[apigw.ApiStage(ApiId=Ref(rest_api), Stage=cfg.project.stage)],
            Throttle=apigw.ThrottleSettings(
                RateLimit=api.throttle.rate_limit, BurstLimit=api.throttle.burst_limit
            ),
            Quota=apigw.QuotaSettings(Limit=api.quota.limit, Period=api.quota.period),
            DependsOn=[stage_res],
        )
    )
    t.add_resource(
        apigw.UsagePlanKey("UsagePlanKey", KeyId=Ref(key), KeyType="API_KEY", UsagePlanId=Ref(plan))
    )
    naming.export(
        cfg, t, CONCERN, "ApiKeyId", Ref(key), "API key id (the value is read with apigateway:GET)"
    )
