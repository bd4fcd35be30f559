"""Read templates_out/manifest.json: the stacks, their deploy order and their dependencies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARTIFACT_STACK = "model-archiving"
ARTIFACT_BUCKET_OUTPUT = "ArtifactBucketName"


class ManifestError(Exception):
    """templates_out/manifest.json is missing or inconsistent."""


@dataclass(frozen=True)
class StackSpec:
    concern: str
    stack_name: str
    template: Path
    imports_from: tuple[str, ...]
    parameters: dict[str, str]  # template parameter -> artifact id

    @property
    def needs_artifacts(self) -> bool:
        return bool(self.parameters)


@dataclass(frozen=True)
class DisabledStack:
    concern: str
    stack_name: str


@dataclass(frozen=True)
class Manifest:
    project: str
    region: str
    stacks: tuple[StackSpec, ...]
    disabled: tuple[DisabledStack, ...] = ()  # left out by the config: removed where deployed
    config_sha256: str | None = None  # generator.config.fingerprint of the config it came from

    def stack(self, concern: str) -> StackSpec:
        for spec in self.stacks:
            if spec.concern == concern:
                return spec
        raise ManifestError(
            f"no stack for concern {concern!r}; known: {', '.join(s.concern for s in self.stacks)}"
        )

    def dependents(self, concern: str) -> list[StackSpec]:
        return [s for s in self.stacks if concern in s.imports_from]


def load_manifest(path: Path | str = "templates_out/manifest.json") -> Manifest:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path} not found: run `make templates`") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    stacks = []
    seen: set[str] = set()
    for entry in raw["stacks"]:
        missing = [dep for dep in entry["imports_from"] if dep not in seen]
        if missing:
            raise ManifestError(
                f"{path}: {entry['concern']} imports from {missing}, "
                "which are not deployed before it"
            )
        seen.add(entry["concern"])
        stacks.append(
            StackSpec(
                concern=entry["concern"],
                stack_name=entry["stack_name"],
                template=path.parent / entry["template"],
                imports_from=tuple(entry["imports_from"]),
                parameters={
                    name: spec["artifact"] for name, spec in entry.get("parameters", {}).items()
                },
            )
        )
    return Manifest(
        project=raw["project"],
        region=raw["region"],
        stacks=tuple(stacks),
        disabled=tuple(
            DisabledStack(entry["concern"], entry["stack_name"])
            for entry in raw.get("disabled", [])
        ),
        config_sha256=raw.get("config_sha256"),
    )
