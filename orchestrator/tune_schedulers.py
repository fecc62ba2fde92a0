"""Ray Tune schedulers of ablate: `SeedMeanScheduler` (seed-aware ASHA) and `ResumingASHA` (Tune's ASHA).

`SeedMeanScheduler`'s decisions are `orchestrator.pruners.SeedMeanHalving`'s (pure, shared with `ablate replay`);
this module only adapts them to Tune's `TrialScheduler` hooks. Both schedulers remember across a resume: Tune
restores an experiment with the scheduler as it was created, empty, so without it every restored trial would
pass its next rungs unopposed. Given `recorded` (trial key -> the results it reported before, from the sweep's
store), each re-records a restored trial's past results when Tune adds the trial. Only the engine imports this
module (Ray stays behind the engine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from orchestrator.pruners import STOP, SeedMeanHalving

BRANCH = "branch"
"""The config key that marks a rescue branch's Tune trial: it starts mid-run from another trial's checkpoint, so
the schedulers leave it out of their comparisons."""

__all__ = ["Recorded", "ResumingASHA", "SeedMeanScheduler"]

Recorded = Callable[[str], list[dict[str, Any]]]
"""Trial key -> the results the trial reported before (oldest first; empty for a trial that never ran)."""


def _recorded_results(recorded: Recorded | None, trial: Trial, key: str) -> list[dict[str, Any]]:
    if recorded is None or key not in trial.config:
        return []  # a search's trial (its config holds sampled values): nothing to look up
    return recorded(str(trial.config[key]))


class ResumingASHA(AsyncHyperBandScheduler):
    """Tune's `AsyncHyperBandScheduler`, which re-records a restored trial's past results when Tune adds it.

    The past results only fill the rungs (the replay's own decisions are dropped): a restored trial is judged again
    at the next rung it reaches, against every trial recorded there. A trial that had ended is recorded as complete.

    Args:
        recorded: Trial key -> its past results (see `Recorded`); None records nothing.
        key: The config entry that holds a trial's key (the engine's `trial_id`).
        **asha: `AsyncHyperBandScheduler`'s arguments.
    """

    def __init__(self, *, recorded: Recorded | None = None, key: str = "trial_id", **asha: Any) -> None:
        super().__init__(**asha)
        self._recorded = recorded
        self._key = key

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Assign the trial a bracket, then record what it reported before a resume."""
        super().on_trial_add(tune_controller, trial)
        results = _recorded_results(self._recorded, trial, self._key)
        for result in results:
            super().on_trial_result(tune_controller, trial, result)
        if results and trial.status == Trial.TERMINATED:
            super().on_trial_complete(tune_controller, trial, results[-1])


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
        recorded: Trial key -> its past results (see `Recorded`), re-recorded when Tune adds a restored trial: the
            rungs are filled again and a configuration may be judged (its seeds then stop at their next result).

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
        recorded: Recorded | None = None,
    ) -> None:
        super().__init__()
        self._recorded = recorded
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
        """Register the trial with its configuration, and record what it reported before a resume."""
        if trial.config.get(BRANCH):
            return
        key = self._trial_key(trial)
        results = _recorded_results(self._recorded, trial, self._key)
        for result in results:
            if self._time_attr in result:
                self._halving.on_result(key, result[self._time_attr], result.get(self._metric))
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            # An ended trial no longer keeps its configuration waiting at a rung, with or without a signal.
            self._halving.on_complete(key, results[-1].get(self._metric) if results else None)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        """Return STOP for a trial of a dominated configuration, CONTINUE otherwise."""
        if self._time_attr not in result or trial.config.get(BRANCH):
            return TrialScheduler.CONTINUE
        key = self._trial_key(trial)
        action, evidence = self._halving.on_result(key, result[self._time_attr], result.get(self._metric))
        if action == STOP:
            self.evidence[key] = evidence or {}
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        """Record that the trial ended, with its last signal."""
        if trial.config.get(BRANCH):
            return
        self._halving.on_complete(self._trial_key(trial), (result or {}).get(self._metric))

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """Record that the trial ended in an error (its configuration no longer waits for it)."""
        if trial.config.get(BRANCH):
            return
        self._halving.on_complete(self._trial_key(trial))

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Record that the trial was removed."""
        if trial.config.get(BRANCH):
            return
        self._halving.on_complete(self._trial_key(trial))

    def debug_string(self) -> str:
        """Return a one-line state for Tune's status output."""
        return f"SeedMeanScheduler: {len(self._halving.stopped_groups())} configuration(s) stopped"
