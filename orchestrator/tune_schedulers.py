"""Ray Tune schedulers of ablate: `SeedMeanScheduler`, seed-aware ASHA for seed-repeated sweeps.

The decisions are `orchestrator.pruners.SeedMeanHalving`'s (pure, shared with `ablate replay`); this module only
adapts them to Tune's `TrialScheduler` hooks. Only the engine imports it (Ray stays behind the engine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.pruners import STOP, SeedMeanHalving

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["SeedMeanScheduler"]


class SeedMeanScheduler(FIFOScheduler):
    """Stop every seed of a configuration whose seed mean falls below ASHA's cutoff at a rung.

    Args:
        time_attr: The result key that measures progress (the engine reports `step`).
        metric: The result key judged (the engine's `signal`: best so far or EMA of the objective).
        mode: `max` or `min`.
        max_t: A result at or past it stops the trial, as in ASHA.
        grace_steps: The first rung.
        reduction_factor: Rung spacing and cutoff, as in ASHA.
        groups: Trial key -> configuration, for the trials known up-front.
        key: The config entry that holds a trial's key (the engine's `trial_id`).
        group_of: For trials not in `groups` (created by a search algorithm): config -> configuration.
            Without it such a trial is its own configuration.

    Attributes:
        evidence: Trial key -> the evidence of its stop (rung, seed mean, cutoff), for the trials it stopped.
    """

    def __init__(
        self,
        *,
        time_attr: str,
        metric: str,
        mode: str,
        max_t: int,
        grace_steps: int,
        reduction_factor: float,
        groups: Mapping[str, str],
        key: str = "trial_id",
        group_of: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        super().__init__()
        self._time_attr = time_attr
        self._metric = metric
        self._key = key
        self._group_of = group_of
        self._halving = SeedMeanHalving(grace_steps, max_t, reduction_factor, mode, groups)
        self.evidence: dict[str, dict[str, Any]] = {}

    def _trial_key(self, trial: Trial) -> str:
        key = str(trial.config.get(self._key, trial.trial_id))
        group = self._group_of(trial.config) if self._group_of is not None else key
        self._halving.add(key, group)
        return key

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Register the trial with its configuration."""
        self._trial_key(trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """Return STOP for a trial of a dominated configuration, CONTINUE otherwise."""
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        key = self._trial_key(trial)
        action, evidence = self._halving.on_result(key, result[self._time_attr], result.get(self._metric))
        if action == STOP:
            self.evidence[key] = evidence or {}
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """Record that the trial ended, with its last signal."""
        self._halving.on_complete(self._trial_key(trial), (result or {}).get(self._metric))

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """Record that the trial ended in an error (its configuration no longer waits for it)."""
        self._halving.on_complete(self._trial_key(trial))

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Record that the trial was removed."""
        self._halving.on_complete(self._trial_key(trial))

    def debug_string(self) -> str:
        """Return a one-line state for Tune's status output."""
        return f"SeedMeanScheduler: {len(self._halving.stopped_groups())} configuration(s) stopped"
