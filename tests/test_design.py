"""Design expansion: counts, order, names, stable ids, merged duplicates, seeds."""

from __future__ import annotations

import textwrap
from pathlib import Path

from orchestrator.design import expand
from orchestrator.spec import SEED_KEYS, load_spec

ROOT = Path(__file__).resolve().parents[1]

GRID = """\
name: grid
trainer: {backend: mini}
factors:
  lr_schedule:
    - {type: constant, lr: 1e-3}
    - {type: cosine, lr: 1e-3, warmup_steps: 20}
  kl: [0, 0.001, 0.01]
  entropy_coeff: [0, 0.01]
  rollout_n: [2, 4, 8]
seeds: 3
budget: {max_steps: 200, eval_every: 10, save_every: 10}
"""


def _spec(tmp_path: Path, text: str):  # noqa: ANN202
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path)


def test_expand_grid_2x3x2x3_times_3_seeds_is_108(tmp_path: Path) -> None:
    trials = expand(_spec(tmp_path, GRID)).trials
    assert len(trials) == 108
    assert len({t.id for t in trials}) == 108
    assert len({t.name for t in trials}) == 108
    assert trials[0].name == "lr=const_kl=0_ent=0_n=2_s1"
    assert trials[1].name == "lr=const_kl=0_ent=0_n=2_s2"  # seeds inner
    assert trials[3].name == "lr=const_kl=0_ent=0_n=4_s1"  # last factor varies fastest
    assert trials[-1].name == "lr=cos_kl=0.01_ent=0.01_n=8_s3"


def test_expand_seed_ablation_is_21_trials_around_the_baseline() -> None:
    trials = expand(load_spec(ROOT / "sweeps" / "seed_ablation.yaml")).trials
    assert len(trials) == 21
    points = list(dict.fromkeys(t.point for t in trials))
    assert points == [
        "lr=const_kl=0_ent=0_n=2",
        "lr=cos_kl=0_ent=0_n=2",
        "lr=const_kl=0.001_ent=0_n=2",
        "lr=const_kl=0.01_ent=0_n=2",
        "lr=const_kl=0_ent=0.01_n=2",
        "lr=const_kl=0_ent=0_n=4",
        "lr=const_kl=0_ent=0_n=8",
    ]
    cos = next(t for t in trials if t.point == "lr=cos_kl=0_ent=0_n=2")
    assert cos.overrides["actor_rollout_ref.actor.optim.lr_scheduler_type"] == "cosine"
    assert cos.overrides["actor_rollout_ref.actor.optim.lr_warmup_steps"] == 50
    assert cos.overrides["actor_rollout_ref.actor.use_kl_loss"] is False  # the base's setting, kept
    assert cos.overrides["trainer.total_training_steps"] == 200


def test_expand_stability_repeats_is_8_seeds_of_one_point() -> None:
    trials = expand(load_spec(ROOT / "sweeps" / "stability_repeats.yaml")).trials
    assert [t.seed for t in trials] == list(range(1, 9))
    assert len({t.point for t in trials}) == 1


def test_expand_one_at_a_time_default_baseline_is_first_levels(tmp_path: Path) -> None:
    text = GRID.replace("seeds: 3", "seeds: 1\ndesign: {type: one_at_a_time}")
    trials = expand(_spec(tmp_path, text)).trials
    assert len(trials) == 1 + 1 + 2 + 1 + 2
    assert trials[0].point == "lr=const_kl=0_ent=0_n=2"


def test_expand_explicit_points_take_the_baseline_for_unnamed_factors(tmp_path: Path) -> None:
    text = GRID.replace(
        "seeds: 3",
        "seeds: [5]\ndesign:\n  type: explicit\n  points:\n    - {kl: 0.01}\n    - {lr_schedule: cos, rollout_n: 8}\n",
    )
    trials = expand(_spec(tmp_path, text)).trials
    assert [t.name for t in trials] == ["lr=const_kl=0.01_ent=0_n=2_s5", "lr=cos_kl=0_ent=0_n=8_s5"]


def test_expand_identical_points_are_merged_with_a_warning(tmp_path: Path) -> None:
    text = GRID.replace(
        "seeds: 3",
        "design:\n  type: explicit\n  points:\n    - {kl: 0.01}\n    - {kl: {use_kl_loss: true, coef: 0.01}}\n",
    )
    expansion = expand(_spec(tmp_path, text))
    assert len(expansion.trials) == 1
    assert expansion.warnings == [
        "point lr=const_kl=0.01_ent=0_n=2 resolves to the same settings as lr=const_kl=0.01_ent=0_n=2; merged into it"
    ]


def test_expand_a_generic_factor_equal_to_the_base_merges(tmp_path: Path) -> None:
    text = GRID.replace("trainer: {backend: mini}", "trainer: {backend: mini, overrides: {data.train_batch_size: 32}}")
    text = text.replace("  rollout_n: [2, 4, 8]\n", "  actor_rollout_ref.actor.clip_ratio_high: [0.2, 0.28]\n")
    expansion = expand(_spec(tmp_path, text))
    assert len(expansion.trials) == 2 * 3 * 2 * 2 * 3
    assert expansion.trials[0].name == "lr=const_kl=0_ent=0_clip_ratio_high=0.2_s1"
    assert expansion.trials[0].overrides["data.train_batch_size"] == 32


def test_expand_seed_sets_every_trainer_seed(tmp_path: Path) -> None:
    for trial in expand(_spec(tmp_path, GRID)).trials[:6]:
        assert {trial.overrides[key] for key in SEED_KEYS} == {trial.seed}


def test_trial_ids_are_stable_across_unrelated_spec_changes(tmp_path: Path) -> None:
    before = {t.name: t.id for t in expand(_spec(tmp_path, GRID)).trials}
    again = {t.name: t.id for t in expand(_spec(tmp_path, GRID)).trials}
    assert before == again
    # A new name, a description, comments, and an extra level of another factor: existing trials keep their ids.
    edited = GRID.replace("name: grid", "# a comment\nname: renamed\ndescription: more text")
    edited = edited.replace("entropy_coeff: [0, 0.01]", "entropy_coeff: [0, 0.01, 0.1]")
    after = {t.name: t.id for t in expand(_spec(tmp_path, edited)).trials}
    assert all(after[name] == trial_id for name, trial_id in before.items())
    assert len(after) == 108 + 54
    # Factors written in another order: the same settings, so the same ids.
    reordered = GRID.replace("  kl: [0, 0.001, 0.01]\n", "").replace("factors:\n", "factors:\n  kl: [0, 0.001, 0.01]\n")
    assert sorted(t.id for t in expand(_spec(tmp_path, reordered)).trials) == sorted(before.values())


def test_trial_ids_change_with_what_the_trial_trains_with(tmp_path: Path) -> None:
    base = {t.name: t.id for t in expand(_spec(tmp_path, GRID)).trials}
    longer = {t.name: t.id for t in expand(_spec(tmp_path, GRID.replace("max_steps: 200", "max_steps: 300"))).trials}
    assert not set(base.values()) & set(longer.values())


def test_level_labels_tell_apart_levels_of_one_type(tmp_path: Path) -> None:
    text = GRID.replace(
        "- {type: cosine, lr: 1e-3, warmup_steps: 20}",
        "- {type: constant, lr: 3e-3}\n    - {type: cosine, lr: 1e-3, warmup_steps: 20}",
    )
    names = {t.point for t in expand(_spec(tmp_path, text)).trials}
    assert "lr=const0.001_kl=0_ent=0_n=2" in names
    assert "lr=const0.003_kl=0_ent=0_n=2" in names
    assert "lr=cos_kl=0_ent=0_n=2" in names
