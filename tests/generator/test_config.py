"""config.json validation: every rule rejects bad input with key path, value and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from generator_testkit import CONFIG_PATH, DELETE, ROOT, base_document, variant

from generator import config as config_module
from generator.config import ConfigError, load, parse
from generator.render import render

REPO = "example/text-classification"
CONNECTION = "arn:aws:codeconnections:us-east-1:123456789012:connection/0a1b-2c3d"

# (dotted path, bad value, fragment the message must contain after "<path>: ")
REJECTED = [
    (
        "project.name",
        "Text-Classification",
        '"Text-Classification" is not allowed; expected letters',
    ),
    ("project.name", "", "expected letters and digits"),
    ("project.name", "A" * 33, "at most 32 characters"),
    ("project.name", 7, "7 is not allowed"),
    ("project.stage", "demo stage", "expected letters and digits"),
    ("project.region", "US-East-1", "expected an AWS region name"),
    ("project.account", "12345", "expected a 12-digit AWS account id or null"),
    ("project.account", 123456789012, "expected a 12-digit AWS account id or null"),
    ("project.profile", "", "expected an AWS profile name"),
    ("project.profile", "dev\u0000", "expected an AWS profile name"),
    ("project.log_retention_days", 10, "expected one of 1, 3, 5"),
    ("project.log_retention_days", True, "expected one of"),
    ("project.log_retention_days", 30.0, "30.0 is not allowed; expected one of 1, 3, 5"),
    ("project.tags", [], "expected an object"),
    ("project.tags.Team", 5, "5 is not allowed; expected a non-empty string"),
    ("project.tags.Stage", "x", "Project and Stage are set by the project"),
    ("project.tags.Project", "x", "Project and Stage are set by the project"),
    ("model_archiving.retain_on_delete", "yes", '"yes" is not allowed; expected true or false'),
    ("model_archiving.noncurrent_version_expiry_days", 0, "expected an integer between 1 and 3650"),
    ("model_serving.endpoint_name", "bad_name", "letters, digits and inner hyphens"),
    ("model_serving.endpoint_name", "E" * 41, "at most 40 characters"),
    ("model_serving.max_batch_size", 0, "expected an integer between 1 and 1024"),
    ("model_serving.max_batch_size", 2.5, "expected an integer"),
    ("model_serving.max_text_chars", -1, "expected an integer between 1 and 100000"),
    ("model_serving.models", [], "expected a list between 1 and 10 items"),
    ("model_serving.models[0].name", "Model_A", "lower-case kebab-case id"),
    ("model_serving.models[0].artifact_dir", "", "expected a directory relative to the project"),
    ("model_serving.models[0].artifact_dir", "/etc", "expected a directory relative"),
    ("model_serving.models[0].artifact_dir", "model/../../etc", "no . or .. parts"),
    ("model_serving.models[0].artifact_dir", "model/model-a\n", "no . or .. parts"),
    ("model_serving.models[0].image_uri", "pytorch:latest", "expected an ECR image URI"),
    (
        "model_serving.models[0].image_uri",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/Py:1",
        "expected an ECR image URI",
    ),
    (
        "model_serving.models[0].image_uri",
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.5.1-cpu",
        "the image's region eu-west-1 must be project.region (us-east-1) or ${AWS::Region}",
    ),
    (
        "model_serving.models[1].image_uri",
        "763104351884.dkr.ecr.${AWS::Region}.amazonaws.com.cn/pytorch-inference:2.5.1-cpu",
        "domain suffix amazonaws.com.cn must be amazonaws.com in project.region (us-east-1)",
    ),
    ("model_serving.models[0].variant_name", "Model A", "letters, digits and inner hyphens"),
    ("model_serving.models[1].initial_weight", -1, "-1 is not allowed; expected a finite number"),
    ("model_serving.models[1].initial_weight", 0, "expected a finite number > 0"),
    ("model_serving.models[1].initial_weight", "1", "expected a finite number > 0"),
    ("model_serving.models[1].initial_weight", float("inf"), "Infinity is not allowed"),
    ("model_serving.models[1].initial_weight", 1e308, "expected a finite number > 0 and <= 1000"),
    ("model_serving.models[0].instance_type", "c5.large", "SageMaker instance type"),
    ("model_serving.models[0].instance_count", 0, "expected an integer between 1 and 100"),
    ("model_serving.models[0].server_workers", 0, "expected an integer between 1 and 64"),
    ("model_serving.models[0].autoscaling.enabled", 1, "expected true or false"),
    ("model_serving.models[0].autoscaling.min_capacity", 0, "an integer between 1 and 100"),
    ("model_serving.models[0].autoscaling.min_capacity", 200, "expected an integer between 1"),
    (
        "model_serving.models[0].autoscaling.max_capacity",
        0,
        "expected an integer between 1 and 100",
    ),
    ("model_serving.models[0].autoscaling.target_invocations_per_instance", 0, "number > 0"),
    (
        "model_serving.models[0].autoscaling.target_invocations_per_instance",
        float("nan"),
        "NaN is not allowed; expected a finite number > 0",
    ),
    (
        "model_serving.data_capture.sampling_percentage",
        101,
        "expected an integer between 0 and 100",
    ),
    ("model_serving.data_capture.sampling_percentage", -1, "between 0 and 100"),
    ("model_serving.data_capture.prefix", "/data-capture/", "S3 key prefix"),
    ("model_serving.data_capture.prefix", "data-capture\n", "S3 key prefix"),
    ("model_serving.data_capture.capture_json_as_json", None, "expected true or false"),
    ("model_serving.data_capture.expiry_days", 0, "between 1 and 3650"),
    ("model_serving.deployment_guardrail.canary_percentage", 100, "between 1 and 50"),
    ("model_serving.deployment_guardrail.canary_percentage", 51, "between 1 and 50"),
    ("model_serving.deployment_guardrail.wait_seconds", 3601, "between 0 and 3600"),
    ("model_serving.deployment_guardrail.bake_seconds", -5, "between 0 and 3600"),
    ("api_hosting.resource_path", "/text", "expected a resource path"),
    ("api_hosting.resource_path", "a//b", "expected a resource path"),
    ("api_hosting.resource_path", "{proxy+}", "expected a resource path"),
    ("api_hosting.resource_path", "v1/..", "no part of dots alone"),
    ("api_hosting.resource_path", "text\n", "expected a resource path"),
    ("api_hosting.auth", "none", '"none" is not allowed; expected one of "api_key", "iam"'),
    (
        "api_hosting.account_logging_role",
        "shared",
        '"shared" is not allowed; expected one of "create", "existing"',
    ),
    ("api_hosting.throttle.rate_limit", 0, "expected a finite number > 0"),
    ("api_hosting.throttle.burst_limit", 0, "between 1 and 5000"),
    ("api_hosting.quota.limit", 0, "expected an integer between 1 and 2147483647"),
    ("api_hosting.quota.limit", 2**31, "expected an integer between 1 and 2147483647"),
    ("api_hosting.quota.period", "YEAR", 'expected one of "DAY", "WEEK", "MONTH"'),
    ("api_hosting.max_body_bytes", 3_000_001, "between 1 and 3000000"),
    ("api_hosting.predictor.memory_mb", 64, "between 128 and 10240"),
    ("api_hosting.predictor.timeout_seconds", 29, "between 18 and 28"),
    ("api_hosting.predictor.timeout_seconds", 17, "between 18 and 28"),
    ("api_hosting.predictor.reserved_concurrency", 0, "between 1 and 1000"),
    ("api_hosting.predictor.log_request_text", "false", "expected true or false"),
    ("monitoring.period_seconds", 45, "expected a multiple of 60 seconds"),
    ("monitoring.period_seconds", 10, "expected a multiple of 60 seconds from 60"),
    ("monitoring.period_seconds", 30, "expected a multiple of 60 seconds from 60"),
    ("monitoring.period_seconds", 0, "expected a multiple of 60 seconds from 60"),
    ("monitoring.period_seconds", 86460, "a multiple of 60 seconds from 60 up to 86400"),
    ("monitoring.evaluation_periods", 0, "between 1 and 100"),
    ("monitoring.alarms.api_4xx_per_period", 0, "expected an integer >= 1"),
    ("monitoring.alarms.model_latency_p99_ms", 0, "expected a finite number > 0"),
    ("monitoring.subscription_emails", ["not-an-email"], "expected an e-mail address"),
    ("monitoring.subscription_emails", ["ops@example.com\n"], "expected an e-mail address"),
    ("monitoring.subscription_emails", "ops@example.com", "expected a list"),
    ("cicd.enabled", "true", "expected true or false"),
    ("cicd.connection_arn", "arn:aws:s3:::bucket", "CodeConnections connection ARN or null"),
    ("cicd.repository", "just-a-name", "expected owner/name"),
    ("cicd.branch", "bad branch", "a git branch name"),
    ("cicd.branch", "a..b", "a git branch name"),
    ("cicd.branch", "-main", "a git branch name"),
    ("cicd.branch", "/main", "a git branch name"),
    ("cicd.branch", "main.lock", "a git branch name"),
    ("cicd.branch", "release/.hidden", "a git branch name"),
    ("cicd.branch", "main/", "a git branch name"),
    ("cicd.branch", "main.", "a git branch name"),
    ("cicd.branch", "a@{1}", "a git branch name"),
    ("cicd.branch", "@", "a git branch name"),
    ("cicd.branch", "main\n", "a git branch name"),
    ("load_test.tester_count", 0, "between 1 and 50"),
    ("load_test.rate_per_second", 0, "expected a finite number > 0"),
    ("load_test.duration_seconds", 0, "expected an integer >= 1"),
    ("load_test.request_timeout_seconds", 61, "between 1 and 60"),
    ("load_test.tester_memory_mb", 100, "between 128 and 10240"),
    ("load_test.results_expiry_days", 0, "between 1 and 3650"),
    ("load_test.cases", [], "between 1 and 50 items"),
    ("load_test.cases[0].id", "tc 1", "letters, digits or ._-"),
    ("load_test.cases[0].sentence", "", "expected text that is not only whitespace"),
    ("load_test.cases[0].sentence", " \t\n", "expected text that is not only whitespace"),
    ("load_test.cases[0].sentence", "Stocks \ud800 rise", "(character 7 is a lone surrogate)"),
    ("load_test.cases[0].expected_label", 5, "expected one of 1, 2, 3, 4"),
    ("load_test.cases[0].expected_label", "1", "expected one of 1, 2, 3, 4"),
    ("load_test.cases[0].expected_label", 1.0, "1.0 is not allowed; expected one of 1, 2, 3, 4"),
    ("project.name", "TextClassification\n", "expected letters and digits"),
]


@pytest.mark.parametrize(
    "path,value,fragment", REJECTED, ids=[f"{p}={v!r}"[:60] for p, v, _ in REJECTED]
)
def test_invalid_value_names_path_value_and_allowed(path, value, fragment):
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{path: value}))
    message = str(raised.value)
    # A bad list item is reported at its index (`emails[0]`), everything else at the key itself.
    assert re.match(rf"^{re.escape(path)}(\[\d+\])?: ", message), message
    assert fragment in message, message


def test_shipped_config_is_valid_and_frozen():
    cfg = load(CONFIG_PATH)
    assert [m.variant_name for m in cfg.model_serving.models] == ["Model-A", "Model-B"]
    assert [m.initial_weight for m in cfg.model_serving.models] == [1, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.project.name = "Other"  # type: ignore[misc]


def test_optional_keys_take_documented_defaults():
    cfg = parse(
        variant(
            **{
                "load_test.tester_memory_mb": DELETE,
                "load_test.results_expiry_days": DELETE,
                "api_hosting.account_logging_role": DELETE,
            }
        )
    )
    assert cfg.load_test.tester_memory_mb == 256
    assert cfg.load_test.results_expiry_days == 30
    assert cfg.api_hosting.account_logging_role == "create"


@pytest.mark.parametrize(
    "path",
    [
        "project.stage",
        "model_serving.models[0].autoscaling",
        "api_hosting.throttle.burst_limit",
        "load_test.cases[1].expected_label",
        "cicd",
    ],
)
def test_missing_required_key(path):
    with pytest.raises(
        ConfigError,
        match=r"^"
        + path.replace("[", r"\[").replace("]", r"\]")
        + r": missing; this key is required$",
    ):
        parse(variant(**{path: DELETE}))


@pytest.mark.parametrize(
    "path",
    ["projct", "project.stgae", "model_serving.models[1].weight", "load_test.cases[0].label"],
)
def test_unknown_key_is_an_error(path):
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{path: 1}))
    assert str(raised.value).startswith(f"{path}: unknown key; allowed keys here: ")


def test_secret_looking_keys_are_refused():
    with pytest.raises(
        ConfigError, match=r"^cicd\.github_token: secret-looking keys are not allowed"
    ):
        parse(variant(**{"cicd.github_token": "abc"}))


def test_model_names_must_be_unique():
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"model_serving.models[1].name": "model-a"}))
    assert str(raised.value) == (
        'model_serving.models[1].name: "model-a" is not allowed; model names must be unique '
        "(already used at model_serving.models[0].name)"
    )


def test_variant_names_must_be_unique_ignoring_case():
    with pytest.raises(ConfigError, match=r"^model_serving\.models\[1\]\.variant_name: .*unique"):
        parse(variant(**{"model_serving.models[1].variant_name": "model-a"}))


def test_test_case_ids_must_be_unique():
    with pytest.raises(ConfigError, match=r"^load_test\.cases\[1\]\.id: \"tc-001\" .*unique"):
        parse(variant(**{"load_test.cases[1].id": "tc-001"}))


def test_subscription_emails_must_be_unique():
    with pytest.raises(ConfigError, match=r"^monitoring\.subscription_emails\[1\]: .*unique"):
        parse(variant(**{"monitoring.subscription_emails": ["a@example.com", "A@example.com"]}))


def test_autoscaling_max_below_min():
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"model_serving.models[0].autoscaling.min_capacity": 4}))
    assert str(raised.value) == (
        "model_serving.models[0].autoscaling.max_capacity: 3 is not allowed; "
        "expected an integer >= min_capacity (4)"
    )


def test_autoscaling_instance_count_must_lie_within_bounds():
    doc = variant(
        **{
            "model_serving.models[0].autoscaling.enabled": True,
            "model_serving.models[0].instance_count": 5,
        }
    )
    with pytest.raises(
        ConfigError, match=r"^model_serving\.models\[0\]\.instance_count: 5 .*1\.\.3"
    ):
        parse(doc)


def test_more_variants_than_sagemaker_allows():
    models = base_document()["model_serving"]["models"]
    many = [dict(models[0], name=f"m{i}", variant_name=f"V{i}") for i in range(11)]
    with pytest.raises(
        ConfigError,
        match=r"^model_serving\.models: list is not allowed; expected a list "
        r"between 1 and 10 items$",
    ):
        parse(variant(**{"model_serving.models": many}))


def test_guardrail_alarms_fit_sagemakers_rollback_limit():
    models = base_document()["model_serving"]["models"]
    many = [dict(models[0], name=f"m{i}", variant_name=f"V{i}") for i in range(6)]
    guarded = {"model_serving.deployment_guardrail.enabled": True}
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"model_serving.models": many, **guarded}))
    assert str(raised.value).startswith(
        "model_serving.deployment_guardrail.enabled: true is not allowed; at most 5 models"
    )
    assert len(parse(variant(**{"model_serving.models": many})).model_serving.models) == 6
    five = render(parse(variant(**{"model_serving.models": many[:5], **guarded})))
    endpoint = json.loads(five["model-serving.json"])["Resources"]["Endpoint"]["Properties"]
    assert len(endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]) == 10


def test_tester_duration_must_fit_lambda_timeout():
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"load_test.duration_seconds": 831}))
    assert str(raised.value) == (
        "load_test.duration_seconds: 831 is not allowed; expected an integer <= 830 "
        "(duration + request_timeout_seconds + 60 s margin must fit the 900 s Lambda timeout)"
    )
    assert (
        parse(variant(**{"load_test.duration_seconds": 830})).load_test.tester_timeout_seconds
        == 900
    )


def test_a_default_run_the_testers_would_refuse_is_refused():
    """make test-load publishes rate x duration by default: valid settings must be a run the
    testers accept (at most 100,000 requests each), not a make test-load that always refuses."""
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"load_test.rate_per_second": 500.5, "load_test.duration_seconds": 200}))
    assert str(raised.value) == (
        "load_test.rate_per_second: 500.5 is not allowed; rate_per_second x duration_seconds is "
        "100100 requests per tester and run; a tester sends at most 100000 (lower either, or "
        "add testers)"
    )
    load = parse(
        variant(**{"load_test.rate_per_second": 500, "load_test.duration_seconds": 200})
    ).load_test
    assert (load.rate_per_second, load.duration_seconds) == (500, 200)


def test_repository_needs_connection_and_vice_versa():
    with pytest.raises(
        ConfigError, match=r"^cicd\.connection_arn: null is not allowed; a repository needs"
    ):
        parse(variant(**{"cicd.repository": REPO}))
    with pytest.raises(
        ConfigError, match=r"^cicd\.repository: null is not allowed; a connection ARN needs"
    ):
        parse(variant(**{"cicd.connection_arn": CONNECTION}))
    cicd = parse(variant(**{"cicd.repository": REPO, "cicd.connection_arn": CONNECTION})).cicd
    assert (cicd.repository, cicd.connection_arn) == (REPO, CONNECTION)


def test_variant_names_differing_only_in_hyphens_are_refused():
    """Model-A and ModelA would give two variants the same alarm logical ids."""
    changes = {"model_serving.models[1].variant_name": "ModelA"}
    with pytest.raises(
        ConfigError,
        match=r"^model_serving\.models\[1\]\.variant_name: .*without their hyphens .*unique",
    ):
        parse(variant(**changes))


@pytest.mark.parametrize("name", ["unknown", "Unknown"])
def test_the_testers_no_answer_variant_name_is_reserved(name):
    """The testers count requests no variant answered under Variant=unknown."""
    with pytest.raises(
        ConfigError,
        match=r'^model_serving\.models\[0\]\.variant_name: "%s" is not allowed; "unknown" '
        r"\(in any case\) is reserved" % name,
    ):
        parse(variant(**{"model_serving.models[0].variant_name": name}))


def test_alarm_window_is_cloudwatchs():
    """PutMetricAlarm takes Period x EvaluationPeriods up to seven days, and up to one day when
    the period is under an hour."""
    with pytest.raises(ConfigError, match=r"^monitoring\.evaluation_periods: 25 .*<= 86400"):
        parse(variant(**{"monitoring.period_seconds": 3540, "monitoring.evaluation_periods": 25}))
    for period, periods in ((3600, 25), (7200, 84)):
        monitoring = parse(
            variant(
                **{"monitoring.period_seconds": period, "monitoring.evaluation_periods": periods}
            )
        ).monitoring
        assert (monitoring.period_seconds, monitoring.evaluation_periods) == (period, periods)
    with pytest.raises(ConfigError, match=r"^monitoring\.evaluation_periods: 8 .*<= 604800"):
        parse(variant(**{"monitoring.period_seconds": 86400, "monitoring.evaluation_periods": 8}))


def test_endpoint_name_length_including_prefix():
    with pytest.raises(
        ConfigError, match=r"^model_serving\.endpoint_name: .*at most 63 characters"
    ):
        parse(
            variant(
                **{
                    "project.name": "P" * 32,
                    "project.stage": "S" * 16,
                    "cicd.enabled": False,
                    "model_serving.endpoint_name": "E" * 20,
                }
            )
        )


def test_pipeline_needs_a_short_prefix():
    long_name = {"project.name": "TextClassificationLong", "project.stage": "Demo"}
    with pytest.raises(ConfigError) as raised:
        parse(variant(**long_name))
    assert str(raised.value).startswith(
        'project.name: "TextClassificationLong" is not allowed; with cicd.enabled the prefix '
        "name + stage ('TextClassificationLongDemo') must be at most 24 characters"
    )
    shorter = parse(variant(**long_name, **{"cicd.enabled": False}))
    assert shorter.project.name == "TextClassificationLong"


def test_test_sentence_longer_than_model_accepts():
    with pytest.raises(
        ConfigError, match=r"^load_test\.cases\[0\]\.sentence: .*at most 10 characters"
    ):
        parse(variant(**{"model_serving.max_text_chars": 10}))


def test_root_must_be_an_object():
    with pytest.raises(ConfigError, match=r"^top level: list is not allowed; expected an object$"):
        parse([])


@pytest.mark.parametrize("key", ["Cost=Center", "Team\n", "aws:owner", ""])
def test_tag_keys_the_cli_or_aws_cannot_carry_are_refused(key):
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{f"project.tags.{key}": "x"}))
    assert str(raised.value).startswith(
        f"project.tags: {json.dumps(key)} is not allowed; expected a tag key of 1-128 letters"
    )


def test_at_most_the_stack_tags_cloudformation_takes():
    many = {f"Tag{i}": "x" for i in range(48)}
    assert len(parse(variant(**{"project.tags": many})).project.tags) == 48
    with pytest.raises(ConfigError) as raised:
        parse(variant(**{"project.tags": {**many, "Tag48": "x"}}))
    assert str(raised.value) == (
        "project.tags: object is not allowed; expected at most 48 tags (CloudFormation takes 50 "
        "per stack, and the project adds Project, Stage)"
    )


def test_branch_names_git_accepts_pass():
    for branch in ("main", "release/2026.11", "feature/a-b_c", "v1.0"):
        assert parse(variant(**{"cicd.branch": branch})).cicd.branch == branch


def test_lone_surrogate_in_a_key_is_refused():
    with pytest.raises(ConfigError, match=r"^project\.tags\.\ud800: .*lone surrogate"):
        parse(variant(**{"project.tags.\ud800": "x"}))


def test_load_names_the_file_first(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError) as raised:
        load(missing)
    assert str(raised.value) == f"{missing}: cannot read: No such file or directory"
    broken = tmp_path / "config.json"
    broken.write_text('{"project": ', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load(broken)
    assert str(raised.value) == f"{broken}: not valid JSON: Expecting value at line 1 column 13"
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(variant(**{"project.stage": "de mo"})))
    with pytest.raises(ConfigError) as raised:
        load(invalid)
    assert str(raised.value).startswith(f'{invalid}: project.stage: "de mo" is not allowed')


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"name": "Caf\u00e9"}'.encode("latin-1"), "not UTF-8 text: byte 0xe9 at offset 13"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8 text: byte 0xff at offset 0"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON for a config: nested too deeply"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "not valid JSON for a config: nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON for a config: Exceeds the limit"),
    ],
    ids=["latin-1", "utf-16", "deep list", "deep objects", "long integer"],
)
def test_load_reports_files_json_cannot_read(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert str(raised.value).startswith(f"{path}: {message}"), str(raised.value)


def test_duplicate_keys_are_named_by_path(tmp_path):
    text = CONFIG_PATH.read_text(encoding="utf-8")
    path = tmp_path / "config.json"
    path.write_text(text.replace('"stage": "Demo",', '"stage": "Demo", "stage": "Prod",', 1))
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert str(raised.value) == f"{path}: project.stage: duplicate key; give each key once"


def test_every_config_key_is_documented():
    """docs/configuration.md names every key path of the shipped config."""
    docs = (CONFIG_PATH.parent / "docs" / "configuration.md").read_text(encoding="utf-8")

    def paths(node, prefix=""):
        if isinstance(node, dict):
            for key, value in node.items():
                if prefix == "project.tags":
                    continue
                sub = f"{prefix}.{key}" if prefix else key
                yield sub
                yield from paths(value, sub)
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            yield from paths(node[0], prefix + "[]")

    missing = [p for p in paths(json.loads(CONFIG_PATH.read_text())) if f"`{p}`" not in docs]
    assert not missing, f"undocumented keys: {missing}"


def test_documented_optional_keys_are_the_optional_ones():
    """A key row of docs/configuration.md says *optional* exactly when parse accepts the shipped
    config without that key; every documented key exists in the shipped config."""
    docs = (CONFIG_PATH.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_.\[\]]+)` \|(.*)$", docs, re.MULTILINE)
    assert len(rows) > 50
    wrong = []
    for key, rest in rows:
        path = key.replace("[]", "[0]")
        try:
            parse(variant(**{path: DELETE}))
            optional = True
        except ConfigError as exc:
            assert "missing; this key is required" in str(exc), (key, str(exc))
            optional = False
        if optional != ("*optional*" in rest):
            wrong.append(f"{key}: {'optional' if optional else 'required'} in generator/config.py")
    assert not wrong, wrong


def test_an_image_named_with_the_project_region_and_suffix_is_accepted():
    image = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.5.1-cpu"
    changes = {"project.region": "eu-west-1", "model_serving.models[0].image_uri": image}
    cfg = parse(variant(**changes))
    assert cfg.model_serving.models[0].image_uri == image
    china = "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.5.1-cpu"
    changes = {"project.region": "cn-north-1", "model_serving.models[0].image_uri": china}
    cfg = parse(variant(**changes))
    assert cfg.model_serving.models[0].image_uri == china


def test_a_body_of_max_body_bytes_fits_the_lambda_event():
    """The largest body the predictor may accept must reach it: Lambda refuses a synchronous
    event over 6 MB (API Gateway then answers 500, not the predictor's 413). In the proxy event
    the body is a JSON string, so a body of escaped quotes doubles; headers are at most 10240
    bytes (API Gateway's request line and header quota) and appear twice."""
    event = json.loads((ROOT / "tests" / "events" / "predictor_single.json").read_text())
    padding = "a" * 10240
    event["headers"]["X-Padding"] = padding
    event["multiValueHeaders"]["X-Padding"] = [padding]
    head, tail = '{"sentence":"', '"}'
    quotes = (config_module.MAX_BODY_BYTES - len(head) - len(tail)) // 2
    event["body"] = head + '\\"' * quotes + tail
    assert len(event["body"]) >= config_module.MAX_BODY_BYTES - 1
    size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    assert size < config_module.LAMBDA_SYNC_PAYLOAD_BYTES
