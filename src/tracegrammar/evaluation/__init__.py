"""Evaluation of synthetic call graphs against real ones, beyond the single-number metrics of
`tracegrammar.metrics`: bootstrap intervals (`bootstrap`), per-field diagnostics and the scores of
one source (`scoring`), train-on-synthetic / test-on-real tasks (`usefulness`), and the fidelity
benchmark that runs every source side by side (`fidelity`, `report`).

Nothing here imports torch at import time; scikit-learn is imported by `usefulness` only when a
task runs.
"""
