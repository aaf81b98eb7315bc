"""The house's shape is checked, not only described (docs/architecture.md):

- `lint-imports` holds the layer and forbidden-import contracts in pyproject.toml;
- no module over 500 lines, no function over 60 (a numba kernel whose body must stay whole may
  run to 160, with a comment saying why);
- at most 15 imports of gntkit's own code inside functions, each one keeping numba or a heavy
  framework off a path that must stay light;
- no import cycle among gntkit's modules, imports inside functions included.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
MAX_KERNEL_LINES = 160
MAX_INNER_IMPORTS = 15


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    """Dotted module name -> (path, syntax tree) for gntkit/ and cli/ (installed as gntkit.cli)."""
    found = {}
    for top, package in (("gntkit", "gntkit"), ("cli", "gntkit.cli")):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT / top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


def _imported(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """gntkit modules named by one import statement (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("gntkit")]
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
    if not base.startswith("gntkit"):
        return []
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _is_kernel(node) -> bool:
    return any("jit" in ast.unparse(decorator) for decorator in node.decorator_list)


def test_lint_imports_holds_the_layers():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed (it comes with gntkit's test extra)")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_modules_and_functions_stay_small():
    too_long = []
    for name, (path, tree) in _modules().items():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {lines} lines")
        for node in _functions(tree):
            size = node.end_lineno - node.lineno + 1
            if size > (MAX_KERNEL_LINES if _is_kernel(node) else MAX_FUNCTION_LINES):
                too_long.append(f"function {name}.{node.name}: {size} lines")
    assert not too_long, "\n".join(too_long)


def test_few_imports_of_gntkit_inside_functions():
    inner = []
    for name, (path, tree) in _modules().items():
        for function in _functions(tree):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and _imported(name, path.name == "__init__.py", node):
                    inner.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(set(inner)) <= MAX_INNER_IMPORTS, f"{len(set(inner))} imports of gntkit inside functions:\n" + "\n".join(sorted(set(inner)))


def test_no_import_cycle():
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, (path, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(name, path.name == "__init__.py", node):
                    # `from package import module` names a module; a package's own submodules
                    # and names that are not modules do not make edges.
                    if target in modules and target != name and not name.startswith(target + "."):
                        edges.setdefault(name, set()).add(target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
