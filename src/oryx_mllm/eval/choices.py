"""Multiple-choice answer extraction and accuracy (VideoMME, MVBench, MLVU, MMBench style).

Models answer a lettered question in many ways: ``"B"``, ``"(B)"``, ``"b"``, ``"The answer is
B."``, ``"B. Toxic waste"``, or just the option's text ``"Toxic waste"``. :func:`extract_choice`
maps all of these to the option letter, trying, in order:

1. the whole answer is a letter, possibly wrapped or followed by punctuation/the option text
   (``"B"``, ``"(b)"``, ``"B:"``, ``"B. Toxic waste"``);
2. an explicit statement: "answer is B", "answer: (B)", "option B", "choice B";
3. the text of exactly one option appears in the answer (the longest option text wins when one
   contains another, e.g. "dark red" over "red");
4. exactly one distinct upper-case option letter stands alone in the answer ("I'd say C"),
   not counting "A"/"I" used as a word ("A cat ...", "I think ...").

It returns ``None`` when nothing matches or the answer is ambiguous; :func:`choice_accuracy`
counts ``None`` as wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

Options = Sequence[str] | Mapping[str, str]

_LEAD = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]]?(?:\s*$|\s*[.:,)\]]|\s+[-–]\s|\s+\S)")
_STATED = re.compile(
    r"(?:answer|option|choice)\s*(?:is|would be|should be)?\s*[:\-]?\s*[\(\[]?\s*([A-Za-z])\b"
    r"\s*[\)\]]?",
    re.I,
)
_ALONE = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])")
_WORD_USE = re.compile(r"(?<![A-Za-z'])[AI]\s+[a-z]")  # the article "A" / pronoun "I"
_NON_WORD = re.compile(f"[{re.escape(string.punctuation)}\\s]+")


def option_letters(options: Options) -> dict[str, str]:
    """``{"A": text, "B": text, ...}`` from a list of option texts or a letter mapping."""
    if isinstance(options, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in options.items()}
    letters = string.ascii_uppercase
    if len(options) > len(letters):
        raise ValueError(f"at most {len(letters)} options, got {len(options)}")
    return {letters[i]: str(text) for i, text in enumerate(options)}


def _words(text: str) -> str:
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


def _strip_letter_prefix(text: str) -> str:
    """``"B. Toxic waste"`` / ``"(B) Toxic waste"`` -> ``"Toxic waste"`` (option texts in some
    benchmarks carry their letter)."""
    return re.sub(r"^\s*[\(\[]?[A-Za-z][\)\].:]\s+", "", text)


def extract_choice(text: str, options: Options) -> str | None:
    """The option letter ``text`` chooses (upper case), or ``None``. See the module docstring."""
    opts = option_letters(options)
    if not text or not text.strip():
        return None
    text = text.strip()

    m = _LEAD.match(text)
    if m and m.group(1).upper() in opts:
        letter = m.group(1).upper()
        # "A cat sits" must not read as option A: a lower/upper letter followed by a word only
        # counts when it is upper case and the rest is that option's text, or it is wrapped.
        rest = text[m.end(1) :].strip()
        wrapped = text.lstrip().startswith(("(", "["))
        if not rest or rest[0] in ".:,)]-–" or wrapped:
            return letter
        if m.group(1).isupper() and _words(rest) == _words(_strip_letter_prefix(opts[letter])):
            return letter

    m = _STATED.search(text)
    if m and m.group(1).upper() in opts:
        return m.group(1).upper()

    said = _words(text)
    hits = [
        (len(_words(_strip_letter_prefix(t))), k)
        for k, t in opts.items()
        if _words(_strip_letter_prefix(t)).strip() and _words(_strip_letter_prefix(t)) in said
    ]
    if hits:
        hits.sort(reverse=True)
        if len(hits) == 1 or hits[0][0] > hits[1][0]:
            return hits[0][1]
        return None

    words_used = {m.start() for m in _WORD_USE.finditer(text)}
    alone = {
        m.group(1)
        for m in _ALONE.finditer(text)
        if m.group(1) in opts and m.start() not in words_used
    }
    if len(alone) == 1:
        return alone.pop()
    return None


def choice_accuracy(
    predictions: Sequence[str],
    answers: Sequence[str],
    options: Sequence[Options],
) -> float:
    """Fraction of ``predictions`` whose extracted letter equals the gold letter ``answers[i]``.

    ``answers[i]`` is a letter ("B") or the gold option's text. Returns a value in [0, 1]
    (0.0 for empty input).
    """
    if not len(predictions) == len(answers) == len(options):
        raise ValueError("predictions, answers and options must have the same length")
    if not predictions:
        return 0.0
    correct = 0
    for pred, gold, opts in zip(predictions, answers, options):
        letters = option_letters(opts)
        gold_letter = gold.strip().upper() if gold.strip().upper() in letters else None
        if gold_letter is None:
            gold_letter = next(
                (k for k, v in letters.items() if _words(v) == _words(gold)),
                None,
            )
        if gold_letter is None:
            raise ValueError(f"gold answer {gold!r} is neither a letter nor an option text")
        correct += extract_choice(pred, letters) == gold_letter
    return correct / len(predictions)


__all__ = ["choice_accuracy", "extract_choice", "option_letters"]
