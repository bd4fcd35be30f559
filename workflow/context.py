"""What every workflow command starts from: validated config, the target, the manifest.

``cli`` wraps a command so that every expected failure (bad config, unusable target, missing
manifest, unreachable endpoint, a failed stack) ends as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workflow.manifest import Manifest, ManifestError, load_manifest
from workflow.target import Target, TargetError, resolve


class WorkflowError(Exception):
    """A workflow step failed for a reason the user can act on."""


@dataclass(frozen=True)
class Context:
    cfg: object
    target: Target
    manifest: Manifest


def load_context(target: str, config: str | Path, manifest: str | Path) -> Context:
    from generator.config import fingerprint
    from generator.config import load as load_config

    cfg = load_config(config)
    loaded = load_manifest(manifest)
    if loaded.config_sha256 != fingerprint(cfg):
        # Deploying or tearing down another config's stacks would act on the wrong project.
        raise ManifestError(
            f"{manifest} was generated from another configuration than {config}: "
            f"run `make templates CONFIG={config}`"
        )
    project = cfg.project
    return Context(
        cfg=cfg,
        target=resolve(target, project.region, project.profile),
        manifest=loaded,
    )


def add_common_arguments(parser) -> None:
    parser.add_argument("--target", default="local", help="local (default) or aws")
    parser.add_argument("--config", default="config.json")
    parser.add_argument("--manifest", default="templates_out/manifest.json")


def unreachable_hint(url: str) -> str:
    from urllib.parse import urlsplit

    from localcloud import urls

    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" in (urls.control_url(), urls.dataplane_url()):
        # It holds its stacks in memory: a local cloud that stopped took them with it.
        return (
            "the local cloud is not running, and what was deployed on it is gone: "
            "`make deploy` starts it and deploys again"
        )
    return "is the network up and the region right?"


def cli(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Run ``main``; report expected failures as ``prog: reason`` and exit non-zero."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
            from botocore.parsers import ResponseParserError

            from generator.config import ConfigError

            try:
                return main(*args, **kwargs)
            except ConfigError as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
            except (TargetError, ManifestError, WorkflowError) as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
            except EndpointConnectionError as exc:
                url = exc.kwargs.get("endpoint_url") or ""
                print(f"{prog}: cannot reach {url}: {unreachable_hint(url)}", file=sys.stderr)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                print(f"{prog}: AWS error {err.get('Code')}: {err.get('Message')}", file=sys.stderr)
            except BotoCoreError as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
            except ResponseParserError:
                # an answer that is no AWS error document: the local cloud's HTTP 500 page
                from localcloud import daemon

                print(
                    f"{prog}: the target failed a request without saying why (an internal "
                    f"error); for the local cloud, {daemon.home() / daemon.LOG_FILE} has it",
                    file=sys.stderr,
                )
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            return 2

        return run

    return wrap
