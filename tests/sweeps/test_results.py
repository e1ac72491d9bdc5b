import json
import math

import pytest

from fastleak.experiments import ExperimentSpec
from fastleak.sweeps import JobResult, ResultsWriter, finished_keys, job_key, latest, read_results


def _result(seed, status="ok", psnr=20.0, attempts=1):
    spec = ExperimentSpec(model="lenet", batch=1, seed=seed)
    metrics = {"psnr": psnr, "ssim": 0.5, "mse": 0.01, "ln_acc": 1.0, "le_acc": 1.0, "exact": True} \
        if status == "ok" else None
    return JobResult(key=job_key(spec), settings=spec.as_dict(), status=status, attempts=attempts, wall_time_s=1.5,
                     metrics=metrics, error=None if status == "ok" else "ValueError: boom")


def test_records_round_trip_one_line_each(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    written = [_result(0), _result(1, "failed", attempts=2)]
    with ResultsWriter(path) as writer:
        for r in written:
            writer.append(r)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first)[:3] == ["version", "key", "status"] and first["version"] == 1
    assert first["settings"]["seed"] == 0 and first["metrics"]["psnr"] == 20.0
    assert read_results(path) == tuple(written)


def test_a_missing_file_has_no_records(tmp_path):
    assert read_results(tmp_path / "none.jsonl") == ()


def test_non_finite_metrics_are_written_as_null(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        writer.append(_result(0, psnr=math.nan))
    assert json.loads(path.read_text())["metrics"]["psnr"] is None


def test_a_torn_last_line_is_ignored_then_cut_off_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        writer.append(_result(0))
        writer.append(_result(1))
    complete = path.read_bytes()
    torn = json.dumps(_result(2).as_dict()).encode()[:-1]
    path.write_bytes(complete + torn)
    assert [r.settings["seed"] for r in read_results(path)] == [0, 1]
    with ResultsWriter(path) as writer:
        assert path.read_bytes() == complete
        writer.append(_result(3))
    data = path.read_bytes()
    assert data.startswith(complete) and data.endswith(b"\n")
    assert [r.settings["seed"] for r in read_results(path)] == [0, 1, 3]


def test_an_unterminated_complete_record_counts_as_torn(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_result(0).as_dict()))
    assert read_results(path) == ()


def test_a_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_result(0).as_dict()) + "\n{not json\n" + json.dumps(_result(1).as_dict()) + "\n")
    with pytest.raises(ValueError, match=r"r.jsonl, line 2: not a sweep results record"):
        read_results(path)
    path.write_text(json.dumps({**_result(0).as_dict(), "version": 99}) + "\n")
    with pytest.raises(ValueError, match="line 1.*version 99"):
        read_results(path)


def test_the_last_record_of_a_key_counts():
    failed, retried, other = _result(0, "failed", attempts=2), _result(0, psnr=25.0), _result(1, "failed")
    assert latest([failed, other, retried]) == {failed.key: retried, other.key: other}
    assert finished_keys([failed, other, retried]) == {failed.key, other.key}
    assert finished_keys([failed, other, retried], retry_failed=True) == {failed.key}
    assert finished_keys([failed], retry_failed=True) == set()


def test_two_writers_cannot_share_a_file(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path), pytest.raises(RuntimeError, match="being written by another sweep"):
        ResultsWriter(path).__enter__()
    with ResultsWriter(path) as writer:
        writer.append(_result(0))
    assert len(read_results(path)) == 1


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError, match="status must be one of"):
        JobResult(key="k", settings={}, status="done", attempts=1, wall_time_s=0.0)
