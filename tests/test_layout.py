"""Guard rails on the architecture: the import graph of the package, read from its source.

- no import circles between modules;
- nothing imports upward: each module sits in a layer (below) and imports only from its own layer or lower;
- imports inside functions only for the heavy or optional dependencies listed in HEAVY.
"""

from __future__ import annotations

import ast
from pathlib import Path

import live_stt_kernel

PACKAGE = Path(live_stt_kernel.__file__).parent

# lowest first; a module belongs to the first entry that is a prefix of its dotted name (without the package's)
LAYERS: list[tuple[str, ...]] = [
    ("_version", "errors", "events", "clock", "keys", "samples", "extras"),
    ("audio", "progress"),
    ("v3",),
    ("local",),
    ("transcript",),
    ("store",),
    ("language",),
    ("coaching",),
    ("endpoint", "session"),
    ("export", "widgets"),
    ("batch",),
    ("notebook", "cli"),
    ("__init__", "__main__"),
]
# slow to import (pandas, pyarrow: ~0.5 s; IPython, only wanted inside a kernel) or native libraries a machine may
# lack (PortAudio, the models' runtimes), or in a pip extra the base install leaves out ([local]: webrtcvad, cryptography;
# [batch]: Dask, which brings psutil)
HEAVY = {"pandas", "pyarrow", "IPython", "sounddevice", "faster_whisper", "ctranslate2", "llama_cpp", "webrtcvad", "cryptography",
         "distributed", "dask", "psutil"}
# our modules that exist to hold an optional dependency at their top (batch.cluster: Dask's WorkerPlugin is a base class)
HOLDS_AN_EXTRA = {".cluster": "distributed"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts) if parts != ("__init__",) else "__init__"


def resolve(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str | None:
    """The package module an import refers to, like ``v3.protocol`` (None for other packages)."""
    if isinstance(node, ast.Import) or node.level == 0:
        name = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        if not name.startswith("live_stt_kernel."):
            return None
        dotted = name.removeprefix("live_stt_kernel.").split(".")
    else:
        package = module.split(".")[:-1]  # "v3.client" and "v3.__init__" are both in package "v3"
        base = package[: len(package) - (node.level - 1)]
        dotted = [*base, *(node.module.split(".") if node.module else []), alias.name]
    while dotted and not (PACKAGE.joinpath(*dotted).with_suffix(".py").exists()):
        if PACKAGE.joinpath(*dotted).is_dir():
            return ".".join([*dotted, "__init__"])
        dotted = dotted[:-1]  # ``from .x import name``: the module is x
    return ".".join(dotted) if dotted else "__init__"


def imports() -> dict[str, list[tuple[str, int, bool]]]:
    """For every module: (imported package module, line, inside a function?)."""
    graph: dict[str, list[tuple[str, int, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    target = resolve(module, node, alias)
                    if target is not None:
                        edges.append((target, node.lineno, id(node) in nested))
        graph[module] = edges
    return graph


def layer(module: str) -> int:
    first = module.split(".")[0]
    for level, names in enumerate(LAYERS):
        if first in names or module in names:
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_every_module_has_a_layer():
    for module in imports():
        layer(module)


def test_nothing_imports_upward():
    upward = [f"{module}:{line} imports {target}" for module, edges in imports().items()
              for target, line, _ in edges
              if not target.startswith(module.split(".")[0] + ".") and target.split(".")[0] != "__init__"
              and layer(target) > layer(module)]
    assert upward == []


def test_no_import_circles():
    graph = {module: {target for target, _, _ in edges if target != module} for module, edges in imports().items()}
    # a package's own __init__ is not a module of the graph: its imports are the public API's
    graph = {m: {t for t in targets if t in graph and not t.endswith("__init__") and t != "__init__"}
             for m, targets in graph.items() if m != "__init__"}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(graph.get(module, ())):
            if seen.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])
    assert cycles == []


def test_imports_inside_functions_are_only_for_heavy_or_optional_dependencies():
    inside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                else:
                    continue
                inside += [f"{module_name(path)}:{node.lineno} {name}" for name in names
                           if name.split(".")[0] not in HEAVY and name not in HOLDS_AN_EXTRA]
    assert inside == []
    for name, extra in HOLDS_AN_EXTRA.items():  # the exception holds only while the module does import the extra
        source = (PACKAGE / "batch" / f"{name.lstrip('.')}.py").read_text(encoding="utf-8")
        assert f"from {extra} import" in source or f"import {extra}" in source
