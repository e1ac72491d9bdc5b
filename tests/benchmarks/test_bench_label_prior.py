"""bench_label_prior: count errors before rounding, per method and for the population oracle."""
import json
import math

from benchmarks.bench_label_prior import main


def test_rows_score_every_estimate_on_every_batch_size(tmp_path):
    rows = main(["--model", "lenet", "--classes", "10", "--batches", "8,16", "--trials", "2",
                 "--pool-batches", "2", "--dummies", "pink", "--num-dummies", "32", "--threads", "1",
                 "--json", str(tmp_path / "prior.json")])
    assert json.loads((tmp_path / "prior.json").read_text())["results"] == rows
    names = ["oracle population p̄", "geng_bias (pink)", "geng_shift (pink)"]
    assert [(r["batch"], r["estimate"]) for r in rows] == [(b, n) for b in (8, 16) for n in names]
    for r in rows:
        assert math.isfinite(r["mean_max_error"]) and r["mean_max_error"] >= 0
        assert r["exact_share"] in (0.0, 0.5, 1.0)
    # Batches of 8 of an untrained LeNet are within reach of the shifted estimate.
    assert rows[2]["mean_max_error"] < 0.5 and rows[2]["exact_share"] == 1.0
