"""The stages: one module per stage, named after it (``mfrs/stages/<stage>.py``).

Each module holds only its ``Config``, ``inputs``/``outputs``, ``plan`` and ``run``
(see :mod:`mfrs.stage`); the science lives in the domain libraries (``mfrs.meg``,
``mfrs.nets``, ``mfrs.images``, ``mfrs.similarity``, ``mfrs.demo``). The registry
:data:`mfrs.pipeline.STAGES` is this folder's listing, so adding a file adds a stage.
"""
