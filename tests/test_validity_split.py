"""The coverage study's seed split (benchmarks/validity.py): truth and subsets never share a seed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _validity():
    name = "benchmarks_validity"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "validity.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_truth_and_subset_seeds_are_disjoint_and_halves_partition_the_pool():
    split = _validity().split_seeds(40, 20)
    assert split.truth == tuple(range(1, 21))
    assert not set(split.truth) & set(split.pool)
    assert set(split.selection) | set(split.evaluation) == set(split.pool) == set(range(21, 41))
    assert not set(split.selection) & set(split.evaluation)
    assert len(split.selection) == len(split.evaluation) == 10


def test_the_study_uses_the_split():
    module = _validity()
    assert module.SPLIT == module.split_seeds(module.N_SEEDS, module.N_TRUTH)


@pytest.mark.parametrize("n_seeds, n_truth", [(40, 0), (40, 40), (40, 19)])
def test_a_split_without_a_truth_or_an_even_pool_is_refused(n_seeds, n_truth):
    with pytest.raises(ValueError):
        _validity().split_seeds(n_seeds, n_truth)
