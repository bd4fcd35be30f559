"""`python -m generator.lint [--checkov PATH]`: cfn-lint then checkov over templates_out/.

cfn-lint runs in-process with the repository's .cfnlintrc (informational checks on) and must report
nothing; checkov runs from its own virtual environment (its pins conflict with boto3/moto) and must
report 0 failed checks. Suppressions live in resource Metadata next to the resource, with a reason.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cfnlint.config import ConfigFileArgs, ConfigMixIn, ManualArgs
from cfnlint.decode import decode_str
from cfnlint.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
CFNLINTRC = ROOT / ".cfnlintrc"
TEMPLATES = ROOT / "templates_out"
DEFAULT_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def cfn_lint_settings() -> ManualArgs:
    """The .cfnlintrc settings that apply to a single in-memory template."""
    args = ConfigFileArgs(config_file=CFNLINTRC).file_args
    keys = ("regions", "include_checks", "ignore_checks", "configure_rules", "mandatory_checks")
    return ManualArgs(**{key: args[key] for key in keys if key in args})


@functools.lru_cache(maxsize=1)
def _runner() -> Runner:
    """Loading cfn-lint's rules takes about a second: load them once per process."""
    return Runner(ConfigMixIn([], **cfn_lint_settings()))


def cfn_lint_document(document: dict) -> list[str]:
    """Findings of cfn-lint on one template document (used by the tests)."""
    template, errors = decode_str(json.dumps(document))
    matches = errors or list(_runner().validate_template(template))
    return [_format(m) for m in matches]


def cfn_lint_files(paths: list[Path]) -> list[str]:
    """Findings of cfn-lint on template files, with the repository's .cfnlintrc."""
    config = ConfigMixIn(["--config-file", str(CFNLINTRC)] + [str(p) for p in paths])
    return [_format(m) for m in Runner(config).run()]


def _format(match) -> str:
    where = Path(match.filename).name if match.filename else "<template>"
    return f"{match.rule.id} {where}:{match.linenumber}: {match.message}"


def checkov(checkov_bin: Path, directory: Path) -> tuple[list[str], int]:
    """Failed checks and the number of suppressions checkov applied (offline run)."""
    if not checkov_bin.exists():
        raise FileNotFoundError(
            f"checkov not found at {checkov_bin}; create it with: python3 -m venv .venv-checkov && "
            ".venv-checkov/bin/pip install checkov==3.3.30"
        )
    with tempfile.TemporaryDirectory(prefix="checkov-home-") as home:
        proc = _run_checkov(checkov_bin, directory, home)
    return _checkov_findings(proc, directory)


def _run_checkov(checkov_bin: Path, directory: Path, home: str) -> subprocess.CompletedProcess:
    """Offline run: no platform download, no package scan, a throw-away HOME for its caches."""
    return subprocess.run(
        [
            str(checkov_bin),
            "--framework",
            "cloudformation",
            "--directory",
            str(directory),
            "--skip-path",
            "manifest.json",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "BC_SKIP_MAPPING": "TRUE",
            "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
            "HOME": home,
        },
    )


def _checkov_findings(proc: subprocess.CompletedProcess, directory: Path) -> tuple[list[str], int]:
    try:
        report = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise RuntimeError(f"checkov did not produce a JSON report:\n{proc.stdout}{proc.stderr}")
    reports = report if isinstance(report, list) else [report]
    failed, skipped, resources = [], 0, 0
    for item in reports:
        summary = item.get("summary", {})
        skipped += summary.get("skipped", 0)
        resources += summary.get("resource_count", 0)
        if summary.get("parsing_errors"):
            failed.append(f"checkov could not parse {summary['parsing_errors']} template(s)")
        for check in item.get("results", {}).get("failed_checks", []):
            failed.append(
                f"{check['check_id']} {Path(check['file_path']).name} {check['resource']}: "
                f"{check['check_name']}"
            )
    if not resources:
        failed.append(f"checkov scanned no resources in {directory}")
    return failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generator.lint", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkov", default=str(DEFAULT_CHECKOV), help="checkov executable")
    parser.add_argument(
        "--templates", default=str(TEMPLATES), help="directory of generated templates"
    )
    args = parser.parse_args(argv)
    directory = Path(args.templates)
    paths = sorted(p for p in directory.glob("*.json") if p.name != "manifest.json")
    if not paths:
        print(f"lint: no templates in {directory}; run `make templates` first", file=sys.stderr)
        return 1
    problems = 0
    lint_findings = cfn_lint_files(paths)
    print(f"[*] cfn-lint: {len(paths)} templates, {len(lint_findings)} findings")
    for finding in lint_findings:
        print(f"    {finding}")
    problems += len(lint_findings)
    try:
        failed, skipped = checkov(Path(args.checkov), directory)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"lint: {exc}", file=sys.stderr)
        return 1
    print(f"[*] checkov: {len(failed)} failed checks, {skipped} suppressed (reasons in Metadata)")
    for finding in failed:
        print(f"    {finding}")
    problems += len(failed)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
