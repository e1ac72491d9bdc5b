"""What both sides of the peer comparison share: their options and the case files they take."""
from __future__ import annotations

import argparse
from pathlib import Path


def side_options(description: str, out: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", default="runs/peers/cases")
    ap.add_argument("--only", default="", help="comma-separated prefixes of case names")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=out)
    return ap


def selected_cases(cases: str, only: str) -> list[Path]:
    prefixes = [p for p in only.split(",") if p]
    return [path for path in sorted(Path(cases).glob("*.pt"))
            if not prefixes or any(path.stem.startswith(p) for p in prefixes)]
