"""Data capture: SageMaker's record format and key layout, sampling, and the write-ahead spool."""

import base64
import json
import random
import re
import uuid
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

from localcloud.capture import (
    SEGMENT_SUFFIX,
    CaptureConfigError,
    CaptureSettings,
    DataCapture,
    moto_put_object,
    object_key,
)

CONFIG = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://capture-bucket/data-capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {
        "JsonContentTypes": ["application/json"],
        "CsvContentTypes": ["text/csv"],
    },
}
WHEN = datetime(2026, 11, 24, 1, 30, 5, 123456, tzinfo=timezone.utc).timestamp()
KEY_NAME = re.compile(r"^\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")


class FakeS3:
    """put_object stand-in recording objects; can fail on demand."""

    def __init__(self):
        self.objects = {}
        self.keys = {}
        self.failures = 0

    def __call__(self, account, bucket, key, body, kms_key_id):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("simulated S3 outage")
        self.objects[(bucket, key)] = body
        self.keys[(bucket, key)] = kms_key_id

    def records(self):
        return [
            json.loads(line)
            for body in self.objects.values()
            for line in body.decode().splitlines()
        ]


def capture_one(capture, settings, **overrides):
    args = dict(
        account_id="123456789012",
        endpoint="TextClassification",
        variant="Model-A",
        request_body=b'{"sentence": "Stocks rallied"}',
        request_type="application/json",
        response_body=b'{"label": 3}',
        response_type="application/json",
        inference_id="req-1",
        when=WHEN,
    )
    args.update(overrides)
    return capture.capture(settings, **args)


def test_records_and_keys_are_shaped_as_sagemaker_writes_them(tmp_path):
    s3 = FakeS3()
    capture = DataCapture(tmp_path / "spool", put_object=s3)
    settings = capture.settings_for(CONFIG)
    assert capture_one(capture, settings)
    assert capture_one(capture, settings, inference_id=None)
    assert capture.flush() == 2

    [(bucket, key)] = s3.objects
    assert bucket == "capture-bucket"
    prefix, name = key.rsplit("/", 1)
    assert prefix == "data-capture/TextClassification/Model-A/2026/11/24/01"
    assert KEY_NAME.match(name) and name.startswith("30-05-123-")

    first, second = s3.records()
    assert first == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/json",
                "mode": "INPUT",
                "data": '{"sentence": "Stocks rallied"}',
                "encoding": "JSON",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": '{"label": 3}',
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": first["eventMetadata"]["eventId"],
            "inferenceId": "req-1",
            "inferenceTime": "2026-11-24T01:30:05Z",
        },
        "eventVersion": "0",
    }
    assert "inferenceId" not in second["eventMetadata"]
    assert first["eventMetadata"]["eventId"] != second["eventMetadata"]["eventId"]
    assert list(tmp_path.joinpath("spool").iterdir()) == []  # uploaded, so removed


def test_json_csv_and_other_types_are_encoded_as_configured(tmp_path):
    settings = CaptureSettings.parse(CONFIG)
    assert settings.encode(b'{"a": 1}', "application/json; charset=utf-8") == ('{"a": 1}', "JSON")
    assert settings.encode(b"a,b\n", "text/csv") == ("a,b\n", "CSV")
    assert settings.encode(b"hello", "text/plain") == (
        base64.b64encode(b"hello").decode(),
        "BASE64",
    )
    assert settings.encode(b"\xff\xfe", "application/json") == ("//4=", "BASE64")
    without_header = CaptureSettings.parse(
        {k: v for k, v in CONFIG.items() if k != "CaptureContentTypeHeader"}
    )
    assert without_header.encode(b"{}", "application/json") == ("e30=", "BASE64")


def test_capture_options_choose_input_output_or_both(tmp_path):
    s3 = FakeS3()
    capture = DataCapture(tmp_path / "spool", put_object=s3)
    only_input = capture.settings_for({**CONFIG, "CaptureOptions": [{"CaptureMode": "Input"}]})
    only_output = capture.settings_for({**CONFIG, "CaptureOptions": [{"CaptureMode": "Output"}]})
    capture_one(capture, only_input, variant="In")
    capture_one(capture, only_output, variant="Out")
    capture.flush()
    by_variant = {key.split("/")[2]: json.loads(body) for (_, key), body in s3.objects.items()}
    assert list(by_variant["In"]["captureData"]) == ["endpointInput"]
    assert list(by_variant["Out"]["captureData"]) == ["endpointOutput"]


def test_sampling_percentage_is_honoured(tmp_path):
    capture = DataCapture(tmp_path / "spool", put_object=FakeS3())
    random.seed(7)
    thirty = capture.settings_for({**CONFIG, "InitialSamplingPercentage": 30})
    taken = sum(capture_one(capture, thirty) for _ in range(2000))
    assert 500 <= taken <= 700
    none = capture.settings_for({**CONFIG, "InitialSamplingPercentage": 0})
    assert not any(capture_one(capture, none) for _ in range(200))
    assert capture.settings_for({**CONFIG, "EnableCapture": False}) is None
    assert capture.settings_for({**CONFIG, "EnableCapture": "false"}) is None
    assert capture.settings_for(None) is None


@pytest.mark.parametrize(
    "change, named",
    [
        ({"InitialSamplingPercentage": 150}, "InitialSamplingPercentage=150"),
        ({"CaptureOptions": [{"CaptureMode": "Both"}]}, "CaptureOptions[0].CaptureMode='Both'"),
        ({"CaptureOptions": []}, "CaptureOptions"),
        ({"DestinationS3Uri": "capture-bucket/x"}, "DestinationS3Uri='capture-bucket/x'"),
        (
            {"EnableCapture": False, "InitialSamplingPercentage": "most"},
            "InitialSamplingPercentage='most'",
        ),
        ({"CaptureContentTypeHeader": "json"}, "CaptureContentTypeHeader='json'"),
        (
            {"CaptureContentTypeHeader": {"CsvContentTypes": "text/csv"}},
            "CaptureContentTypeHeader.CsvContentTypes='text/csv'",
        ),
    ],
)
def test_invalid_configs_name_the_key_and_disable_capture(tmp_path, change, named, caplog):
    with pytest.raises(CaptureConfigError, match=re.escape(named)):
        CaptureSettings.parse({**CONFIG, **change})
    capture = DataCapture(tmp_path / "spool", put_object=FakeS3())
    assert capture.settings_for({**CONFIG, **change}) is None
    assert named in caplog.text


def test_accepted_records_survive_a_crash_and_are_replayed_once(tmp_path):
    spool = tmp_path / "spool"
    crashed = DataCapture(spool, put_object=FakeS3())
    settings = crashed.settings_for(CONFIG)
    for i in range(3):
        assert capture_one(crashed, settings, inference_id=f"req-{i}")
    # The process dies here: no flush, no stop. A torn final write is what a crash can leave.
    with open(next(spool.iterdir()), "ab") as segment:
        segment.write(b'{"account": "1234')
    del crashed

    s3 = FakeS3()
    restarted = DataCapture(spool, put_object=s3, interval=60)
    restarted.start()
    restarted.stop()
    assert sorted(r["eventMetadata"]["inferenceId"] for r in s3.records()) == [
        "req-0",
        "req-1",
        "req-2",
    ]
    assert list(spool.iterdir()) == []


def test_a_failed_upload_keeps_the_segment_and_a_retry_does_not_duplicate(tmp_path):
    s3 = FakeS3()
    capture = DataCapture(tmp_path / "spool", put_object=s3)
    settings = capture.settings_for(CONFIG)
    capture_one(capture, settings, variant="A")
    capture_one(capture, settings, variant="B")
    s3.failures = 1
    capture.flush()
    assert len(list((tmp_path / "spool").iterdir())) == 1
    capture.flush()
    capture.flush()
    assert len(s3.objects) == 2 and len(s3.records()) == 2
    assert list((tmp_path / "spool").iterdir()) == []


def test_object_key_without_prefix():
    key = object_key("", "E", "V", WHEN, uuid.UUID(int=1))
    assert key == "E/V/2026/11/24/01/30-05-123-00000000-0000-0000-0000-000000000001.jsonl"


@pytest.fixture
def s3():
    with mock_aws():
        yield boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )


def test_upload_goes_to_moto_s3_and_a_deleted_bucket_drops_with_an_error(tmp_path, s3, caplog):
    s3.create_bucket(Bucket="capture-bucket")
    capture = DataCapture(tmp_path / "spool", put_object=moto_put_object)
    settings = capture.settings_for(CONFIG)
    capture_one(capture, settings)
    assert capture.flush() == 1
    [obj] = s3.list_objects_v2(Bucket="capture-bucket")["Contents"]
    body = s3.get_object(Bucket="capture-bucket", Key=obj["Key"])["Body"].read()
    assert json.loads(body)["eventMetadata"]["inferenceId"] == "req-1"

    gone = capture.settings_for({**CONFIG, "DestinationS3Uri": "s3://no-such-bucket/x"})
    capture_one(capture, gone)
    assert capture.flush() == 0
    assert "no-such-bucket no longer exists: dropping 1 record" in caplog.text
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_kms_key_encrypts_each_object_and_without_one_the_bucket_default_does(tmp_path, s3):
    key_arn = boto3.client(
        "kms", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    ).create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="capture-bucket")
    capture = DataCapture(tmp_path / "spool", put_object=moto_put_object)
    capture_one(capture, capture.settings_for({**CONFIG, "KmsKeyId": key_arn}), variant="Keyed")
    capture_one(capture, capture.settings_for(CONFIG), variant="Default")
    assert capture.flush() == 2
    heads = {
        obj["Key"].split("/")[2]: s3.head_object(Bucket="capture-bucket", Key=obj["Key"])
        for obj in s3.list_objects_v2(Bucket="capture-bucket")["Contents"]
    }
    assert heads["Keyed"]["ServerSideEncryption"] == "aws:kms"
    assert heads["Keyed"]["SSEKMSKeyId"] == key_arn
    assert "SSEKMSKeyId" not in heads["Default"]


def test_a_segment_spooled_without_a_key_field_uploads_under_the_bucket_default(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    entry = {
        "account": "123456789012",
        "bucket": "capture-bucket",
        "prefix": "data-capture",
        "endpoint": "E",
        "variant": "V",
        "time": WHEN,
        "record": {"eventVersion": "0"},
    }
    (spool / f"00000000000000000001-1-000000{SEGMENT_SUFFIX}").write_text(json.dumps(entry) + "\n")
    s3 = FakeS3()
    capture = DataCapture(spool, put_object=s3)
    assert capture.flush() == 1
    assert list(s3.keys.values()) == [None]


def test_a_kms_key_that_is_not_a_string_is_named():
    with pytest.raises(CaptureConfigError, match=r"DataCaptureConfig.KmsKeyId=\{'x': 1\}"):
        CaptureSettings.parse({**CONFIG, "KmsKeyId": {"x": 1}})
