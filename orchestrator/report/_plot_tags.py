"""SVG ids and data attributes for the artists of a figure, so that a reader's browser (and a test) can find them."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from matplotlib.artist import Artist
from matplotlib.figure import Figure

__all__ = ["tag", "tags"]

_DATA: WeakKeyDictionary[Figure, dict[str, dict[str, str]]] = WeakKeyDictionary()


def tag(artist: Artist, gid: str, **data: str) -> None:
    """Give an artist of a figure its SVG id (`gid`) and the data attributes its group carries (`data-<key>`)."""
    artist.set_gid(gid)
    figure = artist.figure  # the report draws no subfigures: the root figure
    assert isinstance(figure, Figure)  # artists are tagged once they are in a figure
    _DATA.setdefault(figure, {})[gid] = dict(data)


def tags(figure: Figure) -> dict[str, dict[str, str]]:
    """Return gid -> data attributes of the figure's tagged artists."""
    return _DATA.get(figure, {})
