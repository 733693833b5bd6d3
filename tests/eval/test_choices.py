"""Multiple-choice answer extraction on the answer styles models actually produce."""

from __future__ import annotations

import pytest

from oryx_mllm.eval.choices import choice_accuracy, extract_choice, option_letters

OPTIONS = ["Clean water", "Toxic waste", "Fresh air", "Dark red paint"]


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "b",
        "(B)",
        "(b)",
        "B.",
        "B:",
        "[B]",
        " B ",
        "The answer is B.",
        "the answer is (b)",
        "Answer: B",
        "Option B is right.",
        "B. Toxic waste",
        "B Toxic waste",
        "(B) Toxic waste",
        "Toxic waste",
        "toxic waste.",
        "It is toxic waste, clearly.",
        "I'd say B",
    ],
)
def test_extracts_b(text):
    assert extract_choice(text, OPTIONS) == "B"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A cat sits on the mat", None),  # the article "A" is not a choice
        ("", None),
        ("I don't know", None),
        ("Clean water or toxic waste", None),  # ambiguous
        ("E", None),  # not an option
        ("dark red paint", "D"),
        ("A", "A"),
    ],
)
def test_other_cases(text, expected):
    assert extract_choice(text, OPTIONS) == expected


def test_longest_option_text_wins_and_letter_mappings():
    opts = {"A": "red", "B": "dark red"}
    assert extract_choice("It looks dark red", opts) == "B"
    assert extract_choice("red", opts) == "A"
    assert option_letters(["x", "y"]) == {"A": "x", "B": "y"}
    # option texts that carry their own letter (MMBench/VideoMME style)
    assert extract_choice("Toxic waste", ["A. Clean water", "B. Toxic waste"]) == "B"


def test_choice_accuracy():
    preds = ["B", "The answer is C.", "toxic waste", "no idea"]
    golds = ["B", "C", "Toxic waste", "A"]
    assert choice_accuracy(preds, golds, [OPTIONS] * 4) == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        choice_accuracy(["A"], ["Z text"], [OPTIONS])
