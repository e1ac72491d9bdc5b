"""End-to-end experiments: simulate a client on real data, recover labels, attack, evaluate."""
from fastleak.experiments.pipeline import Outcome, run
from fastleak.experiments.scenario import Scenario, simulate
from fastleak.experiments.spec import ExperimentSpec

__all__ = ["ExperimentSpec", "Scenario", "Outcome", "simulate", "run"]
