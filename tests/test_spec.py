"""The sweep spec: good specs load; bad ones are refused with the file, the field path and what is allowed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import KlLoss, LrSchedule, load_base_overrides, load_spec

GOOD = """\
name: tiny-sweep
trainer:
  backend: mini
factors:
  lr_schedule:
    - {type: constant, lr: 1e-3}
    - {type: cosine, lr: 1e-3, warmup_steps: 10, min_lr_ratio: 0.1}
  kl: [0, 0.01]
  entropy_coeff: [0, 0.01]
  rollout_n: [2, 4]
budget: {max_steps: 100, eval_every: 10, save_every: 5}
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_spec_good_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.name == "tiny-sweep"
    assert list(spec.factors) == ["lr_schedule", "kl", "entropy_coeff", "rollout_n"]
    assert spec.factors["lr_schedule"][0] == LrSchedule(type="constant", lr=1e-3)
    assert spec.factors["kl"] == [KlLoss(use_kl_loss=False), KlLoss(use_kl_loss=True, coef=0.01)]
    assert spec.factors["entropy_coeff"] == [0.0, 0.01]
    assert spec.seed_list == [1]
    assert spec.pruning.asha is None
    assert spec.pruning.collapse is not None  # collapse rules are on by default
    assert spec.cluster == "local"


def test_spec_yaml_reads_exponent_floats_as_numbers(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD + "trainer_x: 1\n".replace("trainer_x: 1\n", "")))
    assert spec.factors["lr_schedule"][0].lr == pytest.approx(1e-3)
    text = _edit(GOOD, "rollout_n: [2, 4]", "actor_rollout_ref.actor.clip_ratio_high: [2e-1, 0.28]")
    spec = load_spec(_write(tmp_path, text))
    assert spec.factors["actor_rollout_ref.actor.clip_ratio_high"] == [0.2, 0.28]


def test_spec_factor_order_is_the_files_order(tmp_path: Path) -> None:
    text = GOOD.replace("  kl: [0, 0.01]\n", "").replace("budget:", "  kl: [0, 0.01]\nbudget:")
    text = text.replace("  kl: [0, 0.01]\nbudget:", "budget:").replace("factors:\n", "factors:\n  kl: [0, 0.01]\n")
    spec = load_spec(_write(tmp_path, text))
    assert list(spec.factors) == ["kl", "lr_schedule", "entropy_coeff", "rollout_n"]


def test_spec_seeds_count_and_list(tmp_path: Path) -> None:
    assert load_spec(_write(tmp_path, GOOD + "seeds: 3\n")).seed_list == [1, 2, 3]
    assert load_spec(_write(tmp_path, GOOD + "seeds: [7, 0, 3]\n")).seed_list == [7, 0, 3]


def test_spec_base_path_is_relative_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("actor_rollout_ref:\n  actor:\n    clip_ratio_high: 0.3\ndata.seed: 5\n")
    (tmp_path / "sweeps").mkdir()
    path = _write(tmp_path / "sweeps", _edit(GOOD, "backend: mini", "backend: mini\n  base: ../configs/base.yaml"))
    spec = load_spec(path)
    assert spec.trainer.base == (tmp_path / "configs" / "base.yaml").resolve()
    assert load_base_overrides(spec.trainer.base) == {"actor_rollout_ref.actor.clip_ratio_high": 0.3, "data.seed": 5}


def test_spec_shipped_sweeps_load() -> None:
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "sweeps").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.trainer.base is None or spec.trainer.base.is_file(), path


# Each bad spec: (what to change in GOOD, a fragment the one-line error must contain).
BAD = [
    (("name: tiny-sweep", "name: tiny-sweep\nnmae: x"), "(top level): unknown key `nmae`; allowed: name,"),
    (("name: tiny-sweep", "name: tiny sweep"), "name: must be 1-64 characters of A-Z a-z 0-9 . _ - (got 'tiny sweep')"),
    (("name: tiny-sweep", "name: " + "a" * 65), "name: must be 1-64 characters"),
    (("name: tiny-sweep", "name: '..'"), "name: must be a plain folder name, not only dots: it becomes a path (got '..')"),
    (("name: tiny-sweep", "name: '.'"), "name: must be a plain folder name, not only dots: it becomes a path (got '.')"),
    (("{type: constant, lr: 1e-3}", "{type: constant, lr: 1e-3, label: '..'}"), "factors.lr_schedule[0].label: must be a plain folder name, not only dots"),
    (("kl: [0, 0.01]", "kl: [0, {use_kl_loss: true, coef: 0.01, label: a/b}]"), "factors.kl[1].label: must be 1-64 characters of A-Z a-z 0-9 . _ - (got 'a/b')"),
    (("backend: mini", "backend: torch"), "trainer.backend: must be 'verl' or 'mini' (got 'torch')"),
    (("kl: [0, 0.01]", "kl: []"), "factors.kl: must have at least 1 item(s)"),
    (("kl: [0, 0.01]", "kl: [0, {use_kl_loss: true, coef: -0.01}]"), "factors.kl[1].coef: must be > 0 (got -0.01)"),
    (("kl: [0, 0.01]", "kl: [0, {use_kl_loss: true}]"), "factors.kl[1]: `coef` is required when `use_kl_loss` is true"),
    (("kl: [0, 0.01]", "kl: [0, {use_kl_loss: true, coeff: 0.1}]"), "factors.kl[1]: unknown key `coeff`; allowed: use_kl_loss, coef, type, label"),
    (("kl: [0, 0.01]", "kl: [0, {use_kl_loss: true, coef: 0.1, type: k9}]"), "factors.kl[1].type: must be 'low_var_kl', 'kl', 'mse', 'abs', 'full', 'k1', 'k2' or 'k3' (got 'k9')"),
    (("{type: constant, lr: 1e-3}", "{type: linear, lr: 1e-3}"), "factors.lr_schedule[0].type: must be 'constant' or 'cosine' (got 'linear')"),
    (("{type: constant, lr: 1e-3}", "{type: constant, lr: 0}"), "factors.lr_schedule[0].lr: must be > 0 (got 0)"),
    (("{type: constant, lr: 1e-3}", "{type: constant, lr: 1e-3, min_lr_ratio: 0.1}"), "factors.lr_schedule[0]: `min_lr_ratio` and `num_cycles` apply only to `type: cosine`"),
    (("warmup_steps: 10", "warmup_steps: -1"), "factors.lr_schedule[1].warmup_steps: must be >= 0 (got -1)"),
    (("entropy_coeff: [0, 0.01]", "entropy_coeff: [-0.1, 0]"), "factors.entropy_coeff[0]: must be >= 0 (got -0.1)"),
    (("rollout_n: [2, 4]", "rollout_n: [1, 4]"), "factors.rollout_n[0]: must be >= 2 (got 1)"),
    (("rollout_n: [2, 4]", "rollout_n: [2, 4.5]"), "factors.rollout_n[1]: must be an integer (got 4.5)"),
    (("entropy_coeff: [0, 0.01]", "entropy_coeff: [0, 0.0]"), "factors: `entropy_coeff` has duplicate levels at [0] and [1] (got 0.0)"),
    (("entropy_coeff: [0, 0.01]", "entropy: [0, 0.01]"), "factors: unknown factor `entropy`; allowed: lr_schedule, kl, entropy_coeff, rollout_n, rollout_dtype, rollout_correction, or a dotted"),
    (("entropy_coeff: [0, 0.01]", "actor..clip: [0, 0.01]"), "factors: `actor..clip` is not a dotted override key"),
    (("rollout_n: [2, 4]", "rollout_n: [2, 4]\ndesign: {type: one_at_a_time, baseline: {kl: 0.5}}"), "design.baseline.kl: 0.5 is not one of its levels (0, 0.01)"),
    (("rollout_n: [2, 4]", "rollout_n: [2, 4]\ndesign: {type: one_at_a_time, baseline: {temperature: 1}}"), "design.baseline: unknown factor `temperature`; factors: lr_schedule, kl, entropy_coeff, rollout_n"),
    (("rollout_n: [2, 4]", "rollout_n: [2, 4]\ndesign: {type: explicit}"), "design: `type: explicit` needs a non-empty `points` list"),
    (("rollout_n: [2, 4]", "rollout_n: [2, 4]\ndesign: {type: gird}"), "design.type: must be 'grid', 'one_at_a_time' or 'explicit' (got 'gird')"),
    (("save_every: 5", "save_every: 3"), "budget: `save_every` must divide `eval_every` so that every eval step has a checkpoint (got save_every=3, eval_every=10)"),
    (("max_steps: 100", "max_steps: 0"), "budget.max_steps: must be >= 1 (got 0)"),
    (("eval_every: 10", "eval_every: ten"), "budget.eval_every: must be an integer (got 'ten')"),
    (("budget: {max_steps: 100, eval_every: 10, save_every: 5}", ""), "budget: is required"),
    (("name: tiny-sweep", "name: tiny-sweep\nobjective: {metric: auto, mode: maximize}"), "objective.mode: must be 'max' or 'min' (got 'maximize')"),
    (("name: tiny-sweep", "name: tiny-sweep\nseeds: 0"), "seeds: must be a count >= 1 or a non-empty list of distinct integers >= 0 (got 0)"),
    (("name: tiny-sweep", "name: tiny-sweep\nseeds: [1, 1]"), "seeds: must be a count >= 1 or a non-empty list of distinct integers >= 0; duplicates (got [1, 1])"),
    (("backend: mini", "backend: mini\n  overrides: {trainer.test_freq: 3}"), "trainer.overrides.trainer.test_freq: this key is set by budget.eval_every"),
    (("backend: mini", "backend: mini\n  overrides: {actor_rollout_ref.rollout.n: 3}"), "this key is set by factors.rollout_n"),
    (("backend: mini", "backend: mini\n  overrides: {'bad key': 3}"), "trainer.overrides: `bad key` is not a dotted override key"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: kubernetes"), "cluster: must be `local` or a mapping `slurm: {partition: ..., time: ...}` (got 'kubernetes')"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {partition: 'gpu\\n#SBATCH --x'}}"), "cluster.slurm.partition: must match"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {extra_sbatch: ['--mem=4G; rm -rf /']}}"), "cluster.slurm.extra_sbatch: each entry must be one `--key=value` sbatch option"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {time: forever}}"), "cluster.slurm.time: must be a Slurm time such as 04:00:00"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {extra_sbatch: ['--output=/etc/passwd']}}"), "cluster.slurm.extra_sbatch: `--output` is set by ablate itself"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {extra_sbatch: ['--mem=4G\\n#SBATCH --wrap=x']}}"), "cluster.slurm.extra_sbatch: each entry must be one `--key=value` sbatch option"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {account: 'rl;id'}}"), "cluster.slurm.account: must match"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {max_jobs: 0}}"), "cluster.slurm.max_jobs: must be >= 1 (got 0)"),
    (("name: tiny-sweep", "name: tiny-sweep\nresources: {gpus: 1}\ncluster: {slurm: {gpus_per_node: 2}}"), "(top level): cluster.slurm.gpus_per_node (2) and resources.gpus (1) disagree; give one of them"),
    (("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {nodes: 2}}"), "`resources.nodes` must be 1 for the mini backend, a one-process trainer (got 2)"),
    (("backend: mini", "backend: verl"), "`resources.gpus` must be at least 1 for the verl backend (got 0)"),
    (("name: tiny-sweep", "name: tiny-sweep\npruning: {collapse: {score_drop: {drop: 2}}}"), "pruning.collapse.score_drop.drop: `drop` must be greater than 0 and less than 1 but got 2"),
    (("name: tiny-sweep", "name: tiny-sweep\npruning: {asha: {reduction_factor: 1}}"), "pruning.asha.reduction_factor: must be > 1 (got 1)"),
    (("name: tiny-sweep", "name: tiny-sweep\ntracking: {wandb: {project: p, mode: sometimes}}"), "tracking.wandb.mode: must be 'offline', 'online' or 'disabled' (got 'sometimes')"),
    (("name: tiny-sweep", "name: tiny-sweep\nresources: {gpus: -1}"), "resources.gpus: must be >= 0 (got -1)"),
]


@pytest.mark.parametrize(("change", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_spec_bad_spec_is_refused_with_its_path(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = _write(tmp_path, _edit(GOOD, *change))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), str(info.value)


def test_spec_slurm_block_sets_the_trial_resources(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD.replace("name: tiny-sweep", "name: tiny-sweep\ncluster: {slurm: {gpus_per_node: 4, partition: gpu, max_jobs: 3}}"))
    spec = load_spec(path)
    assert spec.resources.gpus == 4 and spec.resources.nodes == 1
    assert spec.cluster.slurm.partition == "gpu" and spec.cluster.slurm.max_jobs == 3 and spec.cluster.slurm.requeue


def test_spec_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ntrainer: {backend: mini\nfactors: [\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: malformed YAML: line \d+, column \d+: "):
        load_spec(path)


def test_spec_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="a spec is a YAML mapping"):
        load_spec(_write(tmp_path, "- a\n- b\n"))


def test_spec_missing_base_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit(GOOD, "backend: mini", "backend: mini\n  base: nowhere.yaml"))
    with pytest.raises(SpecError, match=r"trainer\.base: no such file .*nowhere\.yaml"):
        load_spec(path)


def test_spec_reports_every_problem_at_once(tmp_path: Path) -> None:
    text = _edit(_edit(GOOD, "max_steps: 100", "max_steps: 0"), "backend: mini", "backend: nope")
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, text))
    assert len(str(info.value).splitlines()) == 2


@pytest.mark.parametrize("name", ["..", "."])
def test_run_refuses_a_sweep_name_that_is_a_path_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """`runs/..` is the working directory itself: such a name is refused before anything is written or launched."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    work = tmp_path / "work"
    work.mkdir()
    spec = _write(tmp_path, GOOD.replace("name: tiny-sweep", f"name: '{name}'"))
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 2, result.output
    assert f"{spec}: name: must be a plain folder name, not only dots" in result.output
    assert "Traceback" not in result.output
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml", "work"]
