"""``make teardown``: delete every stack in reverse dependency order, emptying owned buckets first.

A bucket the stack deletes is emptied (every object version and delete marker) so CloudFormation can
remove it; a bucket whose DeletionPolicy is Retain is left as it is and reported as kept. KMS keys
cannot be deleted at once anywhere: CloudFormation schedules them for deletion after AWS's waiting
period, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import sys

from botocore.exceptions import ClientError, WaiterError

from workflow.context import Context, WorkflowError, add_common_arguments, cli, load_context
from workflow.outputs import describe_stack

BUCKET = "AWS::S3::Bucket"
KMS_KEY = "AWS::KMS::Key"


def retained_buckets(template_path) -> set[str]:
    """Logical ids of buckets the template keeps on stack deletion."""
    resources = json.loads(template_path.read_text()).get("Resources", {})
    return {
        lid
        for lid, res in resources.items()
        if res.get("Type") == BUCKET
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


def teardown(ctx: Context) -> tuple[list[str], list[str]]:
    """Delete the stacks; return what was deliberately kept and what is scheduled for deletion."""
    cfn, s3 = ctx.target.client("cloudformation"), ctx.target.client("s3")
    kept: list[str] = []
    scheduled: list[str] = []
    for spec in reversed(ctx.manifest.stacks):
        try:
            resources = cfn.list_stack_resources(StackName=spec.stack_name)[
                "StackResourceSummaries"
            ]
        except cfn.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                print(f"[=] {spec.stack_name}: not deployed")
                continue
            raise
        retained = retained_buckets(spec.template) if spec.template.exists() else set()
        scheduled += [
            f"KMS key {r['PhysicalResourceId']} ({spec.stack_name})"
            for r in resources
            if r.get("ResourceType") == KMS_KEY and r.get("PhysicalResourceId")
        ]
        owned = []
        for res in resources:
            if res.get("ResourceType") != BUCKET or not res.get("PhysicalResourceId"):
                continue
            if res["LogicalResourceId"] in retained:
                kept.append(
                    f"bucket {res['PhysicalResourceId']} ({spec.stack_name}, DeletionPolicy Retain)"
                )
            else:
                owned.append(res["PhysicalResourceId"])
        delete_stack(cfn, s3, spec.stack_name, owned)
    return kept, scheduled


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
    kept, scheduled = teardown(ctx)
    print("Kept: " + ("; ".join(kept) if kept else "nothing"))
    if scheduled:
        print("Scheduled for deletion after the KMS waiting period: " + "; ".join(scheduled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
