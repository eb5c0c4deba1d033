"""What a shipped template needs of the ComfyUI that runs it, and the refusal when that engine lacks it.

A template made for a later ComfyUI than the CI engine (0.3.75) says so on the first line of its note
(``workflows/api/<name>.note.md``, the "Read me first" text a user sees in the template): "Needs ComfyUI
0.33 or later (core SAM3)." or "... Needs ComfyUI 0.33 or newer (older ones have no Anima model)." That
sentence is the one statement of the need; the main job (``scripts/cli/run_edit.py``) and the tests read
it here rather than keep a second list that could drift from what users are told.

What an engine has is what it reports: its release (``comfyui_version.py`` of the copy it runs from,
known before it starts) and, once started, the node types of its /object_info. The main job asks
both before it writes an input or queues anything, so a template this engine cannot run stops with
what is missing and the fix, not with a loader's error after the models have been read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scripts.engine.comfy_engine import API_WORKFLOWS, engine_version

NEEDS = re.compile(r"Needs ComfyUI (\d+(?:\.\d+)+) or (?:later|newer)(?: \([^)]*\))?\.?")
# ComfyUI's start-up log line for a module of nodes (core or custom) that failed to import, with the
# exception (0.3.75 and 0.33 word it the same)
IMPORT_FAILURE = re.compile(r"Cannot import .*")


@dataclass(frozen=True)
class Need:
    release: tuple[int, ...]
    sentence: str  # the note's own words, e.g. "Needs ComfyUI 0.33 or later (core SAM3)."


def release_text(release: tuple[int, ...] | None) -> str:
    return "of unknown release (no comfyui_version.py)" if release is None else ".".join(map(str, release))


def declared_need(name: str, folder: Path = API_WORKFLOWS) -> Need | None:
    """The ComfyUI release the template's note says, on its first line, that the template needs; None
    where the note states no need (the template runs on the CI engine) or there is no note."""
    note = Path(folder) / f"{name}.note.md"
    lines = note.read_text(encoding="utf-8").splitlines() if note.is_file() else []
    found = NEEDS.search(lines[0]) if lines else None
    return Need(tuple(int(part) for part in found[1].split(".")), found[0]) if found else None


def engine_release(engine: Path) -> tuple[int, ...] | None:
    """The engine copy's release; None for a checkout without comfyui_version.py (older than every
    release a note can name: ComfyUI has written that file since early 2025)."""
    try:
        return engine_version(engine)
    except (FileNotFoundError, ValueError):
        return None


def too_old(need: Need | None, release: tuple[int, ...] | None) -> bool:
    return need is not None and (release is None or release < need.release)


def unregistered(graph: dict, registered) -> list[str]:
    """The graph's node types the engine does not register (``registered``: its /object_info keys)."""
    return sorted({node["class_type"] for node in graph.values()} - set(registered))


def runs_on(name: str, graph: dict, release, registered=None) -> bool:
    """Whether an engine of ``release`` (and, once started, with the node types ``registered``) runs it."""
    if too_old(declared_need(name), release):
        return False
    return registered is None or not unregistered(graph, registered)


@dataclass(frozen=True)
class Engine:
    """The facts an engine reports: where its copy is, its release, and (started) its node types and log."""

    path: Path
    release: tuple[int, ...] | None
    registered: frozenset | None = None
    log: str = ""


def refusal(name: str, graph: dict, engine: Engine, templates: dict[str, dict],
            source: Path | None = None) -> str | None:
    """The error for a template ``engine`` cannot run, or None when it can: what is missing (the node
    types it does not register, the release the template's note names), the fix, and which of
    ``templates`` (name -> graph) this engine runs. ``source``: the checkout BLENDED_COMFY_ENGINE names."""
    need = declared_need(name)
    old = too_old(need, engine.release)
    missing = unregistered(graph, engine.registered) if engine.registered is not None else []
    if not old and not missing:
        return None
    lines = [f"error: --template {name!r} cannot run on the engine in {engine.path} "
             f"(ComfyUI {release_text(engine.release)})."]
    if missing:
        lines.append(f"  This engine does not register these node types the template uses: {', '.join(missing)}.")
    if old:
        lines.append(f"  It needs ComfyUI {release_text(need.release)} or newer; the template's note says: "
                     f"\"{need.sentence}\"")
    lines += newer_engine_fix(name, need, engine.path, source) if old else load_failure_fix(engine)
    usable = [n for n, g in templates.items() if n != name and runs_on(n, g, engine.release, engine.registered)]
    lines.append("Or pick a template this engine runs: " + (", ".join(repr(n) for n in usable) or "none"))
    return "\n".join(lines)


def newer_engine_fix(name: str, need: Need, comfy_dir: Path, source: Path | None) -> list[str]:
    """How to run it on a newer ComfyUI. The engine is copied into --comfy-dir on its first use only, so
    a BLENDED_COMFY_ENGINE set after that reaches the main job through a new --comfy-dir."""
    wanted = release_text(need.release)
    source_release = engine_release(source) if source is not None else None
    if source is not None and not too_old(need, source_release):
        return [f"Fix: BLENDED_COMFY_ENGINE names ComfyUI {release_text(source_release)} ({source}), but "
                f"--comfy-dir {comfy_dir} holds the copy of an older engine made earlier (the engine is copied "
                "there on first use only): pass a new --comfy-dir, e.g. --comfy-dir .comfy/ComfyUI-" + wanted]
    return [f"Fix: run it on ComfyUI {wanted} or newer: set BLENDED_COMFY_ENGINE to a ComfyUI checkout of that "
            "release and pass a new --comfy-dir (the engine is copied there on first use), e.g.",
            f"  BLENDED_COMFY_ENGINE=/path/to/ComfyUI bash scripts/edit.sh --comfy-dir .comfy/ComfyUI-{wanted} "
            f"--template {name!r} ..."]


def load_failure_fix(engine: Engine) -> list[str]:
    """An engine of the right release that still lacks node types failed to import them; its log says why."""
    failures = IMPORT_FAILURE.findall(engine.log)
    if not failures:
        return ["Fix: this ComfyUI should have them, and its start-up log names no failed import: is "
                f"{engine.path} a complete ComfyUI checkout?"]
    return ["Fix: this ComfyUI failed to import them; its start-up log says why (a missing package, usually):",
            *(f"  {line.strip()}" for line in failures)]
