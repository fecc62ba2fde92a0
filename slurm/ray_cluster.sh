# Start a Ray cluster over the nodes of the current Slurm allocation; source it from a batch script.
#
# The first node of the allocation is the head; every other node runs a worker. Each Ray process is a job step
# (`srun --overlap`, so the steps share the allocation with the batch script's own work) and ends with the job.
# After `start_ray_cluster`, RAY_ADDRESS points at the head, and `ray.init()` (ablate, verl) joins the cluster.
# `stop_ray_cluster` stops it (SIGTERM to each Ray step: Ray shuts its processes down), waits for it, and removes
# what it wrote on the nodes.
#
# The job's Ray keeps everything it writes on a node (sessions, logs, sockets, and `ray_current_cluster`, the file
# where a plain `ray.init()` looks for a cluster to join) in a folder of its own, `RAY_TMPDIR` =
# ${ABLATE_RAY_TMPDIR:-/tmp}/ablate-ray-<job id>, exported to every process of the job, and never in the node's
# /tmp/ray: a Ray started on the node by anyone else is neither joined nor redirected, and once the job is gone no
# `ray.init()` on the node tries to join its dead head. `stop_ray_cluster` removes that folder on every node (a
# job killed before it can, by SIGKILL or a failed node, leaves the folder behind; nothing reads it). Keep the
# folder's path short: Ray's socket paths (<folder>/ray/session_<date>_<time>_<pid>/sockets/plasma_store) must fit
# in 107 characters, so ABLATE_RAY_TMPDIR should be at most about 30.
#
# Settings (environment): RAY_PORT (default: a port free on the head node, so that jobs sharing a node never
# share a Ray cluster), ABLATE_RAY_CPUS / ABLATE_RAY_GPUS (per node; default what Slurm allocated on the node),
# ABLATE_RAY_WAIT_S (how long to wait for every node to join, default 180), ABLATE_RAY_HEAD_IP (default: the
# head node's address on the interface that routes off it), ABLATE_PYTHON (the Python that has Ray, on every node;
# default python3; a trial script sets it to the interpreter that runs ablate).
#
# `ray start` (Ray >= 2.52) turns token authentication on and writes the token to ~/.ray/auth_token; the clients
# in the job connect with RAY_AUTH_MODE=token (exported here). Every node must see that file: a shared $HOME, or
# RAY_AUTH_TOKEN_PATH on a shared filesystem.

ABLATE_RAY_STEPS=()
ABLATE_RAY_DIR=""

# Run on the head node: print its address and a free port. The address is the one of the interface that routes
# off the node (a UDP connect sends nothing), as Ray picks its own: the host name may resolve to a loopback
# address (Debian's /etc/hosts maps it to 127.0.1.1), which other nodes cannot reach.
ABLATE_HEAD_PROBE='
import socket
port = socket.socket()
port.bind(("", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    udp.connect(("8.8.8.8", 80))
    ip = udp.getsockname()[0]
except OSError:
    ip = socket.gethostbyname(socket.gethostname())
print(ip, port.getsockname()[1])
'

start_ray_cluster() {
    local py="${ABLATE_PYTHON:-python3}"
    local cpus="${ABLATE_RAY_CPUS:-${SLURM_CPUS_ON_NODE:-1}}"
    local gpus="${ABLATE_RAY_GPUS:-${SLURM_GPUS_ON_NODE:-0}}"
    local wait_s="${ABLATE_RAY_WAIT_S:-180}"
    local nodes head head_ip port probed_ip probed_port worker n_nodes
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    n_nodes="${#nodes[@]}"
    head="${nodes[0]}"
    read -r probed_ip probed_port < <(srun --overlap --nodes=1 --ntasks=1 -w "$head" "$py" -c "$ABLATE_HEAD_PROBE")
    head_ip="${ABLATE_RAY_HEAD_IP:-$probed_ip}"
    port="${RAY_PORT:-$probed_port}"
    if [ -z "$head_ip" ] || [ -z "$port" ]; then
        echo "ablate: cannot find the address and a free port of the head node ${head}" >&2
        return 1
    fi
    export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
    export RAY_ADDRESS="${head_ip}:${port}"
    ABLATE_RAY_DIR="${ABLATE_RAY_TMPDIR:-/tmp}/ablate-ray-${SLURM_JOB_ID}"
    export RAY_TMPDIR="$ABLATE_RAY_DIR"
    echo "ablate: Ray head on ${head} (${RAY_ADDRESS}), ${n_nodes} node(s), ${cpus} CPU(s) and ${gpus} GPU(s) each"
    echo "ablate: Ray temp dir ${ABLATE_RAY_DIR} on each node"
    srun --overlap --nodes=1 --ntasks=1 -w "$head" \
        "$py" -m ray.scripts.scripts start --head --node-ip-address="$head_ip" --port="$port" \
        --num-cpus="$cpus" --num-gpus="$gpus" --include-dashboard=false --block &
    ABLATE_RAY_STEPS+=("$!")
    sleep 5
    for worker in "${nodes[@]:1}"; do
        srun --overlap --nodes=1 --ntasks=1 -w "$worker" \
            "$py" -m ray.scripts.scripts start --address="$RAY_ADDRESS" --num-cpus="$cpus" --num-gpus="$gpus" --block &
        ABLATE_RAY_STEPS+=("$!")
    done
    local deadline=$((SECONDS + wait_s))
    until [ "$("$py" -c 'import ray; ray.init(logging_level="ERROR"); print(len([n for n in ray.nodes() if n["Alive"]]))' 2>/dev/null)" = "$n_nodes" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "ablate: not every node joined the Ray cluster within ${wait_s} s" >&2
            return 1
        fi
        sleep 3
    done
    echo "ablate: all ${n_nodes} node(s) joined the Ray cluster"
}

stop_ray_cluster() {
    local step deadline=$((SECONDS + ${ABLATE_RAY_STOP_S:-45}))
    for step in "${ABLATE_RAY_STEPS[@]}"; do
        kill -TERM "$step" 2>/dev/null || true
    done
    for step in "${ABLATE_RAY_STEPS[@]}"; do
        while kill -0 "$step" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 1
        done
    done
    ABLATE_RAY_STEPS=()
    if [ -n "$ABLATE_RAY_DIR" ]; then
        # What this job's Ray wrote, on every node (a step per node), then here (the head's, should the job be
        # ending and refuse new steps). Only this job's folder: no other Ray's files are touched.
        srun --overlap --nodes="${SLURM_JOB_NUM_NODES:-1}" --ntasks-per-node=1 rm -rf -- "$ABLATE_RAY_DIR" 2>/dev/null || true
        rm -rf -- "$ABLATE_RAY_DIR" 2>/dev/null || true
        ABLATE_RAY_DIR=""
    fi
}
