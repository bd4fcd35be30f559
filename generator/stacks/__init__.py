"""Ordered registry of the concerns: (concern, builder, imports_from), in deploy order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from troposphere import Template

from . import (
    api_hosting,
    api_testing,
    cicd_pipeline,
    model_archiving,
    model_serving,
    monitor_dashboard,
    tester_dashboard,
)


@dataclass(frozen=True)
class StackSpec:
    concern: str
    build: Callable[..., Template]
    imports_from: tuple[str, ...]
    enabled: Callable[..., bool] = lambda cfg: True


REGISTRY: tuple[StackSpec, ...] = (
    StackSpec("model-archiving", model_archiving.build, ()),
    StackSpec("model-serving", model_serving.build, ("model-archiving",)),
    StackSpec("api-hosting", api_hosting.build, ("model-archiving", "model-serving")),
    StackSpec("monitor-dashboard", monitor_dashboard.build, ("model-serving", "api-hosting")),
    StackSpec(
        "cicd-pipeline", cicd_pipeline.build, ("model-archiving",), lambda cfg: cfg.cicd.enabled
    ),
    StackSpec("api-testing", api_testing.build, ("model-archiving", "api-hosting")),
    StackSpec("tester-dashboard", tester_dashboard.build, ("api-testing",)),
)


def enabled_stacks(cfg) -> list[StackSpec]:
    """The stacks this configuration deploys, in deploy order."""
    return [spec for spec in REGISTRY if spec.enabled(cfg)]


def disabled_stacks(cfg) -> list[StackSpec]:
    """The stacks this configuration leaves out: a deploy removes them where they exist."""
    return [spec for spec in REGISTRY if not spec.enabled(cfg)]
