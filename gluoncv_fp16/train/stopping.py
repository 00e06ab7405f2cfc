"""Stop cleanly on SIGTERM / SIGINT: finish the step, save, exit with 128 + signal.

Cloud machines preempt with a SIGTERM, then a kill. The first signal only sets
``loop.stop_signal``; the loop finishes the step it is in and raises `StopRequested`, the
caller saves a resumable checkpoint at that iteration (:mod:`.build`) and the CLI exits with
143 (SIGTERM) or 130 (SIGINT) and one line. A second signal stops the process at once.

Only single-process runs install the handlers: workers of a distributed job would stop at
different steps and leave the others waiting in an all-reduce; there the launcher's own
signal handling applies.
"""
import contextlib
import logging
import os
import signal
import threading

__all__ = ['stop_on_signals', 'EXIT_CODES']

logger = logging.getLogger(__name__)

EXIT_CODES = {'SIGTERM': 128 + signal.SIGTERM, 'SIGINT': 128 + signal.SIGINT}


@contextlib.contextmanager
def stop_on_signals(loop, enabled=True):
    """While active, SIGTERM/SIGINT ask `loop` to stop after its current step."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # pylint: disable=unused-argument
        name = signal.Signals(signum).name
        if loop.stop_signal:  # the second signal: stop at once, as the default would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        loop.stop_signal = name
        logger.warning('%s received: stopping after this step and saving (send it again to '
                       'stop at once)', name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
