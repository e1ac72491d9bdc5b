import hashlib
import json

import pytest

from fastleak.experiments import ExperimentSpec
from fastleak.experiments.spec import LATER_FIELDS
from fastleak.sweeps import SweepSpec, job_key, load


def test_grid_times_cases_in_order_with_dict_fields_merged():
    sweep = SweepSpec.from_dict({
        "fixed": {"model": "lenet", "defense_params": {"seed": 3}},
        "grid": {"batch": [1, 2], "seed": [0, 1]},
        "cases": [{}, {"defense": "gaussian", "defense_params": {"sigma": 0.1}}],
    })
    jobs = sweep.jobs()
    assert [(j.spec.batch, j.spec.seed, j.spec.defense) for j in jobs] == [
        (b, s, d) for b in (1, 2) for s in (0, 1) for d in (None, "gaussian")]
    assert all(j.spec.model == "lenet" for j in jobs)
    assert jobs[0].spec.defense_params == {"seed": 3}
    assert jobs[1].spec.defense_params == {"seed": 3, "sigma": 0.1}
    assert jobs[1].varied == {"batch": 1, "seed": 0, "defense": "gaussian", "defense_params.sigma": 0.1}
    assert len({j.key for j in jobs}) == 8


def test_one_key_of_a_dict_field_can_be_a_grid_axis():
    sweep = SweepSpec.from_dict({"fixed": {"defense": "gaussian"},
                                 "grid": {"defense_params": {"sigma": [0.01, 0.1]}, "model_options": {"width": [8]}}})
    assert [j.spec.defense_params for j in sweep.jobs()] == [{"sigma": 0.01}, {"sigma": 0.1}]
    assert all(j.spec.model_options == {"width": 8} for j in sweep.jobs())


def test_job_key_is_the_sha256_of_the_canonical_json_of_all_settings():
    spec = ExperimentSpec(model="lenet", batch=2, defense_params={"sigma": 0.1, "seed": 1})
    canonical = json.dumps(spec.as_dict(), sort_keys=True, separators=(",", ":"))
    settings = {k: v for k, v in spec.as_dict().items() if k not in LATER_FIELDS}  # at their defaults
    assert job_key(spec) == hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert job_key(spec) == job_key(ExperimentSpec.from_dict(json.loads(canonical)))
    assert job_key(spec) == job_key(spec.replace(defense_params={"seed": 1, "sigma": 0.1}))
    assert job_key(spec) != job_key(spec.replace(seed=1))
    assert job_key(spec) != job_key(spec.replace(defense_params={"sigma": 0.1, "seed": 2}))


def test_an_explicit_default_is_the_same_job():
    sweep = SweepSpec.from_dict({"grid": {"seed": [0, 1]}, "cases": [{}, {"batch": 4}]})
    assert ExperimentSpec().batch == 4
    assert [j.spec.seed for j in sweep.jobs()] == [0, 1]


@pytest.mark.parametrize("values, message", [
    ({"grid": {"modle": ["lenet"]}}, "unknown experiment option(s) ['modle']"),
    ({"fixed": {"batchsize": 2}}, "unknown experiment option(s) ['batchsize']"),
    ({"cases": [{"defence": "clip"}]}, "unknown experiment option(s) ['defence']"),
    ({"model": "lenet"}, "unknown top-level key(s) ['model']"),
    ({"grid": {"batch": 2}}, "[grid].batch must be a non-empty list"),
    ({"grid": {"batch": []}}, "[grid].batch must be a non-empty list"),
    ({"grid": {"batch": {"a": [1]}}}, "[grid].batch must be a list of values"),
    ({"grid": {"defense_params": {"sigma": 0.1}}}, "[grid].defense_params.sigma must be a non-empty list"),
    ({"fixed": {"batch": 1}, "grid": {"batch": [1, 2]}}, "batch set in both [fixed] and [grid]"),
    ({"fixed": {"defense_params": {"sigma": 1}}, "grid": {"defense_params": {"sigma": [1, 2]}}},
     "defense_params.sigma set in both [fixed] and [grid]"),
    ({"grid": {"defense_params": [{"sigma": 1}]}, "cases": [{"defense_params": {"sigma": 2}}]},
     "defense_params.sigma set in both [grid] and [[cases]] #1"),
    ({"cases": []}, "cases must be a non-empty array"),
    ({"retries": -1}, "retries must be a non-negative int, got -1"),
    ({"output": 3}, "output must be a non-empty path string"),
])
def test_bad_sweeps_name_the_setting(values, message):
    with pytest.raises(ValueError) as info:
        SweepSpec.from_dict(values, source="s.toml").jobs()
    assert message in str(info.value)
    assert str(info.value).startswith("s.toml")


def test_an_invalid_value_names_the_job():
    sweep = SweepSpec.from_dict({"grid": {"batch": [1, 0]}}, source="s.toml")
    with pytest.raises(ValueError, match=r"s.toml: job batch=0: batch must be a positive int"):
        sweep.jobs()


def test_repeated_jobs_run_once():
    sweep = SweepSpec.from_dict({"grid": {"batch": [1, 1, 2]}})
    assert [j.spec.batch for j in sweep.jobs()] == [1, 2]


def test_load_reads_and_validates_a_toml_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('output = "out.jsonl"\nretries = 2\n[fixed]\nmodel = "lenet"\nlocal-steps = 2\n'
                    '[grid]\nbatch = [1, 2]\ndefense_params.sigma = [0.1]\n'
                    '[[cases]]\ndefense = "gaussian"\n[[cases]]\ndefense = "gaussian"\nseed = 1\n')
    sweep = load(path)
    assert sweep.output == "out.jsonl" and sweep.attempts == 3
    jobs = sweep.jobs()
    assert len(jobs) == 4 and {j.spec.local_steps for j in jobs} == {2}
    path.write_text('[grid]\nbatch = [1, 2\n')
    with pytest.raises(ValueError, match="is not valid TOML"):
        load(path)
    path.write_text('[grid]\nbatch = [1, -2]\n')
    with pytest.raises(ValueError, match="batch=-2"):
        load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "missing.toml")


def test_fields_added_later_leave_the_keys_of_older_results_unchanged():
    spec = ExperimentSpec(model="lenet", batch=2, defense="gaussian", defense_params={"sigma": 0.01}, restarts=4)
    # the key this spec had before ExperimentSpec.threat and .clients existed (restarts 4 was the default)
    assert job_key(spec) == "b9a0ced328488283b34b907bd097d92a0c89cd361c7a5a650b92c5f1392b1b9d"
    assert job_key(spec.replace(clients=2)) != job_key(spec)
