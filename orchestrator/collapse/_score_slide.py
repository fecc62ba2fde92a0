"""Stop when the objective slides: its average over the last few evaluations is well below its best average.

`ScoreDropRule` judges single evaluations, so on a small evaluation set it must wait for a fall that one noisy
evaluation cannot show by chance. A slow slide (a third of the gain lost over five evaluations, say) never gets
there, although the trend is plain. Averaging `window` evaluations divides the noise of each side by
sqrt(window): this rule compares the mean of the last `window` evaluations with the best mean of `window`
earlier evaluations (the two windows do not overlap) and fires when the current mean has lost `drop` of the best
mean's gain and is `z` standard errors of a difference of two such means below it.

The noise is the binomial noise of `orchestrator.collapse._noise`, from the evaluation set's size (declared,
inferred from the values, or a common benchmark's). Without a size the rule does not judge: a moderate slide
cannot be told from noise whose size is only estimated from the run's own spread (on simulated healthy runs
judged by their spread, the rule stopped a few percent of them; a severe fall is `ScoreDropRule`'s). `z` is
stricter than `noise_z` because the rule looks at every window of a run: 4.5 keeps false stops of simulated
healthy runs on 30 problems under 1% (benchmarks/results/calibration.md).
"""

from __future__ import annotations

import math

from orchestrator.collapse._base import Baseline, Mode, Verdict
from orchestrator.collapse._noise import EvalNoise
from orchestrator.collapse._score import better
from orchestrator.collapse._validation import (
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_non_negative,
    check_open_unit,
)
from orchestrator.history import History, series

DEFAULT_SLIDE_Z = 4.5
"""Standard errors of a difference of window means a slide must exceed (see the module's docstring)."""


class ScoreSlideRule:
    """Fires when the mean of the last `window` evaluations lost `drop` of the best earlier window mean's gain.

    With a noise model the loss must also be `z` standard errors of the difference of two window means, and the
    rule fires only where the evaluation set's size is known (binomial noise). Without a noise model
    (`noise_z: 0`) the threshold alone judges.
    Windows that start before `grace_steps` are never judged (they still count as earlier windows).

    Args:
        metric: The objective (a validation metric, logged on evaluation steps only).
        mode: `max` or `min`.
        window: How many evaluations each mean covers.
        drop: The fraction of the best window mean's gain over the baseline that is lost, in (0, 1).
        z: How many standard errors of the difference the loss must exceed.
        grace_steps: Windows starting at steps below this are not judged.
        baseline: The origin of the gain: a number, or `"first"` for the first evaluation.
        noise: The objective's noise model, or None to judge by the threshold alone.

    Example:
        A slow slide on GPQA-Diamond (198 problems; a real run's evaluations), which no single evaluation shows
        beyond the noise, so `ScoreDropRule` never fires:

        >>> from orchestrator.collapse._noise import EvalNoise
        >>> from orchestrator.history import StepMetrics
        >>> metric = "val-core/gpqa_diamond/acc/mean@1"
        >>> scores = [0.287, 0.311, 0.306, 0.277, 0.275, 0.244, 0.239, 0.211, 0.21, 0.208, 0.178, 0.17, 0.164]
        >>> history = [StepMetrics(5 * i, {metric: s}) for i, s in enumerate(scores)]
        >>> noise = EvalNoise(metric, {"gpqa_diamond": 198})
        >>> verdict = ScoreSlideRule(metric, noise=noise).check(history)
        >>> verdict.step, verdict.evidence["onset_step"], round(verdict.evidence["z"], 1)
        (55, 45, 4.7)
    """

    name = "score_slide"

    def __init__(
        self,
        metric: str,
        mode: Mode = "max",
        *,
        window: int = 3,
        drop: float = 0.15,
        z: float = DEFAULT_SLIDE_Z,
        grace_steps: int = 0,
        baseline: Baseline = 0.0,
        noise: EvalNoise | None = None,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        self._window = check_at_least("window", window, 1)
        self._drop = check_open_unit("drop", drop)
        self._z = check_non_negative("z", z)
        self._grace_steps = check_at_least("grace_steps", grace_steps, 0)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._noise = noise

    def check(self, history: History) -> Verdict | None:
        """Return the verdict at the first window that slid, or None."""
        evals = series(history, self._metric, finite=True)
        k = self._window
        if len(evals) < 2 * k:
            return None
        values = [value for _, value in evals]
        base = values[0] if self._baseline == "first" else float(self._baseline)
        means = [sum(values[j : j + k]) / k for j in range(len(values) - k + 1)]
        best_index: int | None = None
        for start in range(k, len(means)):
            # The best window that ends before this one starts.
            earlier = start - k
            if best_index is None or better(means[earlier], means[best_index], self._mode):
                best_index = earlier
            if evals[start][0] < self._grace_steps:
                continue
            verdict = self._judge(evals, values, means, start, best_index, base)
            if verdict is not None:
                return verdict
        return None

    def _judge(
        self,
        evals: list[tuple[int, float]],
        values: list[float],
        means: list[float],
        start: int,
        best_index: int,
        base: float,
    ) -> Verdict | None:
        k = self._window
        best, current = means[best_index], means[start]
        gain = abs(best - base)
        if gain == 0.0 or not better(best, current, self._mode):
            return None
        lost = abs(best - current) / gain
        if lost < self._drop:
            return None
        z = noise = None
        if self._noise is not None and self._noise.z > 0:
            # The spread is measured before the window; the size may show in every evaluation so far.
            noise = self._noise.at(values[:start], current, best, seen=values[: start + k])
            if noise is None or noise.kind != "binomial":
                return None
            sigma = noise.diff_sigma(best, current) / math.sqrt(k)
            z = math.inf if sigma == 0.0 else abs(best - current) / sigma
            if z < self._z:
                return None
        window = evals[start : start + k]
        best_window = evals[best_index : best_index + k]
        end_step = window[-1][0]
        beyond = "" if z is None else f" ({z:.3g} standard errors of the difference; {noise.describe()})"  # type: ignore[union-attr]
        reason = (
            f"`{self._metric}` averaged {current:.4g} over its last {k} evaluations (steps {window[0][0]}-{end_step}), "
            f"{lost:.0%} of its gain over {base:.4g} below its best {k}-evaluation average {best:.4g} "
            f"(steps {best_window[0][0]}-{best_window[-1][0]}){beyond}."
        )
        evidence: dict[str, object] = {
            "metric": self._metric,
            "mode": self._mode,
            "window": k,
            "drop": self._drop,
            "score": current,
            "score_step": end_step,
            "best": best,
            "best_step": best_window[-1][0],
            "baseline": base,
            "lost": lost,
            "evals": [[step, value] for step, value in window],
            "best_evals": [[step, value] for step, value in best_window],
            "onset_step": window[0][0],
            "onset_eval_step": window[0][0],
        }
        if noise is not None:
            evidence.update({"z": z, "z_limit": self._z, "noise": noise.describe(), "noise_sd": noise.diff_sigma(best, current) / math.sqrt(k)})
        return Verdict(rule=self.name, step=end_step, reason=reason, evidence=evidence)
