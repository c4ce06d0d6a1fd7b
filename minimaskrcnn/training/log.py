"""The run's log, `metrics.jsonl`: one JSON record per line, {"step", "epoch", "lr", "loss", "loss_*",
"sec_per_iter"} every log_every steps and {"step", "eval": {...}} after each held-out evaluation."""
from __future__ import annotations

import json
from pathlib import Path


def append_record(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def drop_records_after(path: Path, step: int) -> None:
    """On resume, forget records a crashed run wrote after the checkpoint it resumes from."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in lines))
