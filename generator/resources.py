"""Secure-by-default builders shared by the stacks: buckets, keys, log groups, functions."""

from __future__ import annotations

from awacs.aws import (
    Action,
    Allow,
    ArnLike,
    Condition,
    PolicyDocument,
    Principal,
    Statement,
)
from troposphere import GetAtt, Parameter, Ref, Sub, Template
from troposphere import awslambda as lambda_
from troposphere import kms, logs, s3

from . import iam, naming

# Newest Python runtime in cfn-lint's runtime lifecycle data (its schema already lists 3.15,
# which has no lifecycle entry yet, i.e. is not generally available).
PYTHON_RUNTIME = "python3.14"
HANDLER = "handler.handler"


def artifact_key_parameter(template: Template, artifact: str, what: str) -> Parameter:
    """The Parameter that receives an artifact's content-hashed S3 key at deploy time."""
    return template.add_parameter(
        Parameter(
            naming.parameter_name(artifact),
            Type="String",
            AllowedPattern=r"^[A-Za-z0-9!_.*'()/-]+$",
            Description=f"S3 key of the {what} in the artifact bucket",
        )
    )


def deletion_policy(retain: bool) -> dict:
    """Stateful resources choose deliberately: Delete lets `make teardown` leave nothing."""
    policy = "Retain" if retain else "Delete"
    return {"DeletionPolicy": policy, "UpdateReplacePolicy": policy}


def bucket(
    template: Template,
    logical_id: str,
    *,
    retain: bool,
    versioned: bool,
    lifecycle: list[s3.LifecycleRule],
    description: str,
    eventbridge: bool = False,
    key: kms.Key | None = None,
) -> s3.Bucket:
    """Encrypted, private, owner-enforced bucket with a TLS-only policy; `eventbridge` sends
    its events (object created, deleted, ...) to the account's default EventBridge bus; `key`
    encrypts its objects by default instead of S3's own key."""
    encryption = (
        s3.ServerSideEncryptionByDefault(SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn"))
        if key is not None
        else s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256")
    )
    props = dict(
        BucketEncryption=s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    ServerSideEncryptionByDefault=encryption, BucketKeyEnabled=True
                )
            ]
        ),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True,
            BlockPublicPolicy=True,
            IgnorePublicAcls=True,
            RestrictPublicBuckets=True,
        ),
        OwnershipControls=s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
        ),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=lifecycle),
        Metadata={
            "Description": description,
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_18",
                        "comment": "Server access logs would need a log bucket per bucket; "
                        "CloudTrail data "
                        "events are the audit trail for these private, owner-only buckets.",
                    }
                ]
            },
        },
        **deletion_policy(retain),
    )
    if eventbridge:
        props["NotificationConfiguration"] = s3.NotificationConfiguration(
            EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)
        )
    if versioned:
        props["VersioningConfiguration"] = s3.VersioningConfiguration(Status="Enabled")
    else:
        props["Metadata"]["checkov"]["skip"].append(
            {
                "id": "CKV_AWS_21",
                "comment": "Objects are written once under unique keys and expire by a lifecycle "
                "rule; versions would only keep deleted copies past the configured retention.",
            }
        )
    resource = template.add_resource(s3.Bucket(logical_id, **props))
    template.add_resource(
        s3.BucketPolicy(
            logical_id + "Policy",
            Bucket=Ref(resource),
            PolicyDocument=iam.deny_insecure_transport(
                "s3:*", [GetAtt(resource, "Arn"), Sub("${%s.Arn}/*" % logical_id)]
            ),
        )
    )
    return resource


def noncurrent_expiry(days: int) -> s3.LifecycleRule:
    return s3.LifecycleRule(
        Id="ExpireNoncurrentVersions",
        Status="Enabled",
        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=days),
        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
    )


def expire_prefix(rule_id: str, prefix: str, days: int) -> s3.LifecycleRule:
    return s3.LifecycleRule(
        Id=rule_id,
        Status="Enabled",
        Prefix=prefix,
        ExpirationInDays=days,
        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
    )


def kms_key(
    template: Template,
    logical_id: str,
    description: str,
    grants: list[Statement],
    retain: bool = False,
) -> kms.Key:
    """Customer key with rotation, administered through IAM; `grants` admit services. A key
    that encrypts data a retained resource keeps is retained with it: once deleted, nothing
    it encrypted can be decrypted again."""
    root = Statement(
        Sid="AccountAdministersKeyThroughIam",
        Effect=Allow,
        Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")),
        Action=[Action("kms", "*")],
        Resource=["*"],
    )
    return template.add_resource(
        kms.Key(
            logical_id,
            Description=description,
            EnableKeyRotation=True,
            KeyPolicy=PolicyDocument(Version="2012-10-17", Statement=[root] + grants),
            **deletion_policy(retain),
        )
    )


def service_key_grant(
    sid: str, service, actions: list[str], condition: Condition | None = None
) -> Statement:
    """Key-policy statement for a service principal (in a key policy, Resource '*' = this key)."""
    kwargs = {"Condition": condition} if condition is not None else {}
    return Statement(
        Sid=sid,
        Effect=Allow,
        Principal=Principal("Service", service),
        Action=[Action(*a.split(":", 1)) for a in actions],
        Resource=["*"],
        **kwargs,
    )


def logs_key_grant() -> Statement:
    """Admit CloudWatch Logs, limited to this account's log groups in this region."""
    return service_key_grant(
        "CloudWatchLogsEncryptsLogGroups",
        Sub("logs.${AWS::Region}.amazonaws.com"),
        [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:DescribeKey",
        ],
        Condition(
            ArnLike(
                {
                    "kms:EncryptionContext:aws:logs:arn": Sub(
                        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
                    )
                }
            )
        ),
    )


def log_group(
    template: Template, logical_id: str, name, retention_days: int, key: kms.Key
) -> logs.LogGroup:
    return template.add_resource(
        logs.LogGroup(
            logical_id,
            LogGroupName=name,
            RetentionInDays=retention_days,
            KmsKeyId=GetAtt(key, "Arn"),
            **deletion_policy(False),
        )
    )


def function(
    template: Template,
    logical_id: str,
    *,
    name: str,
    description: str,
    code_bucket,
    code_key,
    role: str,
    memory_mb: int,
    timeout_s: int,
    reserved: int,
    environment: dict,
    log_group_ref: logs.LogGroup,
    key: kms.Key,
    extra: dict | None = None,
) -> lambda_.Function:
    """Python function with tracing, reserved concurrency, a declared JSON log group and its
    environment encrypted with the stack's customer key."""
    return template.add_resource(
        lambda_.Function(
            logical_id,
            FunctionName=name,
            Description=description,
            Runtime=PYTHON_RUNTIME,
            Handler=HANDLER,
            Architectures=["x86_64"],
            Code=lambda_.Code(S3Bucket=code_bucket, S3Key=code_key),
            Role=GetAtt(role, "Arn"),
            MemorySize=memory_mb,
            Timeout=timeout_s,
            ReservedConcurrentExecutions=reserved,
            TracingConfig=lambda_.TracingConfig(Mode="Active"),
            Environment=lambda_.Environment(Variables=environment),
            KmsKeyArn=GetAtt(key, "Arn"),
            LoggingConfig=lambda_.LoggingConfig(LogFormat="JSON", LogGroup=Ref(log_group_ref)),
            **(extra or {}),
        )
    )


def function_statements(log_groups: list[logs.LogGroup], key: kms.Key) -> list[Statement]:
    """What every function needs: its log groups, traces, and its environment's key."""
    return [
        iam.statement(
            "WriteOwnLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [GetAtt(group, "Arn") for group in log_groups],
        ),
        iam.xray_write(),
        iam.kms_use("DecryptEnvironment", [GetAtt(key, "Arn")], encrypt=False),
    ]
