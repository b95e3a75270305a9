"""One public namespace for the core: code outside ``cachetui/core`` imports ``cachetui.core``
itself, never a module below it, and every exported name is documented in docs/api.md.

Tests may import the core's internals where they test them: the rule is for the package.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cachetui.core

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cachetui"
CORE = PACKAGE / "core"
CORE_MODULES = frozenset(p.stem for p in CORE.glob("*.py") if p.stem != "__init__") | frozenset(
    p.name for p in CORE.iterdir() if (p / "__init__.py").exists()
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module an ``ImportFrom`` names, with a relative import resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_core_imports(source: str, importer: str, *, is_package: bool = False) -> list[str]:
    """Each import in ``source`` that reaches below ``cachetui.core``, as ``line: text``."""
    found: list[str] = []
    public = set(cachetui.core.__all__)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cachetui.core."):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, importer, is_package)
            if module.startswith("cachetui.core."):
                found.append(f"{node.lineno}: from {module} import ...")
            elif module == "cachetui.core":
                for alias in node.names:
                    if alias.name in CORE_MODULES:
                        found.append(f"{node.lineno}: the core module {alias.name}")
                    elif alias.name not in public:
                        found.append(f"{node.lineno}: {alias.name} is not exported")
    return found


def _outside_core() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if CORE not in p.parents]


def test_nothing_outside_the_core_imports_its_private_modules() -> None:
    sources = _outside_core()
    assert len(sources) > 40  # the walk found the package
    bad = {
        str(path.relative_to(REPO)): found
        for path in sources
        if (
            found := private_core_imports(
                path.read_text(), _module_name(path), is_package=path.name == "__init__.py"
            )
        )
    }
    assert bad == {}, "import these names from cachetui.core (export them there)"


@pytest.mark.parametrize(
    ("source", "importer"),
    [
        ("from cachetui.core.usage import measure", "cachetui.service"),
        ("import cachetui.core.manager", "cachetui.cli"),
        ("import cachetui.core.manager as m", "cachetui.cli"),
        ("from cachetui.core import filters", "cachetui.fleet_service"),
        ("from cachetui.core import usage, CacheManager", "cachetui.app"),
        ("from cachetui.core import _private_helper", "cachetui.app"),
        ("def f():\n    from cachetui.core.state import paused_gc", "cachetui.service"),
        ("from ..core.usage import measure", "cachetui.fleet.agent"),
        ("from ..core import usage", "cachetui.fleet.agent"),
        ("from .core import errors", "cachetui.cli"),
    ],
)
def test_the_check_catches_every_way_of_reaching_inside(source: str, importer: str) -> None:
    assert private_core_imports(source, importer)


def test_the_check_lets_the_public_namespace_through() -> None:
    source = "from cachetui.core import CacheManager, PruneOptions\nimport cachetui.core\n"
    assert private_core_imports(source, "cachetui.cli") == []
    assert private_core_imports("from ..core import UsageInfo", "cachetui.fleet.agent") == []


def test_every_exported_name_exists_and_is_documented() -> None:
    api = (REPO / "docs" / "api.md").read_text()
    assert [name for name in cachetui.core.__all__ if not hasattr(cachetui.core, name)] == []
    undocumented = [
        name
        for name in cachetui.core.__all__
        if not re.search(rf"(?<![\w.]){re.escape(name)}\b", api)
    ]
    assert undocumented == [], "docs/api.md does not mention these exported names"


def test_the_import_linter_contract_breaks_on_a_private_import(tmp_path: Path) -> None:
    """The same rule in CI's ``lint-imports``: a copy of the package with one private
    import breaks the contract, and names the import."""
    shutil.copytree(PACKAGE, tmp_path / "cachetui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    units = tmp_path / "cachetui" / "units.py"
    units.write_text(units.read_text() + "\nfrom cachetui.core.usage import measure  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [shutil.which("lint-imports") or "lint-imports", "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0, result.stdout
    assert "cachetui.units -> cachetui.core.usage" in result.stdout
    assert "only the core imports its own modules" in result.stdout


def test_workers_post_typed_messages_not_callbacks() -> None:
    """Every dashboard worker reports back with a typed message (``post_message``), never
    by running a callback on the UI thread (``call_from_thread``): one way in for what a
    thread learns, handled where the message says."""
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "call_from_thread" in line
    ]
    assert found == []
