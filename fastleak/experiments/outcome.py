"""What a run of an experiment returns, whatever the threat model."""
from __future__ import annotations

import abc
from typing import Any

from fastleak.experiments.scenario import Scenario


class RunOutcome(abc.ABC):
    """The outcome of ``fastleak.experiments.run``: the simulated round (``scenario``) and what the
    server got from it. Reports write it and the command line summarises it by its type."""

    scenario: Scenario

    @abc.abstractmethod
    def metrics(self) -> dict[str, Any]:
        """The run's scalar results (what a sweep records per job)."""
