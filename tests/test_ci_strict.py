"""Under CI (`CI=true`) a skipped test or module fails the run with its reason; locally it still skips.

Each check runs serially and on two xdist workers (the suite's own addopts run it on workers): a skip a worker turns
into a failure must reach the controller's outcome as one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SKIPPING = {
    "test_skips_in_test": """
        import pytest

        def test_needs_chromium():
            pytest.skip("/usr/bin/chromium is absent")

        def test_runs():
            assert True
        """,
    "test_skips_module": """
        import pytest

        pytest.importorskip("a_module_that_is_not_installed")

        def test_never_collected():
            assert True
        """,
    "test_skips_in_fixture": """
        import pytest

        @pytest.fixture(scope="module")
        def cluster():
            pytest.skip("no Slurm here: slurmctld did not start")

        def test_on_slurm(cluster):
            assert cluster
        """,
}


# Serially, and on two xdist workers.
WORKERS = pytest.mark.parametrize("workers", [["-n", "0"], ["-n", "2"]], ids=["serial", "xdist"])


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, workers: list[str]) -> pytest.RunResult:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(**SKIPPING)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfEs", "--continue-on-collection-errors", *workers)
    # The workers really ran the tests, or none did.
    assert ("created: 2/2 workers" in result.stdout.str()) == (workers == ["-n", "2"]), result.stdout.str()
    return result


@WORKERS
def test_skips_fail_the_run_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]) -> None:
    result = _run(pytester, monkeypatch, "true", workers)
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1 and outcomes.get("skipped", 0) == 0, outcomes
    assert outcomes.get("failed", 0) + outcomes.get("error", 0) + outcomes.get("errors", 0) == 3, outcomes
    out = result.stdout.str()
    for reason in ("/usr/bin/chromium is absent", "a_module_that_is_not_installed", "slurmctld did not start"):
        assert reason in out, out


@WORKERS
@pytest.mark.parametrize("ci", [None, "false"])
def test_skips_stay_skips_outside_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, workers: list[str]) -> None:
    result = _run(pytester, monkeypatch, ci, workers)
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes == {"passed": 1, "skipped": 3}, outcomes
