"""The import graph of the package, read from the source (pyproject's package-dir mapping resolved, imports inside
functions included): no cycle, and data flows one way through the stages. docs/architecture.md lists the rules;
a failure names the offending edge."""

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parents[2]
#: each layer may import itself and the layers below it, never one above (docs/architecture.md)
LAYERS = [
    ("core", ("edgecnn.errors", "edgecnn.io", "edgecnn.data", "edgecnn.runs", "edgecnn.malloc", "edgecnn")),
    ("compress", ("edgecnn.compress",)),
    ("export", ("edgecnn.export",)),  # formats, graph forms, export records, bundles and the device runner
    ("devices", ("edgecnn.devices",)),
    ("bench", ("edgecnn.bench",)),
    ("report", ("edgecnn.report",)),
    ("top", ("edgecnn.pipeline", "edgecnn.sweep", "edgecnn.cli", "edgecnn.__main__")),
]


def modules() -> dict[str, Path]:
    """module name -> source file, through pyproject.toml's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {}
    for package, folder in config["package-dir"].items():
        for path in (ROOT / folder).glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every edgecnn module `name` imports, at any depth of its code (function bodies too)."""
    tree = ast.parse(path.read_text())
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def layer_of(module: str) -> int:
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_stages_import_only_downstream_of_themselves():
    """compress -> export (and bundle) -> devices -> bench -> report, the core below all of them, the CLI and the
    pipeline above."""
    wrong = []
    for module, targets in graph().items():
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]})")
    assert not wrong, "imports against the stage order:\n" + "\n".join(wrong)


def test_the_device_runner_stands_alone():
    """export/runner.py is copied into every bundle: it imports the standard library, numpy and runtimes only;
    torch only inside the ExecuTorch backend, whose runtime takes torch tensors."""
    tree = ast.parse((ROOT / "export" / "runner.py").read_text())

    def imported(root) -> set[str]:
        names = {alias.name.split(".")[0] for node in ast.walk(root) if isinstance(node, ast.Import)
                 for alias in node.names}
        return names | {node.module.split(".")[0] for node in ast.walk(root)
                        if isinstance(node, ast.ImportFrom) and node.module}

    executorch = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "ExecuTorchBackend"]
    assert len(executorch) == 1
    rest = ast.Module(body=[node for node in tree.body if node is not executorch[0]], type_ignores=[])
    assert not imported(rest) & {"edgecnn", "torch", "torchvision"}, imported(rest)
    assert imported(executorch[0]) == {"torch"}


def test_no_module_beside_the_runner_shadows_a_runtime():
    """runner.py runs as a script from export/ (the host harness), so export/ is first on its sys.path: a module
    there named like a runtime package would be imported instead of the runtime."""
    runtime_packages = {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime", "ncnn", "executorch", "torch"}
    assert not {path.stem for path in (ROOT / "export").glob("*.py")} & runtime_packages


def test_the_files_between_stages_have_one_reader_each():
    """export.json is parsed by export/record.py alone, manifest.json by the runner (which every bundle carries) and
    the bundle stage's Manifest; nobody else opens them."""
    readers = {"export.json": set(), "manifest.json": set()}
    for name, path in modules().items():
        text = path.read_text()
        for filename in readers:
            # a parse of the file: json.load(s) near its name on the same logical line
            if re.search(rf"json\.loads?\([^\n]*{re.escape(filename)}|{re.escape(filename)}[^\n]*json\.loads?\(", text):
                readers[filename].add(name)
    assert readers["export.json"] <= {"edgecnn.export.record"}, readers
    assert readers["manifest.json"] <= {"edgecnn.export.runner"}, readers
