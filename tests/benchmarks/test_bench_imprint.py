"""bench_imprint: its pools are real, disjoint between client and server, and one case reproduces
the exact-recovery claim it tabulates."""
import torch

from benchmarks.bench_imprint import pools, run_case, write_folder


def test_cifar_pool_is_cifar_size_and_client_and_server_share_no_image():
    x, y, public = pools("cifar")
    assert x.shape == (680, 3, 32, 32) and public.shape == (640, 3, 32, 32) and y.shape == (680,)
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and 0 <= int(y.min()) and int(y.max()) < 10
    flat_public = public.flatten(1)
    assert not any(bool((flat_public == row).all(1).any()) for row in x.flatten(1))


def test_mnist_fedsgd_case_recovers_its_singletons():
    case = {"dataset": "mnist", "batch": 64, "seed": 0, "attack": "imprint", "structure": "cumulative", "rows": 128,
            "client": "fedsgd", "local_batch": None, "lr": None}
    row = run_case(case, pools("mnist"))
    assert row["recovered"] == row["singleton"] > 0.4 and row["false_singles"] == 0
    assert abs(row["predicted"] - row["equal_mass"]) < 0.05 and row["ln_acc"] is not None
    assert row["threads"] == torch.get_num_threads()


def test_the_cifar_pools_written_to_disk_come_back_through_the_folder_reader(tmp_path):
    write_folder(tmp_path)
    x, y, public = pools("folder", str(tmp_path))
    expected, _, expected_public = pools("cifar")
    assert x.shape == expected.shape and public.shape == expected_public.shape and int(y.max()) < 10
    assert {tuple(row.tolist()) for row in (x.flatten(1) * 255).round().int()[:, :8]} == \
        {tuple(row.tolist()) for row in (expected.flatten(1) * 255).round().int()[:, :8]}
