"""One run path on the command line: the run and its files (fastleak.reports.record_run), then the summary."""
import pytest

from fastleak.cli.commands import running
from fastleak.cli.errors import INTERRUPTED
from fastleak.experiments import ExperimentSpec

MALICIOUS = ExperimentSpec(threat="malicious", preset="imprint", model="lenet", dataset="mnist", batch=8, seed=2)


def test_the_run_is_recorded_once_then_summarised_by_its_outcomes_type(tmp_path, capsys, monkeypatch):
    from fastleak import reports

    calls, record = [], reports.record_run

    def recorded(spec, run_dir, *, created, callback):
        calls.append((spec, run_dir, created))
        return record(spec, run_dir, created=created, callback=callback)

    monkeypatch.setattr(reports, "record_run", recorded)
    assert running.execute(MALICIOUS, tmp_path, "2 threads") == 0
    assert calls == [(MALICIOUS, tmp_path, True)]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("From a batch of 8, the malicious server recovered") and out[1] == ""
    assert out[-1] == f"outputs    {tmp_path}" and "speed      recovery" in out[-2] and out[-2].endswith("2 threads")


@pytest.mark.parametrize("checkpoint, said", [(True, "checkpoint saved in"), (False, "settings saved in")])
def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, capsys, monkeypatch, checkpoint, said):
    from fastleak import reports

    def interrupted(spec, run_dir, *, created, callback):
        (run_dir / "config.json").write_text("{}")
        if checkpoint:
            (run_dir / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "record_run", interrupted)
    assert running.execute(MALICIOUS, tmp_path, "2 threads", command="demo") == INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted; {said} {tmp_path}", f"  resume with: fastleak demo --resume {tmp_path}"]


def test_an_outcome_without_a_summary_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="no summary for a object"):
        running.summary(object(), MALICIOUS, tmp_path, "")
