"""The layout stays true: imports follow the stages, nothing below the CLI prints, modules stay small.

Data flows one way (docs/ARCHITECTURE.md): weights -> models -> pipeline -> batch -> scaleout -> cli,
with core (pure maths) below all of them and io (files) a leaf beside batch. Each package may
import only the packages listed for it below, at module level or inside functions alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seesr_cli"
MAX_LINES = 400

_BASE = {"seesr_cli", "errors"}  # the version string and the typed errors are everyone's
ALLOWED: dict[str, set[str]] = {
    "errors": {"seesr_cli"},
    "settings": _BASE,
    "core": _BASE | {"settings", "core"},
    "io": _BASE | {"io"},
    "weights": _BASE | {"io", "weights"},
    "models": _BASE | {"settings", "core", "weights", "models"},
    "pipeline": _BASE | {"settings", "core", "weights", "models", "pipeline"},
    "batch": _BASE | {"settings", "core", "io", "weights", "pipeline", "batch"},
    "report": _BASE | {"settings", "io", "batch", "report"},
    "scaleout": _BASE | {"settings", "core", "io", "weights", "pipeline", "batch", "scaleout"},
    "cli": _BASE | {"settings", "core", "io", "weights", "models", "pipeline", "batch", "report", "scaleout", "cli"},
    "__main__": _BASE | {"cli"},
    "__init__": set(),
}
# Below the CLI nothing writes to the terminal: progress and problems go to callbacks.
PRINTING_MODULES = {"rich", "typer", "click"}
PRINTING_CALLS = {"print", "print_exc", "print_exception", "print_stack", "echo", "secho"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def part_of(path: Path) -> str:
    """The layer a module belongs to: its top-level package or module under seesr_cli/."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(tree: ast.AST, path: Path) -> set[tuple[str, int]]:
    """(layer, line) for every seesr_cli import, relative ones resolved."""
    found = set()
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "seesr_cli":
                found.add((parts[1] if len(parts) > 1 else "seesr_cli", node.lineno))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_stages(path):
    part = part_of(path)
    assert part in ALLOWED, f"{path.relative_to(PACKAGE)}: a new top-level part; give it a layer in ALLOWED"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = sorted((line, layer) for layer, line in imported_parts(tree, path)
                   if layer not in ALLOWED[part] and layer != part)
    if part == "__init__":  # the package root re-exports nothing
        wrong = sorted((line, layer) for layer, line in imported_parts(tree, path))
    assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports against the flow: {wrong}"


@pytest.mark.parametrize("path", [p for p in modules() if part_of(p) not in ("cli", "__main__")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_cli_prints(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [(node.lineno, n) for n in names if n.split(".")[0] in PRINTING_MODULES]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in PRINTING_CALLS:
                problems.append((node.lineno, f"{name}()"))
            if name == "write" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and func.value.id == "os" and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value in (1, 2):
                problems.append((node.lineno, "os.write to stdout/stderr"))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys" \
                and node.attr in ("stdout", "stderr", "__stdout__", "__stderr__"):
            problems.append((node.lineno, f"sys.{node.attr}"))
    assert not problems, f"{path.relative_to(PACKAGE)} writes to the terminal: {problems}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)}: {lines} lines (budget {MAX_LINES}): split it by concern"


def test_the_checks_can_fail(tmp_path):
    """The import check sees module-level, function-level and relative imports."""
    source = ("import seesr_cli.cli\nfrom seesr_cli.batch import run\n"
              "def f():\n    from ..pipeline import seesr\n    print('x')\n")
    fake = PACKAGE / "core" / "fake.py"  # never written: parsed as if it lived there
    found = {layer for layer, _ in imported_parts(ast.parse(source), fake)}
    assert found == {"cli", "batch", "pipeline"}
    assert not found <= ALLOWED["core"]
