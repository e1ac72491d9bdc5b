"""fastleak's benchmarks, run from the repository root as ``python -m benchmarks.<module>``.

- ``bench_*.py`` and the other modules here: the benchmarks (their docstrings give their commands)
  and what several of them share: ``environment`` (what figures depend on, writing them),
  ``trained_states`` (trained models and the grid of them), ``eager_reference`` (attack code
  written the way public attack scripts write it, the baseline of ``bench_attack``);
- ``cases/``: the cases of ``bench_ops``;
- ``peers/``: side-by-side comparisons with breaching, whose side runs in its own venv
  (``peers/make_venv.sh``) and imports only ``peers.common`` and ``fastleak.models`` from here;
- ``results/``: the figures ``RESULTS.md`` cites.

A run writes under ``runs/`` (git-ignored) unless told otherwise.
"""
