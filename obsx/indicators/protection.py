"""Interval protection of withheld counts: what an intruder with a linear program cannot narrow.

The intruder knows every published cell, the relations among cells (``equalities``: a total is the
sum of its parts; ``inequalities``: a total is at least the sum of some of its parts, a subset is at
most its set), that counts are not negative, and the public rule that a withheld *primary* cell
holds ``known_low .. known_high`` (1 to threshold - 1). For a withheld cell it minimises and
maximises the cell over everything consistent with that: an LP, as statistical offices' audits
do (tau-ARGUS, sdcTable).

The requirement, per primary cell ``p``: the intruder's interval reaches ``target_low[p]`` and
``target_high[p]`` (by default the whole public range: the intruder learns nothing more), and no
withheld cell is pinned.

How it is met (Fischetti and Salazar's protection LP, one at a time): for each primary cell and
each side, a *certificate* is a change ``y`` of the cells that keeps every relation, moves no
published cell, keeps every withheld cell inside what the intruder knows of it, and moves ``p``
to its target. ``values + y`` is then a table the intruder cannot rule out, so its interval for
``p`` reaches the target. Published cells may enter a certificate at a price (their cost, a
headline's far higher): those that do are withheld (secondary). A certificate stays one when
more cells are withheld (the intruder's feasible set only grows), so one pass over the primary
cells suffices; each secondary cell moves in the certificate that chose it, so none is pinned.
The LP is solved over a neighbourhood of the cell (two, then three rings of shared relations),
then over its connected part of the table: sparse, never a dense matrix. Headline figures are
used last, tier by tier (``protected``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

TOL = 1e-7
# The first neighbourhood tried: this many rings of shared relations around the cell.
FIRST_RING = 2
LAST_RING = 3  # then the whole connected part


@dataclass
class Protection:
    """The cells to withhold and what could not be protected (with why)."""

    withheld: np.ndarray  # hidden from the intruder
    chosen: np.ndarray  # primary and secondary: the rows showing one of them are withheld
    unprotected: dict[int, str] = field(default_factory=dict)
    lps: int = 0


@dataclass
class Move:
    """A certificate: the cells it moves (sorted) and by how much."""

    cells: np.ndarray
    moves: np.ndarray

    def at(self, cell: int) -> float:
        i = int(np.searchsorted(self.cells, cell))
        return float(self.moves[i]) if i < self.cells.size and self.cells[i] == cell else 0.0


def _highs(c, low, high, A: sp.csc_array, row_low, row_high) -> np.ndarray | None:
    """Minimise c @ x over low <= x <= high, row_low <= A x <= row_high (HiGHS); None when
    infeasible."""
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_ = c
    lp.col_lower_ = np.where(np.isinf(low), -inf, low)
    lp.col_upper_ = np.where(np.isinf(high), inf, high)
    lp.row_lower_ = np.where(np.isinf(row_low), -inf, row_low)
    lp.row_upper_ = np.where(np.isinf(row_high), inf, row_high)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = A.shape[1], A.shape[0]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.asarray(h.getSolution().col_value)


def _matrix(relations: Sequence, n: int, total_sign: float) -> sp.csr_array:
    rows, cols, data = [], [], []
    for r, (total, parts) in enumerate(relations):
        rows.append(r)
        cols.append(int(total))
        data.append(total_sign)
        for p in parts:
            rows.append(r)
            cols.append(int(p))
            data.append(-total_sign)
    matrix = sp.coo_array((data, (rows, cols)), shape=(len(relations), n)).tocsr()
    matrix.sum_duplicates()
    return matrix


def protect_intervals(
    values,
    primary,
    equalities: Sequence = (),
    inequalities: Sequence = (),
    *,
    known_low,
    known_high,
    target_low,
    target_high,
    price=None,
    rows: Sequence[Sequence[int]] | None = None,
    protected=None,
) -> Protection:
    """The cells to withhold so that every primary cell's LP interval reaches its targets.

    ``equalities``: ``(total, parts)`` with ``values[total] == sum(values[parts])``;
    ``inequalities``: ``(total, parts)`` with ``values[total] >= sum(values[parts])``. Both are
    checked against ``values``. ``known_low/high``: what the intruder knows of each cell once
    withheld (per cell; ``inf`` for no upper bound). ``target_low/high``: the interval a primary
    cell's must reach. ``price``: per cell, what withholding it costs (default 1 + its value).
    ``rows``: the published rows, each the cells it shows (a share shows its numerator and
    denominator: withholding one hides both in that row); default one row per cell. A row is
    withheld when a cell chosen (``Protection.chosen``) is in it; a cell is hidden from the
    intruder when every row showing it is withheld. A cell hidden only with its rows, which no
    certificate moved, gets a certificate of its own, so that it is not pinned either.
    ``protected``: per cell, 0, or the tier of a headline figure (1: first-level totals, 2: the
    national ones): a certificate uses a headline only when the whole connected part offers
    nothing without it, and a later tier only when the earlier do not do: they stay published
    unless they must not.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    primary = np.asarray(primary, dtype=bool)
    known_low, known_high = (np.asarray(a, dtype=np.float64) for a in (known_low, known_high))
    target_low, target_high = (np.asarray(a, dtype=np.float64) for a in (target_low, target_high))
    price = 1.0 + values if price is None else np.asarray(price, dtype=np.float64)
    tier = np.zeros(n, np.int64) if protected is None else np.asarray(protected, dtype=np.int64)
    last_tier = int(tier.max(initial=0))
    E = _matrix(equalities, n, 1.0)
    G = _matrix(inequalities, n, -1.0)  # G @ values <= 0
    if E.shape[0] and np.abs(E @ values).max() > 1e-6:
        raise ValueError("an equality does not hold in the data")
    if G.shape[0] and (G @ values).max() > 1e-6:
        raise ValueError("an inequality does not hold in the data")
    slack = -(G @ values)
    # every relation as a row with bounds on the change: E y = 0, G y <= slack
    A_csc = sp.vstack([E, G]).tocsc()
    A_csc.sort_indices()
    pattern_csr = A_csc.tocsr()  # relation -> cells
    row_low = np.concatenate([np.zeros(E.shape[0]), np.full(G.shape[0], -np.inf)])
    row_high = np.concatenate([np.zeros(E.shape[0]), slack])

    withheld = np.zeros(n, dtype=bool)  # hidden from the intruder (set from ``chosen`` below)
    chosen = np.zeros(n, dtype=bool)
    reach_up = np.zeros(n)  # the largest and smallest move of each cell in a certificate
    reach_down = np.zeros(n)
    result = Protection(withheld, chosen)

    # Everything below works on the cells of a neighbourhood only (index arrays, sliced
    # matrices): no step costs in proportion to the whole table, however many LPs it takes.
    def neighbourhood(cells: np.ndarray) -> np.ndarray:
        relations = np.unique(A_csc[:, cells].indices)
        if not relations.size:
            return cells
        return np.union1d(cells, pattern_csr[relations].indices)

    def certificate(p: int, delta: float, allowed: int = 0) -> Move | None:
        """A certificate moving ``p`` by ``delta`` using headlines of tier ``allowed`` at most,
        else (at the last tier) by as much as the relations allow; None: not at all, or not
        without a headline of a later tier.

        Tried without headlines on the rings ``FIRST_RING`` .. ``LAST_RING`` around ``p``, then
        (tier 0: not at all) on the whole connected part at once: a cell that needs more than a
        few rings usually needs a headline, and growing ring by ring cost an LP per ring."""
        region = np.array([p])
        ring = 0
        while True:
            grown = neighbourhood(region)
            ring += 1
            stopped = grown.size == region.size
            region = grown
            if ring < FIRST_RING and not stopped:
                continue
            if ring > LAST_RING and not stopped:
                if not allowed:
                    return None
                continue  # no LP until the whole part
            result.lps += 1
            y = _solve(p, delta, region, 0)
            if y is not None:
                return y
            if not stopped:
                continue
            if not allowed:
                return None
            # The whole connected part, and only a headline would do: the cheapest that does.
            result.lps += 1
            y = _solve(p, delta, region, allowed)
            if y is not None or allowed < last_tier:
                return y
            result.lps += 2  # how far can p move at all?
            most = _solve(p, delta, region, allowed, furthest=True)
            if most is None or abs(most.at(p)) <= TOL:
                return None
            return _solve(p, most.at(p) * (1 - 1e-9), region, allowed)

    def _solve(p: int, delta: float, cells: np.ndarray, allowed: int, furthest=False):
        held = cells[withheld[cells]]
        free = cells[~withheld[cells] & (tier[cells] <= allowed)]
        k, f = held.size, free.size
        both = np.concatenate([held, free])
        columns = A_csc[:, both]
        touched = np.unique(columns.indices)
        block = sp.csc_array(
            (columns.data, np.searchsorted(touched, columns.indices), columns.indptr),
            shape=(touched.size, both.size),
        )
        A = sp.hstack([block, -block[:, k:]]).tocsc()  # columns: held, free up, free down
        low = np.concatenate([known_low[held] - values[held], np.zeros(2 * f)])
        high = np.concatenate(
            [known_high[held] - values[held], known_high[free] - values[free]]
            + [values[free] - known_low[free]]
        )
        i = int(np.searchsorted(held, p))
        c = np.concatenate([np.zeros(k), price[free], price[free]])
        if furthest:  # move p as far towards delta as anything allows, whatever it costs
            low[i], high[i] = sorted((0.0, delta))
            c = np.zeros(k + 2 * f)
            c[i] = -np.sign(delta)
        else:
            low[i] = high[i] = delta
        x = _highs(c, low, high, A, row_low[touched], row_high[touched])
        if x is None:
            return None
        move = np.concatenate([x[:k], x[k : k + f] - x[k + f :]])
        moved = np.flatnonzero(np.abs(move) > TOL)
        order = moved[np.argsort(both[moved])]
        return Move(both[order], move[order])

    rows = [(c,) for c in range(n)] if rows is None else [tuple(map(int, r)) for r in rows]
    rows_of: list[list[int]] = [[] for _ in range(n)]
    for r, cells in enumerate(rows):
        for c in cells:
            rows_of[c].append(r)
    row_out = np.zeros(len(rows), dtype=bool)

    def withhold(cells: np.ndarray) -> None:
        for c in cells.tolist():
            if chosen[c]:
                continue
            chosen[c] = withheld[c] = True
            for r in rows_of[c]:
                if row_out[r]:
                    continue
                row_out[r] = True
                for other in rows[r]:
                    if not withheld[other] and all(row_out[q] for q in rows_of[other]):
                        withheld[other] = True

    withhold(np.flatnonzero(primary))

    def record(y: Move) -> None:
        withhold(y.cells[~withheld[y.cells]])  # hidden ones (with their rows) stay as they are
        np.maximum.at(reach_up, y.cells, y.moves)
        np.minimum.at(reach_down, y.cells, y.moves)

    def protect(p: int, allowed: int) -> bool:
        """Certificates for both sides of small count ``p``; False when one needs a headline
        of a tier above ``allowed`` (the cell waits for the next pass)."""
        width = target_high[p] - target_low[p]
        low = target_low[p]
        for side in ("upper", "lower"):
            delta = (target_high[p] if side == "upper" else low) - values[p]
            if abs(delta) <= TOL:
                continue
            if (delta > 0 and reach_up[p] >= delta - TOL) or (
                delta < 0 and reach_down[p] <= delta + TOL
            ):
                continue  # a certificate found for another cell moves this one as far
            y = certificate(p, delta, allowed)
            if y is None and allowed < last_tier:
                return False
            if y is None or abs(y.at(p) - delta) > 1e-6:
                reached = values[p] + (0.0 if y is None else y.at(p))
                result.unprotected[p] = (
                    f"the relations hold it at {reached:g} on the "
                    f"{side} side (target {values[p] + delta:g})"
                )
                if side == "upper":  # widen downwards what cannot be had upwards
                    low = max(known_low[p], min(low, reached - width))
            if y is not None:
                record(y)
        return True

    # First every small count that finer cells can protect, then those that need a headline,
    # tier by tier (first-level totals before the national one): by then the passes before
    # have withheld cells that often protect them without one.
    waiting = np.flatnonzero(primary).tolist()
    for allowed in range(last_tier + 1):
        waiting = [p for p in waiting if not protect(p, allowed)]
    # Cells no certificate moves (withheld only with their row): a certificate that moves
    # each, else it is pinned.
    while True:
        still = np.flatnonzero(withheld & ~primary & (reach_up <= TOL) & (reach_down >= -TOL))
        if not still.size:
            return result
        for cell in still.tolist():
            if reach_up[cell] > TOL or reach_down[cell] < -TOL:
                continue  # moved by the certificate of a cell before it
            # the rings, then the whole part (headlines last, tier by tier, as for small counts)
            downward = -min(1.0, values[cell] - known_low[cell])
            tries = [(d, a) for a in range(max(last_tier, 1) + 1) for d in (1.0, downward)]
            for delta, allowed in tries:
                y = certificate(cell, delta, allowed) if abs(delta) > TOL else None
                if y is not None and abs(y.at(cell)) > TOL:
                    record(y)
                    break
            else:
                result.unprotected[cell] = "hidden with its rows, and pinned by the relations"
                reach_up[cell] = np.inf  # not asked again
