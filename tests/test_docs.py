"""The README stays a five-minute read that links to one page per study and topic, and no
link of the README or docs/ points at a file that is not there."""

import re

LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")


def test_the_readme_is_short_and_every_local_link_resolves(repo):
    readme = repo / "README.md"
    assert len(readme.read_text().splitlines()) <= 300
    pages = [readme, *sorted((repo / "docs").glob("*.md"))]
    assert len(pages) > 5
    broken = [f"{page.relative_to(repo)} -> {target}" for page in pages
              for target in LINK.findall(page.read_text()) if not (page.parent / target).exists()]
    assert not broken, broken
    linked = set(LINK.findall(readme.read_text()))
    unlinked = [p.name for p in pages[1:] if f"docs/{p.name}" not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"
