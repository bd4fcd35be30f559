"""Fixtures for the generator tests: the shipped config, variants of it, and rendered output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# The test modules share generator_testkit; the tests run with --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generator_testkit import CONFIG_PATH, VARIANTS, variant  # noqa: E402

from generator import config as config_module  # noqa: E402
from generator.render import render  # noqa: E402


@pytest.fixture(scope="session")
def cfg():
    return config_module.load(CONFIG_PATH)


@pytest.fixture(scope="session")
def rendered(cfg) -> dict[str, str]:
    return render(cfg)


@pytest.fixture(scope="session")
def templates(rendered) -> dict[str, dict]:
    """Concern -> template document for the shipped config."""
    return {
        name[: -len(".json")]: json.loads(text)
        for name, text in rendered.items()
        if name != "manifest.json"
    }


@pytest.fixture(scope="session")
def manifest(rendered) -> dict:
    return json.loads(rendered["manifest.json"])


@pytest.fixture(scope="session")
def variant_renders() -> dict[str, dict[str, str]]:
    """Variant name -> rendered files, for every configuration in VARIANTS."""
    return {
        name: render(config_module.parse(variant(**changes))) for name, changes in VARIANTS.items()
    }
