"""The trained-model grid: its states, the benchmarks' reading of it, and its label summary."""
from benchmarks import bench_labels, trained_grid, trained_states


def test_the_grid_states_end_at_each_models_final_round():
    assert trained_states.GRID.states("lenet") == ["round0", "round1", "round5", "round20",
                                                   f"round{trained_states.FINAL_ROUND['lenet']}"]
    assert trained_states.GRID.states("convnet") == ["round0", "round1", "round5", "round20"]  # final is round 5


def test_bench_labels_grid_options_are_the_grids_and_can_be_narrowed(monkeypatch):
    seen = {}

    def fake_state_model(name, dataset, state, seed, width):
        seen.setdefault("states", []).append((name, state))
        raise SystemExit(0)

    monkeypatch.setattr(bench_labels, "state_model", fake_state_model)
    monkeypatch.setattr(bench_labels, "population_config", lambda dataset: None)
    for argv, first in ((["--grid"], ("lenet", "round0")),
                        (["--grid", "--models", "convnet", "--states", "round5"], ("convnet", "round5"))):
        seen.clear()
        try:
            bench_labels.main(argv)
        except SystemExit:
            pass
        assert seen["states"][0] == first


def cell(model, state, protocol, batch, pattern, **lnacc):
    return {"model": model, "state": state, "protocol": protocol, "batch": batch, "pattern": pattern,
            "result": {m: {"LnAcc": v} for m, v in lnacc.items()}}


def test_label_summary_reports_auto_the_best_method_and_the_population_floor():
    report = {"trained": {"lenet/round5": {"test_accuracy": 0.5}},
              "cells": [cell("lenet", "round5", "fedsgd", 8, "random", auto=0.5, geng=0.75, rlg=0.25, population=0.9),
                        cell("lenet", "round5", "fedavg4", 1, "random", auto=1.0, idlg=1.0)]}
    lines = trained_grid.label_summary([report]).splitlines()
    assert lines[0] == "| model | round (held-out acc.) | protocol | B=1 random | B=8 random |"
    assert lines[2] == "| lenet | 5 (50.0%) | fedsgd |  | 0.50 / 0.75 geng / 0.90 |"
    assert lines[3] == "| lenet | 5 (50.0%) | fedavg4 | 1.00 / 1.00 idlg |  |"
