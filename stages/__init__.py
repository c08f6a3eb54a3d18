"""One thin module per DVC stage, loaded by ``pipeline run-stage <name>`` from this folder
(``stages/<name>.py``, ``-`` written ``_``; see :mod:`pipeline.project`). Each exposes
``run(params_path, overrides, item=None)``: it reads its own params block and calls one
library function. Not an installed package: it belongs to the project checkout."""
