"""Load each Lambda function as its zip lays it out, and read the canned events.

Both functions have a module named ``handler``, so each is imported by file path under a
distinct name, with its folder and lambda_src/shared on sys.path only while it loads.
"""

import copy
import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_SRC = ROOT / "lambda_src"
EVENTS = ROOT / "tests" / "events"


def load_function(name: str) -> SimpleNamespace:
    """The function's modules by name (``.handler``, ``.endpoint``, ...), freshly imported."""
    folders = [LAMBDA_SRC / name, LAMBDA_SRC / "shared"]
    module_names = sorted({path.stem for folder in folders for path in folder.glob("*.py")})
    saved_path = sys.path[:]
    sys.path[:0] = [str(folder) for folder in folders]
    try:
        for module_name in module_names:
            sys.modules.pop(module_name, None)
        spec = importlib.util.spec_from_file_location(f"{name}_handler", folders[0] / "handler.py")
        handler = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = handler
        spec.loader.exec_module(handler)
        modules = {module_name: sys.modules[module_name] for module_name in module_names
                   if module_name != "handler" and module_name in sys.modules}
    finally:
        sys.path[:] = saved_path
    return SimpleNamespace(handler=handler, **modules)


@functools.lru_cache(maxsize=None)
def _event_text(name: str) -> str:
    return (EVENTS / name).read_text()


def event(name: str) -> dict:
    """A fresh copy of a canned event from tests/events/."""
    return copy.deepcopy(json.loads(_event_text(name)))
