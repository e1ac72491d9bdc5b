"""The table of one peer case over attack seeds (``compare_seeds.sh``): fastleak's fastest run that
reaches breaching's PSNR gives the time ratio; a breaching run that reconstructed nothing gives none."""
import torch

from benchmarks.peers.fastleak_side import RECONSTRUCTED_DB, seeds_table


def _noisy(truth: torch.Tensor, db: float, seed: int) -> torch.Tensor:
    """``truth`` plus noise at about ``db`` PSNR (images in [0, 1])."""
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed), dtype=truth.dtype)
    return truth + noise * 10 ** (-db / 20)


def _write(folder, name: str, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(record, folder / name)


def test_each_seed_gets_its_time_to_breachings_quality_and_a_failed_peer_run_gets_none(tmp_path):
    truth = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(0.1, 0.9)
    _write(tmp_path / "cases", "dlg_lenet_b1.pt", {"images": truth})
    peers = {0: (40.0, 9.0), 1: (RECONSTRUCTED_DB - 10, 16.0), 2: (60.0, 8.0)}
    for seed, (db, seconds) in peers.items():
        _write(tmp_path / "breaching" / f"s{seed}", "dlg_lenet_b1_dlg_300x1.pt",
               {"case": "dlg_lenet_b1", "iterations": 300, "images": _noisy(truth, db, seed), "seconds": seconds})
        for iterations, ours_db, ours_seconds in ((100, 30.0, 5.0), (200, 50.0, 6.0), (300, 55.0, 7.5)):
            _write(tmp_path / "fastleak" / f"s{seed}", f"dlg_lenet_b1_dlg_{iterations}x1.pt",
                   {"case": "dlg_lenet_b1", "iterations": iterations, "seconds": ours_seconds,
                    "images": _noisy(truth, ours_db, 10 * seed + iterations)})
    rows = seeds_table(tmp_path / "cases", tmp_path / "fastleak", tmp_path / "breaching").splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == ["0", "1", "2"]
    assert rows[0].endswith(f"| {9.0 / 6.0:.1f} |")  # 200 iterations are the first to reach 40 dB
    assert rows[0].count(" dB, ") == 4 and "100, 30." in rows[0]
    assert rows[1].endswith(f"| breaching's run failed (< {RECONSTRUCTED_DB:.0f} dB) |")
    assert rows[2].endswith("| not reached |")
