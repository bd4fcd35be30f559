"""Credentials for calling the API: an API key read from API Gateway, or SigV4 signing."""

import os
from typing import Dict
from urllib.parse import urlsplit

import awsclients
import boto3
import envconfig
from sigv4 import Signer
from tester_config import AWS_CLIENT_CONFIG, TesterSettings

CONTENT_TYPE = {"Content-Type": "application/json"}
_api_keys: Dict[str, str] = {}


class ApiKeyAuth:
    """Sends the usage-plan key, fetched once per container rather than configured in plain text."""

    def __init__(self, key_value: str):
        self._headers = {**CONTENT_TYPE, "x-api-key": key_value}

    def headers(self, url: str, body: bytes) -> Dict[str, str]:
        return self._headers


class IamAuth:
    """SigV4 for execute-api, per request, with the function role's (refreshing) credentials."""

    def __init__(self, session: boto3.session.Session):
        # Lambda sets AWS_REGION (and AWS_DEFAULT_REGION, which boto3 reads).
        self._region = session.region_name or os.environ.get("AWS_REGION")
        if not self._region:
            raise envconfig.ConfigError(
                "AWS_REGION is not set: SigV4 signing needs the API's region (AUTH_MODE=iam)")
        self._credentials = session.get_credentials()
        if self._credentials is None:
            raise envconfig.ConfigError(
                "no AWS credentials found to sign API requests (AUTH_MODE=iam)")
        self._signer = Signer(self._region, "execute-api")

    def headers(self, url: str, body: bytes) -> Dict[str, str]:
        parts = urlsplit(url)
        return self._signer.signed_headers(
            self._credentials.get_frozen_credentials(), "POST", parts.path,
            {"Host": parts.netloc, **CONTENT_TYPE}, body)


def auth_for(settings: TesterSettings):
    if settings.auth_mode == "iam":
        return IamAuth(boto3.session.Session())
    if settings.api_key_id not in _api_keys:
        client = awsclients.cached_client("apigateway", AWS_CLIENT_CONFIG)
        response = client.get_api_key(apiKey=settings.api_key_id, includeValue=True)
        _api_keys[settings.api_key_id] = response["value"]
    return ApiKeyAuth(_api_keys[settings.api_key_id])
