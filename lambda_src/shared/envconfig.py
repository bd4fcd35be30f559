"""Typed reading of a function's environment with errors that name the variable and the fix."""

from typing import Mapping, Optional, Sequence


class ConfigError(Exception):
    """The function's environment is wrong: a deployment problem, never the caller's fault."""


def _raw(env: Mapping[str, str], key: str, required: bool) -> Optional[str]:
    value = env.get(key)
    if value is None or value.strip() == "":
        if required:
            raise ConfigError(f"environment variable {key} is missing or empty")
        return None
    return value.strip()


def text(env: Mapping[str, str], key: str) -> str:
    """A required non-empty string."""
    return _raw(env, key, required=True)


def integer(env: Mapping[str, str], key: str, low: int, high: int) -> int:
    """A required integer in ``[low, high]``."""
    value = _raw(env, key, required=True)
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ConfigError(
            f"environment variable {key}={value!r}: expected an integer in [{low}, {high}]")
    return number


def flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    """An optional ``true``/``false`` (case-insensitive)."""
    value = _raw(env, key, required=False)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"environment variable {key}={value!r}: expected one of true, false")
    return value.lower() == "true"


def choice(env: Mapping[str, str], key: str, allowed: Sequence[str]) -> str:
    """A required value from ``allowed``."""
    value = _raw(env, key, required=True)
    if value not in allowed:
        raise ConfigError(
            f"environment variable {key}={value!r}: expected one of {', '.join(allowed)}")
    return value
