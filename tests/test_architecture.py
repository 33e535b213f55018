"""The package's layers point down only and hold no import circle (issue: one runtime core).

Read from the source (no import is executed): every ``import pocketsam...`` /
``from pocketsam... import`` anywhere in a module, at the top or inside a function, is an
edge. A module may import its own layer or lower ones; importing a higher layer, or a chain
of imports that comes back to where it started, fails here with the offending lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pocketsam"

#: Lowest first. A module belongs to the first entry that is its name or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "platform", "thresholds", "io", "masks", "preprocess", "viz", "weights", "prompts"),
    ("models", "data", "embedding_cache"),
    ("checkpoints",),
    ("runtime",),
    ("predictor",),
    ("everything", "proposals"),
    ("quant", "export", "train", "distill", "eval", "benchmark"),
    ("cli", "web", "__main__", "__init__"),  # __init__: the public facade (lazy), for users and the CLI
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts == ["__init__"]:
        return "pocketsam"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["pocketsam", *parts])


def _layer(module: str) -> int:
    if module == "pocketsam":
        return len(LAYERS) - 1  # the facade
    top = module.split(".")[1]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in {Path(__file__).name}")


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _edges(modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every pocketsam import in the source."""
    edges = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("pocketsam"):
                # `from pocketsam.runtime import select` imports the submodule when there is one
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("pocketsam")]
            edges += [(name, t, node.lineno) for t in targets if t != name]
    return edges


def test_every_module_is_in_a_layer():
    for name in _modules():
        _layer(name)


def test_no_import_points_up():
    modules = _modules()
    up = [f"{modules[a].relative_to(SRC.parent)}:{line} imports {b} (layer {_layer(b)} > {_layer(a)})"
          for a, b, line in _edges(modules) if _layer(b) > _layer(a)]
    assert not up, "imports that point up:\n" + "\n".join(up)


def test_no_import_circles():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for a, b, _ in _edges(modules):
        if b in graph:
            graph[a].add(b)
        # importing pocketsam.x.y runs pocketsam/x/__init__ first
        parts = b.split(".")
        for i in range(2, len(parts)):
            pkg = ".".join(parts[:i])
            if pkg in graph and pkg != a and not a.startswith(pkg + "."):
                graph[a].add(pkg)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_top_level_packages_hold_no_circle():
    """Sideways imports within a layer go one way only between packages, too: e.g. distill
    builds on train (its engine, the embedding cache filling), so train imports no distill."""
    modules = _modules()
    pkg = lambda m: m.split(".")[1] if m.count(".") else m  # noqa: E731
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges(modules):
        if pkg(a) != pkg(b) and pkg(b) != "pocketsam":
            graph.setdefault(pkg(a), set()).add(pkg(b))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    both_ways = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a, set())})
    assert not both_ways, "packages that import each other (directly or around a circle): " + ", ".join(
        " <-> ".join(p) for p in both_ways)


#: Where pocketsam's own modules may be imported inside functions: the public facades' lazy
#: loaders (``import pocketsam`` stays light), and the command line, whose commands import
#: their library code when they run (``pocketsam --help`` and parser building load no torch).
#: ``pocketsam.train.config`` stays free of torch for the same reason (the parsers read it).
LAZY_OK = ("pocketsam", "pocketsam.everything", "pocketsam.train", "pocketsam.train.config", "pocketsam.cli")


def test_pocketsam_imports_sit_at_the_top():
    """Library modules import pocketsam's own modules at the top (none hides a circle inside
    a function); third-party imports inside functions are optional dependencies."""
    inner = []
    for name, path in _modules().items():
        if name in LAZY_OK or name.startswith("pocketsam.cli."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pocketsam")) \
                        or (isinstance(node, ast.Import) and any(a.name.startswith("pocketsam") for a in node.names)):
                    inner.append(f"{path.relative_to(SRC.parent)}:{node.lineno} in {fn.name}()")
    assert not inner, "pocketsam imports inside functions:\n" + "\n".join(inner)


def test_models_carry_one_record_not_loose_attributes(tiny_sam, tmp_path):
    """What a loader or the runtime knows about a model lives in ``model.info`` (a typed
    record): building, saving, loading and making inference copies add no other attribute."""
    from dataclasses import FrozenInstanceError

    import pytest

    from pocketsam import build_sam
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models.info import ModelInfo
    from pocketsam.runtime import optimize

    declared = set(vars(tiny_sam))
    path = save_checkpoint(tiny_sam, tmp_path / "tiny.safetensors")
    loaded = build_sam(checkpoint=path)
    assert set(vars(loaded)) == declared and isinstance(loaded.info, ModelInfo)
    assert loaded.info.source == str(path) and loaded.info.speed is None
    for mode in ("default", "reference"):
        fast = optimize(loaded, mode)
        assert set(vars(fast)) == declared, f"{mode}: {set(vars(fast)) ^ declared}"
        assert fast.info.speed.mode == mode and fast.info.source == str(path)
    assert loaded.info.speed is None  # the source model is untouched
    with pytest.raises(FrozenInstanceError):
        loaded.info.source = "elsewhere"
