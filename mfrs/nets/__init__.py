"""The CNN side of mfrs: seven architectures, weights, layer activations, model RDMs, training.

Importing this package is cheap; torch is imported only by the submodules that
run networks (``architectures``, ``weights``, ``checkpoints``, ``losses``, ``hooks``,
``activations``, ``training``), which the stages load when they run.
"""
