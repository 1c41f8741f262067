"""No project module imports another in a circle, and each package imports only the packages below it
(``LAYERS``), counting imports inside functions too.

The imports are read with ``ast`` (nothing is imported), so a circle that only
bites when a function runs (``from .evaluate import ...`` inside ``main``) is
found as well as one at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crawler", "processing", "training", "service", "demo")
# what each package may import besides itself: processing at the bottom, the demo on top; the service reaches
# training only through its public surface, training.classifier (load a model, its contract, batch predict)
LAYERS = {
    "processing": set(),
    "crawler": {"processing"},
    "training": {"processing"},
    "service": {"processing", "training.classifier"},
    "demo": {"processing", "crawler", "training"},
}
ALIASES = {"training.serve": "service.app", "training.demo": "demo.chain"}   # old command names, kept one release


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import name``: the submodule pkg.name where there is one, else pkg itself
            subs = [f"{source}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if s in modules]
            if len(targets) < len(subs):
                targets.append(source)
        else:
            continue
        found.update(t for t in targets if t in modules and t != module)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imported(m, p, modules) for m, p in modules.items()}


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "training.classifier" in graph["training.predict"]      # module level, relative
    assert "training.classifier" in graph["training.report"]       # inside a function
    assert "training.plots" in graph["training.evaluate"]          # ``from . import plots``
    assert "processing.cliutil" in graph["training.evaluate"]      # absolute


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_project_module_imports_another_in_a_circle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")" for c in found)


def allowed(module: str, target: str) -> bool:
    package = module.split(".")[0]
    if target.split(".")[0] == package or ALIASES.get(module) == target:
        return True
    return any(target == rule or target.startswith(rule + ".") for rule in LAYERS[package])


def test_each_package_imports_only_the_layers_below_it():
    graph = import_graph()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if not allowed(m, t))
    assert not wrong, "imports across the layers: " + "; ".join(wrong)


def test_the_layer_rule_sees_a_deep_import_and_an_upward_one():
    assert allowed("service.app", "training.classifier") and not allowed("service.app", "training.data")
    assert not allowed("training.run", "service.app") and allowed("training.serve", "service.app")
    assert not allowed("processing.build_h5", "training.data") and allowed("demo.chain", "crawler.mirror")
