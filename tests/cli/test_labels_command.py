"""fastleak labels: the count table with its per-class uncertainty, public data, and the default pattern."""
import pytest

from fastleak.cli.main import main

FAST = ["--threads", "1", "--model", "lenet", "--dataset", "mnist"]


@pytest.mark.parametrize("batch", ["1", "16", "64"])
def test_the_default_label_pattern_works_at_every_batch_size(capsys, batch):
    assert main(["labels", *FAST, "--batch", batch, "--public-data", "none"]) == 0
    out = capsys.readouterr().out
    assert f"batch size: {batch}" in out and "public data: none" in out and "LnAcc" in out


def test_the_count_table_shows_intervals_from_the_default_public_data(capsys):
    assert main(["labels", *FAST, "--batch", "16", "--public-images", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "public data: 60 images of the train split of mnist" in lines[0]
    assert lines[1].split() == ["class", "estimate", "count", "90%", "range", "P(count)", "true"]
    rows = [line.split() for line in lines[2:] if line.split() and line.split()[0].isdigit()]
    assert rows and all("-" in row[3] and 0 <= float(row[4]) <= 1 for row in rows)
    for row in rows:
        lo, hi = map(int, row[3].split("-"))
        assert lo <= hi <= 16
    assert any(line.startswith("90% range: holds the true count with probability 0.90") for line in lines)


def test_public_data_that_does_not_fit_the_model_is_one_line_with_a_fix(capsys):
    assert main(["labels", *FAST, "--batch", "4", "--public-data", "cifar10:test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("fastleak: error: public images have shape (3, 28, 28) per sample, but the observations' "
                      "input_shape is (1, 28, 28)")
    assert err[1].strip().startswith("fix: name public data of the model's task")
    assert main(["labels", *FAST, "--batch", "4", "--public-data", "mnist:val"]) == 2
    assert "public_data must be 'NAME[:SPLIT]' (split train or test) or 'none', got 'mnist:val'" in \
        capsys.readouterr().err
