"""Load check of `ablate serve`: status requests at a fixed rate, on loopback, while a sweep runs.

Usage: nice -n 10 python benchmarks/serve_load.py [--rate 50] [--duration 60] [--spec sweeps/demo.yaml] [--connections 50]
       -> benchmarks/results/serve_load.md

Starts `ablate serve` (its own state folder and Ray cluster, 2 CPUs, no access log) on a free loopback port,
submits the spec with `ablate submit`, waits until its trials are training, then opens `--rate` requests every
second for `--duration` seconds, each a `GET /sweeps/{id}/trials` (what `ablate status --server URL SWEEP` reads:
every trial's status, step, best and stop reason from the sweep's store, which the running trials write to). The
load is open-loop: a second's requests are due on time whether or not the previous second's have been answered,
and a latency runs from the moment its request was due, so a slow server shows up as latency, not as a lower rate.
Every request is counted: answered 200, answered otherwise, or failed (30 s without an answer, connection error). The load generator runs on the same machine and cores as the service
and the sweep. The sweep is cancelled and the service stopped afterwards.
Target: every request answered; the p99 latency reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(what: str, check, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _load(url: str, token: str, path: str, rate: int, duration: int, connections: int) -> tuple[list[float], dict[str, int], float]:
    """Open `rate` requests every second for `duration` seconds; return latencies (ms) of 200s, outcomes, wall.

    A request's latency runs from the moment it was due (its second's tick), so time spent waiting for one of the
    `connections` kept-alive connections counts: a server that falls behind shows up as latency.
    """
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx.Timeout(30.0, pool=None)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, limits=limits) as client:

        async def one(due: float) -> None:
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                key = f"error: {type(exc).__name__}"
            else:
                key = str(response.status_code)
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - due) * 1000)
            outcomes[key] = outcomes.get(key, 0) + 1

        tasks = []
        t0 = time.perf_counter()
        for second in range(duration):
            due = t0 + second
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks += [asyncio.create_task(one(due)) for _ in range(rate)]
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return latencies, outcomes, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="requests opened per second")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--spec", default="sweeps/demo.yaml", help="the sweep that runs meanwhile")
    parser.add_argument("--connections", type=int, default=50, help="kept-alive connections of the load generator")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ablate-serve-load-"))
    state = work / "state"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ABLATE_CACHE_DIR": str(work / "cache"), "WANDB_SILENT": "true"}
    env.pop("ABLATE_TOKEN", None)
    log = open(work / "serve.log", "wb")
    serve = subprocess.Popen(
        [*ABLATE, "serve", "--state", str(state), "--port", str(port), "--cpus", "2", "--no-access-log"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait("the token", lambda: (state / "token").is_file(), 60)
        token = (state / "token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}

        def up() -> bool:
            try:
                return httpx.get(f"{url}/health", headers=headers).json()["status"] == "ok"
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        _wait("the service", up, 300)
        cli = [*ABLATE, "submit", "--server", url, "--token-file", str(state / "token"), "--json", args.spec]
        submitted = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        sweep_id = json.loads(submitted.stdout)["sweep"]["id"]
        path = f"/sweeps/{sweep_id}/trials"

        def trials() -> list[dict]:
            return httpx.get(f"{url}{path}", headers=headers, timeout=30).json()

        _wait("a trial to train", lambda: any((t["step"] or 0) >= 1 for t in trials()), 600)
        before = trials()
        load_before = os.getloadavg()[0]
        latencies, outcomes, wall = asyncio.run(_load(url, token, path, args.rate, args.duration, args.connections))
        load_after = os.getloadavg()
        after = trials()
        sweep = httpx.get(f"{url}/sweeps/{sweep_id}", headers=headers, timeout=30).json()
        httpx.post(f"{url}/sweeps/{sweep_id}/cancel", headers=headers, timeout=30)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=300)
        log.close()

    sent = args.rate * args.duration
    ok = outcomes.get("200", 0)
    steps_before = sum(t["step"] or 0 for t in before)
    steps_after = sum(t["step"] or 0 for t in after)
    ended = sum(t["status"] in ("completed", "stopped") for t in after)
    command = "nice -n 10 python benchmarks/serve_load.py" + (
        ""
        if (args.rate, args.duration, args.spec, args.connections) == (50, 60, "sweeps/demo.yaml", 50)
        else f" --rate {args.rate} --duration {args.duration} --spec {args.spec} --connections {args.connections}"
    )
    lines = [
        "# `ablate serve` under load: status requests while a sweep runs",
        "",
        f"Command: `{command}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; service, Ray, the",
        "sweep's trainers and the load generator share these cores; loopback only.",
        "",
        f"Load: {args.rate} requests due every second for {args.duration} s (open loop, {args.connections} kept-alive connections;",
        f"latency from the moment a request was due), each `GET {path.replace(sweep_id, '{id}')}` (every trial's status, step,",
        f"best and stop reason), while `{args.spec}` ran ({sweep['n_trials']} trials, 2 at a time). Machine load average",
        f"(1 min): {load_before:.1f} when the load began, {load_after[0]:.1f} when it ended (other work shared the machine).",
        "",
        "| requests | answered 200 | other answers | failed | p50 ms | p90 ms | p99 ms | max ms | load wall s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (
            f"| {sent} | {ok} | {sum(n for k, n in outcomes.items() if k != '200' and not k.startswith('error'))} | "
            f"{sum(n for k, n in outcomes.items() if k.startswith('error'))} | "
            f"{statistics.median(latencies):.1f} | {_percentile(latencies, 90):.1f} | {_percentile(latencies, 99):.1f} | "
            f"{max(latencies):.1f} | {wall:.1f} |"
        ),
        "",
        f"Outcomes: {json.dumps(outcomes, sort_keys=True)}. The sweep kept training under the load: its trials' steps",
        f"summed {steps_before} before and {steps_after} after the {args.duration} s ({ended} trials ended by then).",
        "",
    ]
    out = ROOT / "benchmarks" / "results" / "serve_load.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
