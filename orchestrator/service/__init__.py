"""`ablate serve`: the long-running service that queues sweeps, runs them on a shared Ray cluster, and shows them.

    service = Service(Path("runs/service"), max_running=1)
    app = create_app(service)          # FastAPI; uvicorn serves it, the worker starts with the app

State lives under the state folder: `service.db` (the queue and idempotency keys), `token` (mode 0600), and one
folder per sweep, `sweeps/<id>/`, holding the spec it runs, `run/` (the engine's sweep directory: store, trials,
report) and `run.log` (the output of its `ablate run`).
"""

from orchestrator.service._app import create_app
from orchestrator.service._state import ReportError, Service
from orchestrator.service._auth import load_or_create_token
from orchestrator.service._db import KeyConflict, ServiceDB, ServiceSweep
from orchestrator.service._submit import SubmissionError, check_submission
from orchestrator.service._worker import RayHead, Worker, sweep_home

__all__ = [
    "KeyConflict",
    "RayHead",
    "ReportError",
    "Service",
    "ServiceDB",
    "ServiceSweep",
    "SubmissionError",
    "Worker",
    "check_submission",
    "create_app",
    "load_or_create_token",
    "sweep_home",
]
