"""The suite runs on the test tooling pinned in constraints.txt, the set the README's commands and CI install."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
# The packages whose version decides whether the suite itself works (pytest 9 broke schemathesis's plugin).
TOOLING = ("pytest", "pytest-timeout", "schemathesis", "hypothesis")


def pins() -> dict[str, str]:
    """Return constraints.txt's `name==version` lines as {normalised name: version}."""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def test_constraints_pin_the_test_tooling_and_torch() -> None:
    pinned = pins()
    assert set(TOOLING) <= set(pinned), sorted(set(TOOLING) - set(pinned))
    assert pinned["torch"] == "2.13.0"  # no local label: it matches the CPU build and a CUDA build alike
    assert not [name for name in pinned if name.startswith("nvidia-")]


@pytest.mark.parametrize("name", TOOLING)
def test_installed_test_tooling_is_the_pinned_version(name: str) -> None:
    try:
        installed = version(name)
    except PackageNotFoundError:
        pytest.fail(f"{name} is not installed: install with `pip install -c constraints.txt -e '.[test]'`")
    assert installed == pins()[name], f"{name} {installed} is installed, constraints.txt pins {pins()[name]}"
