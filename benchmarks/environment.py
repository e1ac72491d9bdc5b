"""What a benchmark's figures depend on, written beside them in its JSON output."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def environment(device: str, **extra: Any) -> dict[str, Any]:
    """The device, torch, the CPU threads, the machine and the date; ``extra`` adds or overrides."""
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **extra}


def write_json(path: str | Path, value: Any, indent: int = 2) -> None:
    """``value`` as JSON at ``path``, its folder created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=indent))


def write_results(path: str | Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    write_json(path, {"meta": meta, "results": rows})
