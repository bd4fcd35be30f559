"""CloudFormation compatibility layer for moto 5.2.5 (the local cloud's control plane).

``apply()`` patches moto in-process, before ``moto.server.ThreadedMotoServer`` starts, so that
``aws cloudformation deploy`` against the local cloud behaves as it does against AWS. Every fix is a
separate function named ``fix_*`` whose comment names the moto defect; each is written so it can be
proposed upstream on its own (docs/local-cloud-compat.md says how). The fixes:

Change-set path (what ``aws cloudformation deploy`` uses)
  fix_execute_change_set      ExecuteChangeSet reuses the create-stack / update-stack logic: Outputs,
                              Exports, Fn::ImportValue against the live export table, DependsOn order;
                              a failed CREATE ends ROLLBACK_COMPLETE, a failed UPDATE rolls back to
                              UPDATE_ROLLBACK_COMPLETE, each with the failing resource's reason.
  fix_create_change_set       a leftover REVIEW_IN_PROGRESS stack is reused (not duplicated); CREATE on a
                              live stack and UPDATE on a ROLLBACK_COMPLETE stack are refused as on AWS;
                              an unchanged UPDATE gives a FAILED change set ("didn't contain changes"),
                              so ``--no-fail-on-empty-changeset`` works for templates with Parameters.
  fix_parameter_comparison    parameters are compared (and reused) as the strings CloudFormation stores.
  fix_create_and_update_stack CreateStack / UpdateStack share the same create, rollback and export logic.
  fix_delete_stack            a stack whose resources cannot be deleted ends DELETE_FAILED with a reason.
  fix_dependency_ordered_update
                              an update creates, updates and replaces resources in dependency order
                              (DependsOn, Ref, Fn::GetAtt, Fn::Sub), re-resolves every resource that
                              refers to a changed one, and removes deleted resources last.
  fix_resource_events         DescribeStackEvents lists per-resource events with reasons.
  fix_unsupported_types_fail  a resource type the local cloud cannot create fails the stack with a clear
                              reason instead of being skipped silently.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable, Iterable

import moto
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import AlreadyExistsException, ValidationError

SUPPORTED_MOTO_VERSION = "5.2.5"

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
    backend = cfn_models.cloudformation_backends[resources_map._account_id][resources_map._region_name]
    return backend.stacks.get(resources_map.stack_id)


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
    def mark(cls, exc: BaseException, logical_id: str, resource_type: str) -> bool:
        """Record the resource on ``exc``; True if it is the first (root-cause) failure."""
        if getattr(exc, cls.attribute, None) is not None:
            return False
        setattr(exc, cls.attribute, (logical_id, resource_type))
        return True

    @classmethod
    def describe(cls, exc: BaseException, verb: str) -> str:
        failed = getattr(exc, cls.attribute, None)
        if failed is None:
            return f"Stack {verb} failed: {_error_message(exc)}"
        logical_id, resource_type = failed
        return f"Resource {logical_id} ({resource_type}) failed to {verb}: {_error_message(exc)}"


def _register_exports(backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack) -> None:
    """Replace ``stack``'s entries in the live export table with its current exports."""
    current = stack.exports
    owned = {name for name, export in backend.exports.items() if export.exporting_stack_id == stack.stack_id}
    clashes = [export.name for export in current if export.name in backend.exports and export.name not in owned]
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


def _create_stack_resources(backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack) -> None:
    """Create-stack logic shared by CreateStack and a CREATE change set; rolls back on failure."""
    stack.cross_stack_resources = backend.exports
    stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
    try:
        stack.resource_map = stack._create_resource_map()
        stack.output_map = stack._create_output_map()
        stack.create_resources()
        _register_exports(backend, stack)
    except Exception as exc:  # any failure, as on AWS, rolls the whole stack back
        _roll_back_create(backend, stack, exc)
        raise ValidationError(stack.stack_id, message=_FailedResource.describe(exc, "create")) from exc


def _roll_back_create(backend: cfn_models.CloudFormationBackend, stack: cfn_models.Stack, exc: Exception) -> None:
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
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")


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
    try:
        stack.update(template, role_arn, parameters=parameters, tags=tags)
        _register_exports(backend, stack)
    except Exception as exc:
        reason = _FailedResource.describe(exc, "update")
        stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
        try:
            stack.template = previous_template
            stack._parse_template()
            stack.resource_map.update(stack.template_dict, previous_parameters)
            stack.parameters = previous_parameters
            stack.output_map = stack._create_output_map()
            _register_exports(backend, stack)
        except Exception as rollback_exc:
            stack.status = "UPDATE_ROLLBACK_FAILED"
            stack._add_stack_event("UPDATE_ROLLBACK_FAILED", resource_status_reason=_error_message(rollback_exc))
        else:
            stack.status = "UPDATE_ROLLBACK_COMPLETE"
            stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
        raise ValidationError(stack.stack_id, message=reason) from exc


def fix_execute_change_set() -> None:
    # moto defect: CloudFormationBackend.execute_change_set only runs ResourceMap.update on a
    # placeholder stack (ChangeSet.apply): Outputs are never built, exports never registered,
    # Fn::ImportValue sees an empty private table, DependsOn is ignored, failures leave the stack
    # REVIEW_IN_PROGRESS (and may make DescribeStacks answer 500).
    def execute_change_set(self: cfn_models.CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        if change_set.execution_status != "AVAILABLE":
            raise ValidationError(
                message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                f"execution status of [{change_set.execution_status}]"
            )
        stack = self.stacks[change_set.stack_id]
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        try:
            if change_set.change_set_type == "CREATE":
                stack.template = change_set.template
                stack._parse_template()
                stack.description = stack.template_dict.get("Description")
                stack.parameters = change_set.parameters
                _create_stack_resources(self, stack)
            else:
                _update_stack_resources(
                    self, stack, change_set.template, change_set.parameters, change_set.role_arn, change_set.tags or None
                )
        except Exception:
            change_set.execution_status = "EXECUTE_FAILED"
            raise
        change_set.execution_status = "EXECUTE_COMPLETE"

    cfn_models.CloudFormationBackend.execute_change_set = execute_change_set


def fix_create_change_set() -> None:
    # moto defects: (1) CREATE adds a second stack next to a leftover REVIEW_IN_PROGRESS one instead
    # of reusing it, and next to a live stack instead of refusing; (2) UPDATE on a ROLLBACK_COMPLETE
    # stack is accepted; (3) CloudFormationResponse._validate_different_update raises
    # "No updates are to be performed." from CreateChangeSet, where AWS returns a FAILED change set
    # whose reason the CLI turns into "No changes to deploy".
    original_create = cfn_models.CloudFormationBackend.create_change_set

    @functools.wraps(original_create)
    def create_change_set(self: cfn_models.CloudFormationBackend, stack_name: str, change_set_name: str, template: str,
                          parameters: dict[str, str], description: str, change_set_type: str, **kwargs: Any) -> tuple[str, str]:
        same_name = [stack for stack in self.stacks.values() if stack.name == stack_name]
        if change_set_type == "CREATE":
            for stack in same_name:
                if stack.status != "REVIEW_IN_PROGRESS":
                    raise AlreadyExistsException(f"Stack [{stack_name}] already exists")
                del self.stacks[stack.stack_id]
                for change_set_id in [i for i, c in self.change_sets.items() if c.stack_id == stack.stack_id]:
                    del self.change_sets[change_set_id]
        else:
            for stack in same_name:
                if stack.status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "REVIEW_IN_PROGRESS"):
                    raise ValidationError(
                        stack.stack_id,
                        message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.",
                    )
        return original_create(self, stack_name, change_set_name, template, parameters, description,
                               change_set_type, **kwargs)

    cfn_models.CloudFormationBackend.create_change_set = create_change_set

    original_validate = cfn_responses.CloudFormationResponse._validate_different_update

    @functools.wraps(original_validate)
    def validate_different_update(self: cfn_responses.CloudFormationResponse, *args: Any, **kwargs: Any) -> None:
        if self._get_action() == "CreateChangeSet":
            return  # the backend answers an unchanged update with a FAILED change set
        original_validate(self, *args, **kwargs)

    cfn_responses.CloudFormationResponse._validate_different_update = validate_different_update


def fix_parameter_comparison() -> None:
    # moto defects: Stack.has_parameters compares the raw input dicts, so a stack created without
    # overrides looks changed on every deploy; Stack.stack_parameters hands resolved Python values
    # (lists, ints) back for UsePreviousValue, which the next parse splits again and crashes on.
    def stack_parameters(self: cfn_models.Stack) -> dict[str, str]:
        return {key: _as_parameter_string(value) for key, value in self.resource_map.resolved_parameters.items()}

    def has_parameters(self: cfn_models.Stack, other_parameters: dict[str, Any]) -> bool:
        declared = self.template_dict.get("Parameters") or {}
        candidate = {key: _as_parameter_string(slot["Default"]) for key, slot in declared.items() if "Default" in slot}
        candidate.update({key: _as_parameter_string(value) for key, value in other_parameters.items() if key in declared})
        return candidate == self.stack_parameters

    cfn_models.Stack.stack_parameters = property(stack_parameters)
    cfn_models.Stack.has_parameters = has_parameters


def fix_create_and_update_stack() -> None:
    # moto defects: create_stack leaves a failed stack CREATE_IN_PROGRESS; update_stack never
    # refreshes backend.exports and never rolls back; a stack created while the export table was
    # empty is cut off from it (Stack.__init__ uses ``cross_stack_resources or {}``).
    def create_stack(self: cfn_models.CloudFormationBackend, name: str, template: str, parameters: dict[str, Any],
                     notification_arns: list[str] | None = None, tags: dict[str, str] | None = None,
                     role_arn: str | None = None, enable_termination_protection: bool | None = False,
                     timeout_in_mins: int | None = None, stack_policy_body: str | None = None) -> cfn_models.Stack:
        if any(stack.name == name for stack in self.stacks.values()):
            raise AlreadyExistsException(f"Stack [{name}] already exists")
        stack = cfn_models.Stack(
            stack_id=cfn_models.generate_stack_id(name, self.region_name, self.account_id),
            name=name,
            template={},  # resources are parsed by _create_stack_resources, inside the rollback guard
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

    def update_stack(self: cfn_models.CloudFormationBackend, name: str, template: str, role_arn: str | None,
                     parameters: list[dict[str, Any]], tags: dict[str, str] | None) -> cfn_models.Stack:
        stack = self.get_stack(name)
        resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
        _update_stack_resources(self, stack, template, resolved, role_arn, tags)
        return stack

    cfn_models.CloudFormationBackend.create_stack = create_stack
    cfn_models.CloudFormationBackend.update_stack = update_stack


def fix_delete_stack() -> None:
    # moto defect: when a resource cannot be deleted, delete_stack raises a bare exception (HTTP 500)
    # and the stack keeps its old status; AWS reports DELETE_FAILED with the reason.
    original_delete = cfn_models.CloudFormationBackend.delete_stack

    @functools.wraps(original_delete)
    def delete_stack(self: cfn_models.CloudFormationBackend, name_or_stack_id: str) -> None:
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in self.stacks.values() if s.name == name_or_stack_id), None
        )
        if stack is None:
            return  # deleting a stack that does not exist succeeds on AWS
        try:
            original_delete(self, stack.stack_id)
        except Exception as exc:
            self.stacks[stack.stack_id] = stack
            self.deleted_stacks.pop(stack.stack_id, None)
            stack.status = "DELETE_FAILED"
            stack._add_stack_event("DELETE_FAILED", resource_status_reason=_FailedResource.describe(exc, "delete"))
            raise ValidationError(stack.stack_id, message=_FailedResource.describe(exc, "delete")) from exc

    cfn_models.CloudFormationBackend.delete_stack = delete_stack


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
    """Logical ids so that every resource comes after what it depends on (DependsOn and references)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ValidationError(message=f"Circular dependency between resources: {list(path)}")
        state[name] = "visiting"
        resource_json = resources[name]
        for dependency in sorted((_references(resource_json) | _depends_on(resource_json)) & resources.keys()):
            visit(dependency, path + (dependency,))
        state[name] = "done"
        order.append(name)

    for name in resources:
        visit(name, (name,))
    return order


def fix_dependency_ordered_update() -> None:
    # moto defects in ResourceMap.update: added resources are created in template order (DependsOn
    # ignored); a resource that refers to a replaced or updated one is not re-resolved (an Endpoint
    # keeps its old EndpointConfig); a type without update_from_cloudformation_json is silently
    # dropped from the stack (its entry becomes None); removals run before creations.
    def update(self: cfn_parsing.ResourceMap, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
        old_resources = self._resource_json_map
        old_parameters = {k: _as_parameter_string(v) for k, v in self.resolved_parameters.items()}
        stack = _stack_of(self)

        self._template = template
        if parameters is not None:  # an empty dict means "no overrides", e.g. on rollback
            self.input_parameters = parameters
        self.resolved_parameters = {}
        self.load_mapping()
        self.load_parameters()
        self.load_conditions()
        new_parameters = {k: _as_parameter_string(v) for k, v in self.resolved_parameters.items()}
        changed = {k for k in old_parameters.keys() | new_parameters.keys() if old_parameters.get(k) != new_parameters.get(k)}

        new_resources = template["Resources"]
        wanted = {
            name: body for name, body in new_resources.items()
            if not body.get("Condition") or self.lazy_condition_map[body["Condition"]]
        }
        self._resource_json_map = new_resources
        for name in dependency_order(wanted):
            body = wanted[name]
            if name not in self._parsed_resources:
                _ = self[name]  # creates it (the lazy map resolves its references first)
                continue
            must_update = (
                old_resources.get(name) != body
                or bool((_references(body) | _depends_on(body)) & changed)
            )
            if must_update:
                _update_resource(self, stack, name, old_resources.get(name, body), body)
                changed.add(name)

        gone = [name for name in old_resources if name not in wanted and name in self._parsed_resources]
        for name in reversed(dependency_order({n: old_resources[n] for n in gone})):
            resource = self._parsed_resources.pop(name)
            if resource is not None and old_resources[name].get("DeletionPolicy") != "Retain":
                self._delete_resource(resource, old_resources[name])

    cfn_parsing.ResourceMap.update = update


def _update_resource(resources_map: cfn_parsing.ResourceMap, stack: cfn_models.Stack | None, name: str,
                     old_body: dict[str, Any], new_body: dict[str, Any]) -> None:
    """Update one resource in place, or replace it (delete, then create) if its type cannot update."""
    resource_type = new_body["Type"]
    old = resources_map._parsed_resources[name]
    _resource_event(stack, name, resource_type, "UPDATE_IN_PROGRESS", _physical_id(old))
    try:
        resource_class = cfn_parsing.resource_class_from_type(resource_type)
        updatable = not hasattr(resource_class.update_from_cloudformation_json, "__isabstractmethod__")
        if old_body.get("Type") == resource_type and updatable:
            updated = cfn_parsing.parse_and_update_resource(
                name, new_body, resources_map, account_id=resources_map._account_id,
                region_name=resources_map._region_name,
            )
            resources_map._parsed_resources[name] = updated
        else:
            if old is not None:
                resources_map._delete_resource(old, old_body)
            del resources_map._parsed_resources[name]
            updated = resources_map[name]
    except Exception as exc:
        _FailedResource.mark(exc, name, resource_type)
        _resource_event(stack, name, resource_type, "UPDATE_FAILED", _physical_id(old), _error_message(exc))
        raise
    _resource_event(stack, name, resource_type, "UPDATE_COMPLETE", _physical_id(updated))


# --------------------------------------------------------------------------------------------
# Events and unsupported types
# --------------------------------------------------------------------------------------------

def fix_resource_events() -> None:
    # moto defect: DescribeStackEvents only lists stack-level events, so a deploy cannot show which
    # resource is being created or why one failed.
    original_create = cfn_parsing.parse_and_create_resource

    @functools.wraps(original_create)
    def parse_and_create_resource(logical_id: str, resource_json: dict[str, Any], resources_map: cfn_parsing.ResourceMap,
                                  account_id: str, region_name: str) -> Any:
        condition = resource_json.get("Condition")
        if condition and not resources_map.lazy_condition_map[condition]:
            return None
        stack = _stack_of(resources_map)
        resource_type = resource_json["Type"]
        _resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
        try:
            resource = original_create(logical_id, resource_json, resources_map, account_id, region_name)
        except Exception as exc:
            root = _FailedResource.mark(exc, logical_id, resource_type)
            _resource_event(stack, logical_id, resource_type, "CREATE_FAILED",
                            reason=_error_message(exc) if root else "Resource creation cancelled")
            raise
        _resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", _physical_id(resource))
        return resource

    cfn_parsing.parse_and_create_resource = parse_and_create_resource

    original_delete = cfn_parsing.ResourceMap._delete_resource

    @functools.wraps(original_delete)
    def delete_resource(self: cfn_parsing.ResourceMap, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        stack = _stack_of(self)
        logical_id = getattr(parsed_resource, "logical_resource_id", "")
        resource_type = resource_json.get("Type", "")
        _resource_event(stack, logical_id, resource_type, "DELETE_IN_PROGRESS", _physical_id(parsed_resource))
        try:
            original_delete(self, parsed_resource, resource_json)
        except Exception as exc:
            _FailedResource.mark(exc, logical_id, resource_type)
            _resource_event(stack, logical_id, resource_type, "DELETE_FAILED", _physical_id(parsed_resource),
                            _error_message(exc))
            raise
        _resource_event(stack, logical_id, resource_type, "DELETE_COMPLETE", _physical_id(parsed_resource))

    cfn_parsing.ResourceMap._delete_resource = delete_resource


def fix_unsupported_types_fail() -> None:
    # moto defect: resource_class_from_type logs "No Moto CloudFormation support" and the resource is
    # skipped: the stack reaches CREATE_COMPLETE without it, list-stack-resources shows an empty entry,
    # a Ref to it resolves to nothing and a GetAtt in Outputs gives HTTP 500.
    original = cfn_parsing.resource_class_from_type

    @functools.wraps(original)
    def resource_class_from_type(resource_type: str) -> Any:
        resource_class = original(resource_type)
        if resource_class is None and resource_type not in cfn_parsing.NULL_MODELS:
            raise ValidationError(message=f"Resource type {resource_type} is not supported by the local cloud")
        return resource_class

    cfn_parsing.resource_class_from_type = resource_class_from_type


def fix_ref_values() -> None:
    # moto defect: AWS::ApiGateway::Deployment has no physical_resource_id, so Ref returns the
    # Python object's repr; a Stage's DeploymentId refs it.
    from moto.apigateway.models import Deployment

    Deployment.physical_resource_id = property(lambda self: self.id)


_FIXES: tuple[Callable[[], None], ...] = (
    fix_execute_change_set,
    fix_create_change_set,
    fix_parameter_comparison,
    fix_create_and_update_stack,
    fix_delete_stack,
    fix_dependency_ordered_update,
    fix_resource_events,
    fix_unsupported_types_fail,
    fix_ref_values,
)
