"""monitor-dashboard: operations dashboard (API, predictor, per-variant endpoint metrics) and alarms
delivered through an encrypted SNS topic to the configured e-mail addresses."""

from __future__ import annotations

from troposphere import GetAtt, Ref, Template, cloudwatch, sns

from .. import dashboard, naming, resources

CONCERN = "monitor-dashboard"


def dashboard_name(cfg) -> str:
    return naming.resource_name(cfg, "monitor", 255)


def build(cfg) -> Template:
    """Dashboard, alarms and alarm topic; SageMaker latencies are converted from microseconds."""
    mon = cfg.monitoring
    t = Template(Description=f"{naming.prefix(cfg)} monitoring: dashboard, alarms and alarm topic")
    t.set_version("2010-09-09")
    key = resources.kms_key(
        t,
        "AlarmTopicKey",
        "Encrypts the alarm topic; CloudWatch may publish to it",
        [
            resources.service_key_grant(
                "CloudWatchPublishesAlarms",
                "cloudwatch.amazonaws.com",
                ["kms:Decrypt", "kms:GenerateDataKey"],
            ),
        ],
    )
    topic = t.add_resource(
        sns.Topic(
            "AlarmTopic",
            DisplayName=f"{naming.prefix(cfg)} alarms",
            KmsMasterKeyId=GetAtt(key, "Arn"),
        )
    )
    for index, email in enumerate(mon.subscription_emails):
        t.add_resource(
            sns.SubscriptionResource(
                f"AlarmEmail{index}", TopicArn=Ref(topic), Protocol="email", Endpoint=email
            )
        )

    api_name = naming.imported(cfg, "api-hosting", "ApiName")
    endpoint = naming.imported(cfg, "model-serving", "EndpointName")
    api_dims = [("ApiName", api_name), ("Stage", cfg.project.stage)]
    alarms = [
        _alarm(
            t,
            cfg,
            topic,
            "ApiRequestsAlarm",
            "API request count above the expected peak",
            "AWS/ApiGateway",
            "Count",
            api_dims,
            mon.alarms.api_requests_per_period,
            "GreaterThanThreshold",
        ),
        _alarm(
            t,
            cfg,
            topic,
            "Api4xxAlarm",
            "API client errors (4XX)",
            "AWS/ApiGateway",
            "4XXError",
            api_dims,
            mon.alarms.api_4xx_per_period,
        ),
        _alarm(
            t,
            cfg,
            topic,
            "Api5xxAlarm",
            "API server errors (5XX)",
            "AWS/ApiGateway",
            "5XXError",
            api_dims,
            mon.alarms.api_5xx_per_period,
        ),
    ]
    variant_alarms = {}
    for model in cfg.model_serving.models:
        name = naming.pascal(model.variant_name)
        dims = [("EndpointName", endpoint), ("VariantName", model.variant_name)]
        variant_alarms[model.variant_name] = [
            _alarm(
                t,
                cfg,
                topic,
                f"Variant{name}5xxAlarm",
                f"{model.variant_name}: model errors (5XX)",
                "AWS/SageMaker",
                "Invocation5XXErrors",
                dims,
                mon.alarms.model_invocation_errors_per_period,
            ),
            _alarm(
                t,
                cfg,
                topic,
                f"Variant{name}4xxAlarm",
                f"{model.variant_name}: rejected requests (4XX)",
                "AWS/SageMaker",
                "Invocation4XXErrors",
                dims,
                mon.alarms.model_invocation_errors_per_period,
            ),
            # SageMaker reports ModelLatency in microseconds; the threshold is configured in ms.
            _alarm(
                t,
                cfg,
                topic,
                f"Variant{name}LatencyAlarm",
                f"{model.variant_name}: p99 model latency above "
                f"{mon.alarms.model_latency_p99_ms} ms",
                "AWS/SageMaker",
                "ModelLatency",
                dims,
                mon.alarms.model_latency_p99_ms * 1000,
                "GreaterThanThreshold",
                extended="p99",
            ),
        ]

    variables = {
        "ApiName": api_name,
        "FunctionName": naming.imported(cfg, "api-hosting", "PredictorFunctionName"),
        "EndpointName": endpoint,
    }
    board = t.add_resource(
        cloudwatch.Dashboard(
            "Dashboard",
            DashboardName=dashboard_name(cfg),
            DashboardBody=dashboard.body(_widgets(cfg, alarms, variant_alarms), variables),
        )
    )
    naming.output(t, "DashboardName", Ref(board), "Operations dashboard")
    naming.output(t, "AlarmTopicArn", Ref(topic), "Alarm topic (subscribe more endpoints here)")
    return t


def _alarm(
    t,
    cfg,
    topic,
    logical_id,
    description,
    namespace,
    metric,
    dims,
    threshold,
    operator="GreaterThanOrEqualToThreshold",
    extended=None,
) -> cloudwatch.Alarm:
    mon = cfg.monitoring
    dimensions = [cloudwatch.MetricDimension(Name=name, Value=value) for name, value in dims]
    stat = {"ExtendedStatistic": extended} if extended else {"Statistic": "Sum"}
    return t.add_resource(
        cloudwatch.Alarm(
            logical_id,
            AlarmDescription=description,
            Namespace=namespace,
            MetricName=metric,
            Dimensions=dimensions,
            Period=mon.period_seconds,
            EvaluationPeriods=mon.evaluation_periods,
            DatapointsToAlarm=mon.evaluation_periods,
            Threshold=threshold,
            ComparisonOperator=operator,
            # No traffic means no errors and no latency: missing data is healthy for these metrics.
            TreatMissingData="notBreaching",
            AlarmActions=[Ref(topic)],
            OKActions=[Ref(topic)],
            **stat,
        )
    )


def _widgets(cfg, alarms, variant_alarms) -> list[dict]:
    period = cfg.monitoring.period_seconds
    api = ["AWS/ApiGateway", "{}", "ApiName", "${ApiName}", "Stage", cfg.project.stage]
    fn = ["AWS/Lambda", "{}", "FunctionName", "${FunctionName}"]

    def metric(base, name, **options):
        row = [part if part != "{}" else name for part in base]
        return row + [options] if options else row

    widgets = [
        dashboard.text_widget(
            f"# {naming.prefix(cfg)} serving\nAPI `{cfg.api_hosting.resource_path}` "
            f"(stage {cfg.project.stage}), predictor function, endpoint variants. "
            "SageMaker latencies are converted from microseconds to milliseconds."
        ),
        dashboard.metric_widget(
            "API requests and errors",
            [metric(api, "Count"), metric(api, "4XXError"), metric(api, "5XXError")],
            period=period,
            label="Count",
        ),
        dashboard.metric_widget(
            "API latency (p50, p99)",
            [
                metric(api, "Latency", stat="p50", label="Latency p50"),
                metric(api, "Latency", stat="p99", label="Latency p99"),
                metric(api, "IntegrationLatency", stat="p99", label="IntegrationLatency p99"),
            ],
            period=period,
            stat="p99",
            label="Milliseconds",
        ),
        dashboard.alarm_widget("API alarms", [alarm_ref(a) for a in alarms]),
        dashboard.metric_widget(
            "Predictor invocations",
            [metric(fn, "Invocations"), metric(fn, "Errors"), metric(fn, "Throttles")],
            period=period,
            width=8,
            label="Count",
        ),
        dashboard.metric_widget(
            "Predictor duration",
            [
                metric(fn, "Duration", stat="p50", label="Duration p50"),
                metric(fn, "Duration", stat="p99", label="Duration p99"),
            ],
            period=period,
            stat="p99",
            width=8,
            label="Milliseconds",
        ),
        dashboard.metric_widget(
            "Predictor concurrency",
            [metric(fn, "ConcurrentExecutions")],
            period=period,
            stat="Maximum",
            width=8,
            label="Executions",
        ),
    ]
    for model in cfg.model_serving.models:
        v = model.variant_name
        sm = ["AWS/SageMaker", "{}", "EndpointName", "${EndpointName}", "VariantName", v]
        host = [
            "/aws/sagemaker/Endpoints",
            "{}",
            "EndpointName",
            "${EndpointName}",
            "VariantName",
            v,
        ]
        widgets += [
            dashboard.metric_widget(
                f"{v}: invocations",
                [metric(sm, "Invocations"), metric(sm, "InvocationsPerInstance")],
                period=period,
                width=6,
                label="Count",
            ),
            dashboard.metric_widget(
                f"{v}: invocation errors",
                [metric(sm, "Invocation4XXErrors"), metric(sm, "Invocation5XXErrors")],
                period=period,
                width=6,
                label="Count",
            ),
            dashboard.metric_widget(
                f"{v}: latency (ms)",
                [
                    [
                        {
                            "expression": "model / 1000",
                            "label": "ModelLatency p99 (ms)",
                            "id": "modelms",
                        }
                    ],
                    [
                        {
                            "expression": "overhead / 1000",
                            "label": "OverheadLatency p99 (ms)",
                            "id": "overheadms",
                        }
                    ],
                    metric(sm, "ModelLatency", id="model", stat="p99", visible=False),
                    metric(sm, "OverheadLatency", id="overhead", stat="p99", visible=False),
                ],
                period=period,
                stat="p99",
                width=6,
                label="Milliseconds",
            ),
            dashboard.metric_widget(
                f"{v}: instance utilization",
                [
                    metric(host, "CPUUtilization"),
                    metric(host, "MemoryUtilization"),
                    metric(host, "DiskUtilization"),
                ],
                period=period,
                stat="Average",
                width=6,
                label="Percent",
            ),
            dashboard.alarm_widget(
                f"{v}: alarms", [alarm_ref(a) for a in variant_alarms[v]], height=3
            ),
        ]
    return widgets


def alarm_ref(alarm: cloudwatch.Alarm) -> str:
    """Alarm ARN as a reference resolved by the dashboard body's Fn::Sub."""
    return "${%s.Arn}" % alarm.title
