"""Seed-aware successive halving: configurations judged on their seed means, all seeds stopped together.

ASHA judges single trials. In a seed-repeated ablation that culls the unlucky seeds of a good configuration and
biases the comparison towards low-variance configurations. `SeedMeanHalving` keeps ASHA's rungs and cutoff but
applies them to configurations: at each rung a configuration's value is the mean over its seeds of the signal
each seed reported at (the first result past) that rung, and a configuration whose mean falls below the cutoff of
the configurations recorded there before it has every one of its seeds stopped.

This module is pure (no Ray, no I/O): the Tune scheduler (`orchestrator.tune_schedulers.SeedMeanScheduler`) and
`ablate replay` drive the same object, so a replay makes exactly the live decisions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CONTINUE", "STOP", "SeedMeanHalving", "rung_milestones"]

CONTINUE = "CONTINUE"
STOP = "STOP"


def rung_milestones(grace_steps: int, max_t: int, reduction_factor: float) -> list[float]:
    """Return ASHA's rung milestones for one bracket, lowest first: `grace * rf**k` while below `max_t`.

    Args:
        grace_steps: The first rung (Tune's `grace_period`).
        max_t: Tune's `max_t`: the number of rungs is `int(log(max_t / grace) / log(rf) + 1)`, as in Tune.
        reduction_factor: Tune's `reduction_factor`.

    Raises:
        ValueError: If `grace_steps` or `max_t` is below 1, or `reduction_factor` is at most 1.
    """
    if grace_steps < 1:
        raise ValueError(f"`grace_steps` must be >= 1 (got {grace_steps})")
    if max_t < 1:
        raise ValueError(f"`max_t` must be >= 1 (got {max_t})")
    if reduction_factor <= 1:
        raise ValueError(f"`reduction_factor` must be above 1 but got {reduction_factor}.")
    n_rungs = int(np.log(max_t / grace_steps) / np.log(reduction_factor) + 1)
    return [grace_steps * reduction_factor**k for k in range(max(n_rungs, 0))]


class SeedMeanHalving:
    """Asynchronous successive halving over configurations (groups of seeds) instead of single trials.

    Decisions, per rung milestone m (ASHA's, `rung_milestones`):

    - A trial's value at m is its signal at its first result with step >= m (recorded at every rung it passes).
    - A group is complete at m once each of its trials has a value there or has ended; a trial that ended before
      m counts with its last signal (with a best-so-far signal that is its final best), one that never reported
      a signal is left out.
    - When a group completes m its mean is compared with the cutoff `nanpercentile(means of the groups completed
      at m before it, (1 - 1/rf) * 100)`: below it (for `max`), the group is stopped. The first group to complete
      a rung has nothing to be compared with and continues, as in ASHA; a group is judged once per rung.
    - A stopped group's trials are stopped at their next result, including seeds that had not started yet.
    - A result without a signal continues and records nothing; a result at `max_t` or later stops, as in Tune.

    Args:
        grace_steps: The first rung.
        max_t: Results at or past it stop (the engine passes `max_steps + 1`: no trial is stopped for finishing).
        reduction_factor: Rungs grow by it, and the cutoff keeps the top `1/rf` of the configurations.
        mode: `max` or `min`.
        groups: Trial id -> its group (configuration); every trial of a group differs only in its seed.

    Raises:
        ValueError: On a bad `mode` or rung setting (see `rung_milestones`).
    """

    def __init__(
        self, grace_steps: int, max_t: int, reduction_factor: float, mode: str, groups: Mapping[str, str]
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` has to be one of [min, max]. Got: {mode}")
        self._rungs = rung_milestones(grace_steps, max_t, reduction_factor)
        self._max_t = max_t
        self._rf = reduction_factor
        self._op = 1.0 if mode == "max" else -1.0
        self._group_of = dict(groups)
        self._members: dict[str, list[str]] = {}
        for trial, group in self._group_of.items():
            self._members.setdefault(group, []).append(trial)
        self._last: dict[str, float] = {}
        self._ended: set[str] = set()
        self._values: dict[float, dict[str, float]] = {m: {} for m in self._rungs}  # rung -> trial -> value
        self._means: dict[float, dict[str, float]] = {m: {} for m in self._rungs}  # rung -> group -> mean
        self._stopped: dict[str, dict[str, Any]] = {}

    @property
    def rungs(self) -> list[float]:
        """Return the rung milestones, lowest first."""
        return list(self._rungs)

    def add(self, trial: str, group: str) -> None:
        """Register a trial (for trials not given at construction, e.g. created by a search)."""
        if trial not in self._group_of:
            self._group_of[trial] = group
            self._members.setdefault(group, []).append(trial)

    def stopped_groups(self) -> dict[str, dict[str, Any]]:
        """Return the stopped groups, each with the evidence of its stop (rung, mean, cutoff, seeds)."""
        return dict(self._stopped)

    def on_result(self, trial: str, step: float, signal: float | None) -> tuple[str, dict[str, Any] | None]:
        """Return CONTINUE or STOP for one result of `trial`, and the evidence of a stop.

        Raises:
            KeyError: If the trial was never registered.
        """
        group = self._group(trial)
        if group in self._stopped:
            return STOP, dict(self._stopped[group])
        # A result without a signal (no finite objective yet) records nothing, as in Tune.
        if signal is None or not math.isfinite(signal):
            return CONTINUE, None
        if step >= self._max_t:
            return STOP, {"rung": self._max_t, "cutoff": None, "value": signal, "group": group}
        self._last[trial] = signal
        for milestone in self._rungs:
            if step >= milestone and trial not in self._values[milestone]:
                self._values[milestone][trial] = signal
        self._judge(group)
        if group in self._stopped:
            return STOP, dict(self._stopped[group])
        return CONTINUE, None

    def on_complete(self, trial: str, signal: float | None = None) -> None:
        """Record that a trial ended (finished, collapsed, failed); its group may now complete a rung."""
        group = self._group(trial)
        if signal is not None and math.isfinite(signal):
            self._last[trial] = signal
        self._ended.add(trial)
        self._judge(group)

    def _group(self, trial: str) -> str:
        try:
            return self._group_of[trial]
        except KeyError:
            raise KeyError(f"trial {trial!r} is not registered with the scheduler") from None

    def _judge(self, group: str) -> None:
        """Judge `group` at every rung it has just completed, lowest first, until it is stopped."""
        for milestone in self._rungs:
            if group in self._stopped:
                return
            if group in self._means[milestone]:
                continue
            values = self._group_values(group, milestone)
            if values is None:
                return  # not complete here, so not at any higher rung either
            if not values:
                continue  # no seed ever reported a signal: nothing to judge
            mean = float(np.mean(values))
            cutoff = self._cutoff(self._means[milestone].values())
            self._means[milestone][group] = mean
            if cutoff is not None and self._op * mean < self._op * cutoff:
                self._stopped[group] = {
                    "rung": milestone,
                    "value": mean,
                    "cutoff": cutoff,
                    "n_seeds": len(values),
                    "n_configs": len(self._means[milestone]),
                    "group": group,
                }

    def _group_values(self, group: str, milestone: float) -> list[float] | None:
        """Return the seeds' values at a rung, or None while a seed is still on its way there."""
        values = []
        for trial in self._members[group]:
            if trial in self._values[milestone]:
                values.append(self._values[milestone][trial])
            elif trial in self._ended:
                if trial in self._last:
                    values.append(self._last[trial])
            else:
                return None
        return values

    def _cutoff(self, means: Any) -> float | None:
        recorded = [self._op * m for m in means]
        if not recorded:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cut = float(np.nanpercentile(recorded, (1 - 1 / self._rf) * 100))
        return self._op * cut
