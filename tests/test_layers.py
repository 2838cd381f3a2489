"""The package layers: each stage imports only the stages listed before it (docs/architecture.md)."""

import ast
from pathlib import Path

import newsletter

PACKAGE = Path(newsletter.__file__).parent
# From the ground up: a package may import itself and the packages before it.
LAYERS = (
    "core",
    "accounts",
    "audience",
    "pool",
    "collecting",
    "editions",
    "feedback",
    "delivery",
    "scheduling",
    "operations",
    "web",
    "cli",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every `newsletter.*` module a file imports, at the top or inside a function."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found += [(node.lineno, name) for name in names if name.startswith("newsletter")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "newsletter":
                found += [(node.lineno, f"newsletter.{alias.name}") for alias in node.names]
            elif node.module.startswith("newsletter."):
                found.append((node.lineno, node.module))
    return found


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_lives_in_a_stage_package() -> None:
    """Nothing but the package's face and `python -m newsletter` sits at the root."""
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    assert loose == set()
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


def test_no_import_runs_back_up_the_layers() -> None:
    """A module imports only its own package and the packages below it; never the package root."""
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1 or "versions" in relative.parts:
            continue  # the root's face re-exports the library; migrations are data
        own = LAYERS.index(relative.parts[0])
        for line, module in _imports(path):
            layer = _layer(module)
            if layer not in LAYERS or LAYERS.index(layer) > own:
                upward.append(f"{relative}:{line} imports {module}")
    assert upward == []
