"""The exceptions ablate raises on purpose. Anything else reaching the CLI is a bug."""

from __future__ import annotations


class AblateError(Exception):
    """Base class of every error ablate reports to a user."""


class SpecError(AblateError):
    """A sweep spec, or a trial built from it, is invalid; the message names the file and field path."""


class LaunchError(AblateError):
    """A trainer process or job could not be started; the message names the trial and the log to open."""


class StoreError(AblateError):
    """The sweep store is missing, locked or inconsistent; the message names the database path."""
