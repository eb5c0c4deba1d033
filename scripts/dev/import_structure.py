"""The import structure of the library, as docs/DESIGN.md records it: modules per package, import
cycles, imports that point back up, and imports between the two wings (pixel and latent).

    python -m scripts.dev.import_structure [--root blended]

Reads the source as text (``ast``), runs nothing of it, so it also describes a tree that does not
import. ``tests/test_architecture.py`` holds the library to the rules this prints.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WINGS = ("pixel", "latent")


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The library modules one file imports (relative imports resolved; ``from pkg import mod`` counts mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package_of(name, path).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def import_graph(root: str = "blended", repo: Path = REPO) -> dict[str, set[str]]:
    files = {module_name(p, repo): p for p in sorted((repo / root).rglob("*.py"))}
    known = set(files)
    return {name: imported_modules(path, name, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def wing(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """A shared module importing a wing (the shared core must not depend on either method)."""
    return sorted((a, b) for a, deps in graph.items() for b in deps if wing(a) is None and wing(b) is not None)


def cross_wing_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, deps in graph.items() for b in deps
                  if wing(a) and wing(b) and wing(a) != wing(b))


def report(graph: dict[str, set[str]]) -> str:
    packages = defaultdict(list)
    for name in graph:
        is_package = any(other.startswith(name + ".") for other in graph)
        packages[name if is_package or "." not in name else name.rpartition(".")[0]].append(name)
    lines = ["modules per package:"]
    lines += [f"  {pkg}: {len(mods)}" for pkg, mods in sorted(packages.items())]
    lines.append(f"import cycles: {cycles(graph) or 'none'}")
    lines.append(f"shared modules importing a wing: {upward_imports(graph) or 'none'}")
    lines.append(f"imports between the wings: {cross_wing_imports(graph) or 'none'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="blended", help="the package folder to read (default: blended)")
    args = parser.parse_args(argv)
    print(report(import_graph(args.root)))


if __name__ == "__main__":
    main()
