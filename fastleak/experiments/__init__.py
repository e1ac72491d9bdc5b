"""End-to-end experiments: simulate a client on real data, recover labels, attack, evaluate."""
from fastleak.experiments.outcome import RunOutcome
from fastleak.experiments.pipeline import Outcome, attack_iterations, run
from fastleak.experiments.scenario import Scenario, simulate
from fastleak.experiments.spec import ExperimentSpec

__all__ = ["ExperimentSpec", "Scenario", "RunOutcome", "Outcome", "simulate", "run", "attack_iterations"]
