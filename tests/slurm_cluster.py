"""A real single-node Slurm for the tests: install it (Debian's slurm-wlm and munge), configure, start, stop.

`start_cluster(state_dir)` installs the packages if `sbatch` is missing (root and apt-get needed), writes a
`slurm.conf` and `gres.conf` into `state_dir` (the system's /etc/slurm is left alone: commands find the config
through `SLURM_CONF`), starts munged, slurmctld and the slurmd's, and waits until the nodes are idle.

- Partition `debug` (the default): this host as one node with 8 CPUs (at least; more than a small machine has)
  and 4 logical GPUs, bound as real ones: Slurm gives each job its GPUs' indices in CUDA_VISIBLE_DEVICES and
  SLURM_JOB_GPUS (see `_gpu_device_files`).
- Partition `multi`: two more nodes, `ablate-n1` and `ablate-n2`, each its own slurmd on this host (`slurmd -N`,
  Slurm's multiple-slurmd mode) with 2 CPUs and 2 logical GPUs, for multi-node jobs: `srun -w ablate-n2` runs a
  step under that node's slurmd, with SLURMD_NODENAME=ablate-n2.

`Cluster.stop()` stops the daemons this module started; `Cluster.min_job_age(seconds)` changes how long slurmctld
remembers a finished job (`MinJobAge`, 3600 s here; real clusters: 300 s by default).

Run it by hand to get the same cluster in a shell: `python tests/slurm_cluster.py /tmp/slurm` prints the
`export SLURM_CONF=...` line to use.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

N_GPUS = 4
N_CPUS = 8
# The `multi` partition's nodes: name -> slurmd port.
MULTI_NODES = {"ablate-n1": 17101, "ablate-n2": 17102}
MULTI_CPUS = 2
MULTI_GPUS = 2
MUNGE_KEY = Path("/etc/munge/munge.key")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here; the message says why."""


@dataclass
class Cluster:
    """A running test cluster: its config file, the `debug` partition's node, the `multi` partition's nodes, and
    the daemons started for it."""

    conf: Path
    node: str
    n_gpus: int
    multi_nodes: tuple[str, ...] = ()
    multi_unavailable: str = ""
    gpus_unbound: str = ""
    """Why Slurm does not bind the logical GPUs (sets no CUDA_VISIBLE_DEVICES), if it does not; else empty."""
    pids: list[int] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Return the environment variables that point Slurm's commands at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def min_job_age(self, seconds: int) -> None:
        """Set `MinJobAge` (how long slurmctld keeps a finished job) and reconfigure the running daemons.

        With 2 (Slurm's least useful value), a finished job is forgotten within about 10 s: slurmctld purges old jobs
        in a periodic pass, not at MinJobAge exactly.
        """
        text = re.sub(r"(?m)^MinJobAge=\d+$", f"MinJobAge={seconds}", self.conf.read_text())
        self.conf.write_text(text)
        done = subprocess.run(["scontrol", "reconfigure"], env={**os.environ, **self.env}, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SlurmUnavailable(f"`scontrol reconfigure` failed: {done.stderr.strip()}")
        # slurmctld applies a reconfigure in the background: ask until it shows the new value.
        deadline = time.monotonic() + 30
        while True:
            shown = subprocess.run(["scontrol", "show", "config"], env={**os.environ, **self.env}, capture_output=True, text=True, check=False)
            found = re.search(r"(?m)^MinJobAge\s*=\s*(.*)$", shown.stdout)
            if found is not None and found.group(1).strip() == f"{seconds} sec":
                return
            if time.monotonic() > deadline:
                now = found.group(1).strip() if found else "not shown"
                raise SlurmUnavailable(f"slurmctld did not take MinJobAge={seconds} within 30 s (it shows {now})")
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel every job and stop the daemons this cluster started."""
        subprocess.run(["scancel", "--full", "--user", "root"], env={**os.environ, **self.env}, capture_output=True, check=False)
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in self.pids):
            time.sleep(0.2)
        for pid in self.pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def start_cluster(state_dir: Path) -> Cluster:
    """Install (if needed), configure and start a single-node Slurm with state under `state_dir`.

    Raises:
        SlurmUnavailable: If Slurm is not installed and cannot be (not root, no apt-get, the install failed), or
            the daemons do not come up; the message names the step and its output.
    """
    _install()
    state_dir = state_dir.absolute()
    for sub in ("spool", "state", "log", "gpus"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = state_dir / "slurm.conf"
    gpu_files, gpus_unbound = _gpu_device_files(state_dir / "gpus" / node, N_GPUS)
    cpus = max(N_CPUS, os.cpu_count() or 1)
    memory_mb = int(_total_memory_mb() * 0.9)
    conf.write_text(
        "\n".join(
            [
                "ClusterName=ablate-test",
                f"SlurmctldHost={node}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "ReturnToService=2",
                "MinJobAge=3600",
                "KillWait=5",
                "SchedulerParameters=sched_interval=1",
                "MpiDefault=none",
                # More CPUs than the machine has, so that the logical GPUs, not the CPUs, limit GPU jobs; and
                # a default memory per CPU, so that a job without --mem does not take the whole node.
                "SlurmdParameters=config_overrides",
                "DefMemPerCPU=512",
                "GresTypes=gpu",
                f"StateSaveLocation={state_dir / 'state'}",
                f"SlurmctldPidFile={state_dir / 'slurmctld.pid'}",
                # %n: each slurmd of this host (one per node name) keeps its own spool, pid file and log.
                f"SlurmdSpoolDir={state_dir / 'spool' / '%n'}",
                f"SlurmdPidFile={state_dir / 'slurmd.%n.pid'}",
                f"SlurmctldLogFile={state_dir / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={state_dir / 'log' / 'slurmd.%n.log'}",
                f"NodeName={node} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{N_GPUS} State=UNKNOWN",
                *(
                    f"NodeName={name} NodeHostname={node} NodeAddr=127.0.0.1 Port={port} CPUs={MULTI_CPUS} "
                    f"RealMemory={memory_mb // 4} Gres=gpu:{MULTI_GPUS} State=UNKNOWN"
                    for name, port in MULTI_NODES.items()
                ),
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                f"PartitionName=multi Nodes={','.join(MULTI_NODES)} MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    gres = [f"NodeName={node} Name=gpu File={','.join(str(p) for p in gpu_files)}"]
    for name in (node, *MULTI_NODES):
        (state_dir / "spool" / name).mkdir(exist_ok=True)
    for name in MULTI_NODES:
        files, _ = _gpu_device_files(state_dir / "gpus" / name, MULTI_GPUS)
        gres.append(f"NodeName={name} Name=gpu File={','.join(str(p) for p in files)}")
    (state_dir / "gres.conf").write_text("AutoDetect=off\n" + "\n".join(gres) + "\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(conf=conf, node=node, n_gpus=N_GPUS, multi_nodes=tuple(MULTI_NODES), gpus_unbound=gpus_unbound)
    _start_munge()
    try:
        cluster.pids.append(_daemon(["slurmctld", "-D", "-i", "-f", str(conf)], state_dir / "log" / "slurmctld.out", env))
        _wait(lambda: _ok(["scontrol", "ping"], env), 30, "slurmctld answering `scontrol ping`", state_dir)
        for name in (node, *MULTI_NODES):
            cluster.pids.append(_daemon(["slurmd", "-D", "-N", name, "-f", str(conf)], state_dir / "log" / f"slurmd.{name}.out", env))
        _wait(lambda: _node_ready(node, env), 60, f"node {node} idle in `sinfo`", state_dir)
    except SlurmUnavailable:
        cluster.stop()
        raise
    try:
        for name in MULTI_NODES:
            _wait(lambda name=name: _node_ready(name, env), 30, f"node {name} idle in `sinfo`", state_dir)
    except SlurmUnavailable as exc:
        # The `debug` partition works; only the multi-node tests need these nodes, and they skip with the reason.
        cluster.multi_nodes, cluster.multi_unavailable = (), str(exc)
    return cluster


def _gpu_device_files(folder: Path, count: int) -> tuple[list[Path], str]:
    """Make `count` logical GPU device files `folder/nvidia0`... and return them, with why Slurm will not bind
    them ("" when it will).

    Slurm (22.05's gres/gpu) binds a GPU only if its gres.conf `File=` is a character or block device: a plain file
    is still scheduled and counted, but dropped from the node's device list ("... is not a valid character or
    block device" in slurmd's log), so a job gets no CUDA_VISIBLE_DEVICES or SLURM_JOB_GPUS. The index Slurm puts
    in those variables is the number in the file's name (`nvidia2` -> 2); with TaskPlugin=task/none (no device
    cgroup) it is that global index, not one renumbered from 0 per job. So each logical GPU is a character device
    node (mknod, as root) with /dev/null's numbers, under the test's own folder: nothing opens it, and a real
    /dev/nvidia* is never touched. Where mknod is refused (a container without CAP_MKNOD), plain files keep the
    scheduling tests working, and the reason is returned for the binding test to report.
    """
    folder.mkdir(parents=True, exist_ok=True)
    null = os.stat("/dev/null").st_rdev
    files, unbound = [], ""
    for i in range(count):
        path = folder / f"nvidia{i}"
        path.unlink(missing_ok=True)
        if not unbound:
            try:
                os.mknod(path, 0o600 | stat.S_IFCHR, null)
            except OSError as exc:
                unbound = f"cannot make a character device for a logical GPU ({path}): {exc}"
        if unbound:
            path.touch()
        files.append(path)
    return files, unbound


def _install() -> None:
    if shutil.which("sbatch") and shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SlurmUnavailable("Slurm is not installed and cannot be here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=900)
        if done.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}")


def _start_munge() -> None:
    env = {**os.environ}
    if _ok(["sh", "-c", "munge -n | unmunge"], env):
        return
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    run_dir = Path("/run/munge")
    for directory in (MUNGE_KEY.parent, run_dir, Path("/var/lib/munge"), Path("/var/log/munge")):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "munge", "munge")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    done = subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SlurmUnavailable(f"munged did not start: {done.stderr.strip()}")
    _wait(lambda: _ok(["sh", "-c", "munge -n | unmunge"], env), 15, "munge answering", None)


def _daemon(argv: list[str], log: Path, env: dict[str, str]) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc.pid


def _node_ready(node: str, env: dict[str, str]) -> bool:
    done = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True, env=env, check=False)
    state = done.stdout.strip()
    if state.startswith(("drain", "inval", "down")):
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], env=env, capture_output=True, check=False)
    return state.startswith(("idle", "mix", "alloc"))


def _wait(check: object, timeout_s: float, what: str, state_dir: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    logs = ""
    if state_dir is not None:
        for log in sorted((state_dir / "log").glob("*")):
            logs += f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise SlurmUnavailable(f"timed out after {timeout_s:g} s waiting for {what}{logs}")


def _ok(argv: list[str], env: dict[str, str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, env=env, check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _total_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


if __name__ == "__main__":
    started = start_cluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ablate-slurm"))
    print(f"export SLURM_CONF={started.conf}")
