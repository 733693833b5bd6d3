"""Held-out samples and answer scoring shared with the synthetic evaluation
(:mod:`oryx_mllm.eval.synthetic`): the same generator kwargs the embedded model was trained with
(small pages for the text-reading tasks), the same needle span rule and the same answer
normalisation, so numbers here and in ``python -m oryx_mllm.eval.synthetic`` are comparable."""

from __future__ import annotations

import math

from oryx_mllm.data.synthetic import SyntheticSample, generate, list_tasks

try:
    from oryx_mllm.eval.synthetic import _default_kwargs, needle_span, normalize_answer
except ImportError:  # pragma: no cover - only while eval/synthetic.py is not in the tree
    from oryx_mllm.eval.metrics import normalize_answer  # noqa: F401

    def needle_span(num_frames: int, sampled: int) -> int:
        if sampled >= num_frames:
            return 1
        return math.ceil((num_frames - 1) / max(1, sampled - 1)) + 1

    def _default_kwargs(task: str) -> dict:
        return {}


def is_correct(prediction: str, answer: str) -> bool:
    """Exact match after the synthetic evaluation's normalisation."""
    return normalize_answer(prediction) == normalize_answer(answer)


def held_out(name: str, seed: int, per_task: int, **kwargs) -> list[SyntheticSample]:
    """``per_task`` samples of every task of family/task ``name`` (task by task), generated with
    the model's training kwargs for that task updated by ``kwargs``."""
    out = []
    for task in list_tasks(name):
        kw = {**_default_kwargs(task), **kwargs}
        out += [generate(task, seed, i, **kw) for i in range(per_task)]
    return out


__all__ = ["held_out", "is_correct", "needle_span", "normalize_answer"]
