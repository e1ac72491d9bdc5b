"""The client's side of a malicious server: is the model I received built to leak my batch?

    verdict = fastleak.inspect(model)                 # the weights alone
    verdict = fastleak.inspect(model, x)              # and the client's own data [n, *in_shape]
    verdict.malicious, verdict.kind, verdict.evidence, verdict.recoverable_fraction

Signals (``verdict``): rows of one layer that share a direction against a ladder of thresholds
(imprint bins), rows that lean negative together (trap weights), and, with the client's data, the
share of a batch a server reads in closed form off the layers that read the input (``exposure``).
"""
from fastleak.inspection import exposure, layers, structure
from fastleak.inspection.verdict import KINDS, SIGNALS, Evidence, Verdict, inspect, signal

__all__ = ["inspect", "Verdict", "Evidence", "KINDS", "SIGNALS", "signal", "exposure", "layers", "structure"]
