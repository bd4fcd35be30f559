"""model-serving: execution role, one Model per configured model, weighted EndpointConfig with
data capture, the Endpoint and its log group, optional autoscaling and an optional blue/green
guardrail; one customer key encrypts the storage volumes, the captured data and the logs."""

from __future__ import annotations

import re

from troposphere import GetAtt, Join, Ref, Select, Split, Sub, Template
from troposphere import applicationautoscaling as aas
from troposphere import cloudwatch, sagemaker

from .. import iam, naming, resources
from ..config import ECR_IMAGE

CONCERN = "model-serving"
# The endpoint's log group, named by SageMaker's rule (make deploy checks nothing else has it).
LOG_GROUP = "EndpointLogGroup"
# Each variant's rollback alarms, by the suffix of their names.
ROLLBACK_ALARM_KINDS = ("5xx", "latency")
# Application Auto Scaling's service-linked role for SageMaker variants.
SCALING_ROLE = (
    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
    "sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
# Instance families whose ML storage is local NVMe, which the instance encrypts in hardware:
# CreateEndpointConfig fails when it also names a KmsKeyId. They are the families with a "d"
# attribute (c5d, m6id, g4dn, p4de, ...) and the accelerated ones whose local storage has no
# letter (g5 and later, gr6, p5 and later, trn, dl). Matching too much only leaves the key off
# the volumes; matching too little fails the deploy.
INSTANCE_STORAGE_FAMILY = re.compile(r"[a-z]+\d+[a-z]*d[a-z]*|(?:g[5-9]|gr\d|p[5-9]|trn\d|dl\d).*")


def has_instance_storage(instance_type: str) -> bool:
    """Whether a SageMaker instance type (`ml.<family>.<size>`) has local NVMe storage."""
    return INSTANCE_STORAGE_FAMILY.fullmatch(instance_type.split(".")[1]) is not None


def build(cfg) -> Template:
    """Serving stack; Model names change whenever their content or their artifact changes."""
    serving = cfg.model_serving
    t = Template(
        Description=f"{naming.prefix(cfg)} model serving: SageMaker models, config, endpoint"
    )
    t.set_version("2010-09-09")
    artifact_bucket = naming.imported(cfg, "model-archiving", "ArtifactBucketName")
    capture = serving.data_capture
    key = resources.kms_key(
        t,
        "ServingKey",
        "Encrypts the endpoint's storage volumes, its captured data and its log group",
        [resources.logs_key_grant()],
        # A retained capture bucket keeps data only this key decrypts.
        retain=cfg.model_archiving.retain_on_delete,
    )
    log_group = resources.log_group(
        t,
        LOG_GROUP,
        naming.endpoint_log_group(cfg),
        cfg.project.log_retention_days,
        key,
    )

    capture_bucket = resources.bucket(
        t,
        "CaptureBucket",
        retain=cfg.model_archiving.retain_on_delete,
        versioned=False,
        lifecycle=[
            resources.expire_prefix("ExpireCapturedData", capture.prefix + "/", capture.expiry_days)
        ],
        description="SageMaker data capture (request and response samples)",
        key=key,
    )
    role = t.add_resource(
        iam.role(
            "ExecutionRole",
            "sagemaker.amazonaws.com",
            _execution_statements(cfg, capture_bucket, key, log_group),
            "SageMaker execution role: pull images, read models, write capture",
        )
    )

    models = []
    for model in serving.models:
        key_param = resources.artifact_key_parameter(t, model.name, f"{model.name} model.tar.gz")
        models.append((model, _model(t, cfg, model, role, artifact_bucket, key_param)))

    volume_key = (
        {}
        if any(has_instance_storage(m.instance_type) for m in serving.models)
        else {"KmsKeyId": GetAtt(key, "Arn")}
    )
    endpoint_config = t.add_resource(
        sagemaker.EndpointConfig(
            "EndpointConfig",
            ProductionVariants=[
                sagemaker.ProductionVariant(
                    ModelName=GetAtt(res, "ModelName"),
                    VariantName=m.variant_name,
                    InitialVariantWeight=m.initial_weight,
                    InitialInstanceCount=m.instance_count,
                    InstanceType=m.instance_type,
                )
                for m, res in models
            ],
            DataCaptureConfig=_data_capture(cfg, capture_bucket, key),
            # No fixed name: an EndpointConfig is replaced whenever a Model is, and
            # CloudFormation then
            # generates a fresh name, so nothing ever has to be renamed by hand.
            **volume_key,
        )
    )

    endpoint_props = dict(
        EndpointName=naming.endpoint_name(cfg),
        EndpointConfigName=GetAtt(endpoint_config, "EndpointConfigName"),
    )
    if any(m.autoscaling.enabled for m, _ in models):
        # An update keeps the instance counts the autoscaler set; the weights still come from
        # the config (retaining every property would keep the deployed weights forever).
        endpoint_props["RetainAllVariantProperties"] = True
        endpoint_props["ExcludeRetainedVariantProperties"] = [
            sagemaker.VariantProperty(VariantPropertyType="DesiredWeight")
        ]
    if serving.deployment_guardrail.enabled:
        endpoint_props["DeploymentConfig"] = _guardrail(t, cfg)
    # The log group exists before the endpoint can log, so SageMaker never creates its own
    # (which would never expire and outlive the stack); it goes only after the endpoint.
    endpoint = t.add_resource(
        sagemaker.Endpoint("Endpoint", DependsOn=[log_group], **endpoint_props)
    )

    for model, _ in models:
        if model.autoscaling.enabled:
            _autoscaling(t, cfg, model, endpoint)

    naming.export(
        cfg, t, CONCERN, "EndpointName", GetAtt(endpoint, "EndpointName"), "SageMaker endpoint name"
    )
    naming.output(
        t,
        "EndpointConfigName",
        GetAtt(endpoint_config, "EndpointConfigName"),
        "Current endpoint configuration",
    )
    naming.output(t, "CaptureBucketName", Ref(capture_bucket), "Data capture bucket")
    naming.output(
        t,
        "CaptureS3Uri",
        Sub(f"s3://${{CaptureBucket}}/{capture.prefix}"),
        "Data capture destination",
    )
    return t


def _execution_statements(cfg, capture_bucket, key, log_group) -> list:
    repositories = sorted(
        {
            (g["account"], g["repository"])
            for g in (
                ECR_IMAGE.fullmatch(m.image_uri).groupdict() for m in cfg.model_serving.models
            )
        }
    )
    statements = []
    for index, (account, repository) in enumerate(repositories):
        repo_arn = Sub(
            f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:{account}:repository/{repository}"
        )
        pulls = iam.ecr_pull(f"PullImage{index}", repo_arn)
        statements.extend(pulls if index == 0 else pulls[1:])
    prefix = cfg.model_serving.data_capture.prefix
    statements += [
        iam.s3_read_objects(
            "ReadModelArtifacts",
            [
                Sub(
                    f"arn:${{AWS::Partition}}:s3:::${{Bucket}}/"
                    f"{naming.model_artifact_prefix(model.name)}*",
                    Bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
                )
                for model in cfg.model_serving.models
            ],
        ),
        iam.s3_bucket_location("LocateCaptureBucket", [GetAtt(capture_bucket, "Arn")]),
        iam.s3_write_objects("WriteCapturedData", [Sub(f"${{CaptureBucket.Arn}}/{prefix}/*")]),
        iam.kms_use("EncryptCapturedData", [GetAtt(key, "Arn")]),
        iam.statement(
            "WriteEndpointLogs",
            [
                # SageMaker asks to create the group it logs to; it exists, declared above.
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            [
                iam.arn("logs", f"log-group:{naming.endpoint_log_group(cfg)}"),
                GetAtt(log_group, "Arn"),
            ],
        ),
        iam.put_metric_data("PublishEndpointMetrics", "/aws/sagemaker/Endpoints"),
    ]
    if cfg.model_serving.deployment_guardrail.enabled:
        # SageMaker reads the rollback alarms with the execution role during an update.
        statements.append(
            iam.describe_alarms(
                "ReadRollbackAlarms",
                [
                    iam.arn("cloudwatch", f"alarm:{_rollback_alarm_name(cfg, model, kind)}")
                    for model in cfg.model_serving.models
                    for kind in ROLLBACK_ALARM_KINDS
                ],
            )
        )
    return statements


def _model(t, cfg, model, role, artifact_bucket, key_param):
    container = sagemaker.ContainerDefinition(
        Image=Sub(model.image_uri),
        ModelDataUrl=Join("", ["s3://", artifact_bucket, "/", Ref(key_param)]),
        Environment={
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(model.server_workers),
            "MODEL_MAX_BATCH_SIZE": str(cfg.model_serving.max_batch_size),
            "MODEL_MAX_TEXT_CHARS": str(cfg.model_serving.max_text_chars),
        },
    )
    static_name = naming.hashed_name(f"{naming.prefix(cfg)}-{model.name}", container, limit=63 - 17)
    # The artifact key is models/<id>/<sha256[:16]>/model.tar.gz: its hash part renames the Model
    # whenever the model data changes, which a template-time hash cannot see.
    name = Join("-", [static_name, Select(2, Split("/", Ref(key_param)))])
    return t.add_resource(
        sagemaker.Model(
            "Model" + naming.pascal(model.name),
            ModelName=name,
            ExecutionRoleArn=GetAtt(role, "Arn"),
            PrimaryContainer=container,
            # The handler needs nothing but its model directory: no outbound network at all.
            EnableNetworkIsolation=True,
        )
    )


def _data_capture(cfg, capture_bucket, key) -> sagemaker.DataCaptureConfig:
    capture = cfg.model_serving.data_capture
    props = dict(
        KmsKeyId=GetAtt(key, "Arn"),
        EnableCapture=capture.enabled,
        InitialSamplingPercentage=capture.sampling_percentage,
        DestinationS3Uri=Sub(f"s3://${{{capture_bucket.title}}}/{capture.prefix}"),
        CaptureOptions=[
            sagemaker.CaptureOption(CaptureMode="Input"),
            sagemaker.CaptureOption(CaptureMode="Output"),
        ],
    )
    if capture.capture_json_as_json:
        props["CaptureContentTypeHeader"] = sagemaker.CaptureContentTypeHeader(
            JsonContentTypes=["application/json"]
        )
    return sagemaker.DataCaptureConfig(**props)


def _rollback_alarm_name(cfg, model, kind: str) -> str:
    return naming.resource_name(cfg, f"{model.variant_name}-rollback-{kind}", 255)


def _guardrail(t, cfg) -> sagemaker.DeploymentConfig:
    guard, alarms_cfg = cfg.model_serving.deployment_guardrail, cfg.monitoring
    alarms = []
    for model in cfg.model_serving.models:
        dims = [
            cloudwatch.MetricDimension(Name="EndpointName", Value=naming.endpoint_name(cfg)),
            cloudwatch.MetricDimension(Name="VariantName", Value=model.variant_name),
        ]
        base = "Rollback" + naming.pascal(model.variant_name)
        alarms.append(
            t.add_resource(
                cloudwatch.Alarm(
                    base + "Errors",
                    AlarmName=_rollback_alarm_name(cfg, model, "5xx"),
                    AlarmDescription=f"{model.variant_name}: model errors roll a deployment back",
                    Namespace="AWS/SageMaker",
                    MetricName="Invocation5XXErrors",
                    Dimensions=dims,
                    Statistic="Sum",
                    Period=60,
                    EvaluationPeriods=1,
                    Threshold=alarms_cfg.alarms.model_invocation_errors_per_period,
                    ComparisonOperator="GreaterThanOrEqualToThreshold",
                    TreatMissingData="notBreaching",
                )
            )
        )
        alarms.append(
            t.add_resource(
                cloudwatch.Alarm(
                    base + "Latency",
                    AlarmName=_rollback_alarm_name(cfg, model, "latency"),
                    AlarmDescription=f"{model.variant_name}: p99 latency rolls a deployment back",
                    Namespace="AWS/SageMaker",
                    MetricName="ModelLatency",
                    Dimensions=dims,
                    ExtendedStatistic="p99",
                    Period=60,
                    EvaluationPeriods=1,
                    Threshold=alarms_cfg.alarms.model_latency_p99_ms * 1000,
                    ComparisonOperator="GreaterThanThreshold",
                    TreatMissingData="notBreaching",
                )
            )
        )
    return sagemaker.DeploymentConfig(
        BlueGreenUpdatePolicy=sagemaker.BlueGreenUpdatePolicy(
            TrafficRoutingConfiguration=sagemaker.TrafficRoutingConfig(
                Type="CANARY",
                CanarySize=sagemaker.CapacitySize(
                    Type="CAPACITY_PERCENT", Value=guard.canary_percentage
                ),
                WaitIntervalInSeconds=guard.wait_seconds,
            ),
            TerminationWaitInSeconds=guard.bake_seconds,
        ),
        AutoRollbackConfiguration=sagemaker.AutoRollbackConfig(
            Alarms=[sagemaker.Alarm(AlarmName=Ref(alarm)) for alarm in alarms]
        ),
    )


def _autoscaling(t, cfg, model, endpoint) -> None:
    scaling = model.autoscaling
    name = naming.pascal(model.variant_name)
    target = t.add_resource(
        aas.ScalableTarget(
            "ScalableTarget" + name,
            ServiceNamespace="sagemaker",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            ResourceId=f"endpoint/{naming.endpoint_name(cfg)}/variant/{model.variant_name}",
            MinCapacity=scaling.min_capacity,
            MaxCapacity=scaling.max_capacity,
            RoleARN=Sub(SCALING_ROLE),
            # The variant exists only once the endpoint does (the reference system raced here).
            DependsOn=[endpoint],
        )
    )
    t.add_resource(
        aas.ScalingPolicy(
            "ScalingPolicy" + name,
            PolicyName=naming.resource_name(cfg, f"{model.variant_name}-invocations", 256),
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=aas.TargetTrackingScalingPolicyConfiguration(
                TargetValue=scaling.target_invocations_per_instance,
                PredefinedMetricSpecification=aas.PredefinedMetricSpecification(
                    PredefinedMetricType="SageMakerVariantInvocationsPerInstance"
                ),
                ScaleInCooldown=300,
                ScaleOutCooldown=60,
            ),
        )
    )
