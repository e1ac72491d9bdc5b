"""What a benchmark's figures depend on, written beside them in its JSON output."""
from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import torch


def environment(device: str, **extra: Any) -> dict[str, Any]:
    """The device, torch, the CPU threads, the machine and the date; ``extra`` adds or overrides."""
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **extra}


def write_results(path: str, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2)
