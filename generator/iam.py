"""awacs statement factories: one function per grant, a Sid on every statement.

ARNs are built with Sub over ${AWS::Partition}/${AWS::Region}/${AWS::AccountId}, GetAtt or
ImportValue, never literally. `Resource: "*"` is only used for the actions in STAR_ACTIONS, which
have no resource-level permissions.
"""

from __future__ import annotations

from awacs import cloudwatch, ecr, xray
from awacs.aws import (
    Action,
    Allow,
    Bool,
    Condition,
    Deny,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import Sub
from troposphere.iam import Policy, Role

# Actions without resource-level permissions: the only ones allowed on Resource "*".
STAR_ACTIONS = frozenset(
    {
        "cloudwatch:PutMetricData",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ecr:GetAuthorizationToken",
        "cloudformation:ValidateTemplate",
        "cloudformation:GetTemplateSummary",
        "kms:CreateKey",
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:DescribeScheduledActions",
        "logs:DescribeResourcePolicies",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DeregisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:DeleteScalingPolicy",
    }
)

ANY = "*"


def arn(service: str, resource: str, region: bool = True, account: bool = True, **variables) -> Sub:
    """ARN over the pseudo parameters; `resource` may use further ${...} `variables`
    (imports, GetAtts) that Fn::Sub substitutes."""
    reg = "${AWS::Region}" if region else ""
    acct = "${AWS::AccountId}" if account else ""
    return Sub(f"arn:${{AWS::Partition}}:{service}:{reg}:{acct}:{resource}", **variables)


def statement(
    sid: str, actions: list[str], resources: list, condition: Condition | None = None
) -> Statement:
    """Allow statement; refuses wildcard actions and `*` resources outside STAR_ACTIONS."""
    for name in actions:
        if "*" in name:
            raise ValueError(f"{sid}: wildcard action {name}")
        if ANY in resources and name not in STAR_ACTIONS:
            raise ValueError(f"{sid}: {name} is not allowed on Resource '*'")
    kwargs = {"Condition": condition} if condition is not None else {}
    return Statement(
        Sid=sid,
        Effect=Allow,
        Action=[Action(*name.split(":", 1)) for name in actions],
        Resource=resources,
        **kwargs,
    )


def deny_insecure_transport(action: str, resources: list) -> PolicyDocument:
    """A resource policy refusing ``action`` (``service:Name`` or ``service:*``) on ``resources``
    to every request made without TLS."""
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="DenyInsecureTransport",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[Action(*action.split(":", 1))],
                Resource=resources,
                Condition=Condition(Bool({"aws:SecureTransport": "false"})),
            )
        ],
    )


def role(
    logical_id: str,
    service: str,
    statements: list[Statement],
    description: str,
    checkov_skips: list[dict] | None = None,
) -> Role:
    """Role assumable by `service` with one inline least-privilege policy."""
    extra = {"Metadata": {"checkov": {"skip": checkov_skips}}} if checkov_skips else {}
    return Role(
        logical_id,
        Description=description,
        **extra,
        AssumeRolePolicyDocument=PolicyDocument(
            Version="2012-10-17",
            Statement=[
                Statement(
                    Sid="TrustService",
                    Effect=Allow,
                    Principal=Principal("Service", service),
                    Action=[Action("sts", "AssumeRole")],
                )
            ],
        ),
        Policies=[
            Policy(
                PolicyName="least-privilege",
                PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
            )
        ],
    )


# --- grants -----------------------------------------------------------------------------------


def xray_write(sid: str = "WriteTraces") -> Statement:
    return statement(
        sid, [xray.PutTraceSegments.JSONrepr(), xray.PutTelemetryRecords.JSONrepr()], [ANY]
    )


def put_metric_data(sid: str, namespace: str) -> Statement:
    """PutMetricData has no resource ARN; the namespace condition is the scope."""
    return statement(
        sid,
        [cloudwatch.PutMetricData.JSONrepr()],
        [ANY],
        Condition(StringEquals({"cloudwatch:namespace": namespace})),
    )


def describe_alarms(sid: str, alarm_arns: list) -> Statement:
    """Read the named alarms' state (what SageMaker's deployment guardrail watches)."""
    return statement(sid, [cloudwatch.DescribeAlarms.JSONrepr()], alarm_arns)


def ecr_pull(sid: str, repository_arn) -> list[Statement]:
    return [
        statement(sid + "Token", [ecr.GetAuthorizationToken.JSONrepr()], [ANY]),
        statement(
            sid,
            [
                ecr.BatchCheckLayerAvailability.JSONrepr(),
                ecr.BatchGetImage.JSONrepr(),
                ecr.GetDownloadUrlForLayer.JSONrepr(),
            ],
            [repository_arn],
        ),
    ]


def s3_read_objects(sid: str, objects: list) -> Statement:
    return statement(sid, ["s3:GetObject", "s3:GetObjectVersion"], objects)


def s3_write_objects(sid: str, objects: list) -> Statement:
    return statement(sid, ["s3:PutObject"], objects)


def s3_bucket_location(sid: str, buckets: list) -> Statement:
    return statement(sid, ["s3:GetBucketLocation", "s3:ListBucket"], buckets)


def kms_use(sid: str, key_arns: list, encrypt: bool = True) -> Statement:
    actions = ["kms:Decrypt"] + (["kms:GenerateDataKey", "kms:Encrypt"] if encrypt else [])
    return statement(sid, actions, key_arns)
