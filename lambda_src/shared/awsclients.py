"""boto3 clients with explicit timeouts and bounded retries, made once per container."""

import os
import threading
from typing import Dict

import boto3
from botocore.config import Config

_clients: Dict[str, object] = {}
_lock = threading.Lock()


def client_config(connect_timeout: float, read_timeout: float,
                  total_attempts: int) -> Config:
    """Standard retry mode (backoff with jitter); ``total_attempts`` includes the first try."""
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": total_attempts},
        tcp_keepalive=True,
    )


def cached_client(service: str, config: Config):
    """The container's one client for ``service``; endpoints come from AWS_ENDPOINT_URL* if set.

    Lambda sets AWS_REGION, which boto3 itself does not read (it reads AWS_DEFAULT_REGION).
    """
    with _lock:
        if service not in _clients:
            region = os.environ.get("AWS_REGION") or None
            _clients[service] = boto3.client(service, region_name=region, config=config)
        return _clients[service]


def reset_clients() -> None:
    """Forget cached clients (tests swap the AWS backend between cases)."""
    with _lock:
        _clients.clear()
