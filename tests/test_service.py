"""`ablate serve` end to end: a real uvicorn server on a loopback port, real Ray, real SQLite, the real trainer.

The CLI (`ablate submit`, `ablate status --server`, `ablate cancel`) runs in subprocesses, as a user would run it.
"The demo spec" here is a reduced copy of `sweeps/demo.yaml`: the same factors, design, objective and collapse rules,
one seed, 10 steps per trial after a short warm start, and an LR at which the baseline collapses within them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from html import escape
from typing import Any

import httpx
import psutil
import pytest
import yaml
from hypothesis import HealthCheck, settings

from orchestrator.errors import AblateError
from orchestrator.service import ServiceDB, load_or_create_token

sys.path.insert(0, str(Path(__file__).parent))
from mini_sweeps import ABLATE, ROOT  # noqa: E402
from mini_sweeps import trainers as _trainers  # noqa: E402

# The module's API tests share one server (the `server` fixture): under xdist they run on one worker, so that it
# starts once.
pytestmark = pytest.mark.xdist_group("service")

CHROMIUM = Path("/usr/bin/chromium")
FAST = {"mini.warm_start.steps": 600}
BAD_KL = "factors.kl[1].coef"


# ------------------------------------------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Server:
    """`ablate serve` in a subprocess on a free loopback port, with its own state folder."""

    def __init__(self, state: Path, env: dict[str, str], *args: str) -> None:
        self.state = state
        self.env = env
        self.args = args
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.descendants: list[psutil.Process] = []

    def start(self) -> Server:
        log = open(self.state.parent / f"{self.state.name}-serve.log", "ab")
        argv = [*ABLATE, "serve", "--state", str(self.state), "--port", str(self.port), "--cpus", "2", *self.args]
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        _wait_for("the token file", lambda: (self.state / "token").is_file() or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, self.log()[-3000:]
        _wait_for("the service and its Ray cluster", self._up, 180)
        return self

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]
        try:
            answer = self.client().get("/health")
        except httpx.TransportError:
            return False
        return answer.status_code == 200 and answer.json()["status"] == "ok"

    @property
    def token(self) -> str:
        return (self.state / "token").read_text().strip()

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=120)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server as a process manager (SIGTERM), Ctrl-C (SIGINT) or a crash (SIGKILL) would; return its exit status.

        After a clean shutdown uvicorn re-raises SIGTERM (exit status -SIGTERM); after Ctrl-C it exits 0.
        """
        assert self.proc is not None
        self.descendants = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=240)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def leftovers(self) -> list[str]:
        """Return the descendants of the stopped server that are still alive (its Ray, sweeps, trainers)."""
        alive = []
        for proc in self.descendants:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                continue
        return alive

    def log(self) -> str:
        return (self.state.parent / f"{self.state.name}-serve.log").read_text(errors="replace")

    def cli(self, *args: str, token_file: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--server", self.url] + (["--token-file", str(self.state / "token")] if token_file else [])
        argv = [*ABLATE, *args[:1], *extra, *args[1:]]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)


def _demo_spec(tmp_path: Path, name: str = "demo", **changes: Any) -> Path:
    """Write a reduced copy of sweeps/demo.yaml: the same factors, design, objective and rules; 1 seed, 10 steps,
    and an LR of 5e-3 instead of 2e-3, at which the baseline collapses within those steps after the short warm start."""
    spec = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
    for level in spec["factors"]["lr_schedule"]:
        level["lr"] = 5.0e-3
    spec["name"] = name
    spec["trainer"]["base"] = str(ROOT / "configs" / "mini" / "original.yaml")
    spec["trainer"]["overrides"] = dict(FAST)
    spec["seeds"] = 1
    spec["budget"] = {"max_steps": 10, "eval_every": 5, "save_every": 5}
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _long_spec(tmp_path: Path, name: str, steps: int, every: int = 5) -> Path:
    spec = {
        "name": name,
        "trainer": {"backend": "mini", "base": str(ROOT / "configs" / "mini" / "original.yaml"), "overrides": dict(FAST)},
        "factors": {"lr_schedule": [{"type": "constant", "lr": 1.0e-3}]},
        "budget": {"max_steps": steps, "eval_every": every, "save_every": every},
        "objective": {"metric": "val-core/mini/reward/mean@1", "mode": "max"},
        "pruning": {"collapse": None},
        "resources": {"cpus": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sweep(server: Server, sweep_id: str) -> dict[str, Any]:
    with server.client() as client:
        return client.get(f"/sweeps/{sweep_id}").json()


def _done(server: Server, sweep_id: str) -> dict[str, Any] | None:
    sweep = _sweep(server, sweep_id)
    return sweep if sweep["status"] in ("completed", "failed", "cancelled") else None


def _max_step(server: Server, sweep_id: str) -> int:
    with server.client() as client:
        trials = client.get(f"/sweeps/{sweep_id}/trials").json()
    return max((t["step"] or 0 for t in trials), default=0)


def _dump_dom(url: str, tmp_path: Path) -> str:
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=10000", "--dump-dom", url,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("minigrpo-cache")
    clean = {k: v for k, v in os.environ.items() if k not in ("ABLATE_TOKEN", "ABLATE_SERVER", "ABLATE_TOKEN_FILE", "RAY_ADDRESS")}
    return {**clean, "ABLATE_CACHE_DIR": str(cache), "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Server]:
    """One service for the module's API tests: two sweeps at a time on a 2-CPU Ray cluster."""
    state = tmp_path_factory.mktemp("service") / "state"
    running = Server(state, env, "--max-running", "2").start()
    try:
        yield running
    finally:
        code = running.stop()
        assert code == -signal.SIGTERM, running.log()[-3000:]
        assert running.leftovers() == []
        assert _trainers(state) == []


# -------------------------------------------------------------------------------------------------------- tests


def test_service_token_is_created_private_and_kept(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    assert len(token) >= 40
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path) == token
    (tmp_path / "token").chmod(0o644)
    with pytest.raises(AblateError, match="owner only"):
        load_or_create_token(tmp_path)


def test_service_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*ABLATE, "serve", "--host", "0.0.0.0", "--port", str(port), "--state", str(tmp_path / "state")],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2
    assert "without TLS" in result.stderr and f"cannot listen on 0.0.0.0:{port}" in result.stderr
    cases = [
        (["submit", str(tmp_path / "missing.yaml"), "--server", "http://127.0.0.1:9"], "no such spec file"),
        (["submit", str(_demo_spec(tmp_path)), "--server", "http://127.0.0.1:9", "--token-file", str(tmp_path / "none")], "cannot read the token file"),
        (["status", "--server", "ftp://x", "--token-file", str(_demo_spec(tmp_path))], "must be an http:// or https:// URL"),
        (["cancel", "x-1"], "--server is required"),
    ]
    (tmp_path / "token").write_text("t\n")
    cases.append((["status", "--server", f"http://127.0.0.1:{_free_port()}", "--token-file", str(tmp_path / "token")], "cannot reach"))
    for args, message in cases:
        result = subprocess.run([*ABLATE, *args], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("error:") == 1 and "Traceback" not in result.stderr, (args, result.stderr)


def test_service_answers_401_without_the_right_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for method, path in [("GET", "/sweeps"), ("GET", "/openapi.json"), ("GET", "/health"), ("GET", "/dashboard"), ("POST", "/sweeps"), ("POST", "/sweeps/x-1/cancel"), ("GET", "/nowhere")]:
            assert anonymous.request(method, path).status_code == 401, (method, path)
    with server.client(token="wrong") as wrong:
        answer = wrong.post("/sweeps", content=_demo_spec_text(), headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    with server.client() as client:
        assert client.get("/sweeps").status_code == 200
        assert client.get("/openapi.json").json()["paths"]["/sweeps"]
    # The CLI says so in one line, exit 2.
    (server.state.parent / "wrong-token").write_text("wrong\n")
    result = server.cli("status", "--token-file", str(server.state.parent / "wrong-token"), token_file=False)
    assert result.returncode == 2
    assert "token was refused" in result.stderr and "Traceback" not in result.stderr


def _demo_spec_text() -> str:
    return (ROOT / "sweeps" / "demo.yaml").read_text()


def test_service_refuses_a_bad_spec_with_its_field_path_and_queues_nothing(server: Server, tmp_path: Path) -> None:
    bad = yaml.safe_load(_demo_spec_text())
    bad["trainer"]["base"] = str(ROOT / "configs" / "mini" / "original.yaml")
    bad["factors"]["kl"][1]["coef"] = -0.01
    with server.client() as client:
        before = len(client.get("/sweeps").json())
        answer = client.post("/sweeps", json={"spec": bad})
        assert answer.status_code == 422, answer.text
        assert {"field": BAD_KL, "message": "must be > 0 (got -0.01)"} in answer.json()["detail"]
        answer = client.post("/sweeps", content=yaml.safe_dump(bad), headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == BAD_KL
        # A trial the trainer's own config refuses, as `ablate plan` refuses it.
        unknown = {**bad, "factors": {"entropy_coeff": [0]}, "design": {"type": "grid"}, "trainer": {**bad["trainer"], "overrides": {"mini.no_such_knob": 1}}}
        answer = client.post("/sweeps", json={"spec": unknown})
        assert answer.status_code == 422, answer.text
        assert "mini.no_such_knob" in json.dumps(answer.json()["detail"])
        assert client.post("/sweeps", content=b"[1, 2", headers={"Content-Type": "application/yaml"}).status_code == 422
        assert len(client.get("/sweeps").json()) == before
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = server.cli("submit", str(path))
    assert result.returncode == 2
    assert result.stderr.count("error:") == 1 and BAD_KL in result.stderr and "Traceback" not in result.stderr
    with server.client() as client:
        assert len(client.get("/sweeps").json()) == before


def test_service_runs_the_demo_spec_and_serves_its_report_and_dashboard(server: Server, tmp_path: Path) -> None:
    spec = _demo_spec(tmp_path)
    first = server.cli("submit", str(spec), "--key", "demo-once", "--json")
    assert first.returncode == 0, first.stderr
    submitted = json.loads(first.stdout)
    sweep_id = submitted["sweep"]["id"]
    assert len(submitted["trials"]) == 6 and {t["status"] for t in submitted["trials"]} == {"pending"}
    # A retried submission with the same key does not queue the sweep again.
    again = server.cli("submit", str(spec), "--key", "demo-once", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sweep"]["id"] == sweep_id
    with server.client() as client:
        assert sum(s["name"] == "demo" for s in client.get("/sweeps").json()) == 1
        other = client.post("/sweeps", json={"spec": "name: other"}, headers={"Idempotency-Key": "demo-once"})
        assert other.status_code == 409
    sweep = _wait_for("the demo sweep to end", lambda: _done(server, sweep_id), 420, every=2)
    assert sweep["status"] == "completed", (sweep, (server.state / "sweeps" / sweep_id / "run.log").read_text()[-3000:])
    status = server.cli("status", sweep_id, "--json")
    assert status.returncode == 0, status.stderr
    trials = json.loads(status.stdout)["trials"]
    assert len(trials) == 6
    assert all(t["status"] in ("completed", "stopped") for t in trials), trials
    table = server.cli("status", sweep_id)
    assert table.returncode == 0 and all(t["name"] in table.stdout for t in trials)
    listing = server.cli("status")
    assert listing.returncode == 0 and sweep_id in listing.stdout
    with server.client() as client:
        trial = client.get(f"/sweeps/{sweep_id}/trials").json()[0]
        metric = "val-core/mini/reward/mean@1"
        points = client.get(f"/trials/{trial['id']}/metrics", params={"keys": metric, "since": 0}).json()["points"]
        assert [p["step"] for p in points] == [s for s in (5, 10) if s <= trial["step"]]
        assert all(set(p["metrics"]) == {metric} for p in points)
        assert client.get(f"/trials/{sweep_id}:nope/metrics").status_code == 404
        report = client.get(f"/sweeps/{sweep_id}/report")
        assert report.status_code == 200, report.text
        assert "text/html" in report.headers["content-type"]
        assert "Which factor prevents collapse" in report.text and all(t["name"] in report.text for t in trials)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")
    # The dashboard in headless Chromium: sign in through the login page (the token travels in the URL fragment,
    # which never reaches the server), land on the sweep's page, and find the sweep, its trials and its curves
    # (the grouping of seeds is checked on a sweep with several: test_service_dashboard_groups_seeds_...).
    dom = _dump_dom(f"{server.url}/login?next=/dashboard/sweeps/{sweep_id}#token={server.token}", tmp_path)
    assert f'<h1 id="sweep-id">{sweep_id}</h1>' in dom, dom[-3000:]
    assert len(re.findall(r'<tr class="trial"', dom)) == 6
    # One group per configuration (6, one seed each), its seed's curve in it.
    assert len(_config_groups(dom)) == 6 and all(len(g["seeds"]) == 1 for g in _config_groups(dom).values())
    collapsed = [t for t in trials if t["collapse_step"] is not None]
    assert collapsed, trials
    assert len(re.findall(r'<path class="collapse-marker"', dom)) == len(collapsed)
    assert server.token not in server.log()


def _ended(server: Server, sweep_id: str) -> int:
    with server.client() as client:
        trials = client.get(f"/sweeps/{sweep_id}/trials").json()
    return sum(t["status"] in ("completed", "stopped", "failed", "cancelled") for t in trials)


def _live_effects(dom: str) -> tuple[str, int, str]:
    """Return a dashboard DOM's sweep status, how many runs its effects rest on, and its effects table."""
    status = re.search(r'id="sweep-status">(\w+)<', dom)
    count = re.search(r'id="effects-count" data-ended="(\d+)"', dom)
    table = re.search(r'<table id="effects">.*?</table>', dom, re.S)
    assert status and count and table, dom[-3000:]
    return status.group(1), int(count.group(1)), table.group(0)


def _config_groups(dom: str) -> dict[str, dict[str, Any]]:
    """Return each `g.config-group` of a dashboard DOM: its colour, its seeds' trial ids and colours, its mean's."""
    groups = {}
    for match in re.finditer(r'<g class="config-group" data-config="([^"]+)" data-colour="([^"]+)">(.*?)</g>', dom, re.S):
        body = match.group(3)
        seeds = re.findall(r'<polyline class="seed-curve" data-trial="([^"]+)" fill="none" stroke="([^"]+)"', body)
        means = re.findall(r'<polyline class="config-mean" data-runs="(\d+)" fill="none" stroke="([^"]+)"', body)
        groups[match.group(1)] = {"colour": match.group(2), "seeds": seeds, "means": means}
    return groups


def test_service_dashboard_groups_seeds_by_configuration_and_updates_its_effects_live(server: Server, tmp_path: Path) -> None:
    """Two configurations x 3 seeds, one trial at a time. While the sweep runs, the dashboard's effects table (the
    report's estimates on the runs that have ended) changes between two polls, and the page refreshes itself in
    place; at the end it draws one group per configuration, each seed thin in the configuration's colour, the mean
    bold in it; a trial's page shows its signals and the collapse rule's evidence."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")
    from orchestrator.report import OKABE_ITO, config_colours

    spec = _long_spec(tmp_path, "grouped", 10)
    text = yaml.safe_load(spec.read_text())
    text["factors"] = {"lr_schedule": [{"type": "constant", "lr": 5.0e-3}, {"type": "constant", "lr": 1.0e-3}]}
    text.update(seeds=3, pruning={"collapse": {}}, execution={"max_concurrent_trials": 1})
    with server.client() as client:
        answer = client.post("/sweeps", content=yaml.safe_dump(text), headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    sweep_id = answer.json()["sweep"]["id"]
    url = f"{server.url}/login?next=/dashboard/sweeps/{sweep_id}#token={server.token}"
    # Two polls of the running sweep, each after another run has ended: the effects table changes between them.
    polls = []
    for _ in range(2):
        least = polls[-1][1] + 1 if polls else 1
        _wait_for(f"{least} runs to end", lambda: _ended(server, sweep_id) >= least, 300)
        dom = _dump_dom(url, tmp_path)
        polls.append(_live_effects(dom))
        assert polls[-1][0] == "running", (polls[-1], _sweep(server, sweep_id))
        # The page fetched itself again and swapped its live part in place (no reload: the script's count survives).
        assert re.search(r'<body[^>]* data-refreshes="[1-9]', dom), dom[:2000]
    (_, first, first_table), (_, second, second_table) = polls
    assert 1 <= first < second < 6 and first_table != second_table, polls
    assert "runs ended" in first_table
    sweep = _wait_for("the sweep to end", lambda: _done(server, sweep_id), 420, every=2)
    assert sweep["status"] == "completed", sweep
    dom = _dump_dom(url, tmp_path)
    groups = _config_groups(dom)
    labels = ["lr_schedule=const0.001", "lr_schedule=const0.005"]
    assert sorted(groups) == labels, list(groups)
    with server.client() as client:
        trials = client.get(f"/sweeps/{sweep_id}/trials").json()
    colours = config_colours(labels)
    for label, group in groups.items():
        members = {t["id"] for t in trials if f"lr_schedule={t['levels']['lr_schedule']}" == label}
        # Every seed of the configuration is drawn in its group, in the configuration's colour, as is the mean.
        assert {trial for trial, _ in group["seeds"]} == members and len(members) == 3, (label, group)
        assert {colour for _, colour in group["seeds"]} == {group["colour"]} == {colours[label]}
        assert len(group["means"]) == 1 and group["means"][0][1] == group["colour"], group
    assert len({g["colour"] for g in groups.values()}) == 2 and all(g["colour"] in OKABE_ITO for g in groups.values())
    assert _live_effects(dom)[1] == 6
    # A collapsed trial's page: its signals, with the onset marked, and the rule's sentence and evidence.
    collapsed = next(t for t in trials if t["stop_reason"] and t["stop_reason"].startswith("collapse:"))
    page = _dump_dom(f"{server.url}/login?next=/dashboard/trials/{collapsed['id']}#token={server.token}", tmp_path)
    signals = re.findall(r'<svg class="signal" data-signal="([^"]+)"', page)
    assert signals == ["val-core/mini/reward/mean@1", "actor/entropy", "response_length/mean", "actor/grad_norm"], signals
    assert len(re.findall(r'<line class="mark-onset"', page)) == len(signals)
    assert collapsed["why"] and escape(collapsed["why"], quote=False) in page and '<table id="evidence">' in page


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    """The service's OpenAPI schema, loaded from the live server."""
    import schemathesis

    headers = {"Authorization": f"Bearer {server.token}"}
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)


schema = pytest.importorskip("schemathesis").pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_service_api_answers_generated_requests_without_a_server_error(case: Any, server: Server) -> None:
    """schemathesis: requests generated from the OpenAPI schema (bounded: 30 per operation) get no 5xx, and the
    answers match the schema (status codes and bodies)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    case.call_and_validate(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.token}"},
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )


def test_service_runs_an_optuna_search(server: Server, tmp_path: Path) -> None:
    """A search's trials are sampled as it runs: the sweep counts `num_samples`, each sample shows up as a trial."""
    lr = "actor_rollout_ref.actor.optim.lr"
    spec = {
        "name": "search",
        "trainer": {"backend": "mini", "base": str(ROOT / "configs" / "mini" / "original.yaml"), "overrides": dict(FAST)},
        "factors": {"kl": [{"use_kl_loss": True, "coef": 0.01, "type": "low_var_kl"}]},
        "budget": {"max_steps": 10, "eval_every": 5, "save_every": 5},
        "objective": {"metric": "val-core/mini/reward/mean@1", "mode": "max"},
        "pruning": {"asha": {"grace_steps": 5, "reduction_factor": 2}},
        "search": {"type": "optuna", "num_samples": 3, "space": {lr: {"low": 1.0e-3, "high": 2.0e-2, "log": True}}},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = server.cli("submit", str(path), "--json")
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    sweep_id = submitted["sweep"]["id"]
    assert submitted["sweep"]["n_trials"] == 3 and submitted["trials"] == []
    sweep = _wait_for("the search to end", lambda: _done(server, sweep_id), 420, every=2)
    assert sweep["status"] == "completed", (sweep, (server.state / "sweeps" / sweep_id / "run.log").read_text()[-3000:])
    with server.client() as client:
        trials = client.get(f"/sweeps/{sweep_id}/trials").json()
        assert len(trials) == 3 and all(t["status"] in ("completed", "stopped") for t in trials), trials
        assert client.get(f"/sweeps/{sweep_id}/report").status_code == 200


def test_service_cancel_stops_a_running_sweep_cleanly(server: Server, tmp_path: Path) -> None:
    spec = _long_spec(tmp_path, "long", 2000)
    result = server.cli("submit", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    sweep_id = json.loads(result.stdout)["sweep"]["id"]
    _wait_for("a trial to train", lambda: _max_step(server, sweep_id) >= 2, 300)
    assert _trainers(server.state)
    cancel = server.cli("cancel", sweep_id)
    assert cancel.returncode == 0, cancel.stderr
    assert sweep_id in cancel.stdout
    sweep = _wait_for("the cancel", lambda: _done(server, sweep_id), 180)
    assert sweep["status"] == "cancelled"
    with server.client() as client:
        trials = client.get(f"/sweeps/{sweep_id}/trials").json()
        assert {t["status"] for t in trials} == {"cancelled"}
        assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 200
    _wait_for("the trainers to exit", lambda: not _trainers(server.state / "sweeps" / sweep_id), 30)
    assert server.cli("cancel", "no-such-1").returncode == 2


def test_service_restart_keeps_the_queue_and_resumes_the_running_sweep(tmp_path: Path, env: dict[str, str]) -> None:
    """Kill the service outright (SIGKILL, no clean-up) while a sweep runs and another waits: everything it started
    stops by itself; at the next start the waiting sweep is still queued and the running one resumes and finishes.
    A miniature step takes about 0.02 s: the running sweep's budget (600 steps) outlasts the kill by many seconds."""
    state = tmp_path / "state"
    server = Server(state, env, "--max-running", "1").start()
    try:
        running = json.loads(server.cli("submit", str(_long_spec(tmp_path, "resumed", 600, every=50)), "--json").stdout)["sweep"]["id"]
        queued = json.loads(server.cli("submit", str(_long_spec(tmp_path, "waiting", 5)), "--json").stdout)["sweep"]["id"]
        _wait_for("the first sweep to train", lambda: _max_step(server, running) >= 60, 300)
        assert _sweep(server, queued)["status"] == "queued"
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    # Its Ray head, its sweep's `ablate run` and the trainers notice and stop on their own.
    _wait_for("the killed service's processes to exit", lambda: server.leftovers() == [], 120, every=1)
    assert _trainers(state) == []
    rows = {s.id: s for s in ServiceDB(state / "service.db").list_sweeps()}
    assert rows[running].status == "running" and rows[queued].status == "queued"
    server = Server(state, env, "--max-running", "1").start()
    try:
        first = _wait_for("the resumed sweep to end", lambda: _done(server, running), 300, every=2)
        second = _wait_for("the queued sweep to end", lambda: _done(server, queued), 300, every=2)
        assert first["status"] == "completed" and second["status"] == "completed", (first, second)
        assert first["runs"] == 2 and second["runs"] == 1
        with server.client() as client:
            (trial,) = client.get(f"/sweeps/{running}/trials").json()
        assert trial["status"] == "completed" and trial["step"] == 600
        assert trial["attempts"] >= 2
    finally:
        assert server.stop(signal.SIGINT) == 0, server.log()[-3000:]
    assert server.leftovers() == []
    assert _trainers(state) == []
    assert "Traceback" not in server.log()


def test_service_resumes_its_sweeps_when_its_ray_cluster_dies(server: Server, tmp_path: Path) -> None:
    """Ray's processes killed under a running sweep (as `ray stop --force` or the OOM killer would): the service
    puts the sweep back in the queue, starts a new Ray head, and the sweep resumes and finishes. The budget (600 steps
    of about 0.02 s) outlasts the kill by many seconds."""
    result = server.cli("submit", str(_long_spec(tmp_path, "survivor", 600, every=50)), "--json")
    assert result.returncode == 0, result.stderr
    sweep_id = json.loads(result.stdout)["sweep"]["id"]
    _wait_for("a trial to train", lambda: _max_step(server, sweep_id) >= 60, 300)
    assert server.proc is not None
    ray_processes = [
        p for p in psutil.Process(server.proc.pid).children(recursive=True) if re.search(r"gcs_server|raylet", " ".join(p.cmdline()))
    ]
    assert len(ray_processes) >= 2
    for proc in ray_processes:
        proc.kill()
    sweep = _wait_for("the sweep to end", lambda: _done(server, sweep_id), 420, every=2)
    assert sweep["status"] == "completed", (sweep, (server.state / "sweeps" / sweep_id / "run.log").read_text()[-3000:])
    assert sweep["runs"] == 2
    with server.client() as client:
        (trial,) = client.get(f"/sweeps/{sweep_id}/trials").json()
        assert trial["status"] == "completed" and trial["step"] == 600
        assert client.get("/health").json()["status"] == "ok"
    assert "Ray cluster died" in server.log()
