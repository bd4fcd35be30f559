import pytest

from localcloud import urls


def test_ports_and_urls_follow_localcloud_port(monkeypatch):
    monkeypatch.setenv("LOCALCLOUD_PORT", "5000")
    assert urls.control_url() == "http://127.0.0.1:5000"
    assert urls.dataplane_url() == "http://127.0.0.1:5001"
    assert urls.stage_url("abc123", "prod") == (
        "http://127.0.0.1:5001/restapis/abc123/prod/_user_request_"
    )


def test_default_port(monkeypatch):
    monkeypatch.delenv("LOCALCLOUD_PORT", raising=False)
    assert urls.control_port() == 4566
    assert urls.dataplane_port() == 4567


@pytest.mark.parametrize("bad", ["abc", "80", "65535", ""])
def test_bad_port_is_named(monkeypatch, bad):
    monkeypatch.setenv("LOCALCLOUD_PORT", bad)
    with pytest.raises(ValueError, match="LOCALCLOUD_PORT"):
        urls.control_port()


@pytest.mark.parametrize(
    "aws, local",
    [
        (
            "https://a1b2c3.execute-api.us-east-1.amazonaws.com/Demo",
            "http://127.0.0.1:4567/restapis/a1b2c3/Demo/_user_request_",
        ),
        (
            "https://a1b2c3.execute-api.cn-north-1.amazonaws.com.cn/prod/text?x=1",
            "http://127.0.0.1:4567/restapis/a1b2c3/prod/_user_request_/text?x=1",
        ),
        (
            "url=https://zz9.execute-api.eu-west-1.amazonaws.com/v1/a/b, other",
            "url=http://127.0.0.1:4567/restapis/zz9/v1/_user_request_/a/b, other",
        ),
    ],
)
def test_execute_api_urls_are_rewritten(monkeypatch, aws, local):
    monkeypatch.delenv("LOCALCLOUD_PORT", raising=False)
    assert urls.to_local_url(aws) == local


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/prod",
        "https://a1b2c3.execute-api.us-east-1.amazonaws.com",  # no stage: not a stage URL
        "text",
        "",
    ],
)
def test_other_values_are_unchanged(value):
    assert urls.to_local_url(value) == value


def test_free_port_pair_gives_two_bindable_consecutive_ports():
    import socket

    port = urls.free_port_pair()
    with socket.socket() as first, socket.socket() as second:
        first.bind((urls.HOST, port))
        second.bind((urls.HOST, port + 1))
