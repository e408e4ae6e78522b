"""Interval protection (obsx/indicators/protection.py) checked by an intruder written apart from it.

Random tables shaped like ours — a country, its provinces and districts; three months and their
quarter; victims in total and by sex (records with no sex make the total at least the sum) — go
through ``protect_intervals``; the intruder (tests/attacker.py) sees the published cells only and
bounds each withheld one by linear programming. Every small count must keep an interval at least
as wide as its protection (0 .. threshold by default) and no withheld cell may be pinned.
"""

import itertools

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from obsx.indicators.protection import protect_intervals
from tests.attacker import intervals

THRESHOLD = 5


def _table(provinces: list[int], rng: np.random.Generator):
    """Cells (area, period, category) with their true counts, and the table's relations."""
    districts = [(p, d) for p, n in enumerate(provinces) for d in range(n)]
    months = [0, 1, 2]
    finest = {}
    for (p, d), m in itertools.product(districts, months):
        # mostly small counts, some zeros, now and then a large one
        female, male = rng.choice([0, 0, 1, 1, 2, 3, 4, 7, 12], size=2)
        finest[(p, d, m)] = (female, male, int(rng.random() < 0.2))
    areas = [("N",)] + [("P", p) for p in range(len(provinces))] + [("D", *pd) for pd in districts]
    periods = ["m0", "m1", "m2", "Q"]
    categories = ["T", "F", "M"]
    index = {c: i for i, c in enumerate(itertools.product(areas, periods, categories))}
    values = np.zeros(len(index))

    def within(area):
        return [k for k in districts if area == ("N",) or area[1:] == k[: len(area) - 1]]

    for (area, period, cat), i in index.items():
        ms = months if period == "Q" else [int(period[1])]
        total = 0
        for k in within(area):
            for m in ms:
                f, mm, unknown = finest[(*k, m)]
                total += {"F": f, "M": mm, "T": f + mm + unknown}[cat]
        values[i] = total
    eq, ge = [], []
    for period, cat in itertools.product(periods, categories):
        eq.append(((("N",), period, cat), [(("P", p), period, cat) for p in range(len(provinces))]))
        for p, n in enumerate(provinces):
            eq.append(((("P", p), period, cat), [(("D", p, d), period, cat) for d in range(n)]))
    for area, cat in itertools.product(areas, categories):
        eq.append(((area, "Q", cat), [(area, m, cat) for m in ("m0", "m1", "m2")]))
    for area, period in itertools.product(areas, periods):
        ge.append(((area, period, "T"), [(area, period, "F"), (area, period, "M")]))
    eq = [(index[t], tuple(index[p] for p in parts)) for t, parts in eq]
    ge = [(index[t], tuple(index[p] for p in parts)) for t, parts in ge]
    level = np.array([{"N": 2, "P": 1, "D": 0}[a[0]] for a, _, _ in index])
    headline = np.array([a == ("N",) and c == "T" for a, _, c in index])
    return values, eq, ge, level, headline


def _intruder_matrix(relations, n):
    """The intruder's own rows: total - sum(parts) (= 0 or >= 0)."""
    r, c, d = [], [], []
    for k, (total, parts) in enumerate(relations):
        r += [k] * (1 + len(parts))
        c += [total, *parts]
        d += [1.0] + [-1.0] * len(parts)
    return sp.coo_array((d, (r, c)), shape=(len(relations), n)).tocsr()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
    st.sampled_from([None, 2, 3]),
)
def test_no_small_count_is_narrowed_and_no_withheld_cell_pinned(provinces, seed, width):
    values, eq, ge, level, headline = _table(provinces, np.random.default_rng(seed))
    n = values.size
    primary = (values > 0) & (values < THRESHOLD)
    w = THRESHOLD if width is None else width
    low = np.maximum(0.0, np.minimum(values, THRESHOLD - w))

    found = protect_intervals(
        values,
        primary,
        eq,
        ge,
        known_low=np.zeros(n),
        known_high=np.full(n, np.inf),
        target_low=low,
        target_high=low + w,
        price=10.0**level,
        protected=headline,
    )

    assert not found.unprotected
    published = np.where(found.withheld, np.nan, values)
    need = np.where(primary, w, 1e-3)
    lo, hi = intervals(
        _intruder_matrix(eq, n),
        _intruder_matrix(ge, n),
        published,
        np.zeros(n),
        np.full(n, np.inf),
        need,
    )
    hidden = np.flatnonzero(found.withheld)
    assert (hi[hidden] - lo[hidden] > 1e-6).all(), "a withheld cell is pinned"
    small = np.flatnonzero(primary)
    assert (hi[small] - lo[small] >= w - 1e-6).all(), "a small count is narrowed"


def test_four_districts_of_one_under_a_published_total_are_protected_by_the_total():
    # the case: October's national total of 4 kidnappings over four districts of 1
    found = protect_intervals(
        [4, 1, 1, 1, 1],
        [False, True, True, True, True],
        [(0, (1, 2, 3, 4))],
        known_low=[0] * 5,
        known_high=[np.inf] * 5,
        target_low=[0] * 5,
        target_high=[5] * 5,
    )
    assert found.withheld.all()
    lo, hi = intervals(
        _intruder_matrix([(0, (1, 2, 3, 4))], 5),
        _intruder_matrix([], 5),
        np.full(5, np.nan),
        np.zeros(5),
        np.full(5, np.inf),
    )
    assert (hi[1:] - lo[1:] >= 5).all()


def test_a_headline_is_withheld_only_when_nothing_finer_protects():
    # nation 40 = province A (3 + 7) + province B (30): the small 3 is protected by its sibling
    # 7 and the province, never by the nation
    values = [40, 10, 30, 3, 7]
    eq = [(0, (1, 2)), (1, (3, 4))]
    found = protect_intervals(
        values,
        [False, False, False, True, False],
        eq,
        known_low=[0] * 5,
        known_high=[np.inf] * 5,
        target_low=[0] * 5,
        target_high=[5] * 5,
        price=[100, 10, 10, 1, 1],
        protected=[True, False, False, False, False],
    )
    assert found.withheld.tolist() == [False, False, False, True, True]
