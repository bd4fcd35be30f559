"""SigV4: the functions' signer gives botocore's Authorization for the same request and time."""

from datetime import datetime, timezone

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st
from lambda_testkit import load_function

WHEN = datetime(2026, 11, 24, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sigv4():
    return load_function("predictor").sigv4


def botocore_headers(url, headers, body, credentials, region, service, monkeypatch):
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda remove_tzinfo=True: WHEN.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())


segment = st.text(st.sampled_from("abcXYZ019-_~"), min_size=1, max_size=12)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)


@settings(max_examples=150, deadline=None)
@given(segments=st.lists(segment, min_size=1, max_size=4), body=st.binary(max_size=200),
       token=st.one_of(st.none(), st.text(st.sampled_from("abcdEFGH0123/+="), min_size=1,
                                          max_size=40)),
       extra=st.dictionaries(st.sampled_from(["Accept", "X-Amzn-SageMaker-Inference-Id",
                                              "User-Agent", "x-api-key"]),
                             header_value, max_size=4),
       region=st.sampled_from(["us-east-1", "eu-west-1", "cn-north-1"]),
       service=st.sampled_from(["sagemaker", "execute-api"]))
def test_signature_equals_botocores(sigv4, segments, body, token, extra, region, service):
    path = "/" + "/".join(segments)
    headers = {"Host": "runtime.example.com:8443", "Content-Type": "application/json", **extra}
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                      token)
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = botocore_headers(f"https://runtime.example.com:8443{path}", headers, body,
                                    credentials, region, service, monkeypatch)
    signer = sigv4.Signer(region, service)
    # botocore's frozen credentials (the predictor signs with them) work as they are
    got = signer.signed_headers(credentials, "POST", path, headers, body, now=WHEN)
    assert got["Authorization"] == expected["Authorization"]
    assert got["X-Amz-Date"] == expected["X-Amz-Date"] == "20261124T030405Z"
    assert got.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token")


def test_the_signing_key_is_made_again_for_a_new_day_or_secret(sigv4):
    signer = sigv4.Signer("us-east-1", "sagemaker")
    headers = {"Host": "h"}

    def auth(secret, when):
        return signer.signed_headers(sigv4.Credentials("AK", secret, None), "POST", "/", headers,
                                     b"", now=when)["Authorization"]

    first = auth("s1", WHEN)
    assert auth("s1", WHEN) == first
    assert auth("s2", WHEN) != first
    next_day = WHEN.replace(day=25)
    assert "/20261125/us-east-1/sagemaker/" in auth("s1", next_day)
    assert auth("s1", WHEN) == first  # and back: the cache follows the inputs
