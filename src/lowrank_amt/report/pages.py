"""The study tables that pages (README.md, docs/) carry: a ranked table copied from a
study's ``summary.md`` between markers, and checked against a fresh run, both ways, to
the printed digits or a family's stated CPU tolerance (``lowrank-amt page-table``).

A page marks its table as ``<!-- begin generated table: PATH -->`` ... ``<!-- end
generated table -->``, PATH the summary.md it is copied from, relative to the
repository root.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LowrankAmtError
from ..runtime.io import read_csv, read_text, write_text

TABLE_METRICS = ("note F (onset)", "note F (onset+offset)", "note F (onset+offset+velocity)", "frame F",
                 "note F pooled", "interpretability")


def ranked_rows(markdown: str) -> dict:
    """(model, dataset, test set, train h) -> (family, {metric: value or None}) of the
    first ranked table (``summary_markdown``'s format) in a markdown text."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| rank | model |")), None)
    if start is None:
        raise LowrankAmtError("no ranked results table ('| rank | model | ...') in the text")
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        value = lambda text: None if text == "–" else float(text.split()[0])  # noqa: E731
        key = (cells["model"], cells["dataset"], cells["test set"], cells["train h"])
        rows[key] = cells["family"], {m: value(cells.get(m, "–")) for m in TABLE_METRICS}
    return rows


def cpu_tolerance(family: str, model: str = "", specs: dict | None = None) -> float:
    """How far a row of ``family`` may move between CPUs' float kernels: the family's
    ``cpu_tolerance_of`` the model's spec (``specs``: model -> its summary row, where the
    form is; 0, to the printed digits, for a family not registered here)."""
    from .. import families
    if family not in families.names():
        return 0.0
    return families.get(family).cpu_tolerance_of((specs or {}).get(model, {}))


def model_specs(summary_csv) -> dict:
    """model -> the spec keys a summary.csv keeps of it (supervision, form), for ``cpu_tolerance``."""
    table = read_csv(summary_csv, "summary", ("model",))
    keep = [c for c in ("supervision", "form") if c in table]
    return {row["model"]: {k: row[k] for k in keep if isinstance(row[k], str)} for row in table.to_dict("records")}


def table_differences(published: str, fresh: str, tolerance=cpu_tolerance) -> list[str]:
    """One line per row of the ranked table in ``published`` that ``fresh`` lacks or the
    other way round, or whose metrics (absolute, every metric column) differ by more than
    ``tolerance(family, model)``."""
    ours, theirs = ranked_rows(fresh), ranked_rows(published)
    lines = [f"{' / '.join(key)}: in the fresh table, not in the page" for key in ours if key not in theirs]
    for key, (family, metrics) in theirs.items():
        if key not in ours:
            lines.append(f"{' / '.join(key)}: not in the fresh table")
            continue
        allowed = tolerance(family, key[0]) + 1e-9
        for name, value in metrics.items():
            other = ours[key][1][name]
            if (value is None) != (other is None) or (value is not None and abs(value - other) > allowed):
                lines.append(f"{' / '.join(key)}: {name} {value} published, {other} now")
    return lines


#: Markers of a generated table in a page (the module's convention).
TABLE_BEGIN, TABLE_END = "<!-- begin generated table: ", "<!-- end generated table -->"


def generated_table(page: str) -> tuple[str, str]:
    """(the summary.md a page's generated table comes from, the table as the page has it)."""
    if TABLE_BEGIN not in page or TABLE_END not in page:
        raise LowrankAmtError(f"no generated table ({TABLE_BEGIN}PATH -->, {TABLE_END}) in the page")
    source, rest = page.split(TABLE_BEGIN, 1)[1].split(" -->", 1)
    return source.strip(), rest.split(TABLE_END, 1)[0].strip("\n") + "\n"


def embed_table(page: str, table: str) -> str:
    """``page`` with its generated table replaced by ``table`` (a summary.md's text)."""
    source, _ = generated_table(page)
    head, rest = page.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    return f"{head}{TABLE_BEGIN}{source} -->\n{table.strip()}\n{TABLE_END}{tail}"


def update_page(page, check: bool = False) -> str:
    """Copy the fresh table of ``page``'s study into it, or with ``check`` compare the two
    (``table_differences``, each model's tolerance from the summary.csv beside the
    summary.md); a line saying what was done, or one error listing every difference."""
    text = read_text(Path(page), "page")
    source, published = generated_table(text)
    if not Path(source).is_file():
        raise LowrankAmtError(f"{page}'s table comes from {source}, which is not there: run its study first")
    fresh = Path(source).read_text()
    if not check:
        write_text(Path(page), embed_table(text, fresh))
        return f"{page}: table copied from {source}"
    specs_path = Path(source).with_suffix(".csv")  # the summary.csv beside it: each model's form
    specs = model_specs(specs_path) if specs_path.is_file() else {}
    differences = table_differences(published, fresh, lambda family, model: cpu_tolerance(family, model, specs))
    if differences:
        raise LowrankAmtError(f"{len(differences)} differences between {page} and {source}:\n" + "\n".join(differences))
    return (f"{source} agrees with the {len(ranked_rows(published))} rows of {page} "
            "(to the printed digits; a family's cpu_tolerance where it has one)")
