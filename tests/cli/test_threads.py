import pytest
import torch

from fastleak.cli import threads
from fastleak.cli.errors import CliError


def test_free_cores_counts_the_idle_share_of_each_usable_cpu(monkeypatch):
    samples = iter([{0: (100, 1000), 1: (500, 1000)},
                    {0: (110, 1100), 1: (595, 1100)}])  # cpu0 10% idle, cpu1 95% idle
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: next(samples))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.free_cores(0.0) == (1, 2)


def test_free_cores_reads_this_machine():
    sample = threads.free_cores(0.05)
    if sample is None:
        pytest.skip("no /proc/stat or CPU affinity here")
    free, usable = sample
    assert 0 <= free <= usable


def test_free_cores_is_none_without_proc_stat(monkeypatch):
    def missing(cpus):
        raise OSError("no /proc/stat")

    monkeypatch.setattr(threads, "_cpu_times", missing)
    assert threads.free_cores(0.0) is None


@pytest.fixture()
def kept_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_apply_sizes_the_pool_to_the_free_cores_of_its_own_process(monkeypatch, kept_threads):
    monkeypatch.setattr(threads, "free_cores", lambda: (1, 2))
    policy = threads.apply(None, "OMP_WAIT_POLICY=PASSIVE")
    assert torch.get_num_threads() == 1
    assert str(policy) == "1 thread (1 of 2 cores free at the start; OMP_WAIT_POLICY=PASSIVE)"
    monkeypatch.setattr(threads, "free_cores", lambda: (0, 2))
    assert threads.apply(None, "OMP_WAIT_POLICY=PASSIVE").threads == 1  # never fewer than one


def test_apply_leaves_a_host_process_alone_unless_asked(kept_threads):
    torch.set_num_threads(2)
    policy = threads.apply(None, None)
    assert torch.get_num_threads() == 2 and policy.why == "as set by the calling process"
    assert threads.apply(1, None).threads == 1 and torch.get_num_threads() == 1
    with pytest.raises(CliError, match="--threads must be a positive number of threads, got 0"):
        threads.apply(0, None)


def test_the_wait_policy_is_set_only_before_torch_loads(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.set_wait_policy() is None  # torch is loaded in this process
    assert "OMP_WAIT_POLICY" not in threads.os.environ
