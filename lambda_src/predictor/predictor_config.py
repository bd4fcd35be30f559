"""Predictor settings, read from the environment the template sets."""

from dataclasses import dataclass
from typing import Mapping

import envconfig

# InvokeEndpoint accepts at most 6 MiB, and the model payload is never longer than the body.
SAGEMAKER_MAX_PAYLOAD = 6 * 1024 * 1024
# The configuration's bound of model_serving.max_batch_size (generator.config.MAX_BATCH_SIZE).
MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class PredictorSettings:
    endpoint_name: str
    max_batch_size: int
    max_body_bytes: int
    max_text_chars: int
    log_request_text: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PredictorSettings":
        return cls(
            endpoint_name=envconfig.text(env, "ENDPOINT_NAME"),
            max_batch_size=envconfig.integer(env, "MAX_BATCH_SIZE", 1, MAX_BATCH_SIZE),
            max_body_bytes=envconfig.integer(env, "MAX_BODY_BYTES", 1, SAGEMAKER_MAX_PAYLOAD),
            max_text_chars=envconfig.integer(env, "MAX_TEXT_CHARS", 1, 1_000_000),
            log_request_text=envconfig.flag(env, "LOG_REQUEST_TEXT", default=False),
        )
