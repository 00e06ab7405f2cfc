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
lines. The training flags are declared once, as the fields of
:class:`gluoncv_fp16.train.config.TrainConfig`; :mod:`.options` generates the parser,
the typed config and ``docs/options.md`` from them. A user's mistake ends a command with
one line on stderr and exit code 2. Nothing here is imported by the library.
"""
