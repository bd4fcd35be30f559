"""api-testing: an encrypted SNS trigger topic fanning out to N tester functions that load the API,
publish latency metrics and write their summaries to the results bucket."""

from __future__ import annotations

from troposphere import GetAtt, Join, Ref, Sub, Template
from troposphere import awslambda as lambda_
from troposphere import sns, sqs

from .. import iam, naming, resources

CONCERN = "api-testing"
ARTIFACT = "tester"
RESULTS_PREFIX = "load-tests"
# A failed load run is not retried (it would distort the next run); events wait at most this long.
MAX_EVENT_AGE_S = 3600


def tester_name(cfg, index: int) -> str:
    return naming.resource_name(cfg, f"tester-{index:03d}", 64)


def build(cfg) -> Template:
    """Trigger topic, results bucket, dead-letter queue and the tester fleet."""
    load, api_mode = cfg.load_test, cfg.api_hosting.auth
    t = Template(
        Description=f"{naming.prefix(cfg)} API testing: trigger topic and tester functions"
    )
    t.set_version("2010-09-09")
    code_key = resources.artifact_key_parameter(t, ARTIFACT, "tester zip")
    key = resources.kms_key(
        t,
        "StackKey",
        "Encrypts the trigger topic, tester logs and environments",
        [resources.logs_key_grant()],
    )
    topic = t.add_resource(
        sns.Topic(
            "TriggerTopic",
            DisplayName=f"{naming.prefix(cfg)} load test trigger",
            KmsMasterKeyId=GetAtt(key, "Arn"),
        )
    )
    t.add_resource(
        sns.TopicPolicy(
            "TriggerTopicPolicy",
            Topics=[Ref(topic)],
            # Replaces SNS's default topic policy: a load test starts only from a TLS request.
            PolicyDocument=iam.deny_insecure_transport("sns:Publish", [Ref(topic)]),
        )
    )
    results = resources.bucket(
        t,
        "ResultsBucket",
        retain=False,
        versioned=False,
        lifecycle=[
            resources.expire_prefix("ExpireResults", RESULTS_PREFIX + "/", load.results_expiry_days)
        ],
        description="Load test summaries, one JSON object per tester and run",
    )
    dead_letters = t.add_resource(
        sqs.Queue(
            "FailedRuns",
            KmsMasterKeyId=GetAtt(key, "Arn"),
            MessageRetentionPeriod=14 * 24 * 3600,
            **resources.deletion_policy(False),
        )
    )

    log_groups = [
        resources.log_group(
            t,
            f"Tester{i:03d}LogGroup",
            f"/aws/lambda/{tester_name(cfg, i)}",
            cfg.project.log_retention_days,
            key,
        )
        for i in range(1, load.tester_count + 1)
    ]
    role = t.add_resource(
        iam.role(
            "TesterRole",
            "lambda.amazonaws.com",
            _tester_statements(cfg, key, log_groups, results, dead_letters),
            "Tester functions: call the API, publish metrics, write summaries",
        )
    )
    environment = {
        "API_URL": naming.imported(cfg, "api-hosting", "ApiUrl"),
        "API_RESOURCE_PATH": naming.imported(cfg, "api-hosting", "ApiResourcePath"),
        "AUTH_MODE": api_mode,
        "METRIC_NAMESPACE": cfg.project.name,
        "STAGE": cfg.project.stage,
        "RESULTS_BUCKET": Ref(results),
    }
    if api_mode == "api_key":
        environment["API_KEY_ID"] = naming.imported(cfg, "api-hosting", "ApiKeyId")

    functions = []
    for index, group in enumerate(log_groups, start=1):
        fn = resources.function(
            t,
            f"Tester{index:03d}",
            name=tester_name(cfg, index),
            description=f"Load tester {index} of {load.tester_count}",
            code_bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
            code_key=Ref(code_key),
            role=role,
            memory_mb=load.tester_memory_mb,
            timeout_s=load.tester_timeout_seconds,
            # One run per tester at a time: a tester is one load generator of known rate.
            reserved=1,
            # Its place in the fleet, so that the testers' schedules interleave evenly.
            environment={
                **environment,
                "TESTER_INDEX": str(index),
                "TESTER_COUNT": str(load.tester_count),
            },
            log_group_ref=group,
            key=key,
            extra={
                "DeadLetterConfig": lambda_.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
                "Metadata": {
                    "checkov": {
                        "skip": [
                            {
                                "id": "CKV_AWS_117",
                                "comment": "Calls only the public API endpoint and AWS APIs; "
                                "a VPC would add NAT cost and cold-start time.",
                            }
                        ]
                    }
                },
            },
        )
        t.add_resource(
            lambda_.EventInvokeConfig(
                f"Tester{index:03d}InvokeConfig",
                FunctionName=Ref(fn),
                Qualifier="$LATEST",
                MaximumRetryAttempts=0,
                MaximumEventAgeInSeconds=MAX_EVENT_AGE_S,
            )
        )
        t.add_resource(
            lambda_.Permission(
                f"Tester{index:03d}TopicPermission",
                Action="lambda:InvokeFunction",
                FunctionName=GetAtt(fn, "Arn"),
                Principal="sns.amazonaws.com",
                SourceArn=Ref(topic),
            )
        )
        t.add_resource(
            sns.SubscriptionResource(
                f"Tester{index:03d}Subscription",
                TopicArn=Ref(topic),
                Protocol="lambda",
                Endpoint=GetAtt(fn, "Arn"),
            )
        )
        functions.append(fn)

    naming.export(
        cfg, t, CONCERN, "TriggerTopicArn", Ref(topic), "Publish a load-test message here"
    )
    naming.output(
        t, "ResultsBucketName", Ref(results), "Tester summaries under load-tests/<RunId>/"
    )
    naming.output(
        t, "TesterFunctionNames", Join(",", [Ref(fn) for fn in functions]), "Tester functions"
    )
    naming.output(
        t,
        "FailedRunsQueueUrl",
        Ref(dead_letters),
        "Tester runs that failed outright, with ErrorCode and ErrorMessage attributes",
    )
    return t


def _tester_statements(cfg, key, log_groups, results, dead_letters) -> list:
    statements = resources.function_statements(log_groups, key) + [
        iam.put_metric_data("PublishTestMetrics", cfg.project.name),
        iam.s3_write_objects(
            "WriteSummaries", [Sub(f"${{{results.title}.Arn}}/{RESULTS_PREFIX}/*")]
        ),
        iam.statement("ParkFailedRuns", ["sqs:SendMessage"], [GetAtt(dead_letters, "Arn")]),
        iam.kms_use("EncryptFailedRuns", [GetAtt(key, "Arn")]),
    ]
    if cfg.api_hosting.auth == "api_key":
        statements.append(
            iam.statement(
                "ReadApiKeyValue",
                ["apigateway:GET"],
                [
                    iam.arn(
                        "apigateway",
                        "/apikeys/${KeyId}",
                        account=False,
                        KeyId=naming.imported(cfg, "api-hosting", "ApiKeyId"),
                    )
                ],
            )
        )
    else:
        statements.append(
            iam.statement(
                "InvokeApi",
                ["execute-api:Invoke"],
                [
                    iam.arn(
                        "execute-api",
                        f"${{ApiId}}/{cfg.project.stage}/POST/{cfg.api_hosting.resource_path}",
                        ApiId=naming.imported(cfg, "api-hosting", "ApiId"),
                    )
                ],
            )
        )
    return statements
