"""The user documentation stands on its own: every link from the README and docs/ leads
to a file in the repository, and nothing points at design notes users do not have."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_lead_to_files_in_the_repository() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_readme_links_the_user_docs() -> None:
    readme = (REPO / "README.md").read_text()
    for name in ("docs/api.md", "docs/buildkit-differences.md", "docs/cli.md"):
        assert f"]({name})" in readme


def test_no_page_points_at_design_notes_users_do_not_have() -> None:
    for page in PAGES:
        text = page.read_text()
        for private in ("shared/design", "core-api.md", "buildkit-semantics.md"):
            assert private not in text, f"{page.name} mentions {private}"
