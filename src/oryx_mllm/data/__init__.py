"""Synthetic training/evaluation data and the tokenizer for the embedded tiny Oryx model.

- :mod:`oryx_mllm.data.synthetic`: deterministic generators of image, video, long-video and
  multi-view question/answer samples (:class:`SyntheticSample`), plus :func:`make_split`.
- :mod:`oryx_mllm.data.tokenizer`: a small byte-level BPE tokenizer with ChatML special tokens.
"""

from oryx_mllm.data.synthetic import (
    FAMILIES,
    TASKS,
    SyntheticSample,
    iter_task,
    iter_tasks,
    make_split,
    split_seed,
)

__all__ = [
    "FAMILIES",
    "TASKS",
    "SyntheticSample",
    "iter_task",
    "iter_tasks",
    "make_split",
    "split_seed",
]
