"""Side-by-side comparisons with breaching 0.1.2: case writers and fastleak's side run in fastleak's venv,
``breaching_*`` in breaching's (``make_venv.sh``); the ``compare*.sh`` drivers run both. Every module here
runs from the repository root as ``python -m benchmarks.peers.<module>``."""
