"""The run's log, `metrics.jsonl`: one JSON record per line, {"step", "epoch", "lr", "loss", "loss_*",
"sec_per_iter"} every log_every steps and {"step", "eval": {...}} after each held-out evaluation."""
from __future__ import annotations

import json
import warnings
from pathlib import Path


def append_record(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_records(path: Path) -> list[dict]:
    """The records of a log. A line that is not JSON (the last one, torn when a run was killed mid-write) is
    left out with a warning naming the file and the line, instead of blocking every resume."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}: line {number} is not a JSON record (torn by a killed run?); left out: "
                          f"{line[:60]!r}")
    return records


def drop_records_after(path: Path, step: int) -> None:
    """On resume, forget records a crashed run wrote after the checkpoint it resumes from (and torn lines)."""
    if path.exists():
        kept = [r for r in read_records(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
