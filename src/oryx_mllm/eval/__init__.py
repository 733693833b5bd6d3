"""Evaluation: metrics, multiple-choice extraction, the lmms-eval adapter, the held-out synthetic
evaluation and the paper's experiments in miniature.

- :mod:`oryx_mllm.eval.metrics`: BLEU-1/2, METEOR, ROUGE-L, CIDEr (pycocoevalcap) and exact match
- :mod:`oryx_mllm.eval.choices`: multiple-choice answer extraction and accuracy
- :mod:`oryx_mllm.eval.lmms`: ``lmms-eval --model oryx`` (imports lmms-eval when available)
- :mod:`oryx_mllm.eval.synthetic`: held-out synthetic accuracy per task
- :mod:`oryx_mllm.eval.paper`: ``oryx eval paper`` (needle, resolution, compression, coarse
  correspondences, efficiency)

Submodules are imported on demand (nothing heavy is imported here). See ``docs/evaluation.md``.
"""
