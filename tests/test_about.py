import dataclasses

import torch

import fastleak


def test_info_reports_the_running_torch_and_the_extension():
    report = fastleak.info()
    assert report.torch_version == torch.__version__ and report.threads == torch.get_num_threads()
    assert report.compiled_ops == fastleak._ext.LOADED and report.cuda_kernels == fastleak.has_cuda_kernels()
    assert str(report).splitlines()[0] == f"fastleak {fastleak.__version__}"


def test_info_says_when_the_extension_was_built_against_another_torch():
    report = fastleak.info()
    other = dataclasses.replace(report, built_against="0.0.1")
    assert f"built against torch 0.0.1; it runs on torch {torch.__version__}: rebuild fastleak" in str(other)
