"""`python -m minimaskrcnn check` runs the student's file in a child process, with a time limit per component.

    parent: run_in_child(jobs)                      child: python -c "...isolation import child; child()"
      writes a token and the jobs to its stdin --->   reads them, closes stdin; moves fd 1 to fd 2, so
                                                      that the student's prints go to stderr
      reads the child's JSON lines, with a     <---   per job: imports the file; per component: runs
      deadline for each "start"                       its properties, sends the report's lines

A component's result comes only from the "result" line that the checker's code writes after running
its properties, never from the child's exit status: a file that calls sys.exit() or os._exit() at
import or inside a checked function, or that loops for ever, ends or stalls the child before that line,
and the parent reports the component as failed (or the file as unusable). sys.exit() inside a checked
function does not even end the child: the checks catch SystemExit like any exception. A component that
runs past its time limit is stopped with its child, and a fresh child goes on with the next one.
"""
from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

IN_MODEL = "in-model"  # the unit that runs compare() instead of a component's properties
START_LIMIT = 120.0  # seconds for a child to import torch and the checks (a busy laptop is slow)


@dataclass
class UnitResult:
    name: str  # a component's name, or IN_MODEL
    lines: list  # the report, as the checker printed it
    core: bool  # the core passes (IN_MODEL: the model agrees)
    strict: bool  # every property passes
    missing: list = field(default_factory=list)  # the component's functions the file does not define


@dataclass
class JobResult:
    file: str
    error: str | None = None  # the file could not be imported (or hung, or ended the process)
    units: list = field(default_factory=list)  # [UnitResult]


def run_in_child(jobs: list[dict], time_limit: float = 60.0, in_model_limit: float = 600.0, print_=None) -> list:
    """jobs: [{"file": path, "units": [component names and/or IN_MODEL], "strict": bool, and for IN_MODEL
    "names": the functions to swap (None: all) and "checkpoint": the model (None: comparison.default_model's)}].
    Returns one JobResult per job; print_(line) gets each report line as it arrives."""
    results = [JobResult(str(job["file"])) for job in jobs]
    position = (0, 0)
    while position is not None:
        position = _one_child(jobs, position, results, time_limit, in_model_limit, print_ or (lambda line: None))
    return results


def _one_child(jobs, start, results, time_limit, in_model_limit, print_):
    """Run jobs from position start = (job, unit) in a fresh child; None when all ran, else where to resume."""
    token = secrets.token_hex(16)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this minimaskrcnn
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-c", "from minimaskrcnn.exercises.isolation import child; child()"],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True)
    proc.stdin.write(json.dumps({"token": token, "jobs": jobs, "start": start}))
    proc.stdin.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
    where, phase, limit, deadline = start, "start", START_LIMIT, time.monotonic() + START_LIMIT
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:  # past the deadline: an endless loop, or a very slow function
                return _stopped(jobs, results, where, phase, f"no result within {limit:g} s: an endless loop? "
                                f"(the check stopped it; --time-limit sets the limit)", print_)
            if line is None:  # the child ended before the checker said it was done
                proc.wait()
                why = f"the checked code ended the checker's process (exit status {proc.returncode}): sys.exit() or " \
                      f"os._exit() in your file? Only the checker's own report counts, so this is a failure"
                return _stopped(jobs, results, where, phase, f"exit status {proc.returncode}, see the error above"
                                if phase == "start" else why, print_)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("token") != token:
                continue  # not the checker's line
            kind, job = event["event"], event.get("job")
            if kind == "done":
                return None
            if kind in ("import", "start"):
                where, phase = (job, event["unit"]), "import" if kind == "import" else "unit"
                limit = in_model_limit if event.get("name") == IN_MODEL else time_limit
                deadline = time.monotonic() + limit
            elif kind == "imported" and event["error"]:
                results[job].error = event["error"]
            elif kind == "result":
                unit = UnitResult(event["name"], event["lines"], event["core"], event["strict"], event["missing"])
                results[job].units.append(unit)
                for text in unit.lines + [""] * (len(jobs[job]["units"]) > 1):  # a blank line between units
                    print_(text)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stopped(jobs, results, where, phase, why, print_):
    """Record why the child stopped at `where` = (job, unit) in `phase` ("start": before the checks were
    loaded, "import": importing the file, "unit": checking); return the position after it (or None)."""
    job, unit = where
    if phase == "unit":
        name = jobs[job]["units"][unit]
        for text in [f"{name}: {why}"] + [""] * (len(jobs[job]["units"]) > 1):
            print_(text)
        results[job].units.append(UnitResult(name, [f"{name}: {why}"], False, False))
        unit += 1
    else:
        what = "the checker's process did not start" if phase == "start" else "its import stopped"
        results[job].error = f"{jobs[job]['file']} could not be checked: {what}: {why}"
        unit = len(jobs[job]["units"])
    nxt = (job, unit) if unit < len(jobs[job]["units"]) else (job + 1, 0)
    return nxt if nxt[0] < len(jobs) else None


def child() -> None:
    """The child: runs the jobs it reads from stdin, sends JSON lines on its original stdout."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # from here on, fd 1 (print, os.write(1, ...)) is stderr: the channel is the checker's alone
    request = json.loads(sys.stdin.read())
    sys.stdin.close()
    token = request["token"]

    def send(event: str, **fields) -> None:
        channel.write(json.dumps({"token": token, "event": event, **fields}) + "\n")
        channel.flush()

    from .comparison import compare  # torch and the checks: loaded before any time limit starts
    from .components import COMPONENTS
    from .loading import load_module
    from .core import run
    from .report import report, verdict

    first_job, first_unit = request["start"]
    for j, job in enumerate(request["jobs"][first_job:], start=first_job):
        send("import", job=j, unit=first_unit if j == first_job else 0)
        try:
            module = load_module(job["file"])
        except (ValueError, FileNotFoundError) as e:
            send("imported", job=j, error=str(e))
            continue
        send("imported", job=j, error=None)
        for u, name in enumerate(job["units"]):
            if (j, u) < (first_job, first_unit):
                continue
            send("start", job=j, unit=u, name=name)
            lines = []
            if name == IN_MODEL:
                try:
                    ok = compare(module, checkpoint=job.get("checkpoint"), names=job.get("names"), print_=lines.append)
                except (Exception, SystemExit) as e:
                    lines.append(f"in the model: your functions raised {type(e).__name__}: {e}")
                    ok = False
                send("result", job=j, name=name, lines=lines, core=ok, strict=ok, missing=[])
                continue
            c = COMPONENTS[name]
            functions = {f: getattr(module, f, None) for f in c.functions}
            missing = [f for f, fn in functions.items() if not callable(fn)]
            if missing:
                lines = [c.header, f"{c.name}: {job['file']} does not define {' and '.join(missing)}"]
                send("result", job=j, name=name, lines=lines, core=False, strict=False, missing=missing)
                continue
            outcomes = run(c, functions)
            lines.append(c.header)
            report(c, outcomes, lines.append, job.get("strict", False))
            send("result", job=j, name=name, lines=lines, core=verdict(outcomes), strict=verdict(outcomes, True),
                 missing=[])
    send("done")

