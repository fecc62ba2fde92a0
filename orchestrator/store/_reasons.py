"""Why a trial stopped: the one type for stop reasons, as stored and as read back."""

from __future__ import annotations

import re

__all__ = ["STOP_KINDS", "StopReason"]

STOP_KINDS = ("completed", "asha", "failed", "cancelled", "collapse")
"""How a trial can end: ran its budget, stopped by ASHA, failed after its retries, cancelled, stopped by a rule."""

_PATTERN = re.compile(r"^(completed|asha|failed|cancelled|collapse:[A-Za-z0-9_.-]+)$")
_STATUS = {"completed": "completed", "asha": "stopped", "collapse": "stopped", "failed": "failed", "cancelled": "cancelled"}


class StopReason(str):
    """A stop reason: `completed`, `asha`, `failed`, `cancelled` or `collapse:<rule>`.

    It is a `str` (it is stored, compared and written to JSON as its text); build one with `StopReason(text)`, which
    validates it, or `StopReason.collapse(rule)`.

    Raises:
        ValueError: If the text is not a stop reason.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> StopReason:
        if isinstance(text, StopReason):
            return text
        if not isinstance(text, str) or not _PATTERN.match(text):
            raise ValueError(
                f"`reason` has to be one of [completed, collapse:<rule>, asha, failed, cancelled] (got {text!r})"
            )
        return super().__new__(cls, text)

    @classmethod
    def collapse(cls, rule: str) -> StopReason:
        """Return the reason of a stop by the collapse rule named `rule`."""
        return cls(f"collapse:{rule}")

    @classmethod
    def parse(cls, text: str | None) -> StopReason | None:
        """Return `text` as a stop reason, None for None or a text that is not one (e.g. a bare status)."""
        if text is None or not _PATTERN.match(text):
            return None
        return cls(text)

    @property
    def kind(self) -> str:
        """One of `STOP_KINDS` (`collapse` for any rule)."""
        return self.partition(":")[0]

    @property
    def is_collapse(self) -> bool:
        """True if a collapse rule stopped the trial."""
        return self.kind == "collapse"

    @property
    def rule(self) -> str | None:
        """The collapse rule's name, or None for another reason."""
        return self.partition(":")[2] if self.is_collapse else None

    @property
    def pruned(self) -> bool:
        """True if the trial was cut short by pruning (ASHA or a collapse rule)."""
        return self.kind in ("asha", "collapse")

    @property
    def status(self) -> str:
        """The trial status this reason leads to (`stopped` for a pruned trial)."""
        return _STATUS[self.kind]

    def __repr__(self) -> str:
        return f"StopReason({str.__repr__(self)})"
