"""SIGTERM handled like Ctrl-C: the running command unwinds, so writers remove their temporary outputs.

Python turns SIGINT into `KeyboardInterrupt`, which unwinds every `with` block (the writers of
`video_io` and `output_guard` delete their hidden temporary output there). SIGTERM, the signal of
`kill`, `timeout` and job schedulers, would end the process on the spot and leave those files behind.
`terminate_like_interrupt()` makes SIGTERM raise `Terminated` instead, so both unwind the same way; the
command line then prints one line and exits with the shell's status for the signal (130 or 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Interrupted(BaseException):
    """Ctrl-C, raised by `interrupt_raises` instead of `KeyboardInterrupt` inside code that would swallow that
    one (Lightning's graceful shutdown ends the process with status 1)."""


@contextlib.contextmanager
def interrupt_raises(exception: type[BaseException] = Interrupted) -> Iterator[None]:
    """Within the block, SIGINT raises `exception` in the main thread; the old handler is restored after.

    Outside the main thread, or where SIGINT is ignored (a background job), the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def _raise(signum, frame) -> None:
        raise exception("received signal SIGINT")

    previous = signal.signal(signal.SIGINT, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def recorded_interrupts() -> Iterator[list[int]]:
    """Within the block, SIGINT is recorded in the yielded list before it raises `KeyboardInterrupt` as usual.

    A Ctrl-C that lands inside an import can leave a module half-initialised, and the error that surfaces later
    is another one (numpy's lazy `linalg` then recurses): the record lets the caller still call it an interrupt.
    Outside the main thread, or where SIGINT is ignored (a background job), nothing is installed.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield received
        return

    def _record(signum, frame) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, _record)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (a `BaseException`, like
    `KeyboardInterrupt`, so `except Exception` blocks do not swallow it)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread; the old handler is restored after.

    Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
