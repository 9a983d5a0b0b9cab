"""The scaling study's summaries: full-batch memory extrapolated to a machine's limit, and
the tables of note F per size and of costs."""

import math

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.report.summary import memory_limit_hours, scaling_markdown


def test_memory_limit_is_where_the_fitted_line_reaches_it():
    hours = [0.1, 1.0, 3.0, 10.0]
    assert memory_limit_hours(hours, [500 + 800 * h for h in hours], 24000) == pytest.approx(29.375)
    noisy = [500 + 800 * h + e for h, e in zip(hours, (5, -5, 5, -5))]
    assert memory_limit_hours(hours, noisy, 24000) == pytest.approx(29.4, abs=0.1)
    assert memory_limit_hours(hours, [480, 470, 480, 470], 24000) == math.inf  # streaming: no growth
    assert math.isnan(memory_limit_hours([1.0], [900], 24000))


def summary():
    rows = [{"model": "nmf_sup_kl", "family": "nmf", "form": "full_batch", "memory_grows_with_data": True,
             "train_hours": np.nan,
             "note_onset_f_mean": 0.6, "train_seconds": 9, "train_peak_memory_mb": np.nan, "interpretability": 0.92}]
    for h, f in ((0.1, 0.5), (1.0, 0.55), (10.0, 0.58)):
        rows.append({"model": "nmf_semi_online", "family": "nmf", "form": "online_mu", "train_hours": h,
                     "note_onset_f_mean": f, "train_seconds": 30 * h, "train_peak_memory_mb": 500 + h,
                     "interpretability": 0.8, "train_cpu_seconds": 36 * h})
        rows.append({"model": "nmf_semi_full", "family": "nmf", "form": "full_batch", "memory_grows_with_data": True,
                     "train_hours": h,
                     "note_onset_f_mean": f - 0.1, "train_seconds": 50 * h, "train_peak_memory_mb": 500 + 800 * h,
                     "interpretability": 0.7})
    for h, cpu in ((0.1, 300), (1.0, 700), (10.0, 720)):
        rows.append({"model": "harmonic_net", "family": "network", "form": "", "train_hours": h,
                     "note_onset_f_mean": 0.6, "train_seconds": cpu / 2, "train_peak_memory_mb": 600,
                     "train_cpu_seconds": cpu, "steps_per_epoch": 64})
    own = pd.DataFrame(rows).assign(dataset="synth", test_dataset="synth")
    other = own.assign(test_dataset="timgm", note_onset_f_mean=own["note_onset_f_mean"] + 0.1)
    return pd.concat([own, other], ignore_index=True)


def test_scaling_tables_give_note_f_per_size_and_costs():
    text = scaling_markdown(summary()[::-1], memory_limit_mb=24000)
    lines = text.splitlines()
    assert text.index("test set of the training dataset") < text.index("test set timgm")
    assert "| model | family | fixed | 0.1 h | 1 h | 10 h |" in lines
    assert "| nmf_sup_kl | nmf | 0.600 |  |  |  |" in lines
    assert "| nmf_semi_online | nmf |  | 0.500 | 0.550 | 0.580 |" in lines
    assert "| nmf_semi_online | nmf |  | 0.600 | 0.650 | 0.680 |" in lines  # on timgm
    costs = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines if "→" in line}
    assert costs["nmf_semi_online"][4] == "500 → 510" and costs["nmf_semi_online"][5] == "1.02"
    assert costs["nmf_semi_online"][6] == "–"  # streaming: no memory limit
    assert costs["nmf_semi_full"][5] == "14.66" and costs["nmf_semi_full"][6] == "29"
    assert "nmf_sup_kl" not in costs  # trained once: no costs against hours
    # 36 CPU s per training hour: 1.6 CPU h at MAESTRO's 159.2 h
    assert "| nmf_semi_online | 10 | 36 | 0.0 | 0.1 | 1.0 | 1.6 |" in lines
    # a fixed budget of 720 CPU s at 10 h stays 0.2 CPU h at any size
    assert "| harmonic_net | 10 | fixed budget of 64 steps an epoch | 0.2 | 0.2 | 0.2 | 0.2 |" in lines


def test_scaling_tables_name_missing_columns():
    with pytest.raises(LowrankAmtError, match="train_hours"):
        scaling_markdown(summary().drop(columns="train_hours"), 24000)
