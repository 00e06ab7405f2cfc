"""The command line: one module per command, each with ``main(argv=None) -> exit code``.

=================  ==============================  =================================
module             console entry point             script users know
=================  ==============================  =================================
:mod:`.train`      ``gluoncv-fp16-train``          ``train_yolo3.py``
:mod:`.eval`       ``gluoncv-fp16-eval``           ``scripts/eval.py``
:mod:`.export`     ``gluoncv-fp16-export``         ``scripts/export.py``
:mod:`.demo`       ``gluoncv-fp16-demo``           ``scripts/demo.py``
:mod:`.check`      ``gluoncv-fp16-check``          ``scripts/device_check.py``
=================  ==============================  =================================

Each also runs as ``python -m gluoncv_fp16.cli.<module>``; the scripts are shims of a few
lines. Each command's flags are declared once, as the fields of a settings dataclass
(training: :class:`gluoncv_fp16.train.config.TrainConfig`; the others: the ``*Settings``
class of their module); the module's ``COMMAND`` (:class:`.command.Command`) makes the
parser and the validated settings from them, and its ``main`` is the one every command
runs: a user's mistake ends it with one line on stderr and exit code 2. :mod:`.options`
renders ``docs/options.md`` from the same declarations. Nothing here is imported by the
library.
"""
