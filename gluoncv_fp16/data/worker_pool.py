"""Loader worker processes with one pipe each: the least the main process can do per batch.

``multiprocessing.Pool`` hands every task and result through three helper threads in
the main process (task feeder, result reader, worker watcher) and wakes the consumer
through a condition variable; on a busy machine those hand-offs, not the bytes, were
most of the main process's remaining cost per batch. Here task k goes to worker
``k % n`` and its result is read from that worker's pipe by the consumer itself: one
small pickle each way, no extra thread. Results come back in submission order because
each worker answers its own tasks in order.
"""
import atexit
import signal
import weakref

__all__ = ['WorkerPool', 'WorkerDied']


class WorkerDied(RuntimeError):
    """A worker process ended while tasks were outstanding (killed, out of memory)."""


def _serve(conn, others, initializer, initargs):
    """Worker main loop: run (function, args) messages until None or the parent is gone."""
    # Ctrl-C, or a preemption SIGTERM sent to the whole process group, is the parent's to
    # handle: it finishes its step and saves, then ends us through the pipe (or, killed,
    # by closing it: EOF below)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    for other in others:  # copies of the other pipe ends: only then does an ended
        other.close()    # parent (or worker) show as EOF on the other side
    initializer(*initargs)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        function, args = message
        try:
            reply = ('ok', function(*args))
        except Exception as err:  # pylint: disable=broad-except
            reply = ('error', err)
        try:
            conn.send(reply)
        except Exception as err:  # pylint: disable=broad-except
            conn.send(('error', RuntimeError('{}: {}'.format(type(err).__name__, err))))


def _terminate_at_exit(pool_ref):
    pool = pool_ref()
    if pool is not None:
        pool.terminate()


class WorkerPool:
    """`num_workers` processes started with `initializer(*initargs)`.

    Parameters
    ----------
    context : multiprocessing context
        'fork' shares `initargs` without pickling (datasets, shared mappings).
    """

    def __init__(self, context, num_workers, initializer, initargs):
        pipes = [context.Pipe() for _ in range(num_workers)]
        self._conns = [parent for parent, _ in pipes]
        self._procs = []
        ends = [end for pair in pipes for end in pair]
        for _, child in pipes:
            others = [end for end in ends if end is not child]
            proc = context.Process(target=_serve, args=(child, others, initializer, initargs),
                                   name='gluoncv_fp16-loader-{}'.format(len(self._procs)), daemon=True)
            proc.start()
            self._procs.append(proc)
        for _, child in pipes:
            child.close()
        self._next = 0
        # Before multiprocessing's own exit handler, which would SIGTERM the workers and
        # wait for them forever (they ignore SIGTERM)
        atexit.register(_terminate_at_exit, weakref.ref(self))

    def __len__(self):
        return len(self._procs)

    def submit(self, function, *args):
        """Queue `function(*args)` on the next worker; returns that worker's index."""
        worker = self._next
        self._next = (self._next + 1) % len(self._procs)
        self._conns[worker].send((function, args))
        return worker

    def receive(self, worker):
        """The next result of `worker` (raises what the task raised, or WorkerDied)."""
        try:
            status, value = self._conns[worker].recv()
        except (EOFError, OSError):
            code = self._procs[worker].exitcode
            raise WorkerDied('data loader worker {} ended (exit code {}) with batches '
                             'outstanding; was it killed, e.g. out of memory?'.format(
                                 worker, code)) from None
        if status == 'error':
            raise value
        return value

    def terminate(self):
        """Stop every worker now (tasks in flight are dropped). SIGKILL, because workers
        ignore SIGTERM (see `_serve`); they hold nothing the parent needs."""
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        for proc in self._procs:
            proc.join()
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
