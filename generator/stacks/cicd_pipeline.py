"""cicd-pipeline: CodePipeline source -> test (`make test`) -> optional approval -> deploy
(`make pack templates deploy TARGET=aws`), with scoped roles and an encrypted artifact store.

The S3 source starts the pipeline through EventBridge (the source bucket's events, a rule matching
the source object's uploads): CodePipeline stops polling a pipeline inactive for 30 days
(`pollingDisabledAt`), and recommends event-based change detection instead."""

from __future__ import annotations

from awacs.aws import Condition, StringEquals
from troposphere import GetAtt, Ref, Sub, Template, codebuild
from troposphere import codepipeline as cp
from troposphere import events

from .. import iam, naming, resources

CONCERN = "cicd-pipeline"
SOURCE_KEY_SUFFIX = "source.zip"
BUILD_IMAGE = "aws/codebuild/standard:7.0"  # Ubuntu 22.04 with Python 3.11


def pipeline_name(cfg) -> str:
    return naming.resource_name(cfg, "pipeline", 100)


def source_rule_name(cfg) -> str:
    """EventBridge rule starting the pipeline on an upload of the source object (S3 source)."""
    return naming.resource_name(cfg, "source-uploaded", 64)


def project_name(cfg, kind: str) -> str:
    return naming.resource_name(cfg, kind, 150)


def source_key(cfg) -> str:
    """Object key of the S3 source archive (S3 source only)."""
    return f"source/{naming.prefix(cfg)}-{SOURCE_KEY_SUFFIX}"


def build(cfg) -> Template:
    """Pipeline whose deploy stage drives CloudFormation through a scoped execution role."""
    cicd = cfg.cicd
    t = Template(
        Description=f"{naming.prefix(cfg)} CI/CD: pipeline testing and deploying this project"
    )
    t.set_version("2010-09-09")
    key = resources.kms_key(
        t,
        "PipelineKey",
        "Encrypts pipeline artifacts, build outputs and build logs",
        [resources.logs_key_grant()],
    )
    artifacts = resources.bucket(
        t,
        "PipelineArtifactBucket",
        retain=False,
        versioned=True,
        lifecycle=[
            resources.noncurrent_expiry(cfg.model_archiving.noncurrent_version_expiry_days),
            resources.expire_prefix("ExpirePipelineArtifacts", pipeline_name(cfg)[:20] + "/", 30),
        ],
        description="CodePipeline artifacts between stages",
    )
    source_bucket = None
    if not cicd.repository:
        source_bucket = resources.bucket(
            t,
            "SourceBucket",
            retain=False,
            versioned=True,
            lifecycle=[
                resources.noncurrent_expiry(cfg.model_archiving.noncurrent_version_expiry_days)
            ],
            description=f"Upload the project as {source_key(cfg)} to start the pipeline",
            eventbridge=True,
        )

    cfn_role = t.add_resource(
        iam.role(
            "CloudFormationExecutionRole",
            "cloudformation.amazonaws.com",
            _cloudformation_statements(cfg),
            "Creates and updates this project's stacks, and nothing else",
            checkov_skips=[
                {
                    "id": "CKV_AWS_111",
                    "comment": "kms:CreateKey and the Application Auto Scaling target/policy "
                    "actions have no resource-level permissions; every other write is scoped "
                    "to the project's name prefix.",
                }
            ],
        )
    )
    logs = {
        kind: resources.log_group(
            t,
            f"{kind.capitalize()}LogGroup",
            f"/aws/codebuild/{project_name(cfg, kind)}",
            cfg.project.log_retention_days,
            key,
        )
        for kind in ("test", "deploy")
    }
    projects = {
        kind: _project(t, cfg, kind, key, artifacts, logs[kind], cfn_role)
        for kind in ("test", "deploy")
    }
    pipeline_role = t.add_resource(
        iam.role(
            "PipelineRole",
            "codepipeline.amazonaws.com",
            _pipeline_statements(cfg, key, artifacts, source_bucket, projects),
            "Pipeline: read the source, hand artifacts to the builds",
        )
    )

    stages = [
        _source_stage(cfg, source_bucket),
        _build_stage("Test", projects["test"], "SourceOutput", None),
    ]
    if cicd.manual_approval:
        stages.append(
            cp.Stages(
                Name="Approve",
                Actions=[
                    cp.Actions(
                        Name="ApproveDeploy",
                        ActionTypeId=cp.ActionTypeId(
                            Category="Approval", Owner="AWS", Provider="Manual", Version="1"
                        ),
                        RunOrder=1,
                    )
                ],
            )
        )
    stages.append(_build_stage("Deploy", projects["deploy"], "SourceOutput", None))
    pipeline = t.add_resource(
        cp.Pipeline(
            "Pipeline",
            Name=pipeline_name(cfg),
            RoleArn=GetAtt(pipeline_role, "Arn"),
            PipelineType="V2",
            ExecutionMode="QUEUED",
            RestartExecutionOnUpdate=False,
            ArtifactStore=cp.ArtifactStore(
                Type="S3",
                Location=Ref(artifacts),
                EncryptionKey=cp.EncryptionKey(Id=GetAtt(key, "Arn"), Type="KMS"),
            ),
            Stages=stages,
        )
    )

    if source_bucket is not None:
        _start_on_upload(t, cfg, source_bucket, pipeline)

    naming.output(t, "PipelineName", Ref(pipeline), "Pipeline name")
    if source_bucket is not None:
        naming.output(
            t,
            "SourceBucketName",
            Ref(source_bucket),
            f"Upload {source_key(cfg)} here to run the pipeline",
        )
    return t


def _source_stage(cfg, source_bucket) -> cp.Stages:
    cicd = cfg.cicd
    if source_bucket is None:
        action_type = cp.ActionTypeId(
            Category="Source", Owner="AWS", Provider="CodeStarSourceConnection", Version="1"
        )
        configuration = {
            "ConnectionArn": _connection_arn(cfg),
            "FullRepositoryId": cicd.repository,
            "BranchName": cicd.branch,
            "OutputArtifactFormat": "CODE_ZIP",
            "DetectChanges": "true",
        }
    else:
        action_type = cp.ActionTypeId(Category="Source", Owner="AWS", Provider="S3", Version="1")
        configuration = {
            "S3Bucket": Ref(source_bucket),
            "S3ObjectKey": source_key(cfg),
            # Started by the SourceUploaded rule; polling as well would start it twice.
            "PollForSourceChanges": "false",
        }
    return cp.Stages(
        Name="Source",
        Actions=[
            cp.Actions(
                Name="Source",
                ActionTypeId=action_type,
                Configuration=configuration,
                RunOrder=1,
                OutputArtifacts=[cp.OutputArtifacts(Name="SourceOutput")],
            )
        ],
    )


def _start_on_upload(t, cfg, source_bucket, pipeline) -> events.Rule:
    """EventBridge rule starting the pipeline when the source object is uploaded, through a role
    that may start this pipeline and nothing else."""
    pipeline_arn = iam.arn("codepipeline", "${%s}" % pipeline.title)
    role = t.add_resource(
        iam.role(
            "SourceUploadedRole",
            "events.amazonaws.com",
            [
                iam.statement(
                    "StartPipeline", ["codepipeline:StartPipelineExecution"], [pipeline_arn]
                )
            ],
            "EventBridge: start the pipeline when the source object is uploaded",
        )
    )
    return t.add_resource(
        events.Rule(
            "SourceUploaded",
            Name=source_rule_name(cfg),
            Description=f"Starts the pipeline when {source_key(cfg)} is uploaded",
            State="ENABLED",
            EventPattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [Ref(source_bucket)]},
                    "object": {"key": [source_key(cfg)]},
                },
            },
            Targets=[
                events.Target(Id="Pipeline", Arn=pipeline_arn, RoleArn=GetAtt(role, "Arn"))
            ],
        )
    )


def _build_stage(name, project, input_name, output_name) -> cp.Stages:
    extra = {"OutputArtifacts": [cp.OutputArtifacts(Name=output_name)]} if output_name else {}
    return cp.Stages(
        Name=name,
        Actions=[
            cp.Actions(
                Name=name,
                ActionTypeId=cp.ActionTypeId(
                    Category="Build", Owner="AWS", Provider="CodeBuild", Version="1"
                ),
                Configuration={"ProjectName": Ref(project)},
                InputArtifacts=[cp.InputArtifacts(Name=input_name)],
                RunOrder=1,
                **extra,
            )
        ],
    )


def _connection_arn(cfg) -> Sub:
    """The configured connection ARN with its partition made portable."""
    _, _, rest = cfg.cicd.connection_arn.split(":", 2)
    return Sub("arn:${AWS::Partition}:" + rest)


def _project(t, cfg, kind, key, artifacts, log_group, cfn_role) -> codebuild.Project:
    buildspec = f"buildspec/{kind}.yml"
    variables = [codebuild.EnvironmentVariable(Name="TARGET", Value="aws", Type="PLAINTEXT")]
    statements = [
        iam.statement(
            "WriteBuildLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [GetAtt(log_group, "Arn")],
        ),
        iam.statement(
            "ReadWritePipelineArtifacts",
            ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            [Sub("${%s.Arn}/*" % artifacts.title)],
        ),
        iam.kms_use("UsePipelineKey", [GetAtt(key, "Arn")]),
    ]
    if kind == "deploy":
        variables.append(
            codebuild.EnvironmentVariable(
                Name="CFN_ROLE_ARN", Value=GetAtt(cfn_role, "Arn"), Type="PLAINTEXT"
            )
        )
        statements += _deployer_statements(cfg, cfn_role)
    role = t.add_resource(
        iam.role(
            f"{kind.capitalize()}BuildRole",
            "codebuild.amazonaws.com",
            statements,
            f"CodeBuild {kind} project",
        )
    )
    return t.add_resource(
        codebuild.Project(
            f"{kind.capitalize()}Project",
            Name=project_name(cfg, kind),
            Description=f"Runs {buildspec}",
            ServiceRole=GetAtt(role, "Arn"),
            EncryptionKey=GetAtt(key, "Arn"),
            Source=codebuild.Source(Type="CODEPIPELINE", BuildSpec=buildspec),
            Artifacts=codebuild.Artifacts(Type="CODEPIPELINE"),
            # Keeps the buildspec's `cache: paths` (pip's downloads) between builds on a host;
            # without a project cache CodeBuild ignores them.
            Cache=codebuild.ProjectCache(Type="LOCAL", Modes=["LOCAL_CUSTOM_CACHE"]),
            Environment=codebuild.Environment(
                Type="LINUX_CONTAINER",
                ComputeType="BUILD_GENERAL1_MEDIUM",
                Image=BUILD_IMAGE,
                PrivilegedMode=False,
                EnvironmentVariables=variables,
            ),
            LogsConfig=codebuild.LogsConfig(
                CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(log_group))
            ),
            TimeoutInMinutes=60,
            QueuedTimeoutInMinutes=60,
        )
    )


def _pipeline_statements(cfg, key, artifacts, source_bucket, projects) -> list:
    statements = [
        iam.statement(
            "ReadWritePipelineArtifacts",
            ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            [Sub("${%s.Arn}/*" % artifacts.title)],
        ),
        iam.statement(
            "LocatePipelineArtifacts",
            ["s3:GetBucketLocation", "s3:GetBucketVersioning"],
            [GetAtt(artifacts, "Arn")],
        ),
        iam.kms_use("UsePipelineKey", [GetAtt(key, "Arn")]),
        iam.statement(
            "RunBuilds",
            ["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"],
            [GetAtt(p, "Arn") for p in projects.values()],
        ),
    ]
    if source_bucket is not None:
        statements += [
            iam.statement(
                "ReadSourceObject",
                ["s3:GetObject", "s3:GetObjectVersion"],
                [Sub("${%s.Arn}/%s" % (source_bucket.title, source_key(cfg)))],
            ),
            iam.statement(
                "WatchSourceBucket",
                ["s3:GetBucketVersioning", "s3:GetBucketLocation", "s3:ListBucket"],
                [GetAtt(source_bucket, "Arn")],
            ),
        ]
    else:
        statements.append(
            iam.statement(
                "UseConnection",
                ["codeconnections:UseConnection", "codestar-connections:UseConnection"],
                [_connection_arn(cfg)],
            )
        )
    return statements


def _read_apigateway_account():
    """Read API Gateway's account-wide settings (its CloudWatch Logs role)."""
    account = iam.arn("apigateway", "/account", account=False)
    return iam.statement("ReadApiGatewayAccount", ["apigateway:GET"], [account])


def _deployer_statements(cfg, cfn_role) -> list:
    prefix = naming.prefix(cfg)
    return [
        # `make deploy` checks that an `existing` account logging role is set. Granted in both
        # modes: the run that switches to `existing` checks before any stack changes, so with
        # this role as the previous (`create`) config left it.
        _read_apigateway_account(),
        # `make deploy` checks that no log group the stacks declare exists outside them.
        iam.statement(
            "FindLogGroups", ["logs:DescribeLogGroups"], [iam.arn("logs", "log-group:*")]
        ),
        iam.statement(
            "DeployProjectStacks",
            [
                "cloudformation:CreateChangeSet",
                "cloudformation:DescribeChangeSet",
                "cloudformation:ExecuteChangeSet",
                "cloudformation:DeleteChangeSet",
                # `make deploy` deletes a stack whose creation failed before it creates it again.
                "cloudformation:DeleteStack",
                "cloudformation:DescribeStacks",
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStackResources",
                "cloudformation:ListStackResources",
                "cloudformation:GetTemplate",
            ],
            [iam.arn("cloudformation", f"stack/{prefix}-*/*")],
        ),
        iam.statement(
            "ValidateTemplates",
            ["cloudformation:ValidateTemplate", "cloudformation:GetTemplateSummary"],
            [iam.ANY],
        ),
        iam.statement(
            "PassExecutionRole",
            ["iam:PassRole"],
            [GetAtt(cfn_role, "Arn")],
            Condition(StringEquals({"iam:PassedToService": "cloudformation.amazonaws.com"})),
        ),
        iam.statement(
            "UploadArtifacts",
            ["s3:PutObject", "s3:GetObject"],
            [
                Sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}/*",
                    Bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
                )
            ],
        ),
        iam.statement(
            "ListArtifacts",
            ["s3:ListBucket", "s3:GetBucketLocation"],
            [
                Sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}",
                    Bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
                )
            ],
        ),
    ]


def _cloudformation_statements(cfg) -> list:
    """What the project's templates create, scoped to the name prefix wherever AWS allows."""
    prefix = naming.prefix(cfg)
    lower = prefix.lower()
    bucket_arn = lambda pattern: Sub(f"arn:${{AWS::Partition}}:s3:::{pattern}")  # noqa: E731
    apigw = [
        iam.arn("apigateway", path, account=False)
        for path in (
            "/restapis",
            "/restapis/*",
            "/apikeys",
            "/apikeys/*",
            "/usageplans",
            "/usageplans/*",
            # The account-wide logging role setting, which only `create` makes the stack manage.
            *(("/account",) if cfg.api_hosting.account_logging_role == "create" else ()),
            "/tags/*",
        )
    ]
    execution_logs = naming.execution_log_group(cfg).replace("${RestApi}", "*")
    statements = [
        iam.statement(
            "ManageBuckets",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
                "s3:GetBucketPolicy",
                "s3:PutEncryptionConfiguration",
                "s3:GetEncryptionConfiguration",
                "s3:PutBucketVersioning",
                "s3:GetBucketVersioning",
                "s3:PutBucketPublicAccessBlock",
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketOwnershipControls",
                "s3:GetBucketOwnershipControls",
                "s3:PutLifecycleConfiguration",
                "s3:GetLifecycleConfiguration",
                # The source bucket sends its events to EventBridge.
                "s3:PutBucketNotification",
                "s3:PutBucketTagging",
                "s3:GetBucketTagging",
                # Stack tags reach every bucket; CloudFormation also manages them with these
                # (its DeleteBucketTagging call is authorised as s3:PutBucketTagging).
                "s3:TagResource",
                "s3:UntagResource",
                "s3:ListTagsForResource",
                "s3:GetBucketLocation",
                "s3:ListBucket",
                # Read back by CloudFormation after create and update.
                "s3:GetBucketAcl",
                "s3:GetBucketCORS",
                "s3:GetBucketLogging",
                "s3:GetBucketNotification",
                "s3:GetBucketWebsite",
                "s3:GetBucketPolicyStatus",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetAccelerateConfiguration",
                "s3:GetReplicationConfiguration",
                "s3:GetAnalyticsConfiguration",
                "s3:GetMetricsConfiguration",
                "s3:GetInventoryConfiguration",
                "s3:GetIntelligentTieringConfiguration",
                "s3:GetBucketAbac",
                "s3:GetBucketMetadataTableConfiguration",
            ],
            [bucket_arn(f"{lower}-*")],
        ),
        iam.statement(
            "ReadFunctionCode",
            ["s3:GetObject", "s3:GetObjectVersion"],
            [
                Sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}/functions/*",
                    Bucket=naming.imported(cfg, "model-archiving", "ArtifactBucketName"),
                )
            ],
        ),
        iam.statement(
            "ManageRoles",
            [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:GetRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:ListRoleTags",
                "iam:PassRole",
            ],
            [Sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{prefix}-*")],
        ),
        iam.statement(
            "CreateScalingServiceRole",
            ["iam:CreateServiceLinkedRole"],
            [
                Sub(
                    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
                    "sagemaker.application-autoscaling.amazonaws.com/*"
                )
            ],
        ),
        iam.statement("CreateKeys", ["kms:CreateKey"], [iam.ANY]),
        iam.statement(
            "ManageKeys",
            [
                "kms:DescribeKey",
                "kms:EnableKeyRotation",
                "kms:GetKeyRotationStatus",
                "kms:PutKeyPolicy",
                "kms:GetKeyPolicy",
                "kms:ScheduleKeyDeletion",
                "kms:TagResource",
                "kms:UntagResource",
                "kms:UpdateKeyDescription",
                "kms:ListResourceTags",
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "kms:CreateGrant",
            ],
            [iam.arn("kms", "key/*")],
        ),
        iam.statement(
            "ManageLogGroups",
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:AssociateKmsKey",
                "logs:DisassociateKmsKey",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:ListTagsForResource",
                # Read back by CloudFormation after create and update.
                "logs:DescribeIndexPolicies",
                "logs:GetDataProtectionPolicy",
            ],
            [
                iam.arn("logs", f"log-group:{g}{prefix}-*")
                for g in (
                    "/aws/lambda/",
                    "/aws/apigateway/",
                    "/aws/codebuild/",
                    "/aws/sagemaker/Endpoints/",
                )
            ]
            # The stage's execution logs, named by API Gateway after the API's id.
            + [
                iam.arn("logs", f"log-group:{execution_logs}{suffix}")
                for suffix in ("", ":*")
            ],
        ),
        iam.statement(
            "ListLogGroups", ["logs:DescribeLogGroups"], [iam.arn("logs", "log-group:*")]
        ),
        iam.statement("ListLogResourcePolicies", ["logs:DescribeResourcePolicies"], [iam.ANY]),
        iam.statement(
            "ManageFunctions",
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:PutFunctionEventInvokeConfig",
                "lambda:UpdateFunctionEventInvokeConfig",
                "lambda:DeleteFunctionEventInvokeConfig",
                "lambda:GetFunctionEventInvokeConfig",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
                "lambda:GetPolicy",
                "lambda:GetRuntimeManagementConfig",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionRecursionConfig",
                "lambda:GetFunctionScalingConfig",
            ],
            [iam.arn("lambda", f"function:{prefix}-*")],
        ),
        iam.statement(
            "ManageSageMaker",
            [
                "sagemaker:CreateModel",
                "sagemaker:DeleteModel",
                "sagemaker:DescribeModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:UpdateEndpointWeightsAndCapacities",
                "sagemaker:AddTags",
                "sagemaker:DeleteTags",
                "sagemaker:ListTags",
            ],
            [
                iam.arn("sagemaker", f"model/{lower}-*"),
                iam.arn("sagemaker", "endpoint-config/*"),
                iam.arn("sagemaker", f"endpoint/{lower}-*"),
            ],
        ),
        iam.statement(
            "ManageScaling",
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:DescribeScalingPolicies",
                "application-autoscaling:DescribeScheduledActions",
            ],
            [iam.ANY],
        ),
        iam.statement(
            "TagScalableTargets",
            [
                "application-autoscaling:TagResource",
                "application-autoscaling:UntagResource",
                "application-autoscaling:ListTagsForResource",
            ],
            [iam.arn("application-autoscaling", "scalable-target/*")],
        ),
        iam.statement(
            "ManageAlarms",
            [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
                "cloudwatch:ListTagsForResource",
            ],
            [
                iam.arn("cloudwatch", f"alarm:{prefix}-*"),
                iam.arn("cloudwatch", "alarm:TargetTracking-*"),
            ],
        ),
        iam.statement(
            "ManageDashboards",
            ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards", "cloudwatch:GetDashboard"],
            [iam.arn("cloudwatch", f"dashboard/{prefix}-*", region=False)],
        ),
        iam.statement(
            "ManageTopics",
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:Unsubscribe",
                "sns:ListSubscriptionsByTopic",
                "sns:GetSubscriptionAttributes",
                "sns:TagResource",
                "sns:UntagResource",
                "sns:ListTagsForResource",
                "sns:GetDataProtectionPolicy",
            ],
            [iam.arn("sns", f"{prefix}-*")],
        ),
        iam.statement(
            "ManageQueues",
            [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:TagQueue",
                "sqs:UntagQueue",
                "sqs:ListQueueTags",
                "sqs:GetQueueUrl",
            ],
            [iam.arn("sqs", f"{prefix}-*")],
        ),
        iam.statement(
            "ManageApis",
            [
                "apigateway:GET",
                "apigateway:POST",
                "apigateway:PUT",
                "apigateway:PATCH",
                "apigateway:DELETE",
            ],
            apigw,
        ),
        # With `existing`, only read the account setting: deleting the AWS::ApiGateway::Account
        # that `create` left (a switch from `create`) reads it (its delete handler's permission).
        *([_read_apigateway_account()] if cfg.api_hosting.account_logging_role != "create" else []),
        iam.statement(
            "ManagePipeline",
            [
                "codepipeline:CreatePipeline",
                "codepipeline:DeletePipeline",
                "codepipeline:GetPipeline",
                "codepipeline:GetPipelineState",
                "codepipeline:UpdatePipeline",
                "codepipeline:TagResource",
                "codepipeline:UntagResource",
                "codepipeline:ListTagsForResource",
            ],
            [iam.arn("codepipeline", f"{prefix}-*")],
        ),
        # The S3 source's rule; granted with any source, so that a switch to a repository
        # source can still delete it.
        iam.statement(
            "ManageRules",
            [
                "events:PutRule",
                "events:DeleteRule",
                "events:DescribeRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:ListTargetsByRule",
                "events:TagResource",
                "events:UntagResource",
                "events:ListTagsForResource",
            ],
            [iam.arn("events", f"rule/{prefix}-*")],
        ),
        iam.statement(
            "ManageBuildProjects",
            [
                "codebuild:CreateProject",
                "codebuild:DeleteProject",
                "codebuild:UpdateProject",
                "codebuild:BatchGetProjects",
            ],
            [iam.arn("codebuild", f"project/{prefix}-*")],
        ),
    ]
    if cfg.cicd.connection_arn:
        statements.append(
            iam.statement(
                "PassConnection",
                ["codeconnections:PassConnection", "codestar-connections:PassConnection"],
                [_connection_arn(cfg)],
            )
        )
    return statements
