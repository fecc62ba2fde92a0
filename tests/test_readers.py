"""Tests of the run-log readers on small hand-written logs of each format."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from orchestrator.history import StepMetrics, default_objective, merge_points, merge_records
from orchestrator.readers import (
    JsonlTail,
    detect_format,
    parse_console_line,
    parse_jsonl_line,
    read_run,
)

VAL = "val-core/openai/gsm8k/acc/mean@1"
ANSI_NEW = "\x1b[36m(TaskRunner pid=2841)\x1b[0m "


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def values(points: tuple[StepMetrics, ...] | list[StepMetrics], metric: str) -> dict[int, float]:
    return {p.step: p.metrics[metric] for p in points if metric in p.metrics}


# --- history helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "objective"),
    [
        ([VAL, "critic/score/mean"], VAL),
        (["val-core/openai/gsm8k/reward/mean@1", VAL], VAL),
        (["val-core/math/acc/mean@16", "val-core/math/acc/mean@4"], "val-core/math/acc/mean@4"),
        (["val-core/b/acc/mean@1", "val-core/a/x/y/acc/mean@1"], "val-core/a/x/y/acc/mean@1"),
        (["val-aux/openai/gsm8k/acc/maj@4/mean", "val/test_score/openai/gsm8k", "critic/score/mean"],
         "val/test_score/openai/gsm8k"),
        (["val-core/openai/gsm8k/acc/std@4", "critic/score/mean", "actor/entropy"], "critic/score/mean"),
        (["actor/entropy"], None),
        ([], None),
    ],
)
def test_default_objective(keys: list[str], objective: str | None) -> None:
    assert default_objective(keys) == objective


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        # The validation before training is its own record at step 0.
        (
            [(0, {VAL: 0.2}), (1, {"a": 1.0}), (2, {"a": 2.0, VAL: 0.5})],
            {0: {VAL: 0.2}, 1: {"a": 1.0}, 2: {"a": 2.0, VAL: 0.5}},
        ),
        # Old verl: a validation line after the training line of the same step joins it.
        ([(9, {"a": 1.0}), (9, {"val/test_score/x": 0.5})], {9: {"a": 1.0, "val/test_score/x": 0.5}}),
        ([(0, {"val/test_score/x": 0.5}), (0, {"a": 1.0})], {0: {"a": 1.0, "val/test_score/x": 0.5}}),
        # A restart from step 2: the old steps 3 and 4 are replaced, and an old step past the new end is dropped.
        (
            [(1, {"a": 1.0}), (2, {"a": 2.0}), (3, {"a": 3.0}), (4, {"a": 4.0}), (2, {VAL: 0.9}), (3, {"a": 30.0})],
            {1: {"a": 1.0}, 2: {"a": 2.0, VAL: 0.9}, 3: {"a": 30.0}},
        ),
        # The same training step twice in a row: the later wins whole.
        ([(5, {"a": 1.0, "b": 2.0}), (5, {"a": 3.0})], {5: {"a": 3.0}}),
        ([], {}),
    ],
)
def test_merge_records(records: list[tuple[int, dict[str, float]]], expected: dict[int, dict[str, float]]) -> None:
    points = merge_records(records)
    assert {p.step: dict(p.metrics) for p in points} == expected
    assert [p.step for p in points] == sorted(expected)
    assert merge_points(StepMetrics(s, m) for s, m in records) == points


# --- verl file logger (JSONL) ----------------------------------------------------------------------------------

JSONL = "\n".join(
    [
        json.dumps({"step": 0, "data": {VAL: 0.21}}),
        json.dumps({"step": 1, "data": {"actor/pg_loss": 0.01, "actor/grad_norm": None, "training/epoch": 0}}),
        "",
        "not json at all",
        json.dumps({"step": "2", "data": {"a": 1}}),
        json.dumps({"data": {"a": 1}}),
        json.dumps([1, 2]),
        json.dumps({"step": 2, "data": "oops"}),
        '{"step": 2, "data": {"actor/pg_loss": 0.0',
        json.dumps({"step": 2, "data": {"actor/pg_loss": 0.02, "note": "text", "hist": [1, 2], "flag": True}}),
        json.dumps({"step": 3, "data": {"actor/pg_loss": 0.03, VAL: 0.4}}),
    ]
) + "\n"


def test_read_jsonl(tmp_path: Path) -> None:
    run = read_run(write(tmp_path / "trial_1.jsonl", JSONL))
    assert (run.name, run.format) == ("trial_1", "jsonl")
    assert run.n_skipped == 6
    assert [p.step for p in run.points] == [0, 1, 2, 3]
    assert values(run.points, VAL) == {0: 0.21, 3: 0.4}
    assert math.isnan(run.points[1].metrics["actor/grad_norm"])
    assert run.points[1].metrics["training/epoch"] == 0.0
    assert dict(run.points[2].metrics) == {"actor/pg_loss": 0.02, "flag": 1.0}
    assert run.objective == VAL


@pytest.mark.parametrize(
    ("line", "record"),
    [
        ('{"step": 4, "data": {"a": 1.5, "b": null}}', (4, {"a": 1.5, "b": math.nan})),
        ('{"step": 4, "data": {}}', (4, {})),
        ('{"step": true, "data": {}}', None),
        ('{"step": 4.0, "data": {}}', None),
        ('{"step": 4, "data": {"a": 1', None),
        ("", None),
    ],
)
def test_parse_jsonl_line(line: str, record: tuple[int, dict[str, float]] | None) -> None:
    parsed = parse_jsonl_line(line)
    if record is None:
        assert parsed is None
        return
    assert parsed is not None
    assert parsed[0] == record[0]
    assert parsed[1].keys() == record[1].keys()
    for key, value in record[1].items():
        assert parsed[1][key] == value or (math.isnan(parsed[1][key]) and math.isnan(value))


# --- verl console logs -----------------------------------------------------------------------------------------

NEW_CONSOLE = f"""\
{ANSI_NEW}Creating file logger at /tmp/x.jsonl
{ANSI_NEW}step:0 - {VAL}:np.float64(0.2115) - val-aux/openai/gsm8k/reward/mean@1:np.float64(0.2115)
{ANSI_NEW}step:1 - actor/entropy:np.float64(0.329) - actor/pg_loss:-0.0123 - actor/lr:1e-06 - \
training/global_step:1 - response_length/clip_ratio:np.float64(0.0) - perf/total_num_tokens:np.int64(123456)
\x1b[36m(TaskRunnerV1 pid=77, ip=10.0.0.2)\x1b[0m step:2 - actor/entropy:np.float64(0.31) - \
actor/grad_norm:np.float64(nan) - actor/pg_loss:nan - flag:True - flag2:np.True_ - {VAL}:np.float64(0.85)
(TaskRunner pid=2841) step:3 - actor/entropy:0.30 - actor/grad_norm:inf [repeated 2x across cluster]
{ANSI_NEW}Let's solve this step by step:
{ANSI_NEW}step:4 - actor/entropy:0.29 - actor/grad_norm:
{ANSI_NEW}step:x - actor/entropy:0.29
{ANSI_NEW}step:5 - actor/entropy:tensor(0.3)
{ANSI_NEW}step:6 - actor/entropy
step:7 - actor/entropy:0.28 - actor/grad_norm:-0.5
"""


def test_read_console_new_format(tmp_path: Path) -> None:
    run = read_run(write(tmp_path / "driver.out", NEW_CONSOLE))
    assert (run.name, run.format) == ("driver", "console")
    assert run.n_skipped == 4
    assert [p.step for p in run.points] == [0, 1, 2, 3, 7]
    assert values(run.points, VAL) == {0: 0.2115, 2: 0.85}
    assert run.points[1].metrics["actor/lr"] == 1e-06
    assert run.points[1].metrics["perf/total_num_tokens"] == 123456.0
    assert run.points[1].metrics["actor/pg_loss"] == -0.0123
    assert math.isnan(run.points[2].metrics["actor/grad_norm"])
    assert math.isnan(run.points[2].metrics["actor/pg_loss"])
    assert (run.points[2].metrics["flag"], run.points[2].metrics["flag2"]) == (1.0, 1.0)
    assert run.points[3].metrics["actor/grad_norm"] == math.inf
    assert run.points[4].metrics["actor/grad_norm"] == -0.5
    assert run.objective == VAL


OLD_CONSOLE = """\
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m {'actor_rollout_ref': {'actor': {'clip_ratio': 0.2,
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m "Initial validation metrics: {'test_score/openai/gsm8k': 0.520579268292683}"
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:0 - test_score/openai/gsm8k:0.521
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:0 - timing/gen:48.956 - critic/lr(1e-4):0.100 - \
actor/entropy_loss:0.361 - actor/pg_loss:-0.041
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:1 - actor/entropy_loss:0.350 - actor/pg_loss:0.012
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:2 - actor/entropy_loss:0.340 - actor/pg_loss:0.013
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:2 - val/test_score/openai/gsm8k:0.546
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:3 - actor/entropy_loss:0.330 - actor/pg_loss:0.014
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:4 - actor/entropy_loss:0.320 - actor/pg_loss:0.015
\x1b[2m\x1b[36m(main_task pid=64899)\x1b[0m step:4 - val/test_score/openai/gsm8k:0.560
2024-12-17 09:38:39,348	INFO worker.py:1792 -- Started a local Ray instance.
\x1b[2m\x1b[36m(main_task pid=70001)\x1b[0m step:2 - val/test_score/openai/gsm8k:0.547
\x1b[2m\x1b[36m(main_task pid=70001)\x1b[0m step:3 - actor/entropy_loss:0.331 - actor/pg_loss:0.024
\x1b[2m\x1b[36m(main_task pid=70001)\x1b[0m "Final validation metrics: {'test_score/openai/gsm8k': 0.57}"
"""


def test_read_console_old_format_with_restart(tmp_path: Path) -> None:
    run = read_run(write(tmp_path / "gemma.log", OLD_CONSOLE))
    assert run.n_skipped == 0
    # The restart from step 2 supersedes the old steps 3 and 4.
    assert [p.step for p in run.points] == [0, 1, 2, 3]
    score = "val/test_score/openai/gsm8k"
    assert values(run.points, score) == {0: 0.521, 2: 0.547}
    assert dict(run.points[0].metrics) == {
        score: 0.521,
        "timing/gen": 48.956,
        "critic/lr(1e-4)": 0.1,
        "actor/entropy_loss": 0.361,
        "actor/pg_loss": -0.041,
    }
    assert run.points[2].metrics["actor/pg_loss"] == 0.013
    assert run.points[3].metrics["actor/pg_loss"] == 0.024
    assert run.objective == score


@pytest.mark.parametrize(
    ("line", "record"),
    [
        ("step:3 - a:1", (3, {"a": 1.0})),
        ("step:3", (3, {})),
        ("\x1b[32mstep:3 - a:np.float32(0.5)\x1b[0m\r\n", (3, {"a": 0.5})),
        ("(WorkerDict pid=5) step:3 - a:-1e-05", (3, {"a": -1e-05})),
        ("step:3 - a:np.int64(-2) - b:False", (3, {"a": -2.0, "b": 0.0})),
        ("step:3 - test_score/x/y:0.5", (3, {"val/test_score/x/y": 0.5})),
        ("Let's start with the first step:", None),
        ("  (main_task pid=1) first step: add", None),
        ("", None),
    ],
)
def test_parse_console_line(line: str, record: tuple[int, dict[str, float]] | None) -> None:
    assert parse_console_line(line) == record


@pytest.mark.parametrize("line", ["step:-1 - a:1", "step:3 - a:", "step:3 - a:b:c", "step:3 - a", "step:3 - :1"])
def test_parse_console_line_malformed(line: str) -> None:
    with pytest.raises(ValueError):
        parse_console_line(line)


# --- wandb history CSV -----------------------------------------------------------------------------------------

WANDB_CSV = f"""\
,_step,_runtime,_timestamp,actor/entropy,{VAL},media
0,0,1.5,1700000000,,0.21,
1,1,10.2,1700000010,0.33,,{{"_type": "image-file"}}
2,2.0,20.3,1700000020,NaN,,
3,three,30.0,1700000030,0.30,,
4,4,40.0,1700000040,0.29
5,5,50.0,1700000050,0.28,0.5,,extra
6,6,60.0,1700000060,inf,0.6,
"""


def test_read_wandb_csv(tmp_path: Path) -> None:
    run = read_run(write(tmp_path / "run-abc123.csv", WANDB_CSV))
    assert (run.name, run.format) == ("run-abc123", "wandb_csv")
    assert run.n_skipped == 3
    assert [p.step for p in run.points] == [0, 1, 2, 6]
    assert dict(run.points[0].metrics) == {VAL: 0.21}
    assert dict(run.points[1].metrics) == {"actor/entropy": 0.33}
    assert math.isnan(run.points[2].metrics["actor/entropy"])
    assert run.points[3].metrics == {"actor/entropy": math.inf, VAL: 0.6}
    assert run.metric_names == ["actor/entropy", VAL]


def test_read_wandb_csv_without_step_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no `_step` column"):
        read_run(write(tmp_path / "export.csv", "Step,run-1 - actor/entropy\n1,0.3\n"))


# --- TensorBoard -----------------------------------------------------------------------------------------------


def write_events(folder: Path, events: list[tuple[int, str, float]], *, as_tensor: bool = False) -> None:
    writer = EventFileWriter(str(folder))
    for step, tag, value in events:
        if as_tensor:
            tensor = tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT, float_val=[value], tensor_shape=tensor_shape_pb2.TensorShapeProto()
            )
            plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
            metadata = summary_pb2.SummaryMetadata(plugin_data=plugin)
            summary = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)
        else:
            summary = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        event = event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=[summary]))
        writer.add_event(event)
    writer.close()


def test_read_tensorboard_folder_and_file(tmp_path: Path) -> None:
    folder = tmp_path / "q3b_run"
    folder.mkdir()
    write_events(folder, [(0, VAL, 0.5), (1, "actor/entropy", 0.3), (2, "actor/entropy", 0.2), (2, VAL, 0.8)])
    run = read_run(folder)
    assert (run.name, run.format, run.n_skipped) == ("q3b_run", "tensorboard", 0)
    assert [p.step for p in run.points] == [0, 1, 2]
    assert values(run.points, VAL) == pytest.approx({0: 0.5, 2: 0.8})
    (event_file,) = folder.iterdir()
    by_file = read_run(event_file)
    assert by_file.name == "q3b_run"
    assert by_file.points == run.points


def test_read_tensorboard_scalars_written_as_tensors(tmp_path: Path) -> None:
    write_events(tmp_path, [(1, "actor/entropy", 0.25), (2, "actor/entropy", 0.5)], as_tensor=True)
    run = read_run(tmp_path)
    assert values(run.points, "actor/entropy") == {1: 0.25, 2: 0.5}


def test_read_tensorboard_restart_keeps_the_last_attempt(tmp_path: Path) -> None:
    first = [(s, "a", float(s)) for s in range(1, 6)]
    again = [(s, "a", 10.0 * s) for s in (3, 4)]
    write_events(tmp_path, first + again)
    run = read_run(tmp_path)
    assert values(run.points, "a") == {1: 1.0, 2: 2.0, 3: 30.0, 4: 40.0}


# --- format detection ------------------------------------------------------------------------------------------


def test_read_run_detects_format_from_content(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "metrics.txt", JSONL)) == "jsonl"
    header_first = WANDB_CSV.replace(",_step", "_step", 1)
    assert detect_format(write(tmp_path / "history", header_first)) == "wandb_csv"
    assert detect_format(write(tmp_path / "stdout", NEW_CONSOLE)) == "console"
    assert detect_format(write(tmp_path / "empty.log", "")) == "console"
    assert read_run(tmp_path / "empty.log").points == ()
    assert read_run(tmp_path / "metrics.txt").format == "jsonl"


def test_read_run_with_missing_or_unknown_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_run(tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="without TensorBoard event files"):
        read_run(tmp_path)


# --- JsonlTail -------------------------------------------------------------------------------------------------


def test_jsonl_tail_follows_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "attempt_1.jsonl"
    tail = JsonlTail(path)
    # Not written yet.
    assert tail.poll() == []
    with path.open("wb", buffering=0) as file:
        assert tail.poll() == []
        file.write(b'{"step": 0, "data": {"val": 0.2}}\n{"step": 1, "data": {"a": 1')
        assert tail.poll() == [StepMetrics(0, {"val": 0.2})]
        # The half-written line waits for its newline.
        assert tail.poll() == []
        file.write(b'.5}}\n')
        assert tail.poll() == [StepMetrics(1, {"a": 1.5})]
        file.write(b'garbage\n\n{"step": 2, "data": {"a": null}}\n{"step": 3, "data": {"a": 3}}\n')
        points = tail.poll()
    assert [p.step for p in points] == [2, 3]
    assert math.isnan(points[0].metrics["a"])
    assert tail.n_skipped == 1
    assert tail.poll() == []
    assert tail.path == path


def test_jsonl_tail_starts_again_after_truncation(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"step": 1, "data": {"a": 1}}\n{"step": 2, "data": {"a": 2}}\n')
    tail = JsonlTail(path)
    assert [p.step for p in tail.poll()] == [1, 2]
    write(path, '{"step": 1, "data": {"a": 10}}\n')
    assert tail.poll() == [StepMetrics(1, {"a": 10.0})]


def test_jsonl_tail_points_merge_like_the_file_reader(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", JSONL)
    tail = JsonlTail(path)
    assert tuple(merge_points(tail.poll())) == read_run(path).points
    assert tail.n_skipped == read_run(path).n_skipped
