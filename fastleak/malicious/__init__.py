"""A malicious server: it modifies the model it sends so that the client's update leaks its batch.

Threat model: unlike the honest-but-curious server of the rest of fastleak, this server sends a
model of its own making. It puts a block in front of any classifier (``MaliciousModel``): the
client trains the whole model as usual (FedSGD or FedAvg, ``fastleak.federated``) and the server
reads the inputs of the batch off the block's shared gradient, in closed form, without any
optimisation.

    model = malicious.imprint_model(models.build("lenet", 10, in_shape=(1, 28, 28)),
                                    public_images, malicious.ImprintConfig(bins=256))
    obs = federated.fedsgd(model, x, y)
    rec = malicious.recover(obs, model)                 # rec.images: one per bin judged single
    score = malicious.evaluate(rec, model, x, y)        # evaluation only: needs the true batch

Blocks: ``imprint`` (Fowl et al., "Robbing the Fed", ICLR 2022), with bins on one or several
measurements fitted on the server's public data, optionally one copy per client of a secure
aggregation (``separate``); ``trap`` (Boenisch et al., "When the Curious Abandon Honesty",
EuroS&P 2023), trap weights calibrated on it; ``presets`` sizes them for a batch. Recovery:
``recovery`` (with peeling); single-sample checks: ``checks`` (and ``resolution`` for quantised
updates); singleton and peeling theory: ``theory``. The client's side: ``fastleak.inspect``.
"""
from fastleak.malicious import checks, measurements, presets, resolution, theory
from fastleak.malicious.evaluation import EXACT_PSNR, RecoveryScore, evaluate
from fastleak.malicious.imprint import ImprintBlock, ImprintConfig, copy_of, fit_edges, imprint_model, separate
from fastleak.malicious.model import MaliciousModel
from fastleak.malicious.recovery import Recovery, RecoveryConfig, recover, recover_many
from fastleak.malicious.trap import TrapBlock, TrapConfig, trap_model

__all__ = ["MaliciousModel", "ImprintBlock", "ImprintConfig", "fit_edges", "imprint_model", "separate", "copy_of",
           "Recovery",
           "RecoveryConfig", "recover", "recover_many", "RecoveryScore", "evaluate", "EXACT_PSNR", "checks",
           "measurements", "presets", "resolution", "theory", "TrapBlock", "TrapConfig", "trap_model"]
