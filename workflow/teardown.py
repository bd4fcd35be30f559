"""``make teardown``: delete every stack in reverse dependency order, emptying owned buckets first.

A bucket the stack deletes is emptied (every object version and delete marker) so CloudFormation can
remove it; a bucket whose DeletionPolicy is Retain is left as it is and reported as kept. KMS keys
cannot be deleted at once anywhere: CloudFormation schedules them for deletion after AWS's waiting
period, and the report says so; a key kept with the data it encrypts (DeletionPolicy Retain) is
reported as kept. Deleting an ``AWS::ApiGateway::Account`` leaves API Gateway's
account-wide logging role setting as it is: when it still names the role the stack deleted, the
report says so too.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from botocore.exceptions import ClientError, WaiterError

from workflow.context import Context, WorkflowError, add_common_arguments, cli, load_context
from workflow.outputs import describe_stack

BUCKET = "AWS::S3::Bucket"
KMS_KEY = "AWS::KMS::Key"
APIGW_ACCOUNT = "AWS::ApiGateway::Account"
# The types whose deletion can leave something: a retained one is kept, a key waits out its
# deletion period, a bucket is emptied first; their names in the report.
LEFT_BY_DELETION = {BUCKET: "bucket", KMS_KEY: "KMS key"}


@dataclass
class Leftovers:
    """What deleting stacks leaves: resources kept by their DeletionPolicy, KMS keys waiting out
    their deletion period, and account settings that still name something deleted."""

    kept: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)

    def add(self, other: "Leftovers") -> None:
        self.kept += other.kept
        self.scheduled += other.scheduled
        self.settings += other.settings

    def __bool__(self) -> bool:
        return bool(self.kept or self.scheduled or self.settings)


def account_logging_roles(template: dict) -> set[str]:
    """Logical ids of the roles the template's ``AWS::ApiGateway::Account`` sets."""
    return {
        res["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
        for res in template.get("Resources", {}).values()
        if res.get("Type") == APIGW_ACCOUNT
        and "Fn::GetAtt" in res.get("Properties", {}).get("CloudWatchRoleArn", {})
    }


def retained_resources(template: dict, type_name: str) -> set[str]:
    """Logical ids of the template's resources of `type_name` kept on stack deletion."""
    return {
        lid
        for lid, res in template.get("Resources", {}).items()
        if res.get("Type") == type_name
        and res.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate")
    }


def empty_bucket(s3, bucket: str) -> int:
    """Delete every version and delete marker in ``bucket``; return how many were removed."""
    removed = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(doomed), 1000):
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
        removed += len(doomed)
    return removed


DELETE_ATTEMPTS = 3


def teardown(ctx: Context) -> Leftovers:
    """Delete the stacks, those the config leaves out first (they may import from the others);
    return what they leave."""
    clients = _stack_clients(ctx)
    left = Leftovers()
    names = [d.stack_name for d in ctx.manifest.disabled]
    names += [spec.stack_name for spec in reversed(ctx.manifest.stacks)]
    for name in names:
        removed = remove_stack(*clients, name)
        if removed is None:
            print(f"[=] {name}: not deployed")
            continue
        left.add(removed)
    return left


def retire(ctx: Context) -> Leftovers:
    """Delete the deployed stacks of concerns the config leaves out (``cicd.enabled`` false), as a
    resource removed from a template is deleted: a deploy converges on the config."""
    clients = _stack_clients(ctx)
    left = Leftovers()
    for disabled in ctx.manifest.disabled:
        if describe_stack(clients[0], disabled.stack_name) is None:
            continue
        print(f"[-] {disabled.stack_name}: {disabled.concern} is not in this configuration")
        left.add(remove_stack(*clients, disabled.stack_name))
    return left


def _stack_clients(ctx: Context) -> list:
    """The clients :func:`remove_stack` takes, in its order."""
    return [ctx.target.client(s) for s in ("cloudformation", "s3", "apigateway")]


def remove_stack(cfn, s3, apigateway, stack_name: str) -> Leftovers | None:
    """Delete one stack, emptying the buckets it deletes; None when it does not exist. The
    deployed template says which buckets it keeps (DeletionPolicy Retain) and which role it set
    as API Gateway's logging role."""
    try:
        resources = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    body = cfn.get_template(StackName=stack_name)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    retained = retained_resources(template, BUCKET) | retained_resources(template, KMS_KEY)
    logging_roles = account_logging_roles(template)
    role_names = [
        r["PhysicalResourceId"]
        for r in resources
        if r["LogicalResourceId"] in logging_roles and r.get("PhysicalResourceId")
    ]
    kept, scheduled, owned = [], [], []
    for res in resources:
        kind, physical = res.get("ResourceType"), res.get("PhysicalResourceId")
        if kind not in LEFT_BY_DELETION or not physical:
            continue
        if res["LogicalResourceId"] in retained:
            label = LEFT_BY_DELETION[kind]
            kept.append(f"{label} {physical} ({stack_name}, DeletionPolicy Retain)")
        elif kind == KMS_KEY:
            scheduled.append(f"KMS key {physical} ({stack_name})")
        else:
            owned.append(physical)
    delete_stack(cfn, s3, stack_name, owned)
    settings = []
    if role_names:
        setting = apigateway.get_account().get("cloudwatchRoleArn") or ""
        if any(setting.endswith(f":role/{name}") for name in role_names):
            settings.append(
                f"API Gateway's logging role in this account and region is still {setting}, "
                f"which {stack_name} deleted (AWS never resets the setting): other APIs here "
                "that log need it to name a live role; where the account has its own, set "
                'api_hosting.account_logging_role to "existing"'
            )
    return Leftovers(kept, scheduled, settings)


def delete_stack(cfn, s3, stack_name: str, buckets: list[str]) -> None:
    """Empty ``buckets`` and delete the stack, again if a bucket filled up in between.

    A running endpoint keeps writing data capture files until CloudFormation deletes it, which
    happens after the buckets were emptied: the deletion then stops at a bucket that is not
    empty. By the next attempt the writer is gone, so emptying once more lets it finish.
    """
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        for bucket in buckets:
            try:
                print(
                    f"[-] {stack_name}: emptied s3://{bucket} "
                    f"({empty_bucket(s3, bucket)} object versions)"
                )
            except s3.exceptions.NoSuchBucket:
                pass
        print(f"[-] delete {stack_name}", flush=True)
        failure = None
        try:
            cfn.delete_stack(StackName=stack_name)
            cfn.get_waiter("stack_delete_complete").wait(
                StackName=stack_name, WaiterConfig={"Delay": 2, "MaxAttempts": 900}
            )
        except (ClientError, WaiterError) as exc:
            failure = exc
        remaining = describe_stack(cfn, stack_name)
        if remaining is None or remaining["StackStatus"] == "DELETE_COMPLETE":
            return
        reason = remaining["StackStatus"] + (f" ({failure})" if failure else "")
        if attempt == DELETE_ATTEMPTS:
            raise WorkflowError(
                f"{stack_name} ended {reason}; see `aws cloudformation describe-stack-events`"
            )
        print(f"[!] {stack_name}: {reason}; emptying its buckets again", flush=True)


@cli("teardown")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.teardown", description=__doc__.splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    ctx = load_context(args.target, args.config, args.manifest)
    print(report(teardown(ctx)))
    return 0


def report(left: Leftovers) -> str:
    lines = ["Kept: " + ("; ".join(left.kept) if left.kept else "nothing")]
    if left.scheduled:
        lines.append(
            "Scheduled for deletion after the KMS waiting period: " + "; ".join(left.scheduled)
        )
    lines += [f"Account setting: {setting}" for setting in left.settings]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
