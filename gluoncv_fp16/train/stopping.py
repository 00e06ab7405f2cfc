"""Stop cleanly on SIGTERM / SIGINT: finish the step, save, exit with 128 + signal.

Cloud machines preempt with a SIGTERM, then a kill. The first signal only tells the loop
(``loop.receive_signal``); the loop finishes the step it is in and raises `StopRequested`,
the caller saves a resumable checkpoint at that iteration (:mod:`.build`) and the CLI exits
with 143 (SIGTERM) or 130 (SIGINT) and one line. A second signal stops the process at once.

In a distributed job the signal may reach one worker, or reach them at different steps;
the loop's per-step vote (`WorkerSetup.vote`) turns it into a stop of every worker after
the same step, where the chief saves and the others wait for it.
"""
import contextlib
import logging
import os
import signal
import threading

__all__ = ['stop_on_signals']

logger = logging.getLogger(__name__)



@contextlib.contextmanager
def stop_on_signals(loop):
    """While active, SIGTERM/SIGINT ask `loop` to stop after its current step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # pylint: disable=unused-argument
        name = signal.Signals(signum).name
        if not loop.receive_signal(name):  # the second signal: stop at once, as the default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        logger.warning('%s received: stopping after this step and saving (send it again to '
                       'stop at once)', name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
