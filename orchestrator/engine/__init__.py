"""The engine: the one adapter between ablate and Ray Tune.

- `_driver`: `run_sweep`, one Tune experiment per sweep, and what settles the store when Tune returns;
- `_trial`: `run_trial`, the Tune trainable, and `TrialRun`, one attempt of one trial (launch, tail, store, report);
- `_tune`: Tune's driver-side hooks (the store callback, the signals a resumed scheduler re-reads);
- `_rescue_search`: the searcher of a sweep with rescue branches (the trials, then each stopped one's branches);
- `_settings`: what every trial worker knows about its sweep.

What a trial's points mean (objective, best, scheduler signal, collapse verdict) is decided by the pure
`orchestrator.judge`, shared with `ablate replay`; the sweep folder's layout is `orchestrator.sweepdir`; the
pre-flight check is `orchestrator.preflight`. Ray is imported inside the functions that need it.
"""

from orchestrator.engine._driver import RescueRequest, SweepOutcome, prepare_sweep, run_sweep, tune_environment
from orchestrator.engine._settings import PROXY_CPUS, SIGNAL, STORE_ID, TRIAL_END_WAIT_S, SweepSettings
from orchestrator.engine._trial import TrialFailed, TrialRun, run_trial
from orchestrator.engine._tune import RecordedSignals, StoreCallback
from orchestrator.search import BEST

__all__ = [
    "BEST",
    "PROXY_CPUS",
    "SIGNAL",
    "STORE_ID",
    "TRIAL_END_WAIT_S",
    "RecordedSignals",
    "RescueRequest",
    "StoreCallback",
    "SweepOutcome",
    "SweepSettings",
    "TrialFailed",
    "TrialRun",
    "prepare_sweep",
    "run_sweep",
    "run_trial",
    "tune_environment",
]
