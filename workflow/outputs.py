"""``make outputs``: every deployed stack's outputs as one JSON object, and how to reach the API."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass

from workflow.context import Context, WorkflowError, add_common_arguments, cli, load_context
from workflow.target import LOCAL_CREDENTIALS, Target, aws_cli

API_STACK = "api-hosting"


def describe_stack(cfn, stack_name: str) -> dict | None:
    """The stack's description, or None when it does not exist; other errors propagate."""
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def stack_outputs(cfn, stack_name: str) -> dict[str, str]:
    """Output key -> value of one stack, or {} when the stack does not exist."""
    stack = describe_stack(cfn, stack_name) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def all_outputs(ctx: Context) -> dict[str, dict[str, str]]:
    cfn = ctx.target.client("cloudformation")
    found = {spec.stack_name: stack_outputs(cfn, spec.stack_name) for spec in ctx.manifest.stacks}
    return {name: values for name, values in found.items() if values}


@dataclass(frozen=True)
class ApiAccess:
    url: str
    auth: str
    key_id: str | None
    key_value: str | None
    key_command: str | None


def api_access(ctx: Context) -> ApiAccess:
    """The invoke URL of the deployed resource and the credentials it needs, for this target."""
    spec = ctx.manifest.stack(API_STACK)
    out = stack_outputs(ctx.target.client("cloudformation"), spec.stack_name)
    if "ApiUrl" not in out:
        raise WorkflowError(
            f"stack {spec.stack_name} is not deployed (no ApiUrl output): run `make deploy`"
        )
    base = out["ApiUrl"]
    if ctx.target.is_local:
        from localcloud import urls

        base = urls.stage_url(out["ApiId"], out["ApiStage"])
    url = f"{base.rstrip('/')}/{out['ApiResourcePath'].strip('/')}"
    key_id = out.get("ApiKeyId")
    if not key_id:
        return ApiAccess(url=url, auth="iam", key_id=None, key_value=None, key_command=None)
    command = key_command(ctx.target, key_id)
    value = None
    if ctx.target.is_local:
        value = ctx.target.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)[
            "value"
        ]
    return ApiAccess(url=url, auth="api_key", key_id=key_id, key_value=value, key_command=command)


def key_command(target: Target, key_id: str) -> str:
    """A shell command that prints the API key's value, as it stands: for the local cloud with
    its dummy credentials, endpoint and the project's aws CLI (a fresh machine has no other); for
    AWS with the target's region and profile (credentials in the environment serve as they are)."""
    if target.is_local:
        credentials = " ".join(f"{k}={v}" for k, v in LOCAL_CREDENTIALS.items())
        cli = shlex.join(aws_cli())
        prefix = f"{credentials} {cli} --endpoint-url {target.endpoint_url('apigateway')}"
    else:
        profile = target.env.get("AWS_PROFILE")
        prefix = "aws" + (f" --profile {shlex.quote(profile)}" if profile else "")
    return (
        f"{prefix} --region {target.region} apigateway get-api-key --api-key {key_id} "
        "--include-value --query value --output text"
    )


@cli("outputs")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.outputs", description=__doc__.splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    ctx = load_context(args.target, args.config, args.manifest)
    print(json.dumps(all_outputs(ctx), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
