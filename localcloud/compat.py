"""CloudFormation compatibility layer for moto 5.2.5, the local cloud's control plane.

``apply()`` patches moto in-process, before the daemon's control plane serves moto's app, so that
``aws cloudformation deploy`` against the local cloud behaves as it does against AWS. Each fix is
one ``fix_*`` function whose comment names the moto defect, written to be proposed upstream on its
own; docs/local-cloud-compat.md gives symptom, fix and upstream route for each.

Stack operations
  fix_execute_change_set       ExecuteChangeSet runs the create-stack / update-stack logic: Outputs,
                               Exports, Fn::ImportValue against the live export table, DependsOn
                               order; a failed CREATE ends ROLLBACK_COMPLETE (listing its
                               resources creates none again), a failed UPDATE
                               UPDATE_ROLLBACK_COMPLETE, with the failing resource's reason.
                               Executing a change set removes the stack's other change sets; a
                               removed or unknown one answers ChangeSetNotFound.
  fix_create_change_set        CREATE on a REVIEW_IN_PROGRESS stack adds its change set to that
                               stack (earlier ones stay), rather than making a second stack;
                               CREATE on a live stack and UPDATE on a ROLLBACK_COMPLETE or
                               UPDATE_ROLLBACK_FAILED one are refused; an unchanged UPDATE gives a
                               FAILED change set ("didn't contain changes"), so
                               --no-fail-on-empty-changeset works.
  fix_parameter_comparison     parameters compare (and are reused) as the strings AWS stores.
  fix_create_and_update_stack  CreateStack / UpdateStack share that create, rollback, export logic
                               (and UpdateStack refuses the same states).
  fix_delete_stack             undeletable resources give DELETE_FAILED with a reason, not a 500;
                               a deleted stack's change sets go with it.
  fix_continue_update_rollback ContinueUpdateRollback resumes a failed update rollback: the
                               previous template and parameters again, ResourcesToSkip (or
                               ForceRollback) marked UPDATE_COMPLETE unchanged, then the cleanup
                               phase; UPDATE_ROLLBACK_COMPLETE, or UPDATE_ROLLBACK_FAILED again.
  fix_template_url             a TemplateURL on the local endpoint (`aws cloudformation deploy
                               --s3-bucket`, for templates above 51,200 bytes) is read from its
                               bucket and key (and versionId), not from a bucket named after the
                               host.
  (exports in use)             as on AWS, an export another stack imports can be neither changed
                               nor removed, and its stack not deleted (_refuse_exports_in_use).
  fix_serialized_stack_operations
                               concurrent CloudFormation requests (parallel deploys) are serialized
                               (DescribeStackEvents excepted, so progress still streams).
  fix_dependency_ordered_update
                               updates run in dependency order, re-resolve what refers to a changed
                               resource (an Endpoint follows its new EndpointConfig), replace types
                               that cannot update and renamed resources (new first), and delete
                               replaced and removed resources in a cleanup phase; a failed update
                               rolls back to them, and changes back only what it changed.
  fix_dependency_ordered_delete
                               DeleteStack deletes in reverse dependency order.
  fix_resource_events          DescribeStackEvents lists per-resource events with reasons.
  fix_stack_status_reason      DescribeStacks gives StackStatusReason: why the stack is in its
                               status.
  fix_unsupported_types_fail   a type the local cloud cannot create fails the stack by name
                               instead of being skipped silently.

Resource types (``fix_resource_types`` registers the ``CompatResource`` models below; each is
created, updated and deleted through moto's own service backend, with AWS's Ref/GetAtt values)
  added (moto has no model): S3::BucketPolicy, SNS::Subscription, SNS::TopicPolicy,
  CloudWatch::Alarm, ApplicationAutoScaling::ScalableTarget and ::ScalingPolicy,
  CodeBuild::Project, CodePipeline::Pipeline, Lambda::EventInvokeConfig, Lambda::Alias,
  ApiGateway::Stage, ::ApiKey, ::UsagePlan, ::UsagePlanKey, ::RequestValidator, ::Model,
  ::GatewayResponse, ::Account.
  replaced (moto's model has an object-repr Ref, drops properties, or cannot update/delete):
  ApiGateway::RestApi, ::Method, ::Deployment, Lambda::Permission, Lambda::Version, KMS::Key.
  Every type has a moto service backend; none is emulated outside moto.
  fix_missing_deletes_and_updates  ApiGateway::Resource deletes; Logs::LogGroup updates in place.
  fix_lambda_reserved_concurrency_update
                               an updated Lambda::Function takes its new
                               ReservedConcurrentExecutions (or none, when it is removed).
  fix_lambda_dead_letter_config
                               a Lambda::Function keeps its DeadLetterConfig (shown by
                               GetFunctionConfiguration), where the local runtime parks failed
                               asynchronous events.
  fix_role_policies            an IAM::Role's inline policies are stored as JSON, and an update
                               applies its new trust policy and inline policies (a removed one
                               is detached).
  fix_sagemaker_names          ModelName, EndpointConfigName, EndpointName are honoured.
  fix_sagemaker_endpoint_update
                               an updated SageMaker::Endpoint is updated in place (its new
                               config, same creation time), not deleted and created again; an
                               update that removes an autoscaled variant or changes its instance
                               type fails, as SageMaker's does.
  fix_sagemaker_replacement    a replaced Model or EndpointConfig is deleted in the update's
                               cleanup phase, so a failed update returns to the old one.
  fix_non_empty_bucket_delete  deleting a bucket that still holds objects fails the stack delete
                               (DELETE_FAILED) instead of silently leaving the bucket behind.
  fix_bucket_configuration     a bucket gets (and an update changes) its versioning, lifecycle
                               rules, public access block, ownership controls and event delivery
                               to EventBridge.

Service behaviour
  fix_bool_conditions          Bool policy conditions on aws:SecureTransport hold (the loopback
                               endpoint stands in for TLS), so "deny unless TLS" bucket policies no
                               longer deny every request.
  fix_metric_values_aggregated PutMetricData Values/Counts are stored as one aggregated datum per
                               member, not one object per counted sample.
  fix_sagemaker_capture_summary
                               DescribeEndpoint reports data capture as SageMaker does: with its
                               CaptureStatus and CurrentSamplingPercentage.
  fix_sagemaker_capture_validation
                               CreateEndpointConfig refuses a DataCaptureConfig SageMaker refuses,
                               naming the member, instead of storing it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import logging
import re
import threading
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlparse

import moto
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import (
    AlreadyExistsException,
    CloudFormationError,
    ValidationError,
)
from moto.core.responses import ActionResult, EmptyResult

SUPPORTED_MOTO_VERSION = "5.2.5"
log = logging.getLogger("localcloud.compat")

_applied = False


def apply() -> None:
    """Patch moto in-process. Idempotent; refuses any moto version but the pinned one."""
    global _applied
    if _applied:
        return
    if moto.__version__ != SUPPORTED_MOTO_VERSION:
        raise RuntimeError(
            f"localcloud.compat patches moto {SUPPORTED_MOTO_VERSION} only, but moto "
            f"{moto.__version__} is installed: install moto[server]=={SUPPORTED_MOTO_VERSION}"
        )
    for fix in _FIXES:
        fix()
    _applied = True


# --------------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------------


def _error_message(exc: BaseException) -> str:
    """The human-readable part of a moto or Python exception."""
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    description = getattr(exc, "description", None)
    if isinstance(description, str) and description:
        return description
    return f"{type(exc).__name__}: {exc}"


def _stack_of(resources_map: cfn_parsing.ResourceMap) -> cfn_models.Stack | None:
    backend = cfn_models.cloudformation_backends[resources_map._account_id][
        resources_map._region_name
    ]
    return backend.stacks.get(resources_map.stack_id)


def _stack_level(stack: cfn_models.Stack, event: cfn_models.Event) -> bool:
    """Whether ``event`` is about the stack itself (Stack._add_stack_event), not a resource."""
    return event.physical_resource_id == stack.stack_id


def _resource_event(
    stack: cfn_models.Stack | None,
    logical_id: str,
    resource_type: str,
    status: str,
    physical_id: str | None = None,
    reason: str | None = None,
) -> None:
    if stack is None:
        return
    stack.events.append(
        cfn_models.Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=physical_id or "",
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _physical_id(resource: Any) -> str:
    physical = getattr(resource, "physical_resource_id", None)
    return physical if isinstance(physical, str) else ""


def _as_parameter_string(value: Any) -> str:
    """A resolved parameter value as the string CloudFormation stores (lists comma-joined)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Change-set path
# --------------------------------------------------------------------------------------------


class _FailedResource:
    """Remembers, on the exception that stopped a stack operation, which resource failed first."""

    attribute = "_localcloud_failed_resource"

    @classmethod
    def mark(cls, exc: BaseException, logical_id: str, resource_type: str, action: str) -> bool:
        """Record the resource on ``exc``, and whether it failed to ``action`` (create, update or
        delete: an update may create or delete resources); True if it is the first (root-cause)
        failure."""
        if getattr(exc, cls.attribute, None) is not None:
            return False
        setattr(exc, cls.attribute, (logical_id, resource_type, action))
        return True

    @classmethod
    def describe(cls, exc: BaseException, verb: str) -> str:
        """Why stack operation ``verb`` failed, naming the resource that failed first."""
        failed = getattr(exc, cls.attribute, None)
        if failed is None:
            return f"Stack {verb} failed: {_error_message(exc)}"
        logical_id, resource_type, action = failed
        return f"Resource {logical_id} ({resource_type}) failed to {action}: {_error_message(exc)}"


_IMPORTS = "localcloud_imported_exports"  # Stack attribute: export names the stack imports


def _record_imports(stack: cfn_models.Stack) -> None:
    """Remember which exports ``stack``'s template imports (the names resolved as deployed)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Fn::ImportValue":
                    names.add(str(cfn_parsing.clean_json(value, stack.resource_map)))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk([stack.template_dict.get("Resources"), stack.template_dict.get("Outputs")])
    setattr(stack, _IMPORTS, names)


def _refuse_exports_in_use(
    backend: cfn_models.CloudFormationBackend,
    stack: cfn_models.Stack,
    remaining: dict[str, Any],
    deleting_stack: bool = False,
) -> None:
    """AWS refuses to remove or change an export that another stack imports."""
    for name, export in backend.exports.items():
        if export.exporting_stack_id != stack.stack_id:
            continue
        importers = sorted(
            other.name
            for other in backend.stacks.values()
            if other.stack_id != stack.stack_id and name in getattr(other, _IMPORTS, ())
        )
        if not importers:
            continue
        users = ", ".join(importers)
        if deleting_stack:
            raise ValidationError(
                message=f"Export {name} cannot be deleted as it is in use by {users}"
            )
        if name not in remaining:
            raise ValidationError(message=f"Cannot delete export {name} as it is in use by {users}")
        if remaining[name] != export.value:
            raise ValidationError(message=f"Cannot update export {name} as it is in use by {users}")


def _register_exports(backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack) -> None:
    """Replace ``stack``'s entries in the live export table with its current exports."""
    current = stack.exports
    _refuse_exports_in_use(backend, stack, {export.name: export.value for export in current})
    owned = {
        name
        for name, export in backend.exports.items()
        if export.exporting_stack_id == stack.stack_id
    }
    clashes = [
        export.name
        for export in current
        if export.name in backend.exports and export.name not in owned
    ]
    if clashes:
        raise ValidationError(
            stack.stack_id,
            message=f"Export with name {clashes[0]} is already exported by another stack; "
            "export names must be unique across a given region",
        )
    for name in owned:
        del backend.exports[name]
    for export in current:
        backend.exports[export.name] = export


def _unregister_exports(backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack) -> None:
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]


def _create_stack_resources(
    backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack
) -> None:
    """Create-stack logic shared by CreateStack and a CREATE change set; rolls back on failure."""
    stack.cross_stack_resources = backend.exports
    stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
    try:
        stack.resource_map = stack._create_resource_map()
        stack.output_map = stack._create_output_map()
        stack.create_resources()
        _register_exports(backend, stack)
        _record_imports(stack)
    except Exception as exc:  # any failure, as on AWS, rolls the whole stack back
        _roll_back_create(backend, stack, exc)
        raise ValidationError(
            stack.stack_id, message=_FailedResource.describe(exc, "create")
        ) from exc


def _roll_back_create(
    backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack, exc: Exception
) -> None:
    failed = getattr(exc, _FailedResource.attribute, None)
    reason = (
        f"The following resource(s) failed to create: [{failed[0]}]. Rollback requested by user."
        if failed
        else _error_message(exc)
    )
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    _unregister_exports(backend, stack)
    # Outputs of a rolled-back stack must not be evaluated (an unresolved import would be a 500).
    stack.output_map = cfn_parsing.OutputMap(stack.resource_map, {}, stack.stack_id)
    try:
        stack.resource_map.delete()
    except Exception as delete_exc:
        stack.status = "ROLLBACK_FAILED"
        stack._add_stack_event("ROLLBACK_FAILED", resource_status_reason=_error_message(delete_exc))
        return
    finally:
        _forget_deleted_resources(stack.resource_map)
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")


def _forget_deleted_resources(resources_map: cfn_parsing.ResourceMap) -> None:
    """Keep only the resources that still exist. moto's ResourceMap creates any template resource
    it is asked for and does not hold, so ListStackResources on a rolled-back stack (what a
    teardown calls first) would create them all again, and fail again where the stack failed."""
    resources_map._resource_json_map = {
        name: body
        for name, body in resources_map._resource_json_map.items()
        if name in resources_map._parsed_resources
    }


def _update_stack_resources(
    backend: cfn_models.CloudFormationBackend,
    stack: cfn_models.Stack,
    template: str,
    parameters: dict[str, Any],
    role_arn: str | None,
    tags: dict[str, str] | None,
) -> None:
    """Update-stack logic shared by UpdateStack and an UPDATE change set; rolls back on failure."""
    previous_template = stack.template
    previous_parameters = dict(stack.resource_map.input_parameters)
    stack.cross_stack_resources = backend.exports
    stack.resource_map.cross_stack_resources = backend.exports
    stack.status = "UPDATE_IN_PROGRESS"
    stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    cleanup = _Cleanup(stack.resource_map)
    try:
        with cleanup.collecting():
            _apply_template(backend, stack, template, parameters)
    except Exception as exc:
        reason = _FailedResource.describe(exc, "update")
        stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
        # Replaced and removed resources are put back, and what the failed update changed in
        # place is updated back; what it created goes in the rollback's cleanup phase.
        rollback_cleanup = cleanup.put_back(stack)
        _finish_rollback(backend, stack, rollback_cleanup, previous_template, previous_parameters)
        raise ValidationError(stack.stack_id, message=reason) from exc
    stack.role_arn = role_arn
    if parameters:
        stack.parameters = parameters
    if tags is not None:
        stack.tags = tags
    _complete(stack, cleanup, "UPDATE_COMPLETE")


def _apply_template(
    backend: cfn_models.CloudFormationBackend,
    stack: cfn_models.Stack,
    template: str,
    parameters: dict[str, Any],
) -> None:
    """Bring the stack's resources, Outputs and exports to ``template`` and ``parameters``."""
    stack.template = template
    stack._parse_template()
    stack.resource_map.update(stack.template_dict, parameters)
    stack.output_map = stack._create_output_map()
    _register_exports(backend, stack)
    _record_imports(stack)


def _finish_rollback(
    backend: cfn_models.CloudFormationBackend,
    stack: cfn_models.Stack,
    cleanup: _Cleanup,
    template: str,
    parameters: dict[str, Any],
) -> None:
    """Update the stack back to ``template`` and ``parameters``, then run the rollback's cleanup
    phase; a rollback that fails has none, and is left for ContinueUpdateRollback to resume."""
    try:
        with cleanup.collecting():
            _apply_template(backend, stack, template, parameters)
        stack.parameters = parameters
    except Exception as exc:
        stack.status = "UPDATE_ROLLBACK_FAILED"
        stack._add_stack_event(
            "UPDATE_ROLLBACK_FAILED", resource_status_reason=_FailedResource.describe(exc, "update")
        )
        _UnfinishedRollback(template, parameters, cleanup).leave_with(stack.resource_map)
    else:
        _complete(stack, cleanup, "UPDATE_ROLLBACK_COMPLETE")


def _complete(stack: cfn_models.Stack, cleanup: _Cleanup, status: str) -> None:
    """The cleanup phase, then ``status``, as AWS reports a successful update or rollback."""
    stack._add_stack_event(f"{status}_CLEANUP_IN_PROGRESS")
    cleanup.run()
    stack.status = status
    stack._add_stack_event(status)


class ChangeSetNotFound(CloudFormationError):
    code = "ChangeSetNotFound"  # botocore's ChangeSetNotFoundException


def _drop_change_sets(
    backend: cfn_models.CloudFormationBackend,
    stack_id: str,
    keep: cfn_models.ChangeSet | None = None,
) -> None:
    """Remove the change sets of stack ``stack_id`` but ``keep``."""
    for change_set_id in [
        i for i, c in backend.change_sets.items() if c.stack_id == stack_id and c is not keep
    ]:
        del backend.change_sets[change_set_id]


# A stack whose creation failed, a new one under review, and one whose update rollback failed
# (until ContinueUpdateRollback finishes it) cannot be updated on AWS.
_NOT_UPDATABLE = frozenset(
    {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "REVIEW_IN_PROGRESS", "UPDATE_ROLLBACK_FAILED"}
)


def _refuse_update(stack: cfn_models.Stack) -> None:
    if stack.status in _NOT_UPDATABLE:
        raise ValidationError(
            stack.stack_id,
            message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.",
        )


def fix_execute_change_set() -> None:
    # moto defects: CloudFormationBackend.execute_change_set only runs ResourceMap.update on a
    # placeholder stack (ChangeSet.apply): Outputs are never built, exports never registered,
    # Fn::ImportValue sees an empty private table, DependsOn is ignored, failures leave the stack
    # REVIEW_IN_PROGRESS (and may make DescribeStacks answer 500). The stack's other change sets
    # stay executable, where AWS removes them; an unknown change set is a ValidationError naming
    # a stack ("Stack with id <change set> does not exist"), where AWS answers ChangeSetNotFound.
    original_describe = cfn_models.CloudFormationBackend.describe_change_set

    @functools.wraps(original_describe)
    def describe_change_set(
        self: cfn_models.CloudFormationBackend, change_set_name: str
    ) -> cfn_models.ChangeSet:
        try:
            return original_describe(self, change_set_name)
        except ValidationError:  # moto raises it only when no change set has that name or id
            raise ChangeSetNotFound(f"ChangeSet [{change_set_name}] does not exist") from None

    def execute_change_set(
        self: cfn_models.CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            raise ValidationError(
                message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                f"execution status of [{change_set.execution_status}]"
            )
        stack = self.stacks[change_set.stack_id]
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        # The others describe changes to the stack as it was: AWS removes them.
        _drop_change_sets(self, stack.stack_id, keep=change_set)
        try:
            if change_set.change_set_type == "CREATE":
                # Of the change sets a stack under review may have, the executed one decides.
                stack.tags, stack.role_arn = change_set.tags or {}, change_set.role_arn
                stack.template = change_set.template
                stack._parse_template()
                stack.description = stack.template_dict.get("Description")
                stack.parameters = change_set.parameters
                _create_stack_resources(self, stack)
            else:
                _update_stack_resources(
                    self,
                    stack,
                    change_set.template,
                    change_set.parameters,
                    change_set.role_arn,
                    change_set.tags or None,
                )
        except Exception:
            change_set.execution_status = "EXECUTE_FAILED"
            raise
        change_set.execution_status = "EXECUTE_COMPLETE"

    cfn_models.CloudFormationBackend.describe_change_set = describe_change_set
    cfn_models.CloudFormationBackend.execute_change_set = execute_change_set


def fix_create_change_set() -> None:
    # moto defects: (1) CREATE adds a second stack next to a REVIEW_IN_PROGRESS one (a new stack
    # whose change set another deploy may not have executed yet) instead of adding the change set
    # to it, and next to a live stack instead of refusing; (2) UPDATE on a stack AWS cannot update
    # (ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED) is accepted; (3)
    # CloudFormationResponse._validate_different_update raises "No updates are to be performed."
    # from CreateChangeSet, where AWS returns a FAILED change set whose reason the CLI turns into
    # "No changes to deploy".
    original_create = cfn_models.CloudFormationBackend.create_change_set

    @functools.wraps(original_create)
    def create_change_set(
        self: cfn_models.CloudFormationBackend,
        stack_name: str,
        change_set_name: str,
        template: str,
        parameters: dict[str, str],
        description: str,
        change_set_type: str,
        **kwargs: Any,
    ) -> tuple[str, str]:
        same_name = [stack for stack in self.stacks.values() if stack.name == stack_name]
        if change_set_type == "CREATE":
            for stack in same_name:
                if stack.status != "REVIEW_IN_PROGRESS":
                    raise AlreadyExistsException(f"Stack [{stack_name}] already exists")
        else:
            for stack in same_name:
                _refuse_update(stack)
        change_set_id, stack_id = original_create(
            self,
            stack_name,
            change_set_name,
            template,
            parameters,
            description,
            change_set_type,
            **kwargs,
        )
        if change_set_type == "CREATE" and same_name:
            # moto made a placeholder stack of its own: the change set goes to the one under review
            (reviewed,) = same_name
            del self.stacks[stack_id]
            change_set = self.change_sets[change_set_id]
            change_set.stack, change_set.stack_id = reviewed, reviewed.stack_id
            stack_id = reviewed.stack_id
        return change_set_id, stack_id

    cfn_models.CloudFormationBackend.create_change_set = create_change_set

    original_validate = cfn_responses.CloudFormationResponse._validate_different_update

    @functools.wraps(original_validate)
    def validate_different_update(
        self: cfn_responses.CloudFormationResponse, *args: Any, **kwargs: Any
    ) -> None:
        if self._get_action() == "CreateChangeSet":
            return  # the backend answers an unchanged update with a FAILED change set
        original_validate(self, *args, **kwargs)

    cfn_responses.CloudFormationResponse._validate_different_update = validate_different_update


def fix_parameter_comparison() -> None:
    # moto defects: Stack.has_parameters compares the raw input dicts, so a stack created without
    # overrides looks changed on every deploy; Stack.stack_parameters hands resolved Python values
    # (lists, ints) back for UsePreviousValue, which the next parse splits again and crashes on.
    def stack_parameters(self: cfn_models.Stack) -> dict[str, str]:
        return {
            key: _as_parameter_string(value)
            for key, value in self.resource_map.resolved_parameters.items()
        }

    def has_parameters(self: cfn_models.Stack, other_parameters: dict[str, Any]) -> bool:
        declared = self.template_dict.get("Parameters") or {}
        candidate = {
            key: _as_parameter_string(slot["Default"])
            for key, slot in declared.items()
            if "Default" in slot
        }
        candidate.update(
            {
                key: _as_parameter_string(value)
                for key, value in other_parameters.items()
                if key in declared
            }
        )
        return candidate == self.stack_parameters

    cfn_models.Stack.stack_parameters = property(stack_parameters)
    cfn_models.Stack.has_parameters = has_parameters


def fix_create_and_update_stack() -> None:
    # moto defects: create_stack leaves a failed stack CREATE_IN_PROGRESS; update_stack never
    # refreshes backend.exports and never rolls back, and of the states AWS refuses to update
    # refuses only ROLLBACK_COMPLETE; a stack created while the export table was empty is cut off
    # from it (Stack.__init__ uses ``cross_stack_resources or {}``).
    def create_stack(
        self: cfn_models.CloudFormationBackend,
        name: str,
        template: str,
        parameters: dict[str, Any],
        notification_arns: list[str] | None = None,
        tags: dict[str, str] | None = None,
        role_arn: str | None = None,
        enable_termination_protection: bool | None = False,
        timeout_in_mins: int | None = None,
        stack_policy_body: str | None = None,
    ) -> cfn_models.Stack:
        if any(stack.name == name for stack in self.stacks.values()):
            raise AlreadyExistsException(f"Stack [{name}] already exists")
        stack = cfn_models.Stack(
            stack_id=cfn_models.generate_stack_id(name, self.region_name, self.account_id),
            name=name,
            # resources are parsed by _create_stack_resources, inside the rollback guard
            template={},
            parameters=parameters,
            account_id=self.account_id,
            region_name=self.region_name,
            notification_arns=notification_arns,
            tags=tags,
            role_arn=role_arn,
            enable_termination_protection=enable_termination_protection,
            timeout_in_mins=timeout_in_mins,
            stack_policy_body=stack_policy_body,
        )
        stack.template = template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        self.stacks[stack.stack_id] = stack
        _create_stack_resources(self, stack)
        return stack

    def update_stack(
        self: cfn_models.CloudFormationBackend,
        name: str,
        template: str,
        role_arn: str | None,
        parameters: list[dict[str, Any]],
        tags: dict[str, str] | None,
    ) -> cfn_models.Stack:
        stack = self.get_stack(name)
        _refuse_update(stack)
        resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
        _update_stack_resources(self, stack, template, resolved, role_arn, tags)
        return stack

    cfn_models.CloudFormationBackend.create_stack = create_stack
    cfn_models.CloudFormationBackend.update_stack = update_stack


def fix_delete_stack() -> None:
    # moto defect: when a resource cannot be deleted, delete_stack raises a bare exception (HTTP
    # 500) and the stack keeps its old status; AWS reports DELETE_FAILED with the reason. Exports
    # are removed by name, so one that was never registered (a rolled-back stack) is a KeyError.
    # moto also deletes a stack whose exports other stacks import (AWS refuses), and keeps its
    # change sets, whose execution then fails with a KeyError (HTTP 500).
    def delete_stack(self: cfn_models.CloudFormationBackend, name_or_stack_id: str) -> None:
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in self.stacks.values() if s.name == name_or_stack_id), None
        )
        if stack is None:
            return  # deleting a stack that does not exist succeeds on AWS
        try:
            _refuse_exports_in_use(self, stack, {}, deleting_stack=True)
            stack.delete()
        except Exception as exc:
            reason = _FailedResource.describe(exc, "delete")
            stack.status = "DELETE_FAILED"
            stack._add_stack_event("DELETE_FAILED", resource_status_reason=reason)
            raise ValidationError(stack.stack_id, message=reason) from exc
        _unregister_exports(self, stack)
        _drop_change_sets(self, stack.stack_id)  # as on AWS: they went with their stack
        del self.stacks[stack.stack_id]
        self.deleted_stacks[stack.stack_id] = stack

    cfn_models.CloudFormationBackend.delete_stack = delete_stack


def _failed_to_roll_back(stack: cfn_models.Stack) -> set[str]:
    """The resources the stack's last rollback left UPDATE_FAILED: those ContinueUpdateRollback
    may skip."""
    events = stack.events
    start = max(
        i
        for i, event in enumerate(events)
        if _stack_level(stack, event) and event.resource_status == "UPDATE_ROLLBACK_IN_PROGRESS"
    )
    latest = {event.logical_resource_id: event.resource_status for event in events[start + 1 :]}
    return {name for name, status in latest.items() if status == "UPDATE_FAILED"}


def _resources_to_skip(
    stack: cfn_models.Stack, resources_to_skip: list[str], force_rollback: bool
) -> frozenset[str]:
    """The resources ContinueUpdateRollback skips: those named, or with ForceRollback all it may."""
    skippable = _failed_to_roll_back(stack)
    if force_rollback and resources_to_skip:
        raise ValidationError(message="ForceRollback and ResourcesToSkip are mutually exclusive")
    if force_rollback:
        return frozenset(skippable)
    refused = sorted(set(resources_to_skip) - skippable)
    if refused:
        raise ValidationError(
            message=f"Cannot skip {', '.join(refused)}: only resources in UPDATE_FAILED state "
            f"because the rollback failed can be skipped ({', '.join(sorted(skippable)) or 'none'})"
        )
    return frozenset(resources_to_skip)


_CONTINUED_WITH = "localcloud_continue_token"  # Stack attribute: the last ClientRequestToken


def fix_continue_update_rollback() -> None:
    # moto defect: ContinueUpdateRollback is not implemented (HTTP 500, NotImplementedError), so a
    # stack left UPDATE_ROLLBACK_FAILED can only be deleted. As on AWS, it rolls back again to the
    # previous template and parameters, leaving the ResourcesToSkip as they are (UPDATE_COMPLETE),
    # and ends UPDATE_ROLLBACK_COMPLETE after the cleanup phase, or UPDATE_ROLLBACK_FAILED again.
    def continue_update_rollback(
        self: cfn_models.CloudFormationBackend,
        stack_name: str,
        role_arn: str | None = None,
        resources_to_skip: list[str] | None = None,
        client_request_token: str | None = None,
        force_rollback: bool = False,
    ) -> None:
        stack = self.get_stack(stack_name)
        if client_request_token and client_request_token == getattr(stack, _CONTINUED_WITH, None):
            return  # a retried request, already run
        if stack.status != "UPDATE_ROLLBACK_FAILED":
            raise ValidationError(
                stack.stack_id,
                message=f"Stack:{stack.stack_id} is in {stack.status} state: only a stack in "
                "UPDATE_ROLLBACK_FAILED can continue its update rollback",
            )
        skipped = _resources_to_skip(stack, resources_to_skip or [], force_rollback)
        if role_arn:
            stack.role_arn = role_arn  # as on AWS, for every later operation too
        setattr(stack, _CONTINUED_WITH, client_request_token)
        _UnfinishedRollback.take_from(stack.resource_map).resume(self, stack, skipped)

    def continue_update_rollback_action(
        self: cfn_responses.CloudFormationResponse,
    ) -> ActionResult:
        self.cloudformation_backend.continue_update_rollback(
            stack_name=self._get_param("StackName"),
            role_arn=self._get_param("RoleARN"),
            resources_to_skip=self._get_param("ResourcesToSkip", []),
            client_request_token=self._get_param("ClientRequestToken"),
            force_rollback=self._get_bool_param("ForceRollback", False),
        )
        return EmptyResult()  # AWS's ContinueUpdateRollbackResult is empty

    cfn_models.CloudFormationBackend.continue_update_rollback = continue_update_rollback
    cfn_responses.CloudFormationResponse.continue_update_rollback = continue_update_rollback_action


# Read-only requests that never evaluate a stack's lazily built resources or outputs.
_LOCK_FREE_ACTIONS = frozenset({"DescribeStackEvents"})


# The host of a virtual-hosted-style S3 URL: <bucket>.s3[.-]<region>.amazonaws.com[.cn].
_VIRTUAL_HOSTED_S3 = re.compile(r"^(?P<bucket>.+)\.s3[.-][^/]*amazonaws\.com(\.cn)?$")


def template_location(template_url: str) -> tuple[str, str, str | None]:
    """Bucket, key and version of a TemplateURL: virtual-hosted style, or path style on any other
    host (``http://127.0.0.1:4566/<bucket>/<key>`` on the local cloud)."""
    url = urlparse(template_url)
    virtual_hosted = _VIRTUAL_HOSTED_S3.match(url.hostname or "")
    if virtual_hosted:
        bucket, key = virtual_hosted["bucket"], url.path.lstrip("/")
    else:
        bucket, _, key = url.path.lstrip("/").partition("/")
    version = parse_qs(url.query).get("versionId", [None])[0]
    return bucket, unquote(key), version


def fix_template_url() -> None:
    # moto defect: get_stack_from_s3_url takes a URL's bucket from its path only on localhost or an
    # s3*.amazonaws.com host, and otherwise from the first label of the host. `aws cloudformation
    # deploy --s3-bucket` (the workflow's route for a template above 51,200 bytes) uploads the
    # template and passes <endpoint>/<bucket>/<key>, so on http://127.0.0.1:4566 the change set
    # looks for a bucket "http://127" and fails with NoSuchBucket. A versionId in the URL was
    # ignored as well. A missing bucket or object answers AWS's ValidationError.
    from moto.s3.exceptions import MissingBucket

    def get_stack_from_s3_url(template_url: str, account_id: str, partition: str) -> str:
        from moto.s3.models import s3_backends

        bucket, key, version = template_location(template_url)
        try:
            found = s3_backends[account_id][partition].get_object(bucket, key, version)
        except MissingBucket:
            found = None
        if found is None:
            raise ValidationError(
                message="TemplateURL must reference a valid S3 object to which you have access."
            )
        return found.value.decode("utf-8")

    cfn_responses.get_stack_from_s3_url = get_stack_from_s3_url
    cfn_models.get_stack_from_s3_url = get_stack_from_s3_url


def fix_serialized_stack_operations() -> None:
    # moto defect: the threaded server runs CloudFormation requests concurrently, but stacks build
    # their resources and outputs lazily on first access (ResourceMap/OutputMap.__getitem__). A
    # DescribeStacks or ListStackResources arriving while another request creates or updates a
    # stack (parallel `make -j` deploys) can create resources twice or see the export table
    # change mid-iteration. One lock serializes CloudFormation requests; DescribeStackEvents stays
    # lock-free so deploy progress streams while a stack is being created.
    lock = threading.RLock()
    original = cfn_responses.CloudFormationResponse.call_action

    @functools.wraps(original)
    def call_action(self: cfn_responses.CloudFormationResponse) -> Any:
        if self._get_action() in _LOCK_FREE_ACTIONS:
            return original(self)
        with lock:
            return original(self)

    cfn_responses.CloudFormationResponse.call_action = call_action


# --------------------------------------------------------------------------------------------
# Dependency-ordered update
# --------------------------------------------------------------------------------------------

_SUB_REFERENCE = re.compile(r"\$\{([^!}][^}]*)\}")


def _references(node: Any) -> set[str]:
    """Logical ids and parameter names that a template fragment refers to (Ref, GetAtt, Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value.split(".", 1)[0] if isinstance(value, str) else value[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                local = set(value[1]) if isinstance(value, list) and len(value) > 1 else set()
                found |= {name.split(".", 1)[0] for name in _SUB_REFERENCE.findall(text)} - local
                if isinstance(value, list) and len(value) > 1:
                    found |= _references(value[1])
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def _depends_on(resource_json: dict[str, Any]) -> set[str]:
    depends = resource_json.get("DependsOn", [])
    return {depends} if isinstance(depends, str) else set(depends)


def dependency_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids ordered so each comes after what it depends on (DependsOn and references)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ValidationError(message=f"Circular dependency between resources: {list(path)}")
        state[name] = "visiting"
        resource_json = resources[name]
        for dependency in sorted(
            (_references(resource_json) | _depends_on(resource_json)) & resources.keys()
        ):
            visit(dependency, path + (dependency,))
        state[name] = "done"
        order.append(name)

    for name in resources:
        visit(name, (name,))
    return order


def _resolved_properties(resources_map: cfn_parsing.ResourceMap) -> dict[str, Any]:
    """Each resource's properties as last resolved (intrinsics evaluated) on create or update."""
    return resources_map.__dict__.setdefault("_localcloud_resolved_properties", {})


def _remember_properties(
    resources_map: cfn_parsing.ResourceMap, name: str, resource_json: dict[str, Any]
) -> None:
    properties = resource_json.get("Properties") or {}
    _resolved_properties(resources_map)[name] = cfn_parsing.clean_json(properties, resources_map)


class _Cleanup:
    """The physical resources a stack update takes out of its stack: the originals of resources it
    replaces, and the resources it removes. As on AWS, they are deleted in the update's cleanup
    phase, once everything else (exports included) succeeded, so that a failed update returns to
    them instead of replacing or creating them again."""

    _running: contextvars.ContextVar[_Cleanup] = contextvars.ContextVar("cleanup")

    def __init__(self, resources_map: cfn_parsing.ResourceMap) -> None:
        self.resources_map = resources_map
        # the stack as it stands before the update, which a rollback returns to
        self.bodies = dict(resources_map._resource_json_map)
        self.properties = dict(_resolved_properties(resources_map))
        self.taken_out: list[tuple[Any, dict[str, Any]]] = []  # (resource, its template body)
        self.retained: list[tuple[Any, dict[str, Any]]] = []  # removed, DeletionPolicy Retain

    @classmethod
    def defer(cls, resource: Any, removed: bool = False) -> None:
        """Leave ``resource``, which the running stack update takes out (replaces, or removes
        from the template), to its cleanup phase, which keeps a removed one whose DeletionPolicy
        is Retain."""
        cleanup = cls._running.get()
        body = cleanup.bodies[resource.logical_resource_id]
        retained = removed and body.get("DeletionPolicy") == "Retain"
        (cleanup.retained if retained else cleanup.taken_out).append((resource, body))

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Collect what the stack update run inside takes out."""
        token = self._running.set(self)
        try:
            yield
        finally:
            self._running.reset(token)

    def run(self) -> None:
        """The cleanup phase."""
        _delete_taken_out(self.resources_map, self.taken_out)

    def put_back(self, stack: cfn_models.Stack) -> _Cleanup:
        """Return the stack to what the failed update took out, without calling any service: a
        replaced resource gets its original back (its replacement is left to the cleanup of the
        rollback, which is returned), a removed one comes back."""
        resources_map = self.resources_map
        bodies = dict(resources_map._resource_json_map)
        replacements = []
        for resource, body in self.taken_out + self.retained:
            name = resource.logical_resource_id
            replacement = resources_map._parsed_resources.get(name)
            if replacement is not None:  # a replaced resource, rather than a removed one
                replacements.append((replacement, bodies[name]))
                for status in ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"):
                    _resource_event(stack, name, body["Type"], status, _physical_id(resource))
            resources_map._parsed_resources[name] = resource
            bodies[name] = body
            _resolved_properties(resources_map)[name] = self.properties[name]
        resources_map._resource_json_map = bodies
        rollback = _Cleanup(resources_map)
        rollback.taken_out = replacements
        return rollback


class _UnfinishedRollback:
    """An update rollback that failed: the template and parameters it returns to, and its cleanup,
    whose phase has not run. ContinueUpdateRollback resumes it; deleting the stack instead
    deletes what that cleanup holds with the stack's resources."""

    attribute = "_localcloud_unfinished_rollback"  # ResourceMap attribute
    _skipped: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
        "skipped", default=frozenset()
    )

    def __init__(self, template: str, parameters: dict[str, Any], cleanup: _Cleanup) -> None:
        self.template = template
        self.parameters = parameters
        self.cleanup = cleanup

    def leave_with(self, resources_map: cfn_parsing.ResourceMap) -> None:
        setattr(resources_map, self.attribute, self)

    @classmethod
    def take_from(cls, resources_map: cfn_parsing.ResourceMap) -> _UnfinishedRollback | None:
        return resources_map.__dict__.pop(cls.attribute, None)

    @classmethod
    def skips(cls, name: str) -> bool:
        """Whether the rollback being resumed leaves resource ``name`` as it is."""
        return name in cls._skipped.get()

    def resume(
        self,
        backend: cfn_models.CloudFormationBackend,
        stack: cfn_models.Stack,
        skipped: frozenset[str],
    ) -> None:
        """Roll back again, leaving the ``skipped`` resources as they are."""
        stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
        stack._add_stack_event(
            "UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason="User Initiated"
        )
        token = self._skipped.set(skipped)
        try:
            _finish_rollback(backend, stack, self.cleanup, self.template, self.parameters)
        finally:
            self._skipped.reset(token)


def _delete_taken_out(
    resources_map: cfn_parsing.ResourceMap, taken_out: list[tuple[Any, dict[str, Any]]]
) -> None:
    """Delete resources no longer in the stack, in reverse dependency order. One that cannot be
    deleted is left behind (its DELETE_FAILED event says why), as a cleanup phase does on AWS."""
    order = dependency_order({resource.logical_resource_id: body for resource, body in taken_out})
    for resource, body in sorted(
        taken_out, key=lambda pair: order.index(pair[0].logical_resource_id), reverse=True
    ):
        try:
            resources_map._delete_resource(resource, body)
        except Exception:
            log.exception("deleting %s failed", _physical_id(resource))


def fix_dependency_ordered_update() -> None:
    # moto defects in ResourceMap.update: added resources are created in template order (DependsOn
    # ignored); only resources whose template text changed, or that Ref a changed parameter, are
    # updated, so one that refers to a replaced resource keeps the old reference (an Endpoint keeps
    # its old EndpointConfig) and a parameter used in Fn::Sub changes nothing; a type without
    # update_from_cloudformation_json is silently dropped from the stack (its entry becomes None);
    # removals run before creations. As on AWS, a resource is updated when its template changed or
    # its properties, resolved again against the updated stack, differ from the last resolution,
    # and what the update takes out of the stack is deleted in its cleanup phase (_Cleanup).
    def update(
        self: cfn_parsing.ResourceMap,
        template: dict[str, Any],
        parameters: dict[str, Any] | None = None,
    ) -> None:
        old_resources = self._resource_json_map
        stack = _stack_of(self)

        self._template = template
        if parameters is not None:  # an empty dict means "no overrides", e.g. on rollback
            self.input_parameters = parameters
        self.resolved_parameters = {}
        self.load_mapping()
        self.load_parameters()
        self.load_conditions()

        new_resources = template["Resources"]
        wanted = {
            name: body
            for name, body in new_resources.items()
            if not body.get("Condition") or self.lazy_condition_map[body["Condition"]]
        }
        self._resource_json_map = new_resources
        reached: list[str] = []
        try:
            for name in dependency_order(wanted):
                _bring_up_to_date(self, stack, name, old_resources.get(name), wanted[name])
                reached.append(name)
        except Exception:
            # The stack stands as the new template up to the failed resource, as the old one from
            # there on: the rollback compares with that, so it leaves alone what was not reached.
            self._resource_json_map = {
                **old_resources,
                **{name: new_resources[name] for name in reached},
            }
            raise

        # Removed resources stay until the update's cleanup phase (_Cleanup).
        for name in [n for n in old_resources if n not in wanted and n in self._parsed_resources]:
            resource = self._parsed_resources.pop(name)
            if resource is not None:
                _Cleanup.defer(resource, removed=True)

    cfn_parsing.ResourceMap.update = update


def fix_dependency_ordered_delete() -> None:
    # moto defect: ResourceMap.delete deletes in arbitrary order and retries failures until no
    # progress, so a resource whose parent went first (a Lambda Alias after its Function) is never
    # deleted and DeleteStack answers 500. AWS deletes in reverse dependency order.
    def delete(self: cfn_parsing.ResourceMap) -> None:
        created = {
            name: body
            for name, body in self._resource_json_map.items()
            if name in self._parsed_resources and body.get("DeletionPolicy") != "Retain"
        }
        for name in reversed(dependency_order(created)):
            resource = self._parsed_resources[name]
            if resource is not None:
                self._delete_resource(resource, created[name])
            del self._parsed_resources[name]  # a retried DeleteStack resumes after this one
        unfinished = _UnfinishedRollback.take_from(self)
        if unfinished is not None:
            unfinished.cleanup.run()

    cfn_parsing.ResourceMap.delete = delete


def _bring_up_to_date(
    resources_map: cfn_parsing.ResourceMap,
    stack: cfn_models.Stack | None,
    name: str,
    old_body: dict[str, Any] | None,
    body: dict[str, Any],
) -> None:
    """Create a resource the stack lacks, or update one whose template or resolved properties
    changed."""
    if _UnfinishedRollback.skips(name):
        _skip(resources_map, stack, name, body)
        return
    if name not in resources_map._parsed_resources:
        _ = resources_map[name]  # creates it (the lazy map resolves its references first)
        return
    resolved = cfn_parsing.clean_json(body.get("Properties") or {}, resources_map)
    changed = old_body is None or _as_declared(old_body) != _as_declared(body)
    if changed or resolved != _resolved_properties(resources_map).get(name):
        _update_resource(resources_map, stack, name, old_body or body, body)


def _as_declared(body: dict[str, Any]) -> dict[str, Any]:
    """A resource's template body, compared as declared: moto adds ``"Properties": {}`` to the
    stored body of a resource declared without properties."""
    return {**body, "Properties": body.get("Properties") or {}}


def _skip(
    resources_map: cfn_parsing.ResourceMap,
    stack: cfn_models.Stack | None,
    name: str,
    body: dict[str, Any],
) -> None:
    """A resource ContinueUpdateRollback skips is left as it is, marked UPDATE_COMPLETE and taken
    to be as ``body``, the template it rolls back to, says."""
    _remember_properties(resources_map, name, body)
    resource = resources_map._parsed_resources[name]
    _resource_event(stack, name, body["Type"], "UPDATE_COMPLETE", _physical_id(resource))


def _renamed(
    resources_map: cfn_parsing.ResourceMap, name: str, new_body: dict[str, Any]
) -> bool:
    """Whether an update changes the resource's name property (given, or left to be generated),
    which always replaces a resource on AWS."""
    name_property = cfn_parsing.resource_name_property_from_type(new_body["Type"])
    if not name_property:
        return False
    new = cfn_parsing.clean_json(new_body.get("Properties") or {}, resources_map)
    return new.get(name_property) != _resolved_properties(resources_map)[name].get(name_property)


def _update_resource(
    resources_map: cfn_parsing.ResourceMap,
    stack: cfn_models.Stack | None,
    name: str,
    old_body: dict[str, Any],
    new_body: dict[str, Any],
) -> None:
    """Update one resource in place; replace it if its name changes (the new one first, the old
    one in the cleanup phase, as on AWS) or if it cannot update (delete, then create)."""
    resource_type = new_body["Type"]
    old = resources_map._parsed_resources[name]
    _resource_event(stack, name, resource_type, "UPDATE_IN_PROGRESS", _physical_id(old))
    part_way = False  # whether a failure may leave the resource partly updated
    try:
        resource_class = cfn_parsing.resource_class_from_type(resource_type)
        updatable = not hasattr(
            resource_class.update_from_cloudformation_json, "__isabstractmethod__"
        )
        same_type = old_body.get("Type") == resource_type
        if same_type and _renamed(resources_map, name, new_body):
            create = inspect.unwrap(cfn_parsing.parse_and_create_resource)  # no CREATE_ events
            updated = create(
                name, new_body, resources_map, resources_map._account_id, resources_map._region_name
            )
            _Cleanup.defer(old)
        elif same_type and updatable:
            update = resource_class.update_from_cloudformation_json
            part_way = not getattr(update, "all_or_nothing", False)
            updated = cfn_parsing.parse_and_update_resource(
                name,
                new_body,
                resources_map,
                account_id=resources_map._account_id,
                region_name=resources_map._region_name,
            )
        else:
            if old is not None:
                resources_map._delete_resource(old, old_body)
            del resources_map._parsed_resources[name]
            updated = resources_map[name]
        resources_map._parsed_resources[name] = updated
        _remember_properties(resources_map, name, new_body)
    except Exception as exc:
        if part_way:
            # As on AWS, the rollback updates the failed resource back too: it compares with this.
            _remember_properties(resources_map, name, new_body)
        _FailedResource.mark(exc, name, resource_type, "update")
        _resource_event(
            stack, name, resource_type, "UPDATE_FAILED", _physical_id(old), _error_message(exc)
        )
        raise
    _resource_event(stack, name, resource_type, "UPDATE_COMPLETE", _physical_id(updated))


# --------------------------------------------------------------------------------------------
# Events and unsupported types
# --------------------------------------------------------------------------------------------


def fix_stack_status_reason() -> None:
    # moto defect: DescribeStacks answers no StackStatusReason, so a stack left
    # UPDATE_ROLLBACK_FAILED or ROLLBACK_IN_PROGRESS does not say why. AWS gives the reason of the
    # stack's current status, which is the reason of its latest stack-level event.
    def status_reason(self: cfn_models.Stack) -> str | None:
        for event in reversed(self.events):
            if _stack_level(self, event):
                return event.resource_status_reason
        return None

    cfn_models.Stack.status_reason = property(status_reason)  # DescribeStacks' StackStatusReason


def fix_resource_events() -> None:
    # moto defect: DescribeStackEvents only lists stack-level events, so a deploy cannot show which
    # resource is being created or why one failed.
    original_create = cfn_parsing.parse_and_create_resource

    @functools.wraps(original_create)
    def parse_and_create_resource(
        logical_id: str,
        resource_json: dict[str, Any],
        resources_map: cfn_parsing.ResourceMap,
        account_id: str,
        region_name: str,
    ) -> Any:
        condition = resource_json.get("Condition")
        if condition and not resources_map.lazy_condition_map[condition]:
            return None
        stack = _stack_of(resources_map)
        resource_type = resource_json["Type"]
        _resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
        try:
            resource = original_create(
                logical_id, resource_json, resources_map, account_id, region_name
            )
        except Exception as exc:
            root = _FailedResource.mark(exc, logical_id, resource_type, "create")
            _resource_event(
                stack,
                logical_id,
                resource_type,
                "CREATE_FAILED",
                reason=_error_message(exc) if root else "Resource creation cancelled",
            )
            raise
        if resource is not None:
            _remember_properties(resources_map, logical_id, resource_json)
        _resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", _physical_id(resource))
        return resource

    cfn_parsing.parse_and_create_resource = parse_and_create_resource

    original_delete = cfn_parsing.ResourceMap._delete_resource

    @functools.wraps(original_delete)
    def delete_resource(
        self: cfn_parsing.ResourceMap, parsed_resource: Any, resource_json: dict[str, Any]
    ) -> None:
        stack = _stack_of(self)
        logical_id = getattr(parsed_resource, "logical_resource_id", "")
        resource_type = resource_json.get("Type", "")
        _resource_event(
            stack, logical_id, resource_type, "DELETE_IN_PROGRESS", _physical_id(parsed_resource)
        )
        try:
            original_delete(self, parsed_resource, resource_json)
        except Exception as exc:
            _FailedResource.mark(exc, logical_id, resource_type, "delete")
            _resource_event(
                stack,
                logical_id,
                resource_type,
                "DELETE_FAILED",
                _physical_id(parsed_resource),
                _error_message(exc),
            )
            raise
        _resource_event(
            stack, logical_id, resource_type, "DELETE_COMPLETE", _physical_id(parsed_resource)
        )

    cfn_parsing.ResourceMap._delete_resource = delete_resource


def fix_unsupported_types_fail() -> None:
    # moto defect: resource_class_from_type logs "No Moto CloudFormation support" and the resource
    # is skipped: the stack reaches CREATE_COMPLETE without it, list-stack-resources shows an empty
    # entry,
    # a Ref to it resolves to nothing and a GetAtt in Outputs gives HTTP 500.
    original = cfn_parsing.resource_class_from_type

    @functools.wraps(original)
    def resource_class_from_type(resource_type: str) -> Any:
        resource_class = original(resource_type)
        if resource_class is None and resource_type not in cfn_parsing.NULL_MODELS:
            raise ValidationError(
                message=f"Resource type {resource_type} is not supported by the local cloud"
            )
        return resource_class

    cfn_parsing.resource_class_from_type = resource_class_from_type


# --------------------------------------------------------------------------------------------
# Resource types moto's CloudFormation lacks (or implements without Ref, update or delete)
# --------------------------------------------------------------------------------------------


def _then_apply(
    model_class: Any, method: str, step: Callable[[Any, dict[str, Any], str, str], None]
) -> None:
    """Make moto's CloudFormation classmethod ``method`` of ``model_class`` (create or update)
    also run ``step(resource, properties, account_id, region_name)`` on the resource it returns:
    for properties moto's model drops."""
    original = getattr(model_class, method).__func__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def method_then_step(cls: Any, *args: Any, **kwargs: Any) -> Any:
        resource = original(cls, *args, **kwargs)
        call = signature.bind(cls, *args, **kwargs).arguments
        properties = call["cloudformation_json"].get("Properties") or {}
        step(resource, properties, call["account_id"], call["region_name"])
        return resource

    setattr(model_class, method, classmethod(method_then_step))


def _partition_backend(backends: Any, account_id: str, region_name: str) -> Any:
    from moto.utilities.utils import get_partition

    return backends[account_id][get_partition(region_name)]


def _camel(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """CloudFormation's PascalCase property tree -> the service API's camelCase; ``keep`` names
    keys whose values are passed through untouched (free-form maps such as action Configuration)."""
    if isinstance(value, dict):
        return {
            key[:1].lower() + key[1:]: (item if key in keep else _camel(item, keep))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_camel(item, keep) for item in value]
    return value


def _api_string(value: Any) -> str:
    """A template scalar as the string a service API expects (booleans lower-case, as in JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class CompatResource(cfn_models.CloudFormationModel):  # type: ignore[misc]
    """A stack resource of a type added here: created, updated and deleted through moto's own
    service backend.

    Subclasses set TYPE, optionally NAME_PROPERTY (the property that names the resource; moto passes
    its value or a generated name as ``name``) and ATTRIBUTES (what Fn::GetAtt may ask for), and
    implement ``_create`` (returns the physical id, which is what Ref gives, and fills
    ``attributes``), ``_delete`` and, where the service can change the resource in place,
    ``_update`` (returns False when the change needs a replacement)."""

    TYPE = ""
    NAME_PROPERTY = ""
    ATTRIBUTES: frozenset[str] = frozenset()

    def __init__(self, name: str, properties: dict[str, Any], account_id: str, region_name: str):
        self.name = name
        self.properties = properties
        self.account_id = account_id
        self.region_name = region_name
        self.physical_id = ""
        self.attributes: dict[str, Any] = {}

    @classmethod
    def cloudformation_type(cls) -> str:  # type: ignore[override]
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:  # type: ignore[override]
        return cls.NAME_PROPERTY

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name not in self.attributes:
            raise UnformattedGetAttTemplateException()
        return self.attributes[attribute_name]

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> "CompatResource":
        resource = cls(
            resource_name, cloudformation_json.get("Properties") or {}, account_id, region_name
        )
        resource.physical_id = resource._create()
        return resource

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls,
        original_resource: "CompatResource",
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> "CompatResource":
        properties = cloudformation_json.get("Properties") or {}
        if original_resource._update(properties):
            original_resource.properties = properties
            return original_resource
        original_resource._delete()
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        try:
            self._delete()
        except (TypeError, AttributeError) as exc:
            # ResourceMap._delete_resource takes these two for "no delete method" and ignores
            # them; a failed delete must fail the stack instead of leaving the resource behind.
            raise RuntimeError(f"{self.TYPE} {self.physical_id}: {exc!r}") from exc

    def _create(self) -> str:
        raise NotImplementedError

    def _delete(self) -> None:
        raise NotImplementedError

    def _update(self, properties: dict[str, Any]) -> bool:
        return False


class S3BucketPolicy(CompatResource):
    TYPE = "AWS::S3::BucketPolicy"

    def _backend(self) -> Any:
        from moto.s3.models import s3_backends

        return _partition_backend(s3_backends, self.account_id, self.region_name)

    def _create(self) -> str:
        bucket = self.properties["Bucket"]
        self._backend().put_bucket_policy(
            bucket, json.dumps(self.properties["PolicyDocument"]).encode()
        )
        return bucket

    def _update(self, properties: dict[str, Any]) -> bool:
        if properties["Bucket"] != self.properties["Bucket"]:
            return False
        self._backend().put_bucket_policy(
            properties["Bucket"], json.dumps(properties["PolicyDocument"]).encode()
        )
        return True

    def _delete(self) -> None:
        backend = self._backend()
        if self.properties["Bucket"] in backend.buckets:
            backend.delete_bucket_policy(self.properties["Bucket"])


class SnsTopicPolicy(CompatResource):
    TYPE = "AWS::SNS::TopicPolicy"

    def _backend(self) -> Any:
        from moto.sns.models import sns_backends

        return sns_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        backend = self._backend()
        # deleting the policy restores what the topics had before
        self.previous_policies = {
            arn: backend.get_topic(arn).policy for arn in self.properties["Topics"]
        }
        for arn in self.properties["Topics"]:
            backend.set_topic_attribute(
                arn, "policy", json.dumps(self.properties["PolicyDocument"])
            )
        return self.name

    def _delete(self) -> None:
        backend = self._backend()
        for arn, policy in self.previous_policies.items():
            if arn in backend.topics:
                backend.set_topic_attribute(arn, "policy", policy)


class SnsSubscription(CompatResource):
    TYPE = "AWS::SNS::Subscription"
    ATTRIBUTES = frozenset({"Arn"})
    _ATTRIBUTES = (
        "DeliveryPolicy",
        "FilterPolicy",
        "FilterPolicyScope",
        "RawMessageDelivery",
        "RedrivePolicy",
        "SubscriptionRoleArn",
        "ReplayPolicy",
    )

    def _backend(self) -> Any:
        from moto.sns.models import sns_backends

        return sns_backends[self.account_id][self.properties.get("Region") or self.region_name]

    def _create(self) -> str:
        backend = self._backend()
        subscription = backend.subscribe(
            self.properties["TopicArn"], self.properties["Endpoint"], self.properties["Protocol"]
        )
        self._set_attributes(subscription.arn, self.properties)
        self.attributes["Arn"] = subscription.arn
        return subscription.arn

    def _set_attributes(self, arn: str, properties: dict[str, Any]) -> None:
        for name in self._ATTRIBUTES:
            if name in properties:
                self._backend().set_subscription_attributes(
                    arn, name, _api_string(properties[name])
                )

    def _update(self, properties: dict[str, Any]) -> bool:
        identity = ("TopicArn", "Endpoint", "Protocol", "Region")
        if any(properties.get(k) != self.properties.get(k) for k in identity):
            return False
        self._set_attributes(self.physical_id, properties)
        return True

    def _delete(self) -> None:
        backend = self._backend()
        if self.physical_id in backend.subscriptions:
            backend.unsubscribe(self.physical_id)


class CloudWatchAlarm(CompatResource):
    TYPE = "AWS::CloudWatch::Alarm"
    ATTRIBUTES = frozenset({"Arn"})
    NAME_PROPERTY = "AlarmName"

    def _backend(self) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[self.account_id][self.region_name]

    @staticmethod
    def _queries(metrics: list[dict[str, Any]]) -> list[Any] | None:
        from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

        queries = []
        for metric in metrics:
            stat = metric.get("MetricStat")
            metric_stat = None
            if stat:
                target = stat["Metric"]
                metric_stat = MetricStat(
                    metric=Metric(
                        metric_name=target["MetricName"],
                        namespace=target.get("Namespace"),
                        dimensions=[
                            Dimension(d["Name"], d["Value"]) for d in target.get("Dimensions", [])
                        ],
                    ),
                    period=stat.get("Period"),
                    stat=stat.get("Stat"),
                    unit=stat.get("Unit"),
                )
            queries.append(
                MetricDataQuery(
                    query_id=metric["Id"],
                    label=metric.get("Label"),
                    period=metric.get("Period"),
                    return_data=metric.get("ReturnData"),
                    expression=metric.get("Expression"),
                    metric_stat=metric_stat,
                )
            )
        return queries or None

    def _create(self) -> str:
        p = self.properties
        alarm = self._backend().put_metric_alarm(
            name=self.name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]) if "Threshold" in p else None,
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            metric_data_queries=self._queries(p.get("Metrics", [])),
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            extended_statistic=p.get("ExtendedStatistic"),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            unit=p.get("Unit"),
            actions_enabled=_flag(p.get("ActionsEnabled", True)),
            treat_missing_data=p.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=p.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=p.get("ThresholdMetricId"),
        )
        self.attributes["Arn"] = alarm.alarm_arn
        return self.name

    def _update(self, properties: dict[str, Any]) -> bool:
        if properties.get("AlarmName", self.name) != self.name:
            return False
        self.properties = properties
        self.physical_id = self._create()  # PutMetricAlarm replaces the alarm's definition
        return True

    def _delete(self) -> None:
        self._backend().delete_alarms([self.name])


class ScalableTarget(CompatResource):
    TYPE = "AWS::ApplicationAutoScaling::ScalableTarget"

    def _backend(self) -> Any:
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        return applicationautoscaling_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        p = self.properties
        suspended = p.get("SuspendedState")
        self._backend().register_scalable_target(
            p["ServiceNamespace"],
            p["ResourceId"],
            p["ScalableDimension"],
            int(p["MinCapacity"]),
            int(p["MaxCapacity"]),
            p.get("RoleARN", ""),
            _camel(suspended) if suspended else None,
        )
        # Ref of a scalable target, as on AWS: "<resource id>|<dimension>|<namespace>"
        return "|".join([p["ResourceId"], p["ScalableDimension"], p["ServiceNamespace"]])

    def _update(self, properties: dict[str, Any]) -> bool:
        identity = ("ServiceNamespace", "ResourceId", "ScalableDimension")
        if any(properties[k] != self.properties[k] for k in identity):
            return False
        self.properties = properties
        self._create()  # RegisterScalableTarget updates an existing target
        return True

    def _delete(self) -> None:
        p = self.properties
        backend = self._backend()
        if p["ResourceId"] in backend.targets.get(p["ScalableDimension"], {}):
            backend.deregister_scalable_target(
                p["ServiceNamespace"], p["ResourceId"], p["ScalableDimension"]
            )


class ScalingPolicy(CompatResource):
    TYPE = "AWS::ApplicationAutoScaling::ScalingPolicy"
    ATTRIBUTES = frozenset({"Arn"})
    _CONFIGURATIONS = (
        "TargetTrackingScalingPolicyConfiguration",
        "StepScalingPolicyConfiguration",
        "PredictiveScalingPolicyConfiguration",
    )

    def _backend(self) -> Any:
        from moto.applicationautoscaling.models import applicationautoscaling_backends

        return applicationautoscaling_backends[self.account_id][self.region_name]

    def _target(self) -> tuple[str, str, str]:
        p = self.properties
        if "ScalingTargetId" in p:
            resource_id, dimension, namespace = p["ScalingTargetId"].split("|")
            return namespace, resource_id, dimension
        return p["ServiceNamespace"], p["ResourceId"], p["ScalableDimension"]

    def _create(self) -> str:
        namespace, resource_id, dimension = self._target()
        # the API takes the configuration that matches PolicyType as the policy body
        body = next((self.properties[k] for k in self._CONFIGURATIONS if k in self.properties), {})
        policy = self._backend().put_scaling_policy(
            self.properties["PolicyName"],
            namespace,
            resource_id,
            dimension,
            body,
            self.properties["PolicyType"],
        )
        self.attributes["Arn"] = policy.policy_arn
        return policy.policy_arn

    def _delete(self) -> None:
        namespace, resource_id, dimension = self._target()
        backend = self._backend()
        from moto.applicationautoscaling.models import FakeApplicationAutoscalingPolicy

        key = FakeApplicationAutoscalingPolicy.formulate_key(
            namespace, resource_id, dimension, self.properties["PolicyName"]
        )
        if key in backend.policies:
            backend.delete_scaling_policy(
                self.properties["PolicyName"], namespace, resource_id, dimension
            )


class CodeBuildProject(CompatResource):
    TYPE = "AWS::CodeBuild::Project"
    ATTRIBUTES = frozenset({"Arn"})
    NAME_PROPERTY = "Name"

    def _backend(self) -> Any:
        from moto.codebuild.models import codebuild_backends

        return codebuild_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        p = self.properties
        source = _camel(p["Source"])
        if "buildSpec" in source:
            source["buildspec"] = source.pop("buildSpec")  # the API spells it "buildspec"
        metadata = self._backend().create_project(
            project_name=self.name,
            description=p.get("Description"),
            project_source=source,
            artifacts=_camel(p["Artifacts"]),
            environment=_camel(p["Environment"]),
            service_role=p["ServiceRole"],
            tags=[{"key": t["Key"], "value": t["Value"]} for t in p.get("Tags", [])],
            cache=_camel(p["Cache"]) if "Cache" in p else None,
            timeout=int(p.get("TimeoutInMinutes", 60)),
            queued_timeout=int(p.get("QueuedTimeoutInMinutes", 480)),
            source_version=p.get("SourceVersion"),
            logs_config=_camel(p["LogsConfig"]) if "LogsConfig" in p else None,
            vpc_config=_camel(p["VpcConfig"]) if "VpcConfig" in p else None,
        )
        self.attributes["Arn"] = metadata["arn"]
        return self.name

    def _delete(self) -> None:
        backend = self._backend()
        if self.name in backend.codebuild_projects:
            backend.delete_project(self.name)


class CodePipelinePipeline(CompatResource):
    TYPE = "AWS::CodePipeline::Pipeline"
    ATTRIBUTES = frozenset({"Version"})
    NAME_PROPERTY = "Name"
    # free-form maps whose keys belong to the action provider, not to the API
    _VERBATIM = frozenset({"Configuration"})

    def _backend(self) -> Any:
        from moto.codepipeline.models import codepipeline_backends

        return codepipeline_backends[self.account_id][self.region_name]

    def _declaration(self, properties: dict[str, Any]) -> dict[str, Any]:
        stages = _camel(properties["Stages"], self._VERBATIM)
        for stage in stages:
            for action in stage["actions"]:
                action["configuration"] = {
                    k: _api_string(v) for k, v in action.get("configuration", {}).items()
                }
        declaration: dict[str, Any] = {
            "name": self.name,
            "roleArn": properties["RoleArn"],
            "stages": stages,
        }
        for key in (
            "ArtifactStore",
            "ArtifactStores",
            "PipelineType",
            "ExecutionMode",
            "Variables",
            "Triggers",
        ):
            if key in properties:
                declaration[key[:1].lower() + key[1:]] = _camel(properties[key])
        return declaration

    def _create(self) -> str:
        tags = [{"key": t["Key"], "value": t["Value"]} for t in self.properties.get("Tags", [])]
        self._backend().create_pipeline(self._declaration(self.properties), tags or None)
        self.attributes["Version"] = "1"
        return self.name

    def _update(self, properties: dict[str, Any]) -> bool:
        if properties.get("Name", self.name) != self.name:
            return False
        updated = self._backend().update_pipeline(self._declaration(properties))
        self.attributes["Version"] = str(updated["version"])
        return True

    def _delete(self) -> None:
        self._backend().delete_pipeline(self.name)


class LambdaEventInvokeConfig(CompatResource):
    TYPE = "AWS::Lambda::EventInvokeConfig"

    def _backend(self) -> Any:
        from moto.awslambda.models import lambda_backends

        return lambda_backends[self.account_id][self.region_name]

    def _function(self, properties: dict[str, Any]) -> str:
        qualifier = properties.get("Qualifier", "$LATEST")
        return (
            properties["FunctionName"]
            if qualifier == "$LATEST"
            else f"{properties['FunctionName']}:{qualifier}"
        )

    def _config(self, properties: dict[str, Any]) -> dict[str, Any]:
        keys = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
        return {key: properties[key] for key in keys if key in properties}

    def _create(self) -> str:
        self._backend().put_function_event_invoke_config(
            self._function(self.properties), self._config(self.properties)
        )
        return f"{self.properties['FunctionName']}:{self.properties.get('Qualifier', '$LATEST')}"

    def _update(self, properties: dict[str, Any]) -> bool:
        if self._function(properties) != self._function(self.properties):
            return False
        self._backend().put_function_event_invoke_config(
            self._function(properties), self._config(properties)
        )
        return True

    def _delete(self) -> None:
        self._backend().delete_function_event_invoke_config(self._function(self.properties))


class LambdaAlias(CompatResource):
    TYPE = "AWS::Lambda::Alias"

    def _backend(self) -> Any:
        from moto.awslambda.models import lambda_backends

        return lambda_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        p = self.properties
        alias = self._backend().create_alias(
            name=p["Name"],
            function_name=p["FunctionName"],
            function_version=p["FunctionVersion"],
            description=p.get("Description", ""),
            routing_config=_camel(p.get("RoutingConfig")),
        )
        return alias.arn

    def _update(self, properties: dict[str, Any]) -> bool:
        if (properties["Name"], properties["FunctionName"]) != (
            self.properties["Name"],
            self.properties["FunctionName"],
        ):
            return False
        self._backend().update_alias(
            name=properties["Name"],
            function_name=properties["FunctionName"],
            function_version=properties["FunctionVersion"],
            description=properties.get("Description", ""),
            routing_config=_camel(properties.get("RoutingConfig")),
        )
        return True

    def _delete(self) -> None:
        self._backend().delete_alias(self.properties["Name"], self.properties["FunctionName"])


class LambdaPermission(CompatResource):
    TYPE = "AWS::Lambda::Permission"

    def _backend(self) -> Any:
        from moto.awslambda.models import lambda_backends

        return lambda_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        statement = {key: value for key, value in self.properties.items() if key != "FunctionName"}
        statement["StatementId"] = self.name  # generated per resource: unique, and what Ref returns
        function = self.properties["FunctionName"]
        self._backend().add_permission(function, None, json.dumps(statement))
        return self.name

    def _delete(self) -> None:
        backend = self._backend()
        try:
            function = backend.get_function(self.properties["FunctionName"])
        except Exception:  # the function is already gone, and its policy with it
            return
        if any(s.get("Sid") == self.name for s in function.policy.statements):
            backend.remove_permission(self.properties["FunctionName"], self.name)


class _ApiGatewayResource(CompatResource):
    def _backend(self) -> Any:
        from moto.apigateway.models import apigateway_backends

        return apigateway_backends[self.account_id][self.region_name]

    def _api_exists(self) -> bool:
        return self.properties["RestApiId"] in self._backend().apis


class KmsKey(CompatResource):
    TYPE = "AWS::KMS::Key"
    ATTRIBUTES = frozenset({"Arn", "KeyId"})

    def _backend(self) -> Any:
        from moto.kms.models import kms_backends

        return kms_backends[self.account_id][self.region_name]

    @staticmethod
    def _policy(properties: dict[str, Any]) -> str:
        return _api_string(properties["KeyPolicy"])

    def _create(self) -> str:
        p = self.properties
        key = self._backend().create_key(
            policy=self._policy(p),
            key_usage=p.get("KeyUsage", "ENCRYPT_DECRYPT"),
            key_spec=p.get("KeySpec", "SYMMETRIC_DEFAULT"),
            description=p.get("Description", ""),
            tags=p.get("Tags", []),
            multi_region=_flag(p.get("MultiRegion", False)),
        )
        self._configure(key.id, p)
        self.attributes.update({"Arn": key.arn, "KeyId": key.id})
        return key.id

    def _configure(self, key_id: str, p: dict[str, Any]) -> None:
        backend = self._backend()
        backend.put_key_policy(key_id, self._policy(p))
        backend.update_key_description(key_id, p.get("Description", ""))
        (
            backend.enable_key_rotation
            if _flag(p.get("EnableKeyRotation", False))
            else backend.disable_key_rotation
        )(key_id)
        (backend.enable_key if _flag(p.get("Enabled", True)) else backend.disable_key)(key_id)

    def _update(self, properties: dict[str, Any]) -> bool:
        identity = ("KeyUsage", "KeySpec", "MultiRegion")
        if any(properties.get(k) != self.properties.get(k) for k in identity):
            return False
        self._configure(self.physical_id, properties)
        return True

    def _delete(self) -> None:
        # as on AWS: the key is scheduled for deletion (PendingDeletion), not removed at once
        if self.physical_id in self._backend().keys:
            self._backend().schedule_key_deletion(
                self.physical_id, int(self.properties.get("PendingWindowInDays", 30))
            )


class ApiGatewayRestApi(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::RestApi"
    ATTRIBUTES = frozenset({"RestApiId", "RootResourceId"})

    def _create(self) -> str:
        p = self.properties
        api = self._backend().create_rest_api(
            name=p.get("Name") or self.name,
            description=p.get("Description", ""),
            api_key_source=p.get("ApiKeySourceType"),
            endpoint_configuration=_camel(p.get("EndpointConfiguration")),
            tags={t["Key"]: t["Value"] for t in p.get("Tags", [])} or None,
            policy=(
                json.dumps(p["Policy"]) if isinstance(p.get("Policy"), dict) else p.get("Policy")
            ),
            minimum_compression_size=p.get("MinimumCompressionSize"),
            disable_execute_api_endpoint=_flag(p.get("DisableExecuteApiEndpoint", False)),
        )
        api.binaryMediaTypes = p.get("BinaryMediaTypes", [])
        self.attributes["RootResourceId"] = api.get_cfn_attribute("RootResourceId")
        self.attributes["RestApiId"] = api.id
        return api.id

    def _update(self, properties: dict[str, Any]) -> bool:
        # in place, as on AWS: a replaced API would lose every resource, method and stage on it
        api = self._backend().apis[self.physical_id]
        api.name = properties.get("Name") or self.name
        api.description = properties.get("Description", "")
        api.api_key_source = properties.get("ApiKeySourceType") or "HEADER"
        api.binaryMediaTypes = properties.get("BinaryMediaTypes", [])
        api.disableExecuteApiEndpoint = _flag(properties.get("DisableExecuteApiEndpoint", False))
        if "EndpointConfiguration" in properties:
            api.endpoint_configuration = _camel(properties["EndpointConfiguration"])
        return True

    def _delete(self) -> None:
        if self.physical_id in self._backend().apis:
            self._backend().delete_rest_api(self.physical_id)


class LambdaVersion(CompatResource):
    TYPE = "AWS::Lambda::Version"
    ATTRIBUTES = frozenset({"FunctionArn", "Version"})

    def _backend(self) -> Any:
        from moto.awslambda.models import lambda_backends

        return lambda_backends[self.account_id][self.region_name]

    def _create(self) -> str:
        version = self._backend().publish_version(
            self.properties["FunctionName"], self.properties.get("Description", "")
        )
        self.attributes["Version"] = version.version
        self.attributes["FunctionArn"] = version.function_arn
        return version.function_arn

    def _delete(self) -> None:
        backend = self._backend()
        try:
            backend.get_function(self.properties["FunctionName"], self.attributes["Version"])
        except Exception:  # the function and its versions are already gone
            return
        backend.delete_function(self.properties["FunctionName"], self.attributes["Version"])


class ApiGatewayMethod(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::Method"

    def _create(self) -> str:
        p = self.properties
        api, resource, verb = p["RestApiId"], p["ResourceId"], p["HttpMethod"]
        backend = self._backend()
        backend.put_method(
            function_id=api,
            resource_id=resource,
            method_type=verb,
            authorization_type=p.get("AuthorizationType", "NONE"),
            api_key_required=_flag(p.get("ApiKeyRequired", False)),
            request_parameters=p.get("RequestParameters"),
            request_models=p.get("RequestModels"),
            operation_name=p.get("OperationName"),
            authorizer_id=p.get("AuthorizerId"),
            authorization_scopes=p.get("AuthorizationScopes"),
            request_validator_id=p.get("RequestValidatorId"),
        )
        for response in p.get("MethodResponses", []):
            backend.put_method_response(
                api,
                resource,
                verb,
                str(response["StatusCode"]),
                response.get("ResponseModels"),
                response.get("ResponseParameters"),
            )
        integration = p.get("Integration")
        if integration:
            timeout = integration.get("TimeoutInMillis")
            backend.put_integration(
                function_id=api,
                resource_id=resource,
                method_type=verb,
                integration_type=integration["Type"],
                uri=integration.get("Uri"),
                integration_method=integration.get("IntegrationHttpMethod"),
                credentials=integration.get("Credentials"),
                request_templates=integration.get("RequestTemplates"),
                passthrough_behavior=integration.get("PassthroughBehavior"),
                cache_namespace=integration.get("CacheNamespace"),
                timeout_in_millis=str(timeout) if timeout is not None else None,
                request_parameters=integration.get("RequestParameters"),
                content_handling=integration.get("ContentHandling"),
                connection_type=integration.get("ConnectionType"),
            )
            for response in integration.get("IntegrationResponses", []):
                backend.put_integration_response(
                    api,
                    resource,
                    verb,
                    str(response["StatusCode"]),
                    response.get("SelectionPattern", ""),
                    response.get("ResponseTemplates"),
                    response.get("ResponseParameters"),
                    response.get("ContentHandling"),
                )
        return f"{api}-{resource}-{verb}"

    def _update(self, properties: dict[str, Any]) -> bool:
        identity = ("RestApiId", "ResourceId", "HttpMethod")
        if any(properties[k] != self.properties[k] for k in identity):
            return False
        self._delete()
        self.properties = properties
        self._create()  # PutMethod and PutIntegration overwrite the method's definition
        return True

    def _delete(self) -> None:
        p = self.properties
        if self._api_exists() and p["ResourceId"] in self._backend().apis[p["RestApiId"]].resources:
            resource = self._backend().apis[p["RestApiId"]].resources[p["ResourceId"]]
            if p["HttpMethod"] in resource.resource_methods:
                self._backend().delete_method(p["RestApiId"], p["ResourceId"], p["HttpMethod"])


class ApiGatewayDeployment(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::Deployment"

    def _create(self) -> str:
        p = self.properties
        deployment = self._backend().create_deployment(
            function_id=p["RestApiId"],
            name=p.get("StageName"),
            description=p.get("Description", ""),
            stage_variables=(p.get("StageDescription") or {}).get("Variables"),
        )
        return deployment.id

    def _delete(self) -> None:
        p = self.properties
        if not self._api_exists():
            return
        api = self._backend().apis[p["RestApiId"]]
        if p.get("StageName") in api.stages:
            del api.stages[p["StageName"]]  # the stage this deployment created
        if self.physical_id in api.deployments:
            self._backend().delete_deployment(p["RestApiId"], self.physical_id)


class ApiGatewayStage(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::Stage"

    def _create(self) -> str:
        p = self.properties
        name = p.get("StageName") or self.name
        stage = self._backend().create_stage(
            function_id=p["RestApiId"],
            stage_name=name,
            deploymentId=p["DeploymentId"],
            variables=p.get("Variables"),
            description=p.get("Description", ""),
            cacheClusterEnabled=_flag(p.get("CacheClusterEnabled", False)),
            cacheClusterSize=p.get("CacheClusterSize"),
            tags={t["Key"]: t["Value"] for t in p.get("Tags", [])} or None,
            tracing_enabled=_flag(p["TracingEnabled"]) if "TracingEnabled" in p else None,
        )
        self._configure(stage, p)
        return name

    @staticmethod
    def _configure(stage: Any, p: dict[str, Any]) -> None:
        access = p.get("AccessLogSetting")
        stage.access_log_settings = (
            {"destinationArn": access.get("DestinationArn"), "format": access.get("Format")}
            if access
            else None
        )
        stage.method_settings = {}
        for setting in p.get("MethodSettings", []):
            path = setting.get("ResourcePath", "/*").lstrip("/")
            key = f"{path}/{setting.get('HttpMethod', '*')}"
            # the shape UpdateStage's patch operations produce: moto's defaults, then the setting
            values = stage._get_default_method_settings()
            values.update(
                _camel(
                    {k: v for k, v in setting.items() if k not in ("ResourcePath", "HttpMethod")}
                )
            )
            values["throttlingRateLimit"] = float(values["throttlingRateLimit"])
            values["throttlingBurstLimit"] = int(values["throttlingBurstLimit"])
            stage.method_settings[key] = values
        stage.variables = p.get("Variables") or {}

    def _update(self, properties: dict[str, Any]) -> bool:
        p = self.properties
        if (properties["RestApiId"], properties.get("StageName")) != (
            p["RestApiId"],
            p.get("StageName"),
        ):
            return False
        stage = self._backend().get_stage(properties["RestApiId"], self.physical_id)
        stage.deployment_id = properties["DeploymentId"]
        stage.description = properties.get("Description", "")
        stage.tracing_enabled = (
            _flag(properties["TracingEnabled"]) if "TracingEnabled" in properties else None
        )
        self._configure(stage, properties)
        return True

    def _delete(self) -> None:
        if (
            self._api_exists()
            and self.physical_id in self._backend().apis[self.properties["RestApiId"]].stages
        ):
            self._backend().delete_stage(self.properties["RestApiId"], self.physical_id)


class ApiGatewayApiKey(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::ApiKey"
    ATTRIBUTES = frozenset({"APIKeyId"})
    NAME_PROPERTY = "Name"

    def _create(self) -> str:
        p = self.properties
        payload: dict[str, Any] = {
            "name": self.name,
            "description": p.get("Description"),
            "enabled": _flag(p.get("Enabled", False)),
            "stageKeys": [f"{k['RestApiId']}/{k['StageName']}" for k in p.get("StageKeys", [])],
            "customerId": p.get("CustomerId"),
            "tags": {t["Key"]: t["Value"] for t in p.get("Tags", [])} or None,
        }
        if "Value" in p:
            payload["value"] = p["Value"]
        key = self._backend().create_api_key(payload)
        self.attributes["APIKeyId"] = key.id
        return key.id

    def _delete(self) -> None:
        if self.physical_id in self._backend().keys:
            self._backend().delete_api_key(self.physical_id)


class ApiGatewayUsagePlan(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::UsagePlan"
    ATTRIBUTES = frozenset({"Id"})

    def _payload(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": p.get("UsagePlanName") or self.name,
            "description": p.get("Description"),
            "apiStages": [
                {
                    "apiId": s["ApiId"],
                    "stage": s["Stage"],
                    **({"throttle": _camel(s["Throttle"])} if "Throttle" in s else {}),
                }
                for s in p.get("ApiStages", [])
            ],
            "throttle": _camel(p.get("Throttle")),
            "quota": _camel(p.get("Quota")),
            "tags": {t["Key"]: t["Value"] for t in p.get("Tags", [])} or None,
        }

    def _create(self) -> str:
        plan = self._backend().create_usage_plan(self._payload(self.properties))
        self.attributes["Id"] = plan.id
        return plan.id

    def _update(self, properties: dict[str, Any]) -> bool:
        # in place, as on AWS: the plan keeps its id and its keys
        from moto.apigateway.models import UsagePlan

        updated = UsagePlan(usage_plan_id=self.physical_id, **self._payload(properties))
        self._backend().usage_plans[self.physical_id] = updated
        return True

    def _delete(self) -> None:
        backend = self._backend()
        backend.usage_plans.pop(self.physical_id, None)
        backend.usage_plan_keys.pop(self.physical_id, None)


class ApiGatewayUsagePlanKey(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::UsagePlanKey"
    ATTRIBUTES = frozenset({"Id"})

    def _create(self) -> str:
        p = self.properties
        self._backend().create_usage_plan_key(
            p["UsagePlanId"], {"keyId": p["KeyId"], "keyType": p["KeyType"]}
        )
        self.attributes["Id"] = f"{p['KeyId']}:{p['UsagePlanId']}"
        return self.attributes["Id"]

    def _delete(self) -> None:
        p = self.properties
        if p["KeyId"] in self._backend().usage_plan_keys.get(p["UsagePlanId"], {}):
            self._backend().delete_usage_plan_key(p["UsagePlanId"], p["KeyId"])


class ApiGatewayRequestValidator(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::RequestValidator"
    ATTRIBUTES = frozenset({"RequestValidatorId"})

    def _create(self) -> str:
        p = self.properties
        validator = self._backend().create_request_validator(
            p["RestApiId"],
            p.get("Name") or self.name,
            _flag(p.get("ValidateRequestBody", False)),
            _flag(p.get("ValidateRequestParameters", False)),
        )
        self.attributes["RequestValidatorId"] = validator.id
        return validator.id

    def _delete(self) -> None:
        if (
            self._api_exists()
            and self.physical_id
            in self._backend().apis[self.properties["RestApiId"]].request_validators
        ):
            self._backend().delete_request_validator(self.properties["RestApiId"], self.physical_id)


class ApiGatewayModel(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::Model"
    NAME_PROPERTY = "Name"

    def _create(self) -> str:
        p = self.properties
        schema = p.get("Schema")
        self._backend().create_model(
            p["RestApiId"],
            self.name,
            p.get("ContentType"),
            p.get("Description"),
            schema if isinstance(schema, str) or schema is None else json.dumps(schema),
        )
        return self.name

    def _delete(self) -> None:
        if (
            self._api_exists()
            and self.name in self._backend().apis[self.properties["RestApiId"]].models
        ):
            self._backend().delete_model(self.properties["RestApiId"], self.name)


class ApiGatewayGatewayResponse(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::GatewayResponse"

    def _create(self) -> str:
        p = self.properties
        self._backend().put_gateway_response(
            p["RestApiId"],
            p["ResponseType"],
            p.get("StatusCode"),
            p.get("ResponseParameters"),
            p.get("ResponseTemplates"),
        )
        return f"{p['RestApiId']}-{p['ResponseType']}"

    def _delete(self) -> None:
        p = self.properties
        if (
            self._api_exists()
            and p["ResponseType"] in self._backend().apis[p["RestApiId"]].gateway_responses
        ):
            self._backend().delete_gateway_response(p["RestApiId"], p["ResponseType"])


class ApiGatewayAccount(_ApiGatewayResource):
    TYPE = "AWS::ApiGateway::Account"

    def _create(self) -> str:
        self._set_role(self.properties.get("CloudWatchRoleArn"))
        return self.name

    def _set_role(self, arn: str | None) -> None:
        self._backend().update_account(
            [{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}]
        )

    def _update(self, properties: dict[str, Any]) -> bool:
        self._set_role(properties.get("CloudWatchRoleArn"))
        return True

    def _delete(self) -> None:
        """Nothing: as on AWS, the account keeps the setting (there is no API to unset it)."""


COMPAT_RESOURCE_TYPES: tuple[type[CompatResource], ...] = (
    S3BucketPolicy,
    SnsTopicPolicy,
    SnsSubscription,
    CloudWatchAlarm,
    ScalableTarget,
    ScalingPolicy,
    CodeBuildProject,
    CodePipelinePipeline,
    LambdaEventInvokeConfig,
    LambdaAlias,
    LambdaPermission,
    ApiGatewayMethod,
    ApiGatewayDeployment,
    ApiGatewayStage,
    ApiGatewayApiKey,
    ApiGatewayUsagePlan,
    ApiGatewayUsagePlanKey,
    ApiGatewayRequestValidator,
    ApiGatewayModel,
    ApiGatewayGatewayResponse,
    ApiGatewayAccount,
    ApiGatewayRestApi,
    LambdaVersion,
    KmsKey,
)


def fix_resource_types() -> None:
    # moto defect: its CloudFormation has no model for these types (it skips them silently), or, for
    # ApiGateway Method/Deployment and Lambda Permission, one whose Ref is a Python object repr and
    # which is never deleted. The models above are registered after moto's, so they take precedence.
    original_list = cfn_parsing.get_model_list

    @functools.lru_cache
    def get_model_list() -> list[type[Any]]:
        return [*original_list(), *COMPAT_RESOURCE_TYPES]

    cfn_parsing.get_model_list = get_model_list
    cfn_parsing.get_model_map.cache_clear()
    cfn_parsing.get_name_type_map.cache_clear()


def fix_missing_deletes_and_updates() -> None:
    # moto defects: AWS::ApiGateway::Resource has no delete (DeleteStack leaves it behind) and
    # AWS::Logs::LogGroup has no update (a new RetentionInDays would replace the group).
    from moto.apigateway.models import Resource, apigateway_backends
    from moto.logs.models import LogGroup, logs_backends

    def delete_resource(self: Any, account_id: str, region_name: str) -> None:
        backend = apigateway_backends[account_id][region_name]
        if self.api_id in backend.apis and self.id in backend.apis[self.api_id].resources:
            backend.delete_resource(self.api_id, self.id)

    Resource.delete = delete_resource

    def update_log_group(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json.get("Properties") or {}
        if properties.get("LogGroupName", original_resource.name) != original_resource.name:
            original_resource.delete(account_id, region_name)
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
        backend = logs_backends[account_id][region_name]
        if "RetentionInDays" in properties:
            backend.put_retention_policy(original_resource.name, int(properties["RetentionInDays"]))
        else:
            backend.delete_retention_policy(original_resource.name)
        original_resource.kms_key_id = properties.get("KmsKeyId")
        return original_resource

    LogGroup.update_from_cloudformation_json = classmethod(update_log_group)


def fix_lambda_reserved_concurrency_update() -> None:
    # moto defect: LambdaFunction.update_from_cloudformation_json applies the new configuration and
    # code but not ReservedConcurrentExecutions, so a changed or removed reserved concurrency keeps
    # its old value, and the local Lambda runtime keeps throttling at it. CloudFormation on AWS
    # puts the function's concurrency, or deletes it when the property is gone.
    from moto.awslambda.models import LambdaFunction, lambda_backends

    def apply_reserved_concurrency(
        function: Any, properties: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        backend = lambda_backends[account_id][region_name]
        reserved = properties.get("ReservedConcurrentExecutions")
        if reserved is None:
            backend.delete_function_concurrency(function.function_name)
        else:
            backend.put_function_concurrency(function.function_name, reserved)

    _then_apply(LambdaFunction, "update_from_cloudformation_json", apply_reserved_concurrency)


def fix_lambda_dead_letter_config() -> None:
    # moto defect: LambdaFunction keeps no DeadLetterConfig (CloudFormation's create and update
    # drop it, GetFunctionConfiguration never shows it), so nothing knows where Lambda parks an
    # asynchronous event it gives up on. The function keeps it as ``dead_letter_config``, which
    # the local Lambda runtime delivers to (localcloud.lambdas.park_failed_event).
    from moto.awslambda.models import LambdaFunction

    def keep_dead_letter_config(function: Any, properties: dict[str, Any], *_: str) -> None:
        function.dead_letter_config = properties.get("DeadLetterConfig") or None

    _then_apply(LambdaFunction, "create_from_cloudformation_json", keep_dead_letter_config)
    _then_apply(LambdaFunction, "update_from_cloudformation_json", keep_dead_letter_config)
    original = LambdaFunction.get_configuration

    @functools.wraps(original)
    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        configuration = original(self, *args, **kwargs)
        dead_letter_config = getattr(self, "dead_letter_config", None)
        if dead_letter_config:
            configuration["DeadLetterConfig"] = dict(dead_letter_config)
        return configuration

    LambdaFunction.get_configuration = get_configuration


def _put_inline_policies(role: Any, properties: dict[str, Any]) -> None:
    """Attach the template's inline policies to ``role`` as JSON documents and detach the rest."""
    policies = {p["PolicyName"]: p["PolicyDocument"] for p in properties.get("Policies", [])}
    for name in set(role.policies) - set(policies):
        role.delete_policy(name)
    for name, document in policies.items():
        role.put_policy(name, _api_string(document))


def fix_role_policies() -> None:
    # moto defects: Role.create_from_cloudformation_json stores each inline policy as the decoded
    # template object, so GetRolePolicy answers its Python repr ({'Version': ...}), which is not
    # JSON; and Role.update_from_cloudformation_json updates the description only: a changed trust
    # policy or inline policy keeps its old document, a new inline policy is never attached and a
    # removed one stays. CloudFormation on AWS updates all three in place.
    from moto.iam.models import Role, iam_backends

    def apply_policies(role: Any, properties: dict[str, Any], *_: str) -> None:
        _put_inline_policies(role, properties)

    def apply_trust_and_policies(
        role: Any, properties: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        _partition_backend(iam_backends, account_id, region_name).update_assume_role_policy(
            role.name, _api_string(properties["AssumeRolePolicyDocument"])
        )
        _put_inline_policies(role, properties)

    _then_apply(Role, "create_from_cloudformation_json", apply_policies)
    _then_apply(Role, "update_from_cloudformation_json", apply_trust_and_policies)


# Request context the local cloud vouches for: its loopback HTTP endpoint stands in for AWS's TLS.
_REQUEST_CONTEXT = {"aws:securetransport": "true"}


def _condition_rules_out(statement: dict[str, Any]) -> bool:
    """True if a Bool condition on a known request-context key does not hold for this request."""
    for operator, checks in (statement.get("Condition") or {}).items():
        if operator not in ("Bool", "BoolIfExists"):
            continue
        for key, expected in checks.items():
            actual = _REQUEST_CONTEXT.get(key.lower())
            allowed = [
                str(v).lower() for v in (expected if isinstance(expected, list) else [expected])
            ]
            if actual is not None and actual not in allowed:
                return True
    return False


def fix_bool_conditions() -> None:
    # moto defect: IAMPolicyStatement ignores condition operators it does not implement, Bool among
    # them, so the condition counts as met. The standard guard "Deny s3:* when aws:SecureTransport
    # is false" then denies every request: each PutObject/GetObject on such a bucket answers 403.
    # The local cloud evaluates Bool conditions on aws:SecureTransport as true (_REQUEST_CONTEXT).
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    @functools.wraps(original)
    def is_action_permitted(
        self: Any,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        if _condition_rules_out(self._statement):
            return PermissionResult.NEUTRAL  # the statement does not apply to this request
        return original(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted


def _aggregated(metric: dict[str, Any]) -> dict[str, Any] | None:
    """A PutMetricData member with Values/Counts as the same samples' StatisticValues (None if it
    counts no sample); any other member unchanged."""
    if not metric.get("Values"):
        return metric
    counts = metric.get("Counts") or [1] * len(metric["Values"])
    # As moto counts them: a value is added int(count) times.
    samples = [(float(value), int(float(count))) for value, count in zip(metric["Values"], counts)]
    samples = [(value, count) for value, count in samples if count > 0]
    if not samples:
        return None
    aggregated = {key: item for key, item in metric.items() if key not in ("Values", "Counts")}
    aggregated["StatisticValues"] = {
        "Sum": sum(value * count for value, count in samples),
        "Minimum": min(value for value, _ in samples),
        "Maximum": max(value for value, _ in samples),
        "SampleCount": float(sum(count for _, count in samples)),
    }
    return aggregated


def fix_metric_values_aggregated() -> None:
    # moto defect: PutMetricData with Values/Counts stores one MetricDatum, with Dimension objects
    # of its own, per counted sample: a tester's 10 s load test at 500 req/s adds about 22,000 data
    # (120,000 objects). The daemon's heap grows with every test, and each full garbage collection
    # walks it all and stops the event loop for 170-260 ms: requests queue past the predictor's
    # reserved concurrency (throttled: API Gateway's 500) and latency spikes. Every statistic moto
    # computes (SampleCount, Sum, Average, Minimum, Maximum; no percentiles) comes out the same from
    # one aggregated datum per member, so Values/Counts are stored as StatisticValues.
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.put_metric_data

    @functools.wraps(original)
    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        for number, metric in enumerate(metric_data, start=1):
            self._validate_parameters_put_metric_data(metric, number)  # errors name the member sent
        aggregated = [_aggregated(metric) for metric in metric_data]
        original(self, namespace, [metric for metric in aggregated if metric is not None])

    CloudWatchBackend.put_metric_data = put_metric_data


def fix_non_empty_bucket_delete() -> None:
    # moto defect: FakeBucket.delete_from_cloudformation_json ignores S3Backend.delete_bucket
    # returning None for a bucket that still holds objects, so DeleteStack reports DELETE_COMPLETE
    # and silently leaves the bucket behind. AWS fails the delete ("not empty").
    from moto.s3.exceptions import BucketNotEmpty
    from moto.s3.models import FakeBucket, s3_backends

    def delete_bucket(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        backend = _partition_backend(s3_backends, account_id, region_name)
        if resource_name in backend.buckets and backend.delete_bucket(resource_name) is None:
            raise BucketNotEmpty(resource_name)

    FakeBucket.delete_from_cloudformation_json = classmethod(delete_bucket)


# CloudFormation's LifecycleRule actions -> the S3 API's (as moto parses its XML): action, fields.
_LIFECYCLE_ACTIONS: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    "ExpirationInDays": lambda days: ("Expiration", {"Days": days}),
    "ExpirationDate": lambda date: ("Expiration", {"Date": date}),
    "ExpiredObjectDeleteMarker": lambda flag: ("Expiration", {"ExpiredObjectDeleteMarker": flag}),
    "NoncurrentVersionExpiration": lambda value: ("NoncurrentVersionExpiration", dict(value)),
    "NoncurrentVersionExpirationInDays": lambda days: (
        "NoncurrentVersionExpiration",
        {"NoncurrentDays": days},
    ),
    "AbortIncompleteMultipartUpload": lambda value: ("AbortIncompleteMultipartUpload", dict(value)),
}


def _lifecycle_rules(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """A LifecycleConfiguration's rules in the S3 API's form. A rule property this layer does not
    translate (transitions, tag or size filters) fails the stack by name instead of being
    dropped."""
    rules = []
    for number, rule in enumerate(configuration.get("Rules") or [], start=1):
        unknown = sorted(set(rule) - {"Id", "Status", "Prefix", *_LIFECYCLE_ACTIONS})
        if unknown:
            raise ValidationError(
                message=f"LifecycleConfiguration rule {number}: the local cloud does not "
                f"support {', '.join(unknown)}"
            )
        api_rule: dict[str, Any] = {
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
        }
        if "Id" in rule:
            api_rule["ID"] = rule["Id"]
        for name, value in rule.items():
            if name in _LIFECYCLE_ACTIONS:
                action, fields = _LIFECYCLE_ACTIONS[name](value)
                api_rule.setdefault(action, {}).update(fields)
        rules.append(api_rule)
    return rules


def _notification_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """A NotificationConfiguration in the form moto's S3 backend stores. Only EventBridge
    delivery is translated; a topic, queue or function destination fails the stack by name
    instead of being dropped."""
    unknown = sorted(set(configuration) - {"EventBridgeConfiguration"})
    if unknown:
        raise ValidationError(
            message=f"NotificationConfiguration: the local cloud does not support "
            f"{', '.join(unknown)}"
        )
    eventbridge = configuration.get("EventBridgeConfiguration") or {}
    # The S3 API enables delivery with an empty element; there is no "disabled" form.
    return {"EventBridgeConfiguration": {}} if _flag(eventbridge.get("EventBridgeEnabled")) else {}


def _configure_bucket(backend: Any, name: str, properties: dict[str, Any], update: bool) -> None:
    """Apply the bucket configuration moto's CloudFormation model drops; on ``update``, a
    configuration the template no longer has is removed (versioning, which a bucket cannot leave
    once enabled, stays as it is)."""
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        backend.put_bucket_versioning(name, versioning["Status"])
    lifecycle = properties.get("LifecycleConfiguration")
    if lifecycle:
        backend.put_bucket_lifecycle(name, _lifecycle_rules(lifecycle))
    elif update:
        backend.delete_bucket_lifecycle(name)
    public_access_block = properties.get("PublicAccessBlockConfiguration")
    if public_access_block:
        backend.put_public_access_block(name, public_access_block)
    elif update:
        backend.delete_public_access_block(name)
    ownership = properties.get("OwnershipControls")
    if ownership:
        backend.put_bucket_ownership_controls(name, ownership["Rules"][0]["ObjectOwnership"])
    elif update:
        backend.delete_bucket_ownership_controls(name)
    notification = properties.get("NotificationConfiguration")
    if notification or update:
        backend.put_bucket_notification_configuration(
            name, _notification_configuration(notification or {})
        )


def fix_bucket_configuration() -> None:
    # moto defect: FakeBucket's CloudFormation create and update apply BucketEncryption and Tags
    # only. VersioningConfiguration, LifecycleConfiguration, PublicAccessBlockConfiguration,
    # OwnershipControls and NotificationConfiguration are dropped: every bucket comes up
    # unversioned, without lifecycle rules, public access block or ownership controls, sends no
    # events to EventBridge, and an update changes none of them.
    from moto.s3.models import FakeBucket, s3_backends

    def configure(update: bool) -> Callable[[Any, dict[str, Any], str, str], None]:
        def apply(bucket: Any, properties: dict[str, Any], account_id: str, region: str) -> None:
            backend = _partition_backend(s3_backends, account_id, region)
            _configure_bucket(backend, bucket.name, properties, update)

        return apply

    # A bucket that an update replaces comes from the create, configured; configuring it again
    # puts the same settings and finds nothing to remove.
    _then_apply(FakeBucket, "create_from_cloudformation_json", configure(update=False))
    _then_apply(FakeBucket, "update_from_cloudformation_json", configure(update=True))


def fix_sagemaker_names() -> None:
    # moto defect: Model, EndpointConfig and Endpoint report no name property
    # (cloudformation_name_type() == ""), so ModelName, EndpointConfigName and EndpointName are
    # ignored and every name is generated.
    from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, Model

    for model_class, name_property in (
        (Model, "ModelName"),
        (FakeEndpointConfig, "EndpointConfigName"),
        (FakeEndpoint, "EndpointName"),
    ):
        model_class.cloudformation_name_type = staticmethod(lambda name=name_property: name)
    cfn_parsing.get_name_type_map.cache_clear()


def _update_method(update: Callable[..., Any]) -> classmethod:
    """An ``update_from_cloudformation_json`` for moto, which passes its arguments by keyword, from
    ``update(cls, original_resource, new_name, *template)``, where ``template`` is the resource's
    CloudFormation JSON, account id and region. ``update`` changes nothing when it fails, so a
    failed stack update's rollback leaves the resource alone."""

    def method(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        return update(
            cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
        )

    method.all_or_nothing = True  # type: ignore[attr-defined]  # read by _update_resource
    return classmethod(method)


def _refuse_autoscaled_variant_changes(
    endpoint: Any, new_config_name: str, account_id: str, region_name: str
) -> None:
    """As SageMaker documents: an update that removes a variant registered as an Application Auto
    Scaling target, or changes its instance type, fails; it must be deregistered first."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.sagemaker.models import sagemaker_backends

    configs = sagemaker_backends[account_id][region_name].endpoint_configs
    if endpoint.endpoint_config_name not in configs or new_config_name not in configs:
        return  # a config that does not exist fails the update on its own
    old = {v["VariantName"]: v for v in configs[endpoint.endpoint_config_name].production_variants}
    new = {v["VariantName"]: v for v in configs[new_config_name].production_variants}
    targets = applicationautoscaling_backends[account_id][region_name].describe_scalable_targets(
        "sagemaker", None, "sagemaker:variant:DesiredInstanceCount"
    )
    registered = {t.resource_id for t in targets}
    changes = []
    for name, variant in old.items():
        if f"endpoint/{endpoint.endpoint_name}/variant/{name}" not in registered:
            continue
        if name not in new:
            changes.append(f"removes variant {name}")
        elif new[name].get("InstanceType") != variant.get("InstanceType"):
            changes.append(
                f"changes variant {name}'s instance type from {variant.get('InstanceType')} to "
                f"{new[name].get('InstanceType')}"
            )
    if changes:
        raise ValidationError(
            message=f"The update of endpoint {endpoint.endpoint_name} {' and '.join(changes)}, "
            "which is registered as a scalable target with Application Auto Scaling: delete its "
            "scaling policies and deregister it before the update"
        )


def fix_sagemaker_endpoint_update() -> None:
    # moto defect: FakeEndpoint.update_from_cloudformation_json deletes the endpoint and creates it
    # again, so for a moment InvokeEndpoint finds no endpoint, DescribeEndpoint shows a new
    # CreationTime, and the local runtime sees a deletion (it stopped every model server).
    # CloudFormation calls UpdateEndpoint, which keeps the endpoint and switches its config;
    # moto's create_endpoint replaces an endpoint of the same name in one step.
    from moto.sagemaker.models import FakeEndpoint

    def update_in_place(cls: Any, original_resource: Any, _new_name: str, *template: Any) -> Any:
        cloudformation_json, account_id, region_name = template
        new_config = cloudformation_json["Properties"]["EndpointConfigName"]
        _refuse_autoscaled_variant_changes(original_resource, new_config, account_id, region_name)
        endpoint = cls.create_from_cloudformation_json(original_resource.endpoint_name, *template)
        endpoint.creation_time = original_resource.creation_time
        return endpoint

    FakeEndpoint.update_from_cloudformation_json = _update_method(update_in_place)


def fix_sagemaker_replacement() -> None:
    # moto defect: Model and EndpointConfig updates (always replacements: both are immutable) delete
    # the old resource before creating the new one. When the new one is refused (an instance type
    # SageMaker does not offer), the old one is gone although the stack still names it: the
    # rollback fails to find it (UPDATE_ROLLBACK_FAILED) and a later DeleteStack answers 500.
    # CloudFormation creates the replacement first and deletes the old resource in the update's
    # cleanup phase, so a failed update returns to it.
    from moto.sagemaker.models import FakeEndpointConfig, Model

    def replace(cls: Any, original_resource: Any, new_name: str, *template: Any) -> Any:
        new = cls.create_from_cloudformation_json(new_name, *template)
        if new.physical_resource_id != original_resource.physical_resource_id:
            _Cleanup.defer(original_resource)  # else the create replaced it in place (same name)
        return new

    for model_class in (Model, FakeEndpointConfig):
        model_class.update_from_cloudformation_json = _update_method(replace)


def capture_summary(config: dict[str, Any]) -> dict[str, Any]:
    """An endpoint config's DataCaptureConfig as DescribeEndpoint reports it on the endpoint
    (``DataCaptureConfigSummary``): whether capture runs, and at which sampling percentage."""
    from localcloud.capture import capture_enabled

    enabled = capture_enabled(config)
    summary: dict[str, Any] = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(float(config.get("InitialSamplingPercentage") or 0)),
        "DestinationS3Uri": config.get("DestinationS3Uri", ""),
    }
    if config.get("KmsKeyId"):
        summary["KmsKeyId"] = config["KmsKeyId"]
    return summary


def fix_sagemaker_capture_summary() -> None:
    # moto defect: DescribeEndpoint answers the endpoint config's DataCaptureConfig as it was
    # given, where SageMaker answers a DataCaptureConfigSummary. Clients keep only the summary's
    # members, so CaptureStatus and CurrentSamplingPercentage (both always present on AWS) are
    # missing: the deployed sampling percentage cannot be read from the endpoint. An endpoint
    # without data capture has no DataCaptureConfig, as on AWS, instead of an empty one.
    from moto.sagemaker.models import FakeEndpoint

    original = FakeEndpoint.response_object

    def response_object(self: Any) -> dict[str, Any]:
        response = original.fget(self)
        config = response.pop("DataCaptureConfig", None)
        if config:
            response["DataCaptureConfig"] = capture_summary(config)
        return response

    FakeEndpoint.response_object = property(response_object)


def fix_sagemaker_capture_validation() -> None:
    # moto defect: CreateEndpointConfig stores any DataCaptureConfig. SageMaker refuses one whose
    # sampling percentage is not 0 to 100, whose CaptureOptions are missing or not Input/Output, or
    # whose destination is not an S3 URI (CloudFormation's schema check refuses wrong types too).
    # Stored, such a config silently captured nothing, and a non-numeric percentage made every
    # DescribeEndpoint of its endpoint answer 500. The data plane's own parse decides, so the two
    # cannot disagree on what is valid.
    from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
    from moto.sagemaker.models import FakeEndpointConfig

    from localcloud.capture import CaptureConfigError, CaptureSettings

    original = FakeEndpointConfig.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            CaptureSettings.parse(self.data_capture_config)
        except CaptureConfigError as exc:
            raise SageMakerValidationError(message=str(exc)) from None

    FakeEndpointConfig.__init__ = __init__


_FIXES: tuple[Callable[[], None], ...] = (
    fix_execute_change_set,
    fix_create_change_set,
    fix_parameter_comparison,
    fix_create_and_update_stack,
    fix_delete_stack,
    fix_continue_update_rollback,
    fix_template_url,
    fix_serialized_stack_operations,
    fix_dependency_ordered_update,
    fix_dependency_ordered_delete,
    fix_resource_events,
    fix_stack_status_reason,
    fix_unsupported_types_fail,
    fix_resource_types,
    fix_missing_deletes_and_updates,
    fix_lambda_reserved_concurrency_update,
    fix_lambda_dead_letter_config,
    fix_role_policies,
    fix_sagemaker_names,
    fix_sagemaker_endpoint_update,
    fix_sagemaker_replacement,
    fix_sagemaker_capture_summary,
    fix_sagemaker_capture_validation,
    fix_bool_conditions,
    fix_non_empty_bucket_delete,
    fix_bucket_configuration,
    fix_metric_values_aggregated,
)
