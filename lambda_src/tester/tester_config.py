"""Tester settings, read from the environment the template sets."""

from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

import awsclients
import envconfig

# The zip cannot import the generator: these repeat generator/config.py's AUTH_MODES and
# MAX_TESTERS (load_test.tester_count's bound), and a test keeps them equal.
AUTH_MODES = ("api_key", "iam")
MAX_FLEET_SIZE = 50
# API Gateway, CloudWatch and S3 calls: short connects, three tries in all.
AWS_CLIENT_CONFIG = awsclients.client_config(connect_timeout=2, read_timeout=10, total_attempts=3)


@dataclass(frozen=True)
class TesterSettings:
    api_url: str
    api_resource_path: str
    auth_mode: str
    api_key_id: Optional[str]
    metric_namespace: str
    stage: str
    results_bucket: str
    fleet_position: int  # this tester's number in the fleet, 1..fleet_size
    fleet_size: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "TesterSettings":
        api_url = envconfig.text(env, "API_URL").rstrip("/")
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise envconfig.ConfigError(
                f"environment variable API_URL={api_url!r}: expected an http(s) stage URL "
                f"without a query, like https://<id>.execute-api.<region>.amazonaws.com/<stage>")
        auth_mode = envconfig.choice(env, "AUTH_MODE", AUTH_MODES)
        fleet_size = envconfig.integer(env, "TESTER_COUNT", 1, MAX_FLEET_SIZE)
        return cls(
            api_url=api_url,
            api_resource_path=envconfig.text(env, "API_RESOURCE_PATH").strip("/"),
            auth_mode=auth_mode,
            api_key_id=envconfig.text(env, "API_KEY_ID") if auth_mode == "api_key" else None,
            metric_namespace=envconfig.text(env, "METRIC_NAMESPACE"),
            stage=envconfig.text(env, "STAGE"),
            results_bucket=envconfig.text(env, "RESULTS_BUCKET"),
            fleet_position=envconfig.integer(env, "TESTER_INDEX", 1, fleet_size),
            fleet_size=fleet_size,
        )
