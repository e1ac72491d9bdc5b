import json

import pytest
from PIL import Image

from fastleak.experiments import ExperimentSpec
from fastleak.sweeps import JobResult, ResultsWriter, job_key, summarize, write_report

BASE = ExperimentSpec(model="lenet", batch=1, defense="gaussian", defense_params={"sigma": 0.01})


def _result(sigma, seed, psnr=None, ln_acc=1.0, status="ok", wall=2.0):
    spec = BASE.replace(defense_params={"sigma": sigma}, seed=seed)
    metrics = {"psnr": psnr, "ssim": 0.5, "mse": 0.01, "ln_acc": ln_acc, "le_acc": 1.0, "exact": ln_acc == 1.0}
    return JobResult(key=job_key(spec), settings=spec.as_dict(), status=status, attempts=1 if status == "ok" else 2,
                     wall_time_s=wall, metrics=metrics if status == "ok" else None,
                     error=None if status == "ok" else "RuntimeError: out of | memory")


RESULTS = [_result(0.01, 0, 20.0), _result(0.01, 1, 24.0, ln_acc=0.5), _result(0.1, 0, 8.0),
           _result(0.1, 1, status="failed"), _result(1.0, 0, 5.0, wall=4.0)]


def test_rows_group_by_the_varied_settings_and_average_over_seeds():
    summary = summarize(RESULTS)
    assert summary.varied == ("defense_params.sigma",) and summary.averaged == ("seed",)
    assert [r.setting for r in summary.rows] == [{"defense_params.sigma": s} for s in (0.01, 0.1, 1.0)]
    low, mid, high = summary.rows
    assert (low.ok, low.failed, mid.ok, mid.failed) == (2, 0, 1, 1)
    assert low.means["psnr"] == 22.0 and low.stds["psnr"] == pytest.approx(2 ** 1.5)
    assert low.means["ln_acc"] == 0.75 and low.means["exact"] == 0.5
    assert mid.means["psnr"] == 8.0 and mid.stds["psnr"] is None
    assert high.means["wall_time_s"] == 4.0
    assert [f.settings["seed"] for f in summary.failures] == [1]


def test_a_retried_key_counts_once_with_its_last_record():
    summary = summarize(RESULTS + [_result(0.1, 1, 10.0)])
    mid = summary.rows[1]
    assert (mid.ok, mid.failed, mid.means["psnr"]) == (2, 0, 9.0)
    assert summary.failures == ()


def test_markdown_table_and_failures():
    text = summarize(RESULTS).markdown("Sweep report: r.jsonl")
    lines = text.splitlines()
    assert lines[0] == "# Sweep report: r.jsonl"
    header = next(i for i, line in enumerate(lines) if line.startswith("| defense_params.sigma"))
    assert lines[header].split(" | ")[:3] == ["| defense_params.sigma", "jobs ok", "PSNR (dB)"]
    assert lines[header + 2].startswith("| 0.01 | 2/2 | 22.00 ± 2.83 | 0.500 | 0.75 |")
    assert lines[header + 3].startswith("| 0.1 | 1/2 | 8.00 | ")
    assert "## Failed jobs" in text and "RuntimeError: out of \\| memory" in text


def test_a_single_setting_is_one_row():
    summary = summarize(RESULTS[:2])
    assert summary.varied == () and len(summary.rows) == 1 and summary.rows[0].label() == "all jobs"


def test_write_report_writes_markdown_and_plots(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        for r in RESULTS:
            writer.append(r)
    files = write_report(path)
    assert files.markdown == tmp_path / "r_report" / "summary.md"
    assert "| 1 | 1/1 | 5.00 |" in files.markdown.read_text()
    assert [p.name for p in files.plots] == ["psnr_by_setting.png", "psnr_vs_defense_params_sigma.png"]
    for p in files.plots:
        with Image.open(p) as image:
            assert image.format == "PNG" and image.size[0] >= 600
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps(RESULTS[0].as_dict()))  # only a torn line
    with pytest.raises(ValueError, match="holds no job records"):
        write_report(empty)
