"""A miniature GRPO trainer that really trains on a CPU, and really collapses.

It stands in for verl where there is no GPU: sweeps, collapse rules, pruners and reports run on real training
curves, collapses included.

Run as `python -m orchestrator.minigrpo key=value ...` with verl's override keys. It writes verl's metrics file and
checkpoint layout, so everything downstream of a trial is the same code for verl and for this trainer.
"""

from orchestrator.minigrpo.config import MiniConfigError, compose

__all__ = ["MiniConfigError", "compose"]
