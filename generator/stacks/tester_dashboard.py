"""tester-dashboard: load-test results per test case and per variant, from the configured cases."""

from __future__ import annotations

from troposphere import Ref, Select, Split, Template, cloudwatch

from .. import dashboard, naming
from ..config import NO_ANSWER_VARIANT

CONCERN = "tester-dashboard"
PERCENTILES = ("p50", "p90", "p99")
COUNTERS = ("StatusSuccess", "StatusError", "TestSuccess", "TestFail")


def dashboard_name(cfg) -> str:
    return naming.resource_name(cfg, "load-tests", 255)


def build(cfg) -> Template:
    """Latency percentiles and outcome counts per case and variant, plus trigger-topic activity."""
    t = Template(
        Description=f"{naming.prefix(cfg)} tester dashboard: load test latency and outcomes"
    )
    t.set_version("2010-09-09")
    topic_arn = naming.imported(cfg, "api-testing", "TriggerTopicArn")
    board = t.add_resource(
        cloudwatch.Dashboard(
            "Dashboard",
            DashboardName=dashboard_name(cfg),
            DashboardBody=dashboard.body(
                _widgets(cfg), {"TopicName": Select(5, Split(":", topic_arn))}
            ),
        )
    )
    naming.output(t, "DashboardName", Ref(board), "Load test dashboard")
    return t


def _widgets(cfg) -> list[dict]:
    ns, stage = cfg.project.name, cfg.project.stage
    period = 60
    case_ids = [case.id for case in cfg.load_test.cases]
    variants = [model.variant_name for model in cfg.model_serving.models]

    def series(metric, dim, value, stat, label):
        return [ns, metric, "Stage", stage, dim, value, {"stat": stat, "label": label}]

    widgets = [
        dashboard.text_widget(
            f"# {naming.prefix(cfg)} load tests\nCases: {', '.join(case_ids)}. "
            "Latency is measured by the testers "
            "around each HTTPS request, in milliseconds."
        )
    ]
    for case in cfg.load_test.cases:
        widgets.append(
            dashboard.metric_widget(
                f"{case.id}: response time (expects label {case.expected_label})",
                [
                    series("ResponseTime", "TestCase", case.id, p, f"{case.id} {p}")
                    for p in PERCENTILES
                ],
                period=period,
                stat="p99",
                width=8,
                label="Milliseconds",
            )
        )
    widgets.append(
        dashboard.metric_widget(
            "Response time per variant",
            [
                series("ResponseTime", "Variant", v, p, f"{v} {p}")
                for v in variants
                for p in PERCENTILES
            ],
            period=period,
            stat="p99",
            width=12,
            label="Milliseconds",
        )
    )
    widgets.append(
        dashboard.metric_widget(
            "Requests per variant",
            [
                series("ResponseTime", "Variant", v, "SampleCount", f"{v} requests")
                for v in variants
            ]
            # Errors and timeouts have no variant, and timeouts no response time: without this
            # line the counts fall short of the requests sent.
            + [
                series(
                    "StatusError",
                    "Variant",
                    NO_ANSWER_VARIANT,
                    "Sum",
                    "no variant (error or timeout)",
                )
            ],
            period=period,
            stat="SampleCount",
            width=12,
            label="Count",
        )
    )
    for counter in COUNTERS:
        widgets.append(
            dashboard.metric_widget(
                f"{counter} per case",
                [series(counter, "TestCase", c, "Sum", c) for c in case_ids],
                period=period,
                width=6,
                label="Count",
            )
        )
    sns_metric = ["AWS/SNS", "{}", "TopicName", "${TopicName}"]
    widgets.append(
        dashboard.metric_widget(
            "Trigger topic",
            [
                [part if part != "{}" else m for part in sns_metric]
                for m in (
                    "NumberOfMessagesPublished",
                    "NumberOfNotificationsDelivered",
                    "NumberOfNotificationsFailed",
                )
            ],
            period=period,
            width=24,
            height=4,
            label="Count",
        )
    )
    return widgets
