"""Command line: `python -m orchestrator.minigrpo key=value ...` (Hydra override grammar, verl's keys).

Exit status: 0 when the run completes; 2 with one line on stderr when the overrides are invalid; 128 + the
signal's number when SIGTERM or SIGINT stops it; 1 when the run fails.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from orchestrator.minigrpo import numerics

USAGE = "usage: python -m orchestrator.minigrpo [key=value ...]  (verl's override keys; see mini_trainer.yaml)"


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the overrides, then train; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(USAGE)
        return 0
    numerics.pin()  # before torch is imported
    from orchestrator.minigrpo.config import MiniConfigError, compose

    try:
        cfg = compose(args)
    except MiniConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from orchestrator.minigrpo.trainer import Interrupted, train

    try:
        train(cfg)
    except Interrupted as exc:
        print(f"(minigrpo) {exc}", file=sys.stderr, flush=True)
        return 128 + exc.signum
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
