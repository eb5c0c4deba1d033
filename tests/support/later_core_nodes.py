"""Core nodes some shipped templates use that ComfyUI 0.3.75 (the CI engine) does not have.

"Blended - Edit by description" and "Blended - Video edit by description" find their mask with core
SAM3 (ComfyUI 0.33+); their notes say so in their first line. On an engine without those nodes the
tests that queue, validate or lint a template skip or excuse exactly these node types, naming them;
any other node type an engine does not know still fails.
"""

from __future__ import annotations

import pytest

# class type -> the ComfyUI release that brought it
LATER_CORE_NODES = {"SAM3_Detect": "0.33", "SAM3_VideoTrack": "0.33", "SAM3_TrackToMask": "0.33"}
NOTE_FIRST_LINE = "Needs ComfyUI {release} or later"


def later_core_nodes(graph: dict) -> list[str]:
    """The graph's node types that arrived after 0.3.75."""
    return sorted({n["class_type"] for n in graph.values() if n["class_type"] in LATER_CORE_NODES})


def missing_later_core_nodes(graph: dict, registered) -> list[str]:
    """The graph's later core node types this engine does not register (``registered``: its class types)."""
    return [t for t in later_core_nodes(graph) if t not in registered]


def needed_release(types) -> str:
    return max((LATER_CORE_NODES[t] for t in types), key=lambda r: tuple(map(int, r.split("."))))


def skip_without_later_core_nodes(graph: dict, registered, name: str) -> None:
    """Skip, naming the missing node types and the release, where this engine predates the template."""
    missing = missing_later_core_nodes(graph, registered)
    if missing:
        pytest.skip(f"{name} needs ComfyUI {needed_release(missing)} or later: this engine does not register "
                    f"{', '.join(missing)} (the template's note says so)")
