"""Ports and URLs of the local cloud, and the rewrite of AWS API Gateway URLs to local ones.

The control plane (moto) listens on ``LOCALCLOUD_PORT`` (default 4566); the data plane gateway
(API Gateway stages and ``sagemaker-runtime``) on the next port. Both bind 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import socket

HOST = "127.0.0.1"
DEFAULT_PORT = 4566

# https://<api id>.execute-api.<region>.amazonaws.com[.cn]/<stage>[/path][?query]
_EXECUTE_API_URL = re.compile(
    r"https://(?P<api_id>[a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
    r"/(?P<stage>[A-Za-z0-9_-]+)(?P<rest>[^\s\"',]*)"
)


def control_port() -> int:
    """The control-plane port from ``LOCALCLOUD_PORT``, validated."""
    raw = os.environ.get("LOCALCLOUD_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1024 <= port <= 65534:
        raise ValueError(
            f"LOCALCLOUD_PORT={raw!r} is not valid: expected an integer from 1024 to 65534 "
            "(the data plane uses the next port)"
        )
    return port


def dataplane_port() -> int:
    return control_port() + 1


def control_url() -> str:
    return f"http://{HOST}:{control_port()}"


def dataplane_url() -> str:
    return f"http://{HOST}:{dataplane_port()}"


def stage_url(api_id: str, stage: str) -> str:
    """The local equivalent of ``https://<api_id>.execute-api.<region>.<suffix>/<stage>``."""
    return f"{dataplane_url()}/restapis/{api_id}/{stage}/_user_request_"


def to_local_url(value: str) -> str:
    """Rewrite every execute-api stage URL inside ``value`` to its local stage URL.

    The path and query after the stage are kept; text that is not such a URL is unchanged.
    """
    return _EXECUTE_API_URL.sub(
        lambda m: stage_url(m.group("api_id"), m.group("stage")) + m.group("rest"), value
    )


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1: a LOCALCLOUD_PORT for a second local cloud."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if not 1024 <= port <= 65533:
            continue
        with socket.socket() as second:
            try:
                second.bind((HOST, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no two consecutive free ports on {HOST}")
