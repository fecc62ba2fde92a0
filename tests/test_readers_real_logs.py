"""Every file in tests/data/verl/ is read whole: every step and every metric."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from orchestrator.history import default_objective
from orchestrator.readers import Run, read_run

DATA = Path(__file__).resolve().parent / "data" / "verl"
CONSOLE = DATA / "verl-console-logs"
TENSORBOARD = DATA / "verl-tensorboard"


# name: (lines containing "step:", distinct steps, metric names). PROVENANCE.md counts the steps: resp512 has two
# lines of model output containing "step:", and gemma logs step 0 twice (the validation before training on its
# own line, then the first training step).
CONSOLE_COUNTS = {
    "gsm8k_qwen2.5-0.5b_ppo_resp256.log": (435, 435, 42),
    "gsm8k_qwen2.5-0.5b_ppo_resp512.log": (437, 435, 42),
    "gsm8k_gemma-2-2b-it_ppo.log": (107, 106, 42),
}
TENSORBOARD_TAGS = {
    "gsm8k_qwen2_7b_async.tfevents": 62,
    "gsm8k_qwen2_7b_base.tfevents": 63,
    "gsm8k_qwen2_7b_off_ppl.tfevents": 62,
    "gsm8k_qwen2_7b_off_ppl_behav.tfevents": 63,
    "q3b_fsdp_base.tfevents": 63,
    "q3b_fsdp_off_ppl.tfevents": 62,
    "q3b_mcore_base.tfevents": 63,
    "q3b_mcore_off_ppl.tfevents": 62,
    "q7b_fsdp_base.tfevents": 63,
    "q7b_fsdp_off_ppl.tfevents": 62,
    "q7b_mcore_off.tfevents": 62,
}
STEP_LINE = re.compile(r"step:\d+ - (.*)$")


@cache
def run_of(path: Path) -> Run:
    return read_run(path)


def test_shared_data_holds_exactly_the_files_tested() -> None:
    assert sorted(p.name for p in CONSOLE.iterdir()) == sorted(CONSOLE_COUNTS)
    assert sorted(p.name for p in TENSORBOARD.iterdir()) == sorted(TENSORBOARD_TAGS)


@pytest.mark.parametrize("name", sorted(CONSOLE_COUNTS))
def test_read_console_reads_every_step_and_metric_of_shared_logs(name: str) -> None:
    path = CONSOLE / name
    n_lines, n_steps, n_metrics = CONSOLE_COUNTS[name]
    text = path.read_text(encoding="utf-8", errors="replace")
    assert sum("step:" in line for line in text.splitlines()) == n_lines
    run = run_of(path)
    assert (run.format, run.n_skipped) == ("console", 0)
    assert len(run.points) == n_steps
    assert [p.step for p in run.points] == list(range(n_steps))
    assert len(run.metric_names) == n_metrics
    # Every `key:value` pair of every step line is a value read (no step logs a metric twice).
    pairs = sum(len(m.group(1).split(" - ")) for m in map(STEP_LINE.search, text.splitlines()) if m)
    assert sum(len(p.metrics) for p in run.points) == pairs
    assert run.objective == "val/test_score/openai/gsm8k"


def test_read_console_values_of_shared_logs() -> None:
    gemma = run_of(CONSOLE / "gsm8k_gemma-2-2b-it_ppo.log").points
    # Step 0 joins the validation before training (its own line) with the first training step.
    assert gemma[0].metrics["val/test_score/openai/gsm8k"] == 0.521
    assert gemma[0].metrics["actor/grad_norm"] == 2.105
    assert gemma[9].metrics["val/test_score/openai/gsm8k"] == 0.546
    assert gemma[9].metrics["critic/lr(1e-4)"] == 0.1
    resp256 = run_of(CONSOLE / "gsm8k_qwen2.5-0.5b_ppo_resp256.log").points
    assert resp256[-1].step == 434
    assert resp256[-1].metrics["actor/pg_loss"] == -0.021
    evaluated = [p.step for p in resp256 if "val/test_score/openai/gsm8k" in p.metrics]
    assert evaluated == list(range(9, 434, 10))


@pytest.mark.parametrize("name", sorted(TENSORBOARD_TAGS))
def test_read_tensorboard_reads_every_step_and_tag_of_shared_runs(name: str) -> None:
    run = run_of(TENSORBOARD / name)
    assert (run.format, run.n_skipped, run.name) == ("tensorboard", 0, name.removesuffix(".tfevents"))
    assert [p.step for p in run.points] == list(range(106))
    assert len(run.metric_names) == TENSORBOARD_TAGS[name]
    # Validation before training at step 0 and every 5 steps; training metrics on steps 1-105.
    assert run.objective == "val-core/openai/gsm8k/reward/mean@1"
    assert [p.step for p in run.points if run.objective in p.metrics] == list(range(0, 106, 5))
    assert [p.step for p in run.points if "actor/entropy" in p.metrics] == list(range(1, 106))
    assert default_objective(run.metric_names) == run.objective


def test_read_tensorboard_values_of_shared_runs() -> None:
    points = run_of(TENSORBOARD / "q3b_fsdp_base.tfevents").points
    assert points[0].metrics["val-core/openai/gsm8k/reward/mean@1"] == pytest.approx(0.5670963)
    assert points[1].metrics["actor/entropy"] == pytest.approx(0.311, abs=1e-3)
    assert sum(len(p.metrics) for p in points) == 6259


def test_tests_and_benchmarks_read_no_data_outside_the_repository() -> None:
    # The real logs live in the repository, so a clone anywhere runs these tests; nothing reaches for a folder beside it.
    root = Path(__file__).resolve().parents[1]
    outside = re.compile("|".join([r"parents\[2\]", r"ROOT\.parent\b", r"\.\./" + "shared", '"' + 'shared" /']))
    sources = [*root.glob("tests/*.py"), *root.glob("benchmarks/*.py")]
    hits = [f"{p.name}:{n}" for p in sources for n, line in enumerate(p.read_text().splitlines(), 1) if outside.search(line)]
    assert not hits, hits
    assert DATA.is_relative_to(root) and (DATA / "PROVENANCE.md").is_file()
