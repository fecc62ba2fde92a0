"""Screenshots of `ablate serve`'s dashboard on the demo sweep, in headless Chromium, for the README.

Usage: python benchmarks/dashboard_screenshot.py
    -> benchmarks/results/dashboard.png (the sweep's page: effects so far, one panel per configuration, trials)
       benchmarks/results/dashboard_trial.png (a collapsed trial's page: its signals and the rule's evidence)

Starts the service on a free loopback port with a temporary state folder, submits sweeps/demo.yaml (18 trials,
about 3 to 6 minutes on 2 cores), waits for it to end, takes the screenshots, and stops the service.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _shoot(url: str, out: Path, work: Path, height: int) -> None:
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={work / 'chromium'}", "--virtual-time-budget=4000",
        f"--window-size=1100,{height}", f"--screenshot={out}", url,
    ]  # fmt: skip
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    print(out, f"{out.stat().st_size // 1024} KiB")


def _wait(client: httpx.Client, sweep_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sweep = client.get(f"/sweeps/{sweep_id}").json()
        if sweep["status"] in ("completed", "failed", "cancelled"):
            return sweep
        time.sleep(5)
    raise SystemExit(f"the demo sweep did not end in {timeout_s:.0f} s")


def main() -> None:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")
    out = ROOT / "benchmarks" / "results"
    with tempfile.TemporaryDirectory(prefix="ablate-dashboard-") as tmp:
        work, port = Path(tmp), _free_port()
        state, url = work / "state", f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_TOKEN") and k != "RAY_ADDRESS"}
        log = open(work / "serve.log", "wb")
        server = subprocess.Popen([*ABLATE, "serve", "--state", str(state), "--port", str(port), "--cpus", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not (state / "token").is_file():
                time.sleep(0.5)
            token = (state / "token").read_text().strip()
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            while True:
                try:
                    if client.get("/health").json()["status"] == "ok":
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            submit = subprocess.run(
                [*ABLATE, "submit", str(ROOT / "sweeps" / "demo.yaml"), "--server", url, "--token-file", str(state / "token"), "--json"],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            sweep_id = json.loads(submit.stdout)["sweep"]["id"]
            sweep = _wait(client, sweep_id, 1800)
            print(f"sweep {sweep_id}: {sweep['status']}")
            trials = client.get(f"/sweeps/{sweep_id}/trials").json()
            collapsed = next(t for t in trials if (t["stop_reason"] or "").startswith("collapse:"))
            login = f"{url}/login?next="
            _shoot(f"{login}/dashboard/sweeps/{sweep_id}#token={token}", out / "dashboard.png", work, 1900)
            _shoot(f"{login}/dashboard/trials/{collapsed['id']}#token={token}", out / "dashboard_trial.png", work, 900)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=240)


if __name__ == "__main__":
    main()
