"""Training the models that attacks target: simulated FedAvg or centralised SGD on real data.

``train(TrainConfig(...), out)`` writes the global model of every saved round and ``train.json``
(``fastleak.training.rundir``), resumes after an interruption, and ``load_round(out, r)`` gives the
model of round r back.
"""
from fastleak.training.config import TrainConfig
from fastleak.training.partition import PARTITIONS, partition
from fastleak.training.rundir import RoundRecord, load_round, read_summary, round_path, run_of_state_dict
from fastleak.training.trainer import TrainResult, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "RoundRecord", "train", "evaluate", "load_round", "read_summary",
           "round_path", "run_of_state_dict", "partition", "PARTITIONS"]
