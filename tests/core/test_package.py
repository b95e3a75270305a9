"""Package hygiene: the core's public face, and that it never loads the UI."""

from __future__ import annotations

import subprocess
import sys

import cachetui.core


def test_core_all_lists_exactly_the_public_names() -> None:
    public = sorted(
        name
        for name in vars(cachetui.core)
        if not name.startswith("_")
        and not isinstance(getattr(cachetui.core, name), type(sys))  # submodules
    )
    assert sorted(cachetui.core.__all__) == public
    # ruff (RUF022) keeps the list in isort's order (constants, classes, functions).
    assert len(set(cachetui.core.__all__)) == len(cachetui.core.__all__)


def test_importing_the_core_loads_no_textual_module() -> None:
    code = (
        "import sys; import cachetui.core; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') "
        "or m.startswith(('cachetui.app', 'cachetui.screens', 'cachetui.widgets', "
        "'cachetui.service'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_sources_never_import_the_ui() -> None:
    from pathlib import Path

    core = Path(cachetui.core.__file__).parent
    for source in core.glob("*.py"):
        text = source.read_text()
        for banned in ("import textual", "from textual", "from cachetui.app", "cachetui.service"):
            assert banned not in text, f"{source.name} mentions {banned!r}"
