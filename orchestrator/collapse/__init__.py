"""Collapse rules: pure judgements over a run's metric history that say when, and why, a run has collapsed.

Each rule has one method, `check(history) -> Verdict | None`, with no I/O and no state, so the same code judges
live trials, recorded logs and replays. `first_verdict` is the OR over rules; `collect_warnings` gathers the
signs that do not stop a run on their own; `end_verdict` judges a finished run, including one whose last
evaluations dropped too late to be confirmed. Score rules judge a drop against the evaluation's noise too
(`EvalNoise`: binomial from the evaluation set's size, else the run's own spread); `ScoreSlideRule` catches a
slow slide by averaging several evaluations. `CollapseConfig` is the spec's `pruning.collapse` section and
`build_rules` turns it into rules.
"""

from orchestrator.collapse._base import (
    Baseline,
    Mode,
    Rule,
    Verdict,
    WarningRule,
    collapse_walk,
    collect_warnings,
    end_verdict,
    first_verdict,
)
from orchestrator.collapse._config import (
    CollapseConfig,
    DeadConfig,
    EntropyConfig,
    LengthCollapseConfig,
    NonFiniteConfig,
    ScoreDropConfig,
    ScoreSlideConfig,
    build_rules,
)
from orchestrator.collapse._dead import DeadRule
from orchestrator.collapse._noise import DEFAULT_NOISE_Z, EvalNoise, Noise
from orchestrator.collapse._entropy import EntropyRule
from orchestrator.collapse._length_collapse import LengthCollapseRule
from orchestrator.collapse._non_finite import NonFiniteRule
from orchestrator.collapse._score_drop import ScoreDropRule
from orchestrator.collapse._score_slide import ScoreSlideRule
from orchestrator.collapse._signs import MISMATCH_SIGN_NAMES, SIGN_NAMES, Sign, build_signs

__all__ = [
    "DEFAULT_NOISE_Z",
    "MISMATCH_SIGN_NAMES",
    "SIGN_NAMES",
    "Baseline",
    "CollapseConfig",
    "DeadConfig",
    "DeadRule",
    "EntropyConfig",
    "EntropyRule",
    "EvalNoise",
    "LengthCollapseConfig",
    "LengthCollapseRule",
    "Mode",
    "Noise",
    "NonFiniteConfig",
    "NonFiniteRule",
    "Rule",
    "ScoreDropConfig",
    "ScoreDropRule",
    "ScoreSlideConfig",
    "ScoreSlideRule",
    "Sign",
    "Verdict",
    "WarningRule",
    "build_rules",
    "build_signs",
    "collect_warnings",
    "collapse_walk",
    "end_verdict",
    "first_verdict",
]
