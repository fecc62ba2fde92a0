"""The miniature backend: `python -m orchestrator.minigrpo`, a CPU GRPO trainer that speaks verl's dialect.

It takes the same override keys as verl, writes the same metrics file and checkpoint layout, and validates a
trial's overrides against its own struct-mode config (orchestrator.minigrpo.config.compose), the way Hydra refuses
an unknown key in verl's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from orchestrator.design import Trial
from orchestrator.trainers import Command, RunContext, plumbing_overrides
from orchestrator.trainers._hydra import format_override

MODULE = "orchestrator.minigrpo"


class MiniTrainer:
    """The built-in miniature GRPO trainer (CPU, seconds per run).

    Args:
        python: the interpreter that runs it.
    """

    name = "mini"
    eval_sources: tuple[str, ...] | None = ("mini",)
    """The data sources of the validation metrics it logs (`orchestrator.minigrpo.config.DATA_SOURCE`)."""

    def __init__(self, *, python: str | None = None) -> None:
        self._python = python or sys.executable

    def overrides(self, trial: Trial, ctx: RunContext) -> list[str]:
        """Return the override lines of one attempt: the trial's settings, then the run plumbing."""
        settings = {**trial.overrides, **plumbing_overrides(trial, ctx)}
        return [format_override(key, value) for key, value in settings.items()]

    def command(self, trial: Trial, ctx: RunContext) -> Command:
        """Return the argv and env of one attempt of `trial`. Pure."""
        argv = (self._python, "-m", MODULE, *self.overrides(trial, ctx))
        return Command(argv=argv, env={"VERL_FILE_LOGGER_PATH": str(ctx.metrics_path.absolute())})

    def validate(self, trials: Sequence[Trial], ctx_for: Callable[[Trial], RunContext]) -> dict[str, list[str]]:
        """Return, per trial id, the problems the miniature trainer's config finds with the trial's overrides."""
        from orchestrator.minigrpo.config import MiniConfigError, compose

        results: dict[str, list[str]] = {}
        for trial in trials:
            try:
                compose(self.overrides(trial, ctx_for(trial)))
            except (MiniConfigError, ValueError) as exc:
                results[trial.id] = [str(exc)]
            else:
                results[trial.id] = []
        return results
