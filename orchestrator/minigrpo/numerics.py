"""The same run on other x86 machines: the miniature's CPU kernels are pinned to AVX2.

PyTorch picks its vectorised kernels (ATen's, and MKL's matrix products) by the CPU it finds: AVX-512 where there
is AVX-512, AVX2 otherwise. The two sum in different orders, and GRPO near collapse amplifies a last-bit difference
into another run within a few dozen steps: the same seed would collapse at step 5 on one machine and at step 15 on
the next, and a test or a benchmark written on one would not hold on the other. Pinning both to AVX2, which x86
CPUs of the last decade have, gives a seed the same run on each of them, up to oneDNN.

oneDNN, which torch calls for GELU's forward pass (the only oneDNN primitive the trainer runs, by ONEDNN_VERBOSE),
chooses its instructions itself and is not pinned: on this project's machine (AVX-512) pinning it to AVX2 too
(`ONEDNN_MAX_CPU_ISA=AVX2`) changed the runs again, and the calibration with it (benchmarks/results/minigrpo.md,
Reading) has n=8 collapsing late in 4 of 10 seeds. So a CPU whose oneDNN picks other instructions (one without
AVX-512) may still give other runs.

The pin must come before torch is imported: `pin()` is called first thing by the trainer's entry point
(`python -m orchestrator.minigrpo`) and by the test suite. `ABLATE_MINIGRPO_NATIVE_NUMERICS=1` keeps the
machine's own kernels. Other processes (a verl trainer, the orchestrator) are never pinned.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# ATen's kernels (torch reads this at its first dispatch) and MKL's Conditional Numerical Reproducibility branch.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
NATIVE_ENV = "ABLATE_MINIGRPO_NATIVE_NUMERICS"


def pin() -> bool:
    """Pin this process's CPU kernels to AVX2 where the CPU has it; return whether they are pinned.

    Leaves them alone when `ABLATE_MINIGRPO_NATIVE_NUMERICS` is set, on a CPU without AVX2 and FMA (forcing them
    there would crash), or when torch is already imported (too late: the capability may be fixed); the
    warm-start cache's key records whichever kernels are in use.
    """
    if os.environ.get(NATIVE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    if "torch" in sys.modules or not _has_avx2():
        return False
    os.environ.update(PORTABLE_ENV)
    return True


def describe() -> str:
    """Return the kernels in use, e.g. "AVX2/MKL_CBWR=AVX2" (imports torch)."""
    import torch

    return f"{torch.backends.cpu.get_cpu_capability()}/MKL_CBWR={os.environ.get('MKL_CBWR', 'auto')}"


def _has_avx2() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: keep the machine's own kernels
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {"avx2", "fma"} <= flags
    return False
