"""Where the workflow deploys: the embedded local cloud (default) or a real AWS account.

Both targets run the same commands; only the environment differs. For ``local`` the AWS CLI and
boto3 are pointed at the local cloud with dummy credentials. For ``aws`` credentials must be given
(config.json ``project.profile``, ``AWS_PROFILE``, or ``AWS_ACCESS_KEY_ID`` with
``AWS_SECRET_ACCESS_KEY``); nothing is guessed. The region is always config.json's
``project.region``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("local", "aws")
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
# Variables that would silently redirect a local run to a real account, or vice versa.
AWS_ROUTING_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
)


def aws_cli() -> list[str]:
    """The AWS CLI installed beside this interpreter (the project's pinned version)."""
    script = Path(sys.executable).with_name("aws")
    return [str(script)] if script.exists() else ["aws"]


class TargetError(Exception):
    """The requested target cannot be used as configured."""


@dataclass(frozen=True)
class Target:
    name: str
    region: str
    env: dict[str, str]

    @property
    def is_local(self) -> bool:
        return self.name == "local"

    def session(self):
        """A boto3 session bound to this target's credentials and region."""
        import boto3

        if self.is_local:
            return boto3.Session(
                region_name=self.region,
                **{
                    "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                },
            )
        return boto3.Session(profile_name=self.env.get("AWS_PROFILE"), region_name=self.region)

    def client(self, service: str):
        return self.session().client(service, endpoint_url=self.endpoint_url(service))

    def endpoint_url(self, service: str) -> str | None:
        if not self.is_local:
            return None
        from localcloud import urls

        return urls.dataplane_url() if service == "sagemaker-runtime" else urls.control_url()


def resolve(
    name: str,
    region: str,
    project_profile: str | None,
    environ: dict[str, str] | None = None,
) -> Target:
    """Build the target ``name`` from config values and the process environment."""
    environ = dict(os.environ if environ is None else environ)
    if name not in TARGETS:
        raise TargetError(f"TARGET={name!r} is not a target; use one of: {', '.join(TARGETS)}")
    if name == "local":
        from localcloud import urls

        env = {k: v for k, v in environ.items() if k not in AWS_ROUTING_VARIABLES}
        env.update(
            LOCAL_CREDENTIALS,
            AWS_DEFAULT_REGION=region,
            AWS_REGION=region,
            AWS_ENDPOINT_URL=urls.control_url(),
        )
        return Target("local", region, env)
    env = dict(environ)
    env.pop("AWS_ENDPOINT_URL", None)
    profile = project_profile or environ.get("AWS_PROFILE")
    has_keys = bool(environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"))
    if not profile and not has_keys:
        raise TargetError(
            "TARGET=aws needs credentials: set project.profile in config.json, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if profile:
        env["AWS_PROFILE"] = profile
    env.update(AWS_DEFAULT_REGION=region, AWS_REGION=region)
    return Target("aws", region, env)
