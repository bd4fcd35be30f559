"""Where the workflow deploys: the embedded local cloud (default) or a real AWS account.

Both targets run the same commands; only the environment differs. For ``local`` the AWS CLI and
boto3 are pointed at the local cloud with dummy credentials. For ``aws`` the credentials are
config.json's ``project.profile`` when it is set, otherwise whatever the AWS CLI's own chain finds
(``AWS_PROFILE``, access keys, the default profile or SSO, or the role of the CodeBuild, ECS or EC2
host the workflow runs on, as in the pipeline's deploy stage); with none found nothing starts. The
region is always config.json's ``project.region``.
"""

from __future__ import annotations

import functools
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
# The AWS CLI's switch for ignoring AWS_ENDPOINT_URL* and endpoint_url in the AWS config file.
IGNORE_ENDPOINTS_VARIABLE = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
# boto3.Session's argument for each credential variable the AWS CLI reads.
SESSION_KEY_VARIABLES = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}


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
        """A boto3 session bound to this target's credentials and region: the keys in its
        environment (the local cloud's dummies for ``local``), else its profile or the chain.
        One per target: a fresh session reloads every service model (about 0.1 s a client)
        and resolves the credentials again."""
        return self._session

    @functools.cached_property
    def _session(self):
        import boto3

        keys = {
            argument: self.env[variable]
            for argument, variable in SESSION_KEY_VARIABLES.items()
            if self.env.get(variable)
        }
        if {"aws_access_key_id", "aws_secret_access_key"} <= keys.keys():
            # The AWS CLI, too, prefers keys in the environment to AWS_PROFILE.
            return boto3.Session(region_name=self.region, **keys)
        return boto3.Session(profile_name=self.env.get("AWS_PROFILE"), region_name=self.region)

    def client(self, service: str):
        from botocore.config import Config

        ignore = self.env.get(IGNORE_ENDPOINTS_VARIABLE, "").lower() == "true"
        return self.session().client(
            service,
            endpoint_url=self.endpoint_url(service),
            config=Config(ignore_configured_endpoint_urls=ignore),
        )

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
    from botocore.exceptions import ProfileNotFound

    env = dict(environ)
    if env.pop("AWS_ENDPOINT_URL", None):
        # Left by `localcloud env`, most likely. botocore would still read it from this process's
        # environment, sending the workflow's own calls there while the CLI's go to AWS: neither
        # follows a configured endpoint.
        env[IGNORE_ENDPOINTS_VARIABLE] = "true"
    if project_profile:  # the config's choice: keys in the environment must not override it
        for variable in SESSION_KEY_VARIABLES.values():
            env.pop(variable, None)
        env["AWS_PROFILE"] = project_profile
    env.update(AWS_DEFAULT_REGION=region, AWS_REGION=region)
    target = Target("aws", region, env)
    try:
        credentials = target.session().get_credentials()
    except ProfileNotFound:
        source = "project.profile in config.json" if project_profile else "AWS_PROFILE"
        raise TargetError(
            f"{source} names the AWS profile {env['AWS_PROFILE']!r}, which is not in the "
            "AWS config or credentials file"
        ) from None
    if credentials is None:
        raise TargetError(
            "TARGET=aws found no AWS credentials: set project.profile in config.json, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role "
            "provides them (CodeBuild, ECS, EC2)"
        )
    return target
