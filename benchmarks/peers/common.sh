# What the comparison drivers share (sourced, never run): the repository root as the working
# directory, one thread per side with OpenMP's passive wait, and a runner for each side's modules:
#   ours MODULE ARGS...   fastleak's venv (PYTHON, default .venv/bin/python)
#   peer MODULE ARGS...   breaching's venv (PEER_PYTHON, default benchmarks/peers/.venv/bin/python)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
ours() { "${PYTHON:-.venv/bin/python}" -m "benchmarks.peers.$1" "${@:2}"; }
peer() { "${PEER_PYTHON:-benchmarks/peers/.venv/bin/python}" -m "benchmarks.peers.$1" "${@:2}"; }
