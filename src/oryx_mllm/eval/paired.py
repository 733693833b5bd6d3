"""Compare two evaluations of the same samples (e.g. multi-view counting with and without
coarse-correspondence marks): per-sample agreement and an exact McNemar test.

Two reports of :mod:`oryx_mllm.eval.synthetic` on the same seed and tasks score the *same*
samples under two conditions, so the fair test of "A is better than B" looks only at the samples
where they disagree: ``a_only`` (A right, B wrong) against ``b_only``. Under "no difference" each
disagreement is a fair coin, and the exact two-sided McNemar p-value is the binomial tail.

    python -m oryx_mllm.eval.paired runs/tiny/eval/marks.json runs/tiny/eval/no_marks.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from oryx_mllm.errors import DataError
from oryx_mllm.files import read_json


@dataclass
class PairedComparison:
    n: int  # samples scored in both reports
    accuracy_a: float
    accuracy_b: float
    both: int  # right in both
    a_only: int  # right in A, wrong in B
    b_only: int
    neither: int
    p_value: float  # exact two-sided McNemar test on (a_only, b_only)


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: P(a binomial(a_only + b_only, 1/2) is at least as far
    from its mean as the observed split). 1.0 when there is no disagreement."""
    if a_only < 0 or b_only < 0:
        raise ValueError("counts must be >= 0")
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _outcomes(report: dict, name: str) -> dict[str, bool]:
    """``{sample id: correct}`` of a report; :class:`DataError` naming ``name`` (its file) and the
    sample unless every sample has a unique string ``id`` and a boolean ``correct``."""
    samples = report.get("samples") if isinstance(report, dict) else None
    if not isinstance(samples, list):
        raise DataError(f"{name}: no per-sample results (write it with eval.synthetic)")
    out: dict[str, bool] = {}
    for s in samples:
        if not isinstance(s, dict) or "id" not in s or "correct" not in s:
            raise DataError(f"{name}: a sample result without 'id' and 'correct': {s!r:.80}")
        sid, ok = s["id"], s["correct"]
        if not isinstance(sid, str):
            raise DataError(f"{name}: sample ids must be strings, got {sid!r:.80}")
        if not isinstance(ok, bool):
            raise DataError(f"{name}: sample {sid!r}: 'correct' must be true or false, got {ok!r}")
        if sid in out:
            raise DataError(f"{name}: sample {sid!r} appears twice")
        out[sid] = ok
    return out


def compare(
    a: dict, b: dict, names: tuple[str, str] = ("report A", "report B")
) -> PairedComparison:
    """Paired comparison of two reports (``{"samples": [{"id", "correct"}, ...]}``) on the
    samples they share; ``names`` (e.g. their files) label errors. Raises :class:`DataError` if
    a report is malformed (see :func:`_outcomes`) or they share no sample."""
    right_a, right_b = _outcomes(a, names[0]), _outcomes(b, names[1])
    pairs = [(ok, right_b[sid]) for sid, ok in right_a.items() if sid in right_b]
    if not pairs:
        raise DataError("the two reports share no sample ids (same --tasks and seed?)")
    return compare_pairs(pairs)


def compare_pairs(pairs: Sequence[tuple[bool, bool]]) -> PairedComparison:
    """Paired comparison of ``(right under A, right under B)`` per sample (at least one)."""
    if not pairs:
        raise ValueError("compare_pairs needs at least one pair")
    both = sum(x and y for x, y in pairs)
    a_only = sum(x and not y for x, y in pairs)
    b_only = sum(y and not x for x, y in pairs)
    n = len(pairs)
    return PairedComparison(
        n=n,
        accuracy_a=(both + a_only) / n,
        accuracy_b=(both + b_only) / n,
        both=both,
        a_only=a_only,
        b_only=b_only,
        neither=n - both - a_only - b_only,
        p_value=mcnemar_exact_p(a_only, b_only),
    )


def _load(path: str) -> dict:
    """The report in ``path``; a missing, unreadable, non-JSON or non-object file is a
    :class:`DataError` naming it."""
    return read_json(path, DataError)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oryx_mllm.eval.paired", description=__doc__)
    p.add_argument("a", help="report A (eval.synthetic's JSON)")
    p.add_argument("b", help="report B, same samples")
    args = p.parse_args(argv)
    try:
        result = compare(_load(args.a), _load(args.b), names=(args.a, args.b))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result)))
    print(
        f"A {result.accuracy_a:.1%} vs B {result.accuracy_b:.1%} on {result.n} paired samples: "
        f"A only {result.a_only}, B only {result.b_only}, both {result.both}, neither "
        f"{result.neither}; exact McNemar p = {result.p_value:.2g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
