"""The benchmarks' output: a table as markdown, and as CSV beside it, printed too."""

from pathlib import Path

import pandas as pd


def write_table(rows, path) -> None:
    """``rows`` (dicts) as ``path`` (markdown) and ``path`` with .csv; the torch thread
    count the run used in a first column."""
    import torch
    table = pd.DataFrame(rows)
    table.insert(0, "threads", torch.get_num_threads())
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    out.write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"), flush=True)
