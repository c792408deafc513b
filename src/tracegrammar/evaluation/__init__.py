"""Evaluation of synthetic call graphs against real ones, beyond the single-number metrics of
`tracegrammar.metrics`: bootstrap intervals (`bootstrap`), per-field diagnostics and the scores of
one source (`scoring`), train-on-synthetic / test-on-real tasks (`usefulness`), the fidelity
benchmark that runs every source side by side (`fidelity`, `report`), and the validity benchmark
over the papers' grid (`grid`: cells and prompts, `validity`: running cells, `validity_report`:
summaries, `heatmaps`); `tables` holds what every benchmark summary shares.

Nothing here imports torch at import time; scikit-learn is imported by `usefulness` only when a
task runs.
"""
