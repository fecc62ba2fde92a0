"""Convert the public training logs of the run bank into verl's file-logger JSONL.

Each output line is `{"step": N, "data": {"metric": value, ...}}`, one per step, steps ascending; NaN and
infinities are written as null. The parsers here are independent of `orchestrator.readers` on purpose, so that
reading the converted files with our reader is a check of both.

Sources handled (see tests/data/bank/PROVENANCE.md for where each original comes from):

- `verl-console`: verl's old console format, `(main_task pid=N) step:N - key:value - ...`. Metric names are kept
  as verl printed them (`val/test_score/<source>`, `actor/entropy_loss`, `critic/lr(1e-4)`, ...). The validation
  before training, printed as `Initial validation metrics: {'test_score/<source>': x}`, becomes step 0 under the
  name the same metric has on later steps, `val/test_score/<source>`.
- `verl-tensorboard`: TensorBoard event files written by verl's tensorboard logger; every scalar tag is kept
  under its own (verl) name.
- `wandb-history`: a Weights & Biases run history exported as JSON, `{arm: {"id": ..., "columns": [...],
  "rows": [[...], ...]}}` (the layout of `run.history(pandas=False)`-style exports committed by some projects);
  the original path is written `<file>#<arm>`. The step is the `_step` column (verl logs with
  `step=global_steps`); every other numeric column is kept under its own (verl) name; NaN cells (metrics not
  logged at that step), `_runtime`, `_timestamp` and non-numeric cells (wandb tables) are dropped.
- `wandb-csv`: wandb run-history CSV exports (`_step` column, one row per logged step), one file per wandb run; a
  training run resumed under new wandb runs has several files, given in `RUNS` separated by `;`, oldest first.
  They are merged step by step, a later file's value replacing an earlier one's for the same step and metric (the
  same rule as a restart in a console log). Numeric columns are kept under their own (verl) names; other columns
  (`run_id`) are dropped.
- `markdown-table`: a per-step table in a project's hand-kept markdown log (an excerpt of it: the heading of each
  run's section and the run's table, verbatim); the original path is written `<file>#<heading prefix>`, and the
  first table after the first heading line that starts with that prefix and whose first column is `Step` is
  read. The step is the leading integer of the `Step` cell (`0 (baseline)`, `**700**`, `388 (final)`). Cells
  are stripped of `**`; `—` (not logged) and approximate cells (`~47%`) are dropped, and so is a row left
  empty; a value written with `%` is divided by 100. Names: the evaluation columns `tomi`, `hi_tom`, `explore_tom` become
  `val/test_score/<column>` (the name verl logged them under, which the table abbreviates), `Reward` and
  `reward/mean` become `critic/rewards/mean`; every other column keeps the table's own header (`KL`,
  `Entropy`, `Grad Norm`), since the table does not say which verl metric it copied.
- `trl-log-history`: a TRL `GRPOTrainer` run: its `trainer.state.log_history` saved as JSON (a list of dicts with
  `step`) plus a per-checkpoint evaluation CSV (`step`, `gsm8k_acc`, ...); the original is written
  `<log_history.json>;<summary.csv>`. TRL's names are kept (`entropy`, `grad_norm`, `completions/mean_length`,
  `completions/clipped_ratio`, `frac_reward_zero_std`), except two, mapped to the verl names the project reads:
  `reward` (the mean of the summed reward functions) becomes `critic/score/mean`, and the CSV's `gsm8k_acc` (the
  checkpoint's held-out GSM8K accuracy) becomes `val/test_score/gsm8k`. `epoch` and the trainer's closing summary
  entry (`train_runtime`, ...) are dropped, and so are the CSV's other columns (probes of the checkpoint, not
  training metrics).
- `wandb-panel-csv`: a wandb panel's "Export CSV" (the layout some papers commit for their figures): a `Step`
  column, then for each run `<run name> - <metric>` with `... __MIN` and `... __MAX` beside it (the range of a
  smoothed panel; equal to the value when nothing is smoothed). The original is written `<file>#<run name>`; every
  `<run name> - <metric>` column of that run becomes `<metric>` (verl's name, unchanged), `__MIN`/`__MAX` columns
  and empty cells (steps the run did not reach) are dropped.
- `swift-csv`: an ms-swift GRPO run (ms-swift's `GRPOTrainer` is built on TRL's), as a project exported its
  `logging.jsonl` into `train_metrics.csv` and `eval_metrics.csv` (one row per logged step, a `step` column, the
  `eval_` prefix already removed by the export). The original is written `<train.csv>;<eval.csv>#<data source>`.
  Kept from the training file, under TRL's names: `grad_norm`, `completions/mean_length`,
  `completions/clipped_ratio`, `frac_reward_zero_std`, `kl`, and `reward` (the combined reward functions) as
  `critic/score/mean`; from the evaluation file only `reward`, the mean combined reward on the held-out set, as
  `val/test_score/<data source>` (the name verl gives the same quantity). Other columns (per-function rewards, timing,
  progress strings) are dropped.

Usage (from the repository root, with the project's virtual environment active; needs `tensorboard`):

    python benchmarks/bank/convert.py            # writes tests/data/bank/runs/*.jsonl
    python benchmarks/bank/convert.py --check    # converts to memory and compares with the committed files
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "bank" / "runs"

# (output stem, format, original path relative to the repository root)
RUNS: list[tuple[str, str, str]] = [
    ("verl-data__gsm8k_qwen2.5-0.5b_ppo_resp256", "verl-console",
     "tests/data/verl/verl-console-logs/gsm8k_qwen2.5-0.5b_ppo_resp256.log"),
    ("verl-data__gsm8k_qwen2.5-0.5b_ppo_resp512", "verl-console",
     "tests/data/verl/verl-console-logs/gsm8k_qwen2.5-0.5b_ppo_resp512.log"),
    ("verl-data__gsm8k_gemma-2-2b-it_ppo", "verl-console",
     "tests/data/verl/verl-console-logs/gsm8k_gemma-2-2b-it_ppo.log"),
] + [
    (f"verl-async-reward-agent__{name}", "verl-tensorboard", f"tests/data/verl/verl-tensorboard/{name}.tfevents")
    for name in (
        "gsm8k_qwen2_7b_async",
        "gsm8k_qwen2_7b_base",
        "gsm8k_qwen2_7b_off_ppl",
        "gsm8k_qwen2_7b_off_ppl_behav",
        "q3b_fsdp_base",
        "q3b_fsdp_off_ppl",
        "q3b_mcore_base",
        "q3b_mcore_off_ppl",
        "q7b_fsdp_base",
        "q7b_fsdp_off_ppl",
        "q7b_mcore_off",
    )
] + [
    (f"agentopsd-deepmath__grpo_{arm}", "wandb-history",
     f"tests/data/bank/originals/agentopsd-deepmath/wandb_history_excerpt.json#{arm}")
    for arm in ("nopen", "lenpen")
]

_R360 = "tests/data/bank/originals/reasoning360"
RUNS += [
    (f"reasoning360__{stem}", "wandb-csv", ";".join(f"{_R360}/{segment}" for segment in segments))
    for stem, segments in (
        ("qwen2.5-7b_guru15k_math2.5k", ("guru15k_math2.5k/run_data_2025-05-07T18-45-04Z.csv",
                                         "guru15k_math2.5k/run_data_2025-05-08T05-50-32Z.csv")),
        ("qwen2.5-7b_guru15k_logic2.5k", ("guru15k_logic2.5k/run_data_2025-05-07T19-05-28Z.csv",
                                          "guru15k_logic2.5k/run_data_2025-05-08T05-52-31Z.csv")),
        ("qwen2.5-7b_guru15k_codegen2.5k", ("guru15k_codegen2.5k/run_data_2025-05-09T23-46-46Z.csv",)),
        ("qwen2.5-7b_guru15k_simulation2.5k", ("guru15k_simulation2.5k/run_data_2025-05-07T19-05-31Z.csv",)),
        ("qwen2.5-7b_guru15k_table2.5k", ("guru15k_table2.5k/run_data_2025-05-08T02-47-34Z.csv",)),
        ("qwen2.5-7b_guru15k_mix", ("guru15k_mix/run_data_2025-05-11T03-16-49Z.csv",)),
        ("qwen2.5-7b_guru18k_math3k", ("guru18k_math3k/run_data_2025-05-14T10-34-02Z.csv",)),
        ("qwen2.5-7b_guru18k_logic3k", ("guru18k_logic3k/run_data_2025-05-14T10-33-53Z.csv",)),
        ("qwen2.5-7b_guru18k_simulation3k", ("guru18k_simulation3k/run_data_2025-05-14T11-08-31Z.csv",)),
        ("qwen2.5-7b_guru18k_stem3k", ("guru18k_stem3k/run_data_2025-05-14T10-45-56Z.csv",
                                       "wandb_data_response_pass/71138-zhoujun-stem3k-guru18k-models--Qwen--Qwen2.5-7B-think/"
                                       "run_data_2025-05-14T10-45-56Z.csv")),
        ("qwen2.5-7b_guru18k_table3k", ("guru18k_table3k/run_data_2025-05-14T10-41-24Z.csv",)),
        ("qwen2.5-7b_guru18k_mix", ("guru18k_mix/run_data_2025-05-14T03-15-19Z.csv",)),
        ("qwen2.5-7b_guru18k_codegen3k", ("guru18k_codegen3k/run_data_2025-05-14T03-07-32Z.csv",)),
        ("qwen2.5-7b_guru_full", ("qwen_7b_guru_full/run_data_2025-05-12T02-04-33Z.csv",
                                  "qwen_7b_guru_full/run_data_2025-05-12T19-00-59Z.csv",
                                  "qwen_7b_guru_full/run_data_2025-05-12T22-06-25Z.csv")),
        ("qwen2.5-32b_guru_full", ("qwen_32b_guru_full/run_data_2025-05-12T01-42-07Z.csv",
                                   "qwen_32b_guru_full/run_data_2025-05-12T19-57-24Z.csv")),
    )
]

_BERL = "tests/data/bank/originals/berl/grpo_tuning_changelog_excerpt.md"
RUNS += [
    (f"berl__{stem}", "markdown-table", f"{_BERL}#{heading}")
    for stem, heading in (
        ("r01_ppl_reward_kl0.1", "## Round 1:"),
        ("r08c_ll_reward_kl0.001", "### Round 8c:"),
        ("r08f_ll_reward_kl0.05", "### \N{TROPHY} Round 8f:"),
        ("r11_rule_reward_kl0.001", "## \N{TROPHY}\N{TROPHY} Round 11:"),
        ("r12_ll_reward_kl0.001", "## Round 12:"),
        ("r13_power_reward_kl0.05", "## Round 13:"),
        ("r13b_power_reward_v3eval", "## Round 13b:"),
        ("r16c_actor_rm_power_v3eval", "## Round 16c:"),
        ("r17a_dialogue16k", "### Experiment 17a:"),
        ("r17b_dialogue_filtered", "### Experiment 17b:"),
        ("r17e_dialogue_wide_clip", "### Experiment 17e:"),
        ("r17f_dialogue_actor_rm", "### Experiment 17f:"),
        ("r17g_direct_tom_rule_reward", "### Experiment 17g:"),
        ("r17j_dialogue_cot_tom2_prompt", "### Experiment 17j:"),
    )
]

_JASON = "tests/data/bank/originals/rlvr-jason-0.5b"
RUNS += [
    (f"rlvr-jason-0.5b__{run}", "trl-log-history",
     f"{_JASON}/{run}/stageA_log_history_excerpt.json;{_JASON}/{run}/summary.csv")
    for run in ("run1", "run2")
]

_DEEP_GRPO = "tests/data/bank/originals/deep-grpo"
RUNS += [
    ("deep-grpo__treerl", "wandb-panel-csv",
     f"{_DEEP_GRPO}/tree_methods_training_instability_test_reward_excerpt.csv#Qwen2.5-0.5B-Instruct-TreeRL"),
    ("deep-grpo__deep_grpo", "wandb-panel-csv",
     f"{_DEEP_GRPO}/training_dynamics_test_reward_excerpt.csv#Qwen2.5-0.5B-Instruct-GSM8K-CRPO-sp-p1-b8-gamma2.0-lam1.0-01161659"),
    ("deep-grpo__grpo", "wandb-panel-csv",
     f"{_DEEP_GRPO}/training_dynamics_test_reward_excerpt.csv#qwen2.5-0.5b-instruct-gsm8k-crpo-no-branch"),
]

_SWIFT = "tests/data/bank/originals/qwen3vl-swift-grpo"
RUNS += [
    ("qwen3vl-swift-grpo__summary", "swift-csv", f"{_SWIFT}/train_metrics.csv;{_SWIFT}/eval_metrics.csv#summary_eval"),
]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREFIX = re.compile(r"^\s*\([^()]*pid=\d+[^()]*\)\s*")
_STEP = re.compile(r"^step:(\d+) - (.*)$")
_INITIAL = re.compile(r"Initial validation metrics: (\{.*\})")
_NP = re.compile(r"^np\.float\d*\((.*)\)$")


def _number(text: str) -> float | None:
    text = text.strip()
    match = _NP.match(text)
    if match:
        text = match.group(1)
    try:
        return float(text)
    except ValueError:
        return None


def convert_console(path: Path) -> dict[int, dict[str, float]]:
    """Parse an old-format verl console log; a repeated step (a restart) keeps its last value of each metric."""
    steps: dict[int, dict[str, float]] = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = _PREFIX.sub("", _ANSI.sub("", raw), count=1).strip()
        initial = _INITIAL.search(line)
        if initial:
            for key, value in ast.literal_eval(initial.group(1)).items():
                name = key if key.startswith("val/") else f"val/{key}"
                steps.setdefault(0, {})[name] = float(value)
            continue
        match = _STEP.match(line)
        if not match:
            continue
        metrics: dict[str, float] = {}
        for pair in match.group(2).split(" - "):
            key, _, value = pair.rpartition(":")
            number = _number(value)
            if key and number is not None:
                metrics[key.strip()] = number
        # Merged, not replaced: old verl numbers its first training step 0, the step the validation before
        # training is filed under (a restart's repeated step overwrites metric by metric).
        steps.setdefault(int(match.group(1)), {}).update(metrics)
    return steps


def convert_tensorboard(path: Path) -> dict[int, dict[str, float]]:
    """Read every scalar of a TensorBoard event file (a step written twice keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    accumulator.Reload()
    steps: dict[int, dict[str, float]] = {}
    for tag in accumulator.Tags()["scalars"]:
        for event in accumulator.Scalars(tag):
            steps.setdefault(int(event.step), {})[tag] = float(event.value)
    return steps


def convert_wandb_history(path: Path, arm: str) -> dict[int, dict[str, float]]:
    """Read one arm of a wandb history JSON export; `_step` is the step, NaN cells are metrics not logged."""
    history = json.loads(path.read_text(encoding="utf-8"))[arm]
    columns = history["columns"]
    step_at = columns.index("_step")
    steps: dict[int, dict[str, float]] = {}
    for row in history["rows"]:
        metrics = steps.setdefault(int(row[step_at]), {})
        for name, value in zip(columns, row):
            if name.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isnan(value):
                continue
            metrics[name] = float(value)
    return steps


def convert_wandb_csv(paths: list[Path]) -> dict[int, dict[str, float]]:
    """Merge wandb history CSV exports, oldest first; a later file's value wins for the same step and metric."""
    import csv

    steps: dict[int, dict[str, float]] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                metrics = steps.setdefault(int(float(row["_step"])), {})
                for name, text in row.items():
                    if name.startswith("_") or text in (None, ""):
                        continue
                    number = _number(text)
                    if number is not None:
                        metrics[name] = number
    return steps


_MD_VALIDATION = ("tomi", "hi_tom", "explore_tom")
_MD_REWARD = ("Reward", "reward/mean")
_MD_STEP = re.compile(r"^(\d+)\b")


def _md_cells(line: str) -> list[str]:
    return [cell.strip().replace("**", "").strip() for cell in line.strip().strip("|").split("|")]


def convert_markdown_table(path: Path, heading: str) -> dict[int, dict[str, float]]:
    """Read the `Step` table of the section whose heading starts with `heading` in a markdown log."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    at = start + 1
    while True:
        while not lines[at].startswith("|"):
            if lines[at].startswith("#"):
                raise ValueError(f"{path}: no Step table under {heading!r}")
            at += 1
        if _md_cells(lines[at])[0] == "Step":
            break
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
    header = _md_cells(lines[at])
    names = []
    for column in header[1:]:
        if column in _MD_VALIDATION:
            names.append(f"val/test_score/{column}")
        elif column in _MD_REWARD:
            names.append("critic/rewards/mean")
        else:
            names.append(column)
    steps: dict[int, dict[str, float]] = {}
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        cells = _md_cells(line)
        match = _MD_STEP.match(cells[0])
        if match is None:
            raise ValueError(f"{path}: step cell {cells[0]!r} under {heading!r}")
        metrics = steps.setdefault(int(match.group(1)), {})
        for name, cell in zip(names, cells[1:]):
            if cell in ("—", "") or cell.startswith("~"):
                continue
            percent = cell.endswith("%")
            value = float(cell.rstrip("%"))
            metrics[name] = round(value / 100, 6) if percent else value
    return {step: metrics for step, metrics in steps.items() if metrics}


_TRL_RENAME = {"reward": "critic/score/mean"}
_TRL_DROP = {"step", "epoch"}


def convert_trl_log_history(log_path: Path, eval_path: Path) -> dict[int, dict[str, float]]:
    """Merge a TRL log_history JSON with its per-checkpoint GSM8K evaluation CSV."""
    import csv

    steps: dict[int, dict[str, float]] = {}
    for entry in json.loads(log_path.read_text(encoding="utf-8")):
        if "train_runtime" in entry:
            continue
        metrics = steps.setdefault(int(entry["step"]), {})
        for name, value in entry.items():
            if name in _TRL_DROP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metrics[_TRL_RENAME.get(name, name)] = float(value)
    with eval_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            steps.setdefault(int(row["step"]), {})["val/test_score/gsm8k"] = float(row["gsm8k_acc"])
    return steps


def convert_wandb_panel_csv(path: Path, run: str) -> dict[int, dict[str, float]]:
    """Read one run's columns of a wandb panel CSV export (`Step`, `<run> - <metric>`, `__MIN`/`__MAX` dropped)."""
    import csv

    prefix = f"{run} - "
    steps: dict[int, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            metrics = steps.setdefault(int(row["Step"]), {})
            for column, text in row.items():
                if not column.startswith(prefix) or column.endswith(("__MIN", "__MAX")) or text in (None, ""):
                    continue
                number = _number(text)
                if number is not None:
                    metrics[column[len(prefix):]] = number
    return {step: metrics for step, metrics in steps.items() if metrics}


_SWIFT_TRAIN = {
    "grad_norm": "grad_norm",
    "completions/mean_length": "completions/mean_length",
    "completions/clipped_ratio": "completions/clipped_ratio",
    "reward": "critic/score/mean",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "kl": "kl",
}


def convert_swift_csv(train_path: Path, eval_path: Path, source: str) -> dict[int, dict[str, float]]:
    """Merge an ms-swift GRPO run's exported training and evaluation CSVs (both keyed by `step`)."""
    import csv

    steps: dict[int, dict[str, float]] = {}
    for path, names in ((train_path, _SWIFT_TRAIN), (eval_path, {"reward": f"val/test_score/{source}"})):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                metrics = steps.setdefault(int(row["step"]), {})
                for column, name in names.items():
                    number = _number(row[column])
                    if number is not None:
                        metrics[name] = number
    return steps


CONVERTERS = {"verl-console": convert_console, "verl-tensorboard": convert_tensorboard}
ARM_CONVERTERS = {
    "wandb-history": convert_wandb_history,
    "markdown-table": convert_markdown_table,
    "wandb-panel-csv": convert_wandb_panel_csv,
}


def to_jsonl(steps: dict[int, dict[str, float]]) -> str:
    lines = []
    for step in sorted(steps):
        data = {k: (None if not math.isfinite(v) else v) for k, v in sorted(steps[step].items())}
        lines.append(json.dumps({"step": step, "data": data}, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    status = 0
    for stem, fmt, original in RUNS:
        if fmt == "wandb-csv":
            text = to_jsonl(convert_wandb_csv([ROOT / part for part in original.split(";")]))
        elif fmt == "trl-log-history":
            log_file, eval_file = original.split(";")
            text = to_jsonl(convert_trl_log_history(ROOT / log_file, ROOT / eval_file))
        elif fmt == "swift-csv":
            files, _, source = original.partition("#")
            train_file, eval_file = files.split(";")
            text = to_jsonl(convert_swift_csv(ROOT / train_file, ROOT / eval_file, source))
        elif fmt in ARM_CONVERTERS:
            file, _, arm = original.partition("#")
            text = to_jsonl(ARM_CONVERTERS[fmt](ROOT / file, arm))
        else:
            text = to_jsonl(CONVERTERS[fmt](ROOT / original))
        target = OUT / f"{stem}.jsonl"
        if args.check:
            same = target.exists() and target.read_text() == text
            print(f"{'ok  ' if same else 'DIFF'} {target.relative_to(ROOT)}")
            status |= 0 if same else 1
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)} ({text.count(chr(10))} steps)")
    return status


if __name__ == "__main__":
    sys.exit(main())
