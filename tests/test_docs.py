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


def test_every_generated_table_of_the_docs_names_its_study_and_parses(repo):
    """A page's generated table (README, docs/) names the summary.md its study writes, and
    `page-table --check` can read it: a re-run of that study checks the page."""
    from lowrank_amt.report import pages
    with_tables = [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
                   if pages.TABLE_BEGIN in p.read_text()]
    assert {p.name for p in with_tables} >= {"README.md", "tests.md", "guitar.md"}
    for page in with_tables:
        source, table = pages.generated_table(page.read_text())
        assert re.fullmatch(r"results/[a-z-]+/summary/summary\.md", source), (page.name, source)
        assert pages.ranked_rows(table), page.name
