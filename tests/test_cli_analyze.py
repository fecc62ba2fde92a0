"""`ablate analyze`: the shared real runs, a hand-made collapsing sweep grouped by regex or labels, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

DATA = Path(__file__).resolve().parent / "data" / "verl"
REAL_FILES = sorted(p for p in DATA.glob("*/*") if p.suffix in (".log", ".tfevents"))
VAL = "val-core/demo/acc/mean@1"
KEYS = ["run", "best_step", "best_score", "final_step", "collapse", "metrics_at_best", "metrics_after"]

runner = CliRunner()


def write_run(path: Path, collapse_at: int | None, peak: float, *, steps: int = 100, garbage: int = 0) -> Path:
    """Write a verl file-logger JSONL run that peaks at step 50 and, from `collapse_at`, collapses."""
    lines = []
    for step in range(1, steps + 1):
        alive = collapse_at is None or step < collapse_at
        data = {
            "actor/pg_loss": 0.1 if alive else 0.0,
            "actor/entropy": 0.9 - 0.002 * step if alive else 0.01,
            "actor/grad_norm": 1.5 if alive else 0.0,
            "response_length/mean": 500.0 if alive else 8.0,
            "perf/throughput": 2000.0,
            "perf/mfu/actor": 0.3,
        }
        if step % 10 == 0:
            data[VAL] = min(peak, peak * step / 50) if alive else 0.01
        lines.append(json.dumps({"step": step, "data": data}))
    lines[5:5] = ["{not json"] * garbage
    path.write_text("\n".join(lines) + "\n")
    return path


# kl=0.01 prevents the collapse; ent=0.001 does not.
DEMO = {
    "kl0_ent0_s1": (55, 0.60), "kl0_ent0_s2": (65, 0.62), "kl0_ent0_s3": (75, 0.61),
    "kl0.01_ent0_s1": (None, 0.70), "kl0.01_ent0_s2": (None, 0.72), "kl0.01_ent0_s3": (None, 0.71),
    "kl0_ent0.001_s1": (65, 0.63), "kl0_ent0.001_s2": (None, 0.59), "kl0_ent0.001_s3": (85, 0.60),
}  # fmt: skip
REGEX = r"kl(?P<kl>[0-9.]+)_ent(?P<ent>[0-9.]+)_s(?P<seed>\d+)"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, (collapse_at, peak) in DEMO.items():
        write_run(runs / f"{name}.jsonl", collapse_at, peak)
    return runs


def test_analyze_reads_every_shared_run_and_judges_none_collapsed(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["analyze", str(DATA), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert sorted(r["run"] for r in records) == sorted(p.stem for p in REAL_FILES)
    for record in records:
        assert list(record) == KEYS
        assert record["collapse"] is None and record["metrics_after"] == {}
        assert record["final_step"] in (105, 434)
        assert 0 < record["best_score"] <= 1
        assert {"actor/pg_loss", "actor/grad_norm", "response_length/mean"} <= set(record["metrics_at_best"])
    for name in ("report.md", "report.html", "trials.csv", "summary.json", "validation.png", "signals.png"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "trials.csv")) == len(REAL_FILES)
    assert "14 runs, 0 collapsed" in (out / "report.md").read_text()


def test_analyze_demo_states_each_effect_with_intervals(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["analyze", str(demo), "--group-by", REGEX, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "collapsed 3/3" in result.stdout and "collapsed 0/3" in result.stdout
    markdown = (out / "report.md").read_text()
    assert "Design: one factor at a time over `kl`, `ent`; baseline kl=0, ent=0." in markdown
    assert (
        "`kl`=0.01 vs `kl`=0 (baseline): collapse rate 0% [0%, 63%] vs 100% [37%, 100%], difference -100 [-100, -11] points"
        in markdown
    )
    assert "| 0.01 | 3 | 0.71 [0.685, 0.735] | 0% [0%, 63%] (0/3) | not reached |" in markdown
    assert "| 0 | 3 | 0.61 [0.585, 0.635] | 100% [37%, 100%] (3/3) | 70 |" in markdown
    assert "`ent`=0.001 vs `ent`=0 (baseline): collapse rate 67% [13%, 98%] vs 100% [37%, 100%]" in markdown
    assert "Warning: `ent`=0.001 and the baseline `ent`=0 cannot be told apart on the collapse rate" in markdown
    assert "Warning: `kl`" not in markdown
    assert "Best configuration (lowest collapse rate, then best mean best score): **kl=0.01, ent=0**" in markdown
    assert "Log-rank test of equal survival across the levels of `kl`: χ² =" in markdown
    summary = json.loads((out / "summary.json").read_text())
    kl = summary["factors"][0]
    assert [level["collapse_rate"]["estimate"] for level in kl["levels"]] == [1.0, 0.0]
    assert kl["comparisons"][0]["collapse_rate_diff"]["method"] == "newcombe-mid-p"
    assert {p.name for p in out.glob("*.png")} == {"validation.png", "signals.png", "effects.png", "survival.png"}


def test_analyze_demo_json_gives_onsets_and_signal_changes(demo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(demo), "--group-by", REGEX, "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    records = {r["run"]: r for r in json.loads(result.stdout)}
    assert len(records) == 9
    bad = records["kl0_ent0_s2"]
    assert list(bad) == KEYS
    assert bad["collapse"]["step"] == 70 and bad["best_step"] == 50 and bad["final_step"] == 100
    assert bad["metrics_at_best"]["response_length/mean"] == 500.0
    assert bad["metrics_after"] == pytest.approx({
        "actor/pg_loss": 0.0, "actor/entropy": 0.01, "actor/grad_norm": 0.0, "response_length/mean": 8.0,
        "perf/throughput": 2000.0, "perf/mfu/actor": 0.3,
    })  # fmt: skip
    assert records["kl0.01_ent0_s1"]["collapse"] is None


@pytest.mark.parametrize("suffix", [".yaml", ".csv"])
def test_analyze_groups_by_a_labels_file(demo: Path, tmp_path: Path, suffix: str) -> None:
    entries = {name: (name.split("_")[0][2:], name.split("_")[1][3:], name[-1]) for name in DEMO}
    labels = tmp_path / f"labels{suffix}"
    if suffix == ".yaml":
        labels.write_text("".join(f"{n}: {{kl: '{kl}', ent: '{ent}', seed: {s}}}\n" for n, (kl, ent, s) in entries.items()))
    else:
        labels.write_text("run,kl,ent,seed\n" + "".join(f"{n},{kl},{ent},{s}\n" for n, (kl, ent, s) in entries.items()))
    result = runner.invoke(app, ["analyze", str(demo), "--labels", str(labels), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["design"] == "one_at_a_time"
    assert [f["factor"] for f in summary["factors"]] == ["kl", "ent"]


def test_analyze_groups_by_an_unnamed_regex_group(demo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(demo), "--group-by", r"^(kl[0-9.]+)_", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [level["levels"] for level in summary["factors"][0]["levels"]] == [{"group": "kl0"}, {"group": "kl0.01"}]


def test_analyze_skips_malformed_lines_with_a_warning(tmp_path: Path) -> None:
    path = write_run(tmp_path / "broken.jsonl", None, 0.5, garbage=3)
    result = runner.invoke(app, ["analyze", str(path), "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert f"warning: `{path}`: skipped 3 malformed line(s)" in result.stderr
    assert json.loads(result.stdout)[0]["final_step"] == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "error: `missing.jsonl` does not exist"),
        (["{demo}", "--group-by", "kl(?P<kl"], "error: `--group-by` `kl(?P<kl` is not a valid regex: "),
        (["{demo}", "--group-by", "lr(?P<lr>cos)"], "error: `--group-by` `lr(?P<lr>cos)` matches none of the 9 run names"),
        (["{demo}", "--labels", "{labels}"], "error: `--labels` `{labels}` has no entry for run `kl0.01_ent0_s1`"),
        (["{demo}", "--labels", "nowhere.yaml"], "error: `--labels` `nowhere.yaml` does not exist"),
        (["{demo}", "--objective", "val/nothing"], "error: no run logged `--objective` `val/nothing`"),
        (["{demo}", "--group-by", "kl", "--labels", "{labels}"], "error: pass either `--group-by` or `--labels`"),
        (["{demo}", "--eval-size", "demo=0"], "error: `--eval-size` demo: the size must be a whole number of problems, at least 1 (got '0')"),
        (["{demo}", "--eval-size", "aime24=30"], "error: `--eval-size`: no run logs the data source `aime24` (logged: demo)"),
        (["{demo}", "--eval-size", "30"], "error: `--eval-size` takes SOURCE=N, e.g. aime24=30 (got '30')"),
    ],
    ids=[
        "missing-file", "bad-regex", "regex-matches-nothing", "labels-missing-run", "labels-missing", "objective", "both",
        "eval-size-0", "eval-size-unlogged-source", "eval-size-not-a-pair",
    ],
)
def test_analyze_bad_input_is_one_line_and_exit_2(demo: Path, tmp_path: Path, args: list[str], message: str) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("kl0_ent0_s1: {kl: '0'}\n")
    filled = [a.format(demo=demo, labels=labels) for a in args]
    result = runner.invoke(app, ["analyze", *filled, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message.format(labels=labels)), result.stderr
    assert "Traceback" not in result.output


def test_analyze_judges_small_sets_against_their_noise_and_flags_a_run_that_ends_collapsed(tmp_path: Path) -> None:
    """A drop within the noise of 30 problems is no collapse; a run that falls at its last evaluation is flagged."""
    runs = {
        # AIME 2024 (30 problems, a known size): 0.60 -> 0.40-0.43 is a 25% loss but within the noise.
        "noisy": ("val-core/aime24/reward/mean@1", [13, 16, 18, 14, 17, 12, 13, 15, 11, 12], 30),
        # 1000 problems (given with --eval-size): the last evaluation loses 41% of the gain, far beyond the noise.
        "ending": ("val-core/big/reward/mean@1", [400, 600, 800, 850, 840, 845, 850, 500], 1000),
    }
    paths = []
    for name, (metric, counts, n) in runs.items():
        rows = [{"step": 10 * (i + 1), "data": {metric: c / n, "actor/grad_norm": 1.0}} for i, c in enumerate(counts)]
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["analyze", *map(str, paths), "--out", str(tmp_path / "r"), "--eval-size", "big=1000", "--json"])
    assert result.exit_code == 0, result.output
    judged = {r["run"]: r for r in json.loads(result.stdout)}
    assert judged["noisy"]["collapse"] is None
    ending = judged["ending"]["collapse"]
    assert ending["confirmed"] is False and ending["step"] == 80 and ending["rule"] == "score_drop"
    assert "Objective `val-core/big/reward/mean@1`: the only evaluation set logged (big: 1000 problems (spec))" in result.stderr
    assert "aime24: 30 problems (known)" in result.stderr
    table = runner.invoke(app, ["analyze", *map(str, paths), "--out", str(tmp_path / "r2"), "--eval-size", "big=1000"])
    assert "80 (score_drop, unconfirmed)" in table.stdout
    markdown = (tmp_path / "r2" / "report.md").read_text()
    assert "ended collapsed, unconfirmed" in markdown and "binomial noise" in markdown
