"""The equal-compute view: the Pareto front against brute force, and the table's marks."""

import numpy as np
import pandas as pd

from lowrank_amt.report.equal_compute import compute_markdown, pareto_front, runs_with_fronts


def dominated(i, cost, quality):
    """Brute force: some other point costs no more and scores no worse, better in one."""
    return any(cost[j] <= cost[i] and quality[j] >= quality[i] and (cost[j] < cost[i] or quality[j] > quality[i])
               for j in range(len(cost)) if j != i)


def test_the_front_is_the_set_of_undominated_points():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        cost, quality = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n) / 4  # ties on purpose
        assert pareto_front(cost, quality).tolist() == [not dominated(i, cost, quality) for i in range(n)]


def test_a_point_without_a_cost_is_never_on_the_front_and_hides_nothing():
    cost, quality = [np.nan, 10.0, 20.0, 30.0], [0.9, 0.5, 0.7, 0.6]
    assert pareto_front(cost, quality).tolist() == [False, True, True, False]


def test_the_table_marks_each_cost_s_front_and_lists_pretrained_models_last():
    rows = [("cheap", "nmf", 1.0, 10.0, 100, 0.5), ("dear", "network", 1.0, 1000.0, 10_000, 0.8),
            ("wasteful", "network", 0.3, 2000.0, 10_000, 0.6), ("once", "nmf", np.nan, 1.0, 50, 0.4),
            ("pretrained", "basic_pitch", np.nan, np.nan, 60, 0.9)]
    summary = pd.DataFrame(rows, columns=["model", "family", "train_hours", "train_cpu_seconds", "n_parameters",
                                          "note_onset_f_mean"]).assign(dataset="d", test_dataset="d")
    runs = runs_with_fronts(summary)
    assert runs["model"].tolist() == ["once", "cheap", "dear", "wasteful", "pretrained"]
    assert dict(zip(runs["model"], runs["front_train_cpu_seconds"])) == {
        "once": True, "cheap": True, "dear": True, "wasteful": False, "pretrained": False}
    # by parameters the pretrained model (60 parameters, 0.9) leaves only the smaller model
    assert runs.loc[runs["front_n_parameters"], "model"].tolist() == ["once", "pretrained"]
    lines = compute_markdown(summary)
    assert "| wasteful | network | 0.3 | 2000 | 10,000 | 0.600 |  |  |" in lines
    assert "| pretrained | basic_pitch | fixed | – | 60 | 0.900 |  | yes |" in lines


def test_other_test_sets_stay_out_of_the_view():
    summary = pd.DataFrame({"model": ["a", "a"], "family": ["nmf"] * 2, "train_hours": [1.0, 1.0],
                            "train_cpu_seconds": [5.0, 5.0], "n_parameters": [10, 10],
                            "note_onset_f_mean": [0.5, 0.9], "dataset": ["d", "d"], "test_dataset": ["d", "other"]})
    assert runs_with_fronts(summary)["note_onset_f_mean"].tolist() == [0.5]
    assert not any("0.900" in line for line in compute_markdown(summary))
