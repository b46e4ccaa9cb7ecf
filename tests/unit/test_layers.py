"""The engine's layers, read from the source with ``ast``: no import cycle between any two
modules, every import points to the module's own layer or an earlier one, the engine never
imports pytest, and pyproject.toml lists every package folder."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

import safetycheck

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "safetycheck"
# Earlier layers first; a module may import its own layer or an earlier one.
LAYERS = ("core", "io", "measures", "checks", "gate", "run", "report", "study", "cli")


def module_name(path: Path) -> str:
    parts = ["safetycheck", *path.relative_to(ENGINE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (type-only references)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The engine modules ``path`` imports at run time (function-level imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in ENGINE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_real_imports():
    graph = import_graph()
    assert "safetycheck.core.registry" in graph["safetycheck.checks.accuracy"]
    assert "safetycheck.measures.attacks.pgd" in graph["safetycheck.checks.adversarial"]
    assert len(graph) > 50


def test_no_import_cycle_between_engine_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_point_to_the_same_or_an_earlier_layer():
    wrong = [
        f"{module} ({LAYERS[layer_of(module)]}) imports {target} ({LAYERS[layer_of(target)]})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(module) is not None
        and layer_of(target) is not None
        and layer_of(target) > layer_of(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_engine_module_is_in_a_layer():
    loose = [m for m in import_graph() if layer_of(m) is None and m != "safetycheck"]
    assert not loose, f"modules outside the layers: {loose}"


@pytest.mark.parametrize("root", ["safetycheck", "example_models"])
def test_the_engine_never_imports_pytest(root):
    offenders = []
    for path in (REPO / root).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno}"
                for n in names
                if n.split(".")[0] in ("pytest", "_pytest")
            ]
    assert not offenders


def test_pyproject_lists_every_package_folder():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {module_name(init) for init in ENGINE.rglob("__init__.py")}
    assert folders <= listed, f"packages missing from pyproject.toml: {sorted(folders - listed)}"
    plugin_folder = REPO / setuptools["package-dir"]["safetycheck_pytest"]
    assert (plugin_folder / "__init__.py").is_file() and "safetycheck_pytest" in listed
    assert (ENGINE / "py.typed").is_file()


def test_the_test_conftest_imports_no_module_for_its_side_effects():
    """Registration needs no pre-import: tests/conftest.py imports only what its fixtures use."""
    tree = ast.parse((REPO / "tests" / "conftest.py").read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    ours = {
        name for name in imported if name.split(".")[0] in ("safetycheck", "safetycheck_pytest")
    }
    assert ours == {"safetycheck.io.data"}, ours


@pytest.mark.parametrize("old", sorted(safetycheck.MOVED_MODULES))
def test_a_module_of_the_flat_layout_still_imports_as_the_same_module(old):
    new = safetycheck.MOVED_MODULES[old]
    assert importlib.import_module(old) is importlib.import_module(new)


def test_names_that_moved_inside_a_module_are_still_readable():
    from safetycheck.config import DEFAULT_PROFILE
    from safetycheck.families import REGISTRY
    from safetycheck.families.accuracy import accuracy
    from safetycheck.html_plots import ATTACK_FAMILIES
    from safetycheck.study import run_study

    assert DEFAULT_PROFILE["clean_accuracy"] == 0.98 and "pgd_linf" in REGISTRY
    assert ATTACK_FAMILIES == (
        "fgsm",
        "pgd_linf",
        "apgd",
        "apgd_fast",
        "autoattack",
        "autoattack_fast",
        "pgd_l2",
    )
    assert callable(accuracy) and callable(run_study)
    with pytest.raises(ImportError):
        importlib.import_module("safetycheck.no_such_module")
