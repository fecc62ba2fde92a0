"""Stop at once when the loss, the grad norm or the objective is NaN or inf."""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.collapse._base import Verdict
from orchestrator.collapse._validation import check_metric
from orchestrator.history import History

DEFAULT_METRICS = ("actor/pg_loss", "actor/grad_norm")


class NonFiniteRule:
    """Fires at the first step where any watched metric is NaN or inf.

    verl's file logger writes NaN and inf as `null`, which the readers turn back into NaN. A metric that was not
    logged at a step is not judged there.

    Args:
        metrics: The metrics to watch.
        objective: The run's objective, watched as well when given.

    Example:
        >>> from orchestrator.history import StepMetrics
        >>> rule = NonFiniteRule()
        >>> rule.check([StepMetrics(1, {"actor/grad_norm": 0.3}), StepMetrics(2, {"actor/grad_norm": float("nan")})]).step
        2
    """

    name = "non_finite"

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, objective: str | None = None) -> None:
        watched = [check_metric("metrics", metric) for metric in metrics]
        if objective is not None:
            watched.append(check_metric("objective", objective))
        self._metrics = tuple(dict.fromkeys(watched))

    def check(self, history: History) -> Verdict | None:
        """Return a verdict at the first non-finite value of a watched metric, or None."""
        for point in history:
            for metric in self._metrics:
                value = point.metrics.get(metric)
                # Not logged at this step, or a number: nothing to judge.
                if value is None or math.isfinite(value):
                    continue
                return Verdict(
                    rule=self.name,
                    step=point.step,
                    reason=f"`{metric}` was {value} at step {point.step}.",
                    evidence={"metric": metric, "value": str(value), "onset_step": point.step},
                )
        return None
