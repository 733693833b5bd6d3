"""Captioning metrics for ScanQA-style open answers (paper Table 4): BLEU-1/2, METEOR, ROUGE-L and
CIDEr through the reference implementations of ``pycocoevalcap`` (the COCO caption toolkit), plus
exact-match scoring with answer normalisation for short open answers.

Conventions (those of the ScanQA / 3D-LLM / LLaVA-3D evaluation scripts):

- Every prediction and reference is lower-cased, punctuation is replaced by spaces and runs of
  whitespace collapse (:func:`caption_tokens`); no PTB tokenizer (it needs Java too and changes
  nothing for such short answers).
- Scores are **corpus-level** and reported **x100** (the scale of the paper's tables).
- METEOR runs ``meteor-1.5.jar`` (shipped inside pycocoevalcap) and therefore needs ``java`` on
  ``PATH``; :func:`java_available` tells, and :func:`caption_metrics` raises
  :class:`MissingJavaError` when METEOR is requested without it.
"""

from __future__ import annotations

import re
import shutil
import string
from collections.abc import Iterable, Mapping, Sequence

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "METEOR", "ROUGE-L", "CIDEr")

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACES = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
NUMBER_WORDS: dict[str, str] = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}


class MissingJavaError(RuntimeError):
    """METEOR was requested but no ``java`` executable is on ``PATH``."""


def java_available() -> bool:
    """Whether a ``java`` executable (needed by METEOR) is on ``PATH``."""
    return shutil.which("java") is not None


def caption_tokens(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed: ``"A red Chair."`` -> ``"a red
    chair"``."""
    return _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def caption_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Iterable[str] = CAPTION_METRICS,
) -> dict[str, float]:
    """Corpus-level captioning scores (x100) of ``predictions[id]`` against ``references[id]``.

    Both mappings must have the same ids; every id needs at least one reference. ``metrics`` is a
    subset of :data:`CAPTION_METRICS` (leave out ``"METEOR"`` where Java is unavailable).
    Returns ``{"BLEU-1": ..., "BLEU-2": ..., "METEOR": ..., "ROUGE-L": ..., "CIDEr": ...}``.

    Note CIDEr's IDF is computed over the given corpus: with a single id every n-gram has
    document frequency 1 and CIDEr is 0 by construction.
    """
    wanted = list(metrics)
    unknown = sorted(set(wanted) - set(CAPTION_METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {CAPTION_METRICS}")
    if set(predictions) != set(references):
        missing = sorted(set(references) ^ set(predictions))[:5]
        raise ValueError(f"predictions and references have different ids, e.g. {missing}")
    if not predictions:
        raise ValueError("no predictions to score")
    res: dict[str, list[str]] = {}
    gts: dict[str, list[str]] = {}
    for key, pred in predictions.items():
        refs = references[key]
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{key!r}] must be a non-empty list of strings")
        res[str(key)] = [caption_tokens(pred)]
        gts[str(key)] = [caption_tokens(r) for r in refs]

    out: dict[str, float] = {}
    if "BLEU-1" in wanted or "BLEU-2" in wanted:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(2).compute_score(gts, res, verbose=0)
        for n in (1, 2):
            if f"BLEU-{n}" in wanted:
                out[f"BLEU-{n}"] = 100.0 * float(bleu[n - 1])
    if "METEOR" in wanted:
        if not java_available():
            raise MissingJavaError(
                "METEOR needs Java (pycocoevalcap runs meteor-1.5.jar): install a JRE, e.g. "
                "`apt-get install default-jre-headless`, or leave METEOR out of `metrics`"
            )
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            score, _ = scorer.compute_score(gts, res)
        finally:
            scorer.meteor_p.kill()
        out["METEOR"] = 100.0 * float(score)
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        score, _ = Rouge().compute_score(gts, res)
        out["ROUGE-L"] = 100.0 * float(score)
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        score, _ = Cider().compute_score(gts, res)
        out["CIDEr"] = 100.0 * float(score)
    return {m: out[m] for m in CAPTION_METRICS if m in out}


# Exact match for short open answers --------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """Normalise a short open answer for exact match (SQuAD/VQA style): lower case, punctuation
    removed, articles dropped, number words zero-twelve to digits, whitespace collapsed.

    ``"The answer is: Seven."`` is *not* reduced to ``"7"`` (no prefix stripping); ``"Seven."``
    is. Use :func:`exact_match` for the usual "answer is" / "colour"/"color" leniency.
    """
    text = caption_tokens(text)
    text = _ARTICLES.sub(" ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(words)


_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.I)


def exact_match(prediction: str, answers: str | Sequence[str]) -> bool:
    """Whether ``prediction`` equals one of ``answers`` after :func:`normalize_answer`.

    A leading "The answer is" / "Answer:" is stripped from the prediction first.
    """
    golds = [answers] if isinstance(answers, str) else list(answers)
    pred = normalize_answer(_ANSWER_PREFIX.sub("", prediction.strip()))
    return any(pred == normalize_answer(g) for g in golds)


def exact_match_accuracy(
    predictions: Sequence[str], answers: Sequence[str | Sequence[str]]
) -> float:
    """Mean :func:`exact_match` over paired lists, in [0, 1] (0.0 for empty lists)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if not predictions:
        return 0.0
    return sum(exact_match(p, a) for p, a in zip(predictions, answers)) / len(predictions)


__all__ = [
    "CAPTION_METRICS",
    "MissingJavaError",
    "caption_metrics",
    "caption_tokens",
    "exact_match",
    "exact_match_accuracy",
    "java_available",
    "normalize_answer",
]
