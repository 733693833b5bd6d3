"""Paired comparison of two evaluations (oryx_mllm.eval.paired)."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import pytest

from oryx_mllm.errors import DataError
from oryx_mllm.eval.paired import compare, compare_pairs, main, mcnemar_exact_p


def _brute_force_p(a_only: int, b_only: int) -> float:
    """Enumerate every sign pattern of the disagreements: the share at least as unbalanced."""
    n = a_only + b_only
    observed = abs(a_only - b_only)
    hits = sum(abs(2 * sum(bits) - n) >= observed for bits in itertools.product((0, 1), repeat=n))
    return float(Fraction(hits, 2**n))


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (3, 0), (5, 5), (9, 2), (1, 12), (4, 6)])
def test_mcnemar_p_equals_enumeration(a_only, b_only):
    assert mcnemar_exact_p(a_only, b_only) == pytest.approx(_brute_force_p(a_only, b_only))


def test_mcnemar_known_value():
    # 22 vs 4 disagreements: 2 * P(Binomial(26, 1/2) <= 4) = 2 * 17902 / 2**26
    assert mcnemar_exact_p(22, 4) == pytest.approx(2 * 17902 / 2**26)


def _report(correct: dict[str, bool]) -> dict:
    return {"samples": [{"id": k, "correct": v} for k, v in correct.items()]}


def test_compare_counts_only_shared_samples():
    a = _report({"s:0": True, "s:1": True, "s:2": False, "s:3": True, "only_a": True})
    b = _report({"s:0": True, "s:1": False, "s:2": False, "s:3": False, "only_b": False})
    r = compare(a, b)
    assert (r.n, r.both, r.a_only, r.b_only, r.neither) == (4, 1, 2, 0, 1)
    assert (r.accuracy_a, r.accuracy_b) == (0.75, 0.25)
    assert r.p_value == 0.5  # 2 of 2 disagreements: 2 * 1/4
    with pytest.raises(DataError, match="share no sample"):
        compare(a, _report({"x": True}))
    with pytest.raises(DataError, match="without 'id' and 'correct'"):
        compare(a, {"samples": [{"id": "s:0"}]})


def test_compare_pairs_counts_each_outcome_and_needs_a_pair():
    r = compare_pairs([(True, True), (True, False), (False, False), (True, False)])
    assert (r.n, r.both, r.a_only, r.b_only, r.neither) == (4, 1, 2, 0, 1)
    with pytest.raises(ValueError, match="at least one pair"):
        compare_pairs([])


def test_cli_reads_reports_and_names_bad_files(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report({"s:0": True, "s:1": True})))
    b.write_text(json.dumps(_report({"s:0": False, "s:1": True})))
    assert main([str(a), str(b)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["a_only"] == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json"), str(b)]) == 2
    assert main([str(tmp_path / "missing.json"), str(b)]) == 2
    err = capsys.readouterr().err
    assert "bad.json is not valid JSON" in err
    assert "cannot read " in err and "missing.json: [Errno 2] No such file" in err


def _cli_error(tmp_path, capsys, a_text: str | bytes) -> tuple[str, str]:
    """Run the CLI on report A = ``a_text`` and a valid B; assert exit 2; return (A's path, err)."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_bytes(a_text.encode() if isinstance(a_text, str) else a_text)
    b.write_text(json.dumps(_report({"s:0": False, "s:1": True})))
    assert main([str(a), str(b)]) == 2
    return str(a), capsys.readouterr().err


def test_cli_rejects_a_string_correct_naming_file_and_sample(tmp_path, capsys):
    text = json.dumps({"samples": [{"id": "s:0", "correct": "false"}]})
    a, err = _cli_error(tmp_path, capsys, text)
    assert f"error: {a}: sample 's:0': 'correct' must be true or false, got 'false'" in err


def test_cli_rejects_a_report_that_is_not_utf8(tmp_path, capsys):
    a, err = _cli_error(tmp_path, capsys, b'{"samples": [{"id": "\xff", "correct": true}]}')
    assert f"error: {a} is not valid JSON: " in err and "utf-8" in err


def test_cli_rejects_list_sample_ids_naming_the_file(tmp_path, capsys):
    a, err = _cli_error(
        tmp_path, capsys, json.dumps({"samples": [{"id": ["s", 0], "correct": True}]})
    )
    assert f"error: {a}: sample ids must be strings, got ['s', 0]" in err


def test_cli_rejects_a_sample_id_given_twice(tmp_path, capsys):
    text = json.dumps(
        {"samples": [{"id": "s:0", "correct": True}, {"id": "s:0", "correct": False}]}
    )
    a, err = _cli_error(tmp_path, capsys, text)
    assert f"error: {a}: sample 's:0' appears twice" in err


def test_compare_rejects_an_integer_correct():
    with pytest.raises(DataError, match="report B: sample 's:0': 'correct' must be true or false"):
        compare(_report({"s:0": True}), {"samples": [{"id": "s:0", "correct": 1}]})


def test_cli_rejects_a_report_that_is_not_a_json_object(tmp_path, capsys):
    a, err = _cli_error(tmp_path, capsys, json.dumps([{"id": "s:0", "correct": True}]))
    assert f"error: {a} must hold a JSON object, not a list" in err
