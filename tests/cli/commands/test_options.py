import argparse
import json

from fastleak.cli.commands.options import resumed_spec


def _resume_args(run_dir) -> argparse.Namespace:
    return argparse.Namespace(resume=str(run_dir))


def test_a_run_written_before_client_bn_existed_resumes_in_eval_mode(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"spec": {"model": "lenet", "batch": 2}}))
    assert resumed_spec(_resume_args(tmp_path), "attack").client_bn == "eval"


def test_a_run_resumes_with_the_client_bn_it_recorded(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"spec": {"model": "lenet", "client_bn": "train"}}))
    assert resumed_spec(_resume_args(tmp_path), "attack").client_bn == "train"
