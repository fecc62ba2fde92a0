"""The service's Ray cluster: `python -m orchestrator.service._ray_head [--cpus N] [--gpus N] [--nice N]`.

Starts a local Ray head (token authentication, the token from `RAY_AUTH_TOKEN`), prints one JSON line with its
address and resources, then holds it until standard input reaches end-of-file (the service closed the pipe, or
exited) or SIGTERM arrives, and shuts it down: Ray's processes and the trial workers go with it. If Ray's own
processes die under it, it exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading


def main(argv: list[str]) -> None:
    """Start the head, report it on stdout, hold it until stdin closes."""
    parser = argparse.ArgumentParser(prog="orchestrator.service._ray_head")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("--nice", type=int, default=0, help="lower the priority of Ray, its workers and the trainers")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    import ray

    # "local": always a new cluster, never one that `ray start` left running on this machine.
    ray.init(
        address="local",
        num_cpus=args.cpus,
        num_gpus=args.gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except (OSError, ValueError):
            pass
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    address = ray.get_runtime_context().gcs_address
    resources = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    print(json.dumps({"address": address, "resources": resources, "pid": os.getpid()}), flush=True)
    node = getattr(ray._private.worker, "_global_node", None)
    while not done.wait(2.0):
        # Ray's own processes were killed (`ray stop`, the OOM killer): say so by exiting; the service starts anew.
        if node is not None and not node.remaining_processes_alive():
            print("ablate: the Ray head's processes died", file=sys.stderr, flush=True)
            # Not ray.shutdown(): with the GCS gone it waits Ray's reconnect timeout (60 s) first, and the service
            # must learn of the death before its sweeps' drivers give up on the GCS themselves.
            try:
                node.kill_all_processes(check_alive=False, allow_graceful=False)
            finally:
                os._exit(3)
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
