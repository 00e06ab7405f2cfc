"""The command line: one module per command, each with ``main(argv=None) -> exit code``.

:mod:`.train` is the training command, ``python -m gluoncv_fp16.cli.train``;
``train_yolo3.py`` (what GluonCV users type) is a shim of it. The training flags are
declared once, as the fields of :class:`gluoncv_fp16.train.config.TrainConfig`;
:mod:`.options` generates the parser, the typed config and ``docs/options.md`` from them.
A user's mistake ends a command with one line on stderr and exit code 2. Nothing here is
imported by the library.
"""
