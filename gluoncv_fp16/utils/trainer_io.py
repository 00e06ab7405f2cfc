"""gluon.Trainer state as bytes: its public API only reads and writes files."""
import os
import tempfile

__all__ = ['trainer_state_bytes', 'load_trainer_state_bytes']


def trainer_state_bytes(trainer):
    """`trainer.save_states` output (optimizer state, FP32 master weights) as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'trainer.states')
        trainer.save_states(path)
        with open(path, 'rb') as f:
            return f.read()


def load_trainer_state_bytes(trainer, data):
    """The inverse: `trainer.load_states` from bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'trainer.states')
        with open(path, 'wb') as f:
            f.write(data)
        trainer.load_states(path)
