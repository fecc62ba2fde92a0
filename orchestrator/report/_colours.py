"""One colour per configuration, colour-blind safe, shared by the report's figures and the dashboard.

The colours are Okabe and Ito's eight ("Color Universal Design", 2008), ordered so that the first ones differ most
for every kind of colour vision; yellow, hard to see on white, comes last. A configuration's colour depends only on
the set of configurations, not on the order they are given in: names are put in the report's order (each factor's
levels in `level_order`, factors in the order the names list them) before colours are dealt. Beyond eight
configurations colours repeat; every figure that groups by configuration also labels its panels or lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from orchestrator.report._effects import level_order

__all__ = ["OKABE_ITO", "config_colours", "config_label"]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
"""Blue, vermillion, bluish green, reddish purple, orange, sky blue, black, yellow."""


def config_label(levels: Mapping[str, str]) -> str:
    """Return a configuration's name, e.g. `kl=0.01, lr=cos` (the report's `GroupStats.label`)."""
    return ", ".join(f"{factor}={level}" for factor, level in levels.items()) or "all runs"


def _parse(name: str) -> list[tuple[str, str]] | None:
    """Return a name's (factor, level) pairs, or None when it is not of the form `f=v, g=w`."""
    pairs = [part.partition("=") for part in name.split(", ")]
    return None if any(not sep for _, sep, _ in pairs) else [(f, v) for f, _, v in pairs]


def _report_order(names: Sequence[str]) -> list[str]:
    """Return the names sorted as the report lists configurations; names that are not `f=v, ...` come last."""
    parsed = {name: _parse(name) for name in names}
    factors = list(dict.fromkeys(f for pairs in parsed.values() if pairs for f, _ in pairs))
    levels = {f: level_order([v for pairs in parsed.values() if pairs for g, v in pairs if g == f]) for f in factors}

    def key(name: str) -> tuple[int, tuple[int, ...], str]:
        pairs = parsed[name]
        # Not a configuration name: after every configuration, by text.
        if pairs is None:
            return (1, (), name)
        found = dict(pairs)
        return (0, tuple(levels[f].index(found[f]) if f in found else -1 for f in factors), name)

    return sorted(names, key=key)


def config_colours(config_names: Iterable[str]) -> dict[str, str]:
    """Return configuration name -> hex colour (`#RRGGBB`), the same for the same set of names in any order.

    Args:
        config_names: The configurations' names as `config_label` writes them (`kl=0.01, lr=cos`); duplicates are
            ignored. Pass every configuration of the sweep, not only those seen so far, so that colours do not
            shift as trials start.
    """
    names = _report_order(list(dict.fromkeys(config_names)))
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(names)}
