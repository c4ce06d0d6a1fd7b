"""Stopping a run without losing it: Ctrl-C (SIGINT) and SIGTERM (`docker stop`, a preempted cluster job).

The first signal does not interrupt anything: it asks the run to stop after the step under way. The run finishes
that step, saves last.pt at the step boundary and stops, so the checkpoint is exactly what an uninterrupted run
holds after that step, wherever the signal landed (mid forward pass included, where BatchNorm has already moved
its running statistics). Then Ctrl-C raises KeyboardInterrupt (a notebook cell stops, the CLI exits 130) and
SIGTERM raises `Terminated` (the CLI exits 143, as a process killed by SIGTERM does).

A second signal stops at once: KeyboardInterrupt or Terminated where it lands. The loop then takes its one
emergency path (`loop.Run.emergency_save`, the path an error takes too): it saves the state after the last
finished step, with BatchNorm's statistics put back if the signal landed in a forward pass, so that this
checkpoint too resumes bit for bit; only while the optimizer is changing the weights does it save nothing, and it
says which it did. Handlers are installed only in the main thread, where Python delivers signals, and the previous
ones come back when the run ends.
"""
from __future__ import annotations

import signal
import sys
import threading


class Terminated(BaseException):
    """The run was asked to stop by SIGTERM; `signum` is the signal's number. A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` in the step's code (a data loader's) takes it for an
    error of its own."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signum = signum


class StopRequests:
    """A context manager that turns SIGINT and SIGTERM into a request: `requested` holds the first signal's
    number (None while none came)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.requested, self.announce, self.previous = None, announce, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def handle(self, signum, frame) -> None:
        if self.requested is not None:  # a second signal: stop at once
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated("terminated during a step", signum)
        self.requested = signum
        if self.announce:
            print(f"\n{signal.Signals(signum).name}: stopping after this step, which will be saved "
                  f"(again to stop at once, saving the last finished step)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def raise_stop(self, message: str):
        """After the run saved: the exception its signal stands for."""
        if self.requested == signal.SIGINT:
            raise KeyboardInterrupt(message)
        raise Terminated(message, self.requested)


def stopped_at_once(signal_error: BaseException, outcome: str) -> BaseException:
    """A second signal's exception (KeyboardInterrupt or Terminated) again, with what the run did about it."""
    if isinstance(signal_error, Terminated):
        return Terminated(f"terminated at once: {outcome}", signal_error.signum)
    return KeyboardInterrupt(f"interrupted at once: {outcome}")
