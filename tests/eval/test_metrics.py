"""Captioning metrics and exact match on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from oryx_mllm.eval.metrics import (
    caption_metrics,
    caption_tokens,
    exact_match,
    exact_match_accuracy,
    java_available,
    normalize_answer,
)

NO_METEOR = ["BLEU-1", "BLEU-2", "ROUGE-L", "CIDEr"]


def test_bleu_and_rouge_of_a_short_prefix():
    # "the cat sat" vs "the cat sat on the mat": every 1- and 2-gram of the candidate matches
    # (precision 1), brevity penalty exp(1 - 6/3) = e^-1; LCS = 3 -> P = 1, R = 1/2 and
    # ROUGE-L (beta 1.2) = (1 + 1.44) * 1 * 0.5 / (0.5 + 1.44 * 1) = 1.22 / 1.94.
    s = caption_metrics({"q1": "The cat sat."}, {"q1": ["the cat sat on the mat"]}, NO_METEOR)
    assert s["BLEU-1"] == pytest.approx(100 * math.exp(-1), abs=1e-4)
    assert s["BLEU-2"] == pytest.approx(100 * math.exp(-1), abs=1e-4)
    assert s["ROUGE-L"] == pytest.approx(100 * 1.22 / 1.94, abs=1e-6)
    assert s["CIDEr"] == 0.0  # one document: every n-gram has IDF log(1/1) = 0


def test_cider_on_a_two_document_corpus():
    # Doc 1 matches exactly with 1- and 2-grams only (n = 3, 4 have no n-grams: cos = 0):
    # 10 * (1 + 1 + 0 + 0) / 4 = 5; doc 2 shares nothing: 0. Corpus mean 2.5 -> x100 = 250.
    s = caption_metrics(
        {"1": "red chair", "2": "blue lamp"}, {"1": ["red chair"], "2": ["green sofa"]}, ["CIDEr"]
    )
    assert s["CIDEr"] == pytest.approx(250.0)
    # Exact 4-word matches with disjoint vocabularies: cos = 1 for n = 1..4 -> 10 -> 1000.
    s = caption_metrics(
        {"1": "a b c d", "2": "e f g h"}, {"1": ["a b c d"], "2": ["e f g h"]}, ["CIDEr"]
    )
    assert s["CIDEr"] == pytest.approx(1000.0)


@pytest.mark.skipif(not java_available(), reason="METEOR runs meteor-1.5.jar: needs java on PATH")
def test_meteor_hand_computed():
    # "red chair" vs "red chair blue window": m = 2 exact matches, P = 1, R = 1/2,
    # Fmean = P R / (0.85 P + 0.15 R) = 0.5 / 0.925; one chunk: penalty 0.6 (1/2)^0.2;
    # METEOR = Fmean (1 - penalty) = 0.25820.
    s = caption_metrics({"1": "red chair"}, {"1": ["red chair blue window"]}, ["METEOR"])
    expected = 0.5 / 0.925 * (1 - 0.6 * 0.5**0.2)
    assert s["METEOR"] == pytest.approx(100 * expected, abs=1e-3)
    full = caption_metrics({"1": "red chair"}, {"1": ["red chair", "a sofa"]})
    assert list(full) == ["BLEU-1", "BLEU-2", "METEOR", "ROUGE-L", "CIDEr"]
    assert full["METEOR"] == pytest.approx(100.0)


def test_caption_metrics_checks_its_inputs():
    with pytest.raises(ValueError, match="different ids"):
        caption_metrics({"a": "x"}, {"b": ["x"]}, ["BLEU-1"])
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({"a": "x"}, {"a": "x"}, ["BLEU-1"])
    with pytest.raises(ValueError, match="unknown metrics"):
        caption_metrics({"a": "x"}, {"a": ["x"]}, ["SPICE"])


def test_normalisation_and_exact_match():
    assert caption_tokens("A red, Chair!") == "a red chair"
    assert normalize_answer("The  Seven.") == "7"
    assert normalize_answer("a blue cube") == "blue cube"
    assert exact_match("Seven", "7")
    assert exact_match("The answer is: Triangle.", ["circle", "triangle"])
    assert not exact_match("37", "7")
    assert exact_match_accuracy(["yes", "No.", "4"], ["yes", "yes", "four"]) == pytest.approx(2 / 3)
    assert exact_match_accuracy([], []) == 0.0
