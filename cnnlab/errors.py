"""Errors a user can cause, each printed by the CLI as one line with its own exit code."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (config, data, paths): one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config key or value that fails validation."""


class DataError(UserError):
    """A dataset file that is missing, truncated, corrupt or inconsistent."""


class DivergedError(Exception):
    """The training loss became NaN or infinite: exit code 3."""

    exit_code = 3


def suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?)' for the closest candidate, or '' when none is close."""
    import difflib

    best = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{best[0]}'?)" if best else ""
