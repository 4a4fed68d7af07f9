"""The import graph of elt/ follows the layers of docs/architecture.md and has no cycle."""

import ast
from collections import defaultdict
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "elt"


def _layers() -> dict[str, int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- layers: lowest first -->")[1].split("<!-- /layers -->")[0]
    rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in block.splitlines() if r.startswith("|")]
    rows = [r for r in rows if r[0] not in ("layer", "") and not set(r[0]) <= set("-")]
    return {name: i for i, row in enumerate(rows) for name in row[1].split()}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        mod = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        out[mod.removesuffix(".__init__")] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the elt modules it imports (anywhere in the file, lazy imports included)."""
    edges = defaultdict(set)
    for mod, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "elt":
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
                targets = subs or [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "elt"]
            edges[mod].update(t for t in targets if t in mods and t != mod)
    return edges


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "elt"


def test_every_package_has_a_layer():
    rank = _layers()
    assert {_package(m) for m in _modules()} <= set(rank), "a package of elt/ is missing in docs/architecture.md"


def _violations(edges: dict[str, set[str]], rank: dict[str, int]) -> list[str]:
    """Imports of a higher layer, or of another package of the same layer (base excepted)."""
    bad = []
    for mod, targets in edges.items():
        a = _package(mod)
        for t in targets:
            b = _package(t)
            if a != b and (rank[b] > rank[a] or (rank[b] == rank[a] and rank[a] != 0)):
                bad.append(f"{mod} -> {t}")
    return bad


def test_imports_point_down_the_layers():
    bad = _violations(_imports(_modules()), _layers())
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    edges = _imports(_modules())
    cycles = []
    state: dict[str, int] = {}

    def visit(v, path):
        state[v] = 1
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                cycles.append(" -> ".join(path[path.index(w):] + [w]))
            elif w not in state:
                visit(w, path + [w])
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v, [v])
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)


def test_the_checker_sees_violations():
    rank = _layers()
    assert rank["cli"] > rank["reporting"] > rank["engine"] > rank["sampling"] > rank["config"] == rank["data"]
    edges = {"elt.data.export": {"elt.engine.state", "elt.errors"}, "elt.dispatch.base": {"elt.labeling.base"},
             "elt.engine.loop": {"elt.sampling.select", "elt.config"}, "elt.config.base": {"elt.registry"}}
    assert sorted(_violations(edges, rank)) == ["elt.data.export -> elt.engine.state",
                                                "elt.dispatch.base -> elt.labeling.base"]
