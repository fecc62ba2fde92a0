"""The `ablate` command line. One command per module; user errors exit 2 with one line each, bugs exit 1."""

from __future__ import annotations

import typer

from orchestrator.cli import _console
from orchestrator.cli.analyze import analyze
from orchestrator.cli.cancel import cancel
from orchestrator.cli.plan import plan
from orchestrator.cli.replay import replay
from orchestrator.cli.report import report
from orchestrator.cli.rescue import rescue
from orchestrator.cli.run import run
from orchestrator.cli.serve import serve
from orchestrator.cli.status import status
from orchestrator.cli.submit import submit

app = typer.Typer(
    name="ablate",
    help="Ablation sweeps for RL post-training (verl GRPO): plan, run, stop collapsing trials, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, envvar="ABLATE_VERBOSE", help="More output."),
    quiet: int = typer.Option(0, "--quiet", "-q", count=True, envvar="ABLATE_QUIET", help="Less output."),
) -> None:
    """Ablation sweeps for RL post-training (verl GRPO)."""
    _console.set_verbosity(verbose - quiet)


app.command(name="plan")(plan)
app.command(name="run")(run)
app.command(name="rescue")(rescue)
app.command(name="status")(status)
app.command(name="report")(report)
app.command(name="analyze")(analyze)
app.command(name="replay")(replay)
app.command(name="serve")(serve)
app.command(name="submit")(submit)
app.command(name="cancel")(cancel)


def main() -> None:
    """Entry point of the `ablate` console script."""
    app()
