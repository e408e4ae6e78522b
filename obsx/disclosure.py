"""Statistical disclosure control for published count tables.

The ministry withholds small counts (1 to threshold - 1: primary suppression, decided by the
caller). Withholding them is not enough when the published table adds up: a withheld district
count of women is ``total - men``. This module audits a set of published cells the way an
attacker would, and chooses further cells to withhold (secondary suppression) until the audit
finds nothing. It knows nothing about where the cells come from.

The model:

- **cells** ``0 .. n-1``, each with a non-negative count ``values[i]`` (a float, integral in
  practice) — the true values, withheld ones included: the data owner runs the audit, and a
  withheld value is only used through the relations, which hold exactly;
- **relations**: additive identities ``values[total] == sum(values[p] for p in parts)`` the
  attacker knows (a district is the sum of nothing, a province the sum of its districts, a year of
  its quarters, a total of its sexes...). A relation with one part says two cells are the same
  number (the same count published in two tables): ``Relation(a, (b,))`` or ``equal(a, b)``.
  The caller passes only identities that hold exactly; they are checked.

The audit's assumption (the common *exact disclosure* criterion): the attacker combines the
relations linearly, over the reals, and knows that counts are not negative — but only uses that in
one cheap, real case: an equation whose remaining unknowns all enter with the same sign and whose
known remainder is 0 reveals every one of them as 0 (total 5, published parts 5: the withheld parts
are 0). Intervals from non-negativity (``0 <= x <= 3``, so the withheld cell is small) and integer
reasoning are not audited: that is the next step (interval / "protection level" attacks).

Functions: ``threshold_rule`` (primary suppression), ``recoverable`` and ``audit`` (the
attacker; ``audit`` also says how each cell is recovered, ``Finding``), ``secondary_suppression``
(the cells to withhold).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg
from scipy.sparse.csgraph import connected_components
from threadpoolctl import threadpool_limits

# Tolerances, for the SVD of what exact elimination leaves (see ``_determined``): matrices of
# small integers (0, +-1; a few +-2 or +-3 after substitution), a few dozen to about ten thousand
# columns per group (a national year: 1,600 equations over 10,800 cells). Rounding noise in their singular values is about eps * sigma_max * sqrt(k)
# < 1e-12, while the smallest non-zero singular value of such hierarchy/incidence matrices is of
# order 1/k (a path of k cells: about pi/(2k)), > 1e-4 here: a rank cut at 1e-9 * sigma_max lies
# orders of magnitude from both. A cell is "determined" when its row in the null-space basis is
# below 1e-6: when it is not determined, the null space holds a small-integer vector x with
# x_i != 0 (circuits of these matrices have entries 0, +-1, +-2), so that row is >= |x_i| / |x|
# >= 1 / sqrt(k) > 1e-2. (The rows are seen through ``_PROJECTION`` random directions, see
# ``_determined``.) Both cuts err on the safe side: a doubtful rank or row counts as
# "recoverable", which at worst withholds one cell too many.
RANK_RTOL = 1e-9
DETERMINED_TOL = 1e-6
# A count this close to 0 is 0 (values are integral in practice).
ZERO_TOL = 1e-9
# How far a relation may be off before it is refused (relative to the sum of its terms).
RELATION_RTOL = 1e-9
# Exact elimination leaves an unknown to the SVD core when substituting it would add more than
# this many coefficients (on a national year, 64 left cores of 1,600 x 10,800 and the audit of
# every cell took 17 s; 256: 3 s, the same cells); the null space is carried back on this many
# random directions.
_MAX_FILL = 256
_MAX_COEFFICIENT = 2**53  # exact in int64 and in float64 (see ``elimination.eliminate``)
_PROJECTION = 8
# Sizes (cells) of the LPs of ``_protection``: the whole connected part up to _LP_WHOLE, else
# rings from the first of _LP_SMALL cells.
_LP_WHOLE = 5000
_LP_SMALL = 400


def _one_blas_thread():
    """The audit's QR and SVD on one BLAS thread: the pipeline shares the machine with its other
    processes, and OpenBLAS's spinning threads then lose more than they gain (secondary
    suppression of a national year on the 2-core machine under load 2-3: 110 s with OpenBLAS's
    own threads, 55 s with one)."""
    return threadpool_limits(limits=1, user_api="blas")


class Relation(NamedTuple):
    """``values[total] == sum(values[p] for p in parts)``; one part: the two cells are equal."""

    total: int
    parts: tuple[int, ...]


def equal(a: int, b: int) -> Relation:
    """Cells ``a`` and ``b`` are the same number (one count published in two tables)."""
    return Relation(a, (b,))


RelationLike = Relation | tuple[int, Iterable[int]]


@dataclass(frozen=True)
class Finding:
    """How the attacker recovers one withheld cell.

    ``method`` is ``"single"`` (one equation with this cell as its only unknown), ``"zero"`` (an
    equation whose unknowns are all of one sign with a known remainder of 0: they are all 0) or
    ``"combination"`` (a linear combination of several equations).

    For ``single`` and ``zero``: ``relations`` is that equation (its index in the caller's list),
    ``published`` its published cells and ``via`` its withheld cells the attacker recovered
    before — the formula exactly. For ``combination``: ``relations`` are the equations of the
    cell's connected group (the formula uses some of them), ``published`` the published cells
    of the equations that contain the cell, ``via`` is empty.
    """

    cell: int
    method: str
    relations: tuple[int, ...]
    published: tuple[int, ...]
    via: tuple[int, ...]


def _as_relation(rel: RelationLike) -> Relation:
    if type(rel) is Relation:  # built by the caller as the type says: taken as it is
        return rel
    total, parts = rel
    return Relation(int(total), tuple(map(int, parts)))


def _split(indptr: np.ndarray, indices: np.ndarray) -> list[list[int]]:
    """The rows of a compressed sparse matrix's structure, as lists."""
    idx, ptr = indices.tolist(), indptr.tolist()
    return [idx[a:b] for a, b in zip(ptr[:-1], ptr[1:], strict=True)]


def _groups(matrix: sp.csr_array):
    """(columns, rows) of each connected group of a sparse matrix (columns linked by the rows
    they share), both sorted, in label order; groups without a row or a column are left out."""
    k = matrix.shape[1]
    graph = sp.block_array([[None, matrix.T], [matrix, None]], format="csr")
    ncomp, labels = connected_components(graph, directed=False)
    col_labels, row_labels = labels[:k], labels[k:]
    order_c = np.argsort(col_labels, kind="stable")
    order_r = np.argsort(row_labels, kind="stable")
    bounds_c = np.searchsorted(col_labels[order_c], np.arange(ncomp + 1))
    bounds_r = np.searchsorted(row_labels[order_r], np.arange(ncomp + 1))
    for lab in range(ncomp):
        C = order_c[bounds_c[lab] : bounds_c[lab + 1]]
        R = order_r[bounds_r[lab] : bounds_r[lab + 1]]
        if R.size and C.size:
            yield C, R


class _System:
    """The relations as a sparse matrix M (one row per relation): M @ values == 0."""

    def __init__(self, n: int, relations: Sequence[RelationLike]):
        rels = [_as_relation(r) for r in relations]
        m = len(rels)
        lengths = np.fromiter((len(rel.parts) for rel in rels), np.int64, m)
        totals = np.fromiter((rel.total for rel in rels), np.int64, m)
        parts = np.fromiter(
            itertools.chain.from_iterable(rel.parts for rel in rels), np.int64, int(lengths.sum())
        )
        cols = np.concatenate([totals, parts])
        if cols.size and (cols.min() < 0 or cols.max() >= n):
            raise ValueError(f"a relation names a cell outside 0..{n - 1}")
        rows = np.concatenate([np.arange(m), np.repeat(np.arange(m), lengths)])
        data = np.concatenate([np.ones(m), -np.ones(parts.size)])
        coo = sp.coo_array((data, (rows, cols)), shape=(m, n))
        csr = coo.tocsr()  # sums duplicates
        csr.eliminate_zeros()
        self.relations: list[Relation] | None = rels
        self._setup(csr)

    @classmethod
    def _of_matrix(cls, csr: sp.csr_array) -> _System:
        system = cls.__new__(cls)
        system.relations = None  # a part of another system: ``check`` and ``heights`` not needed
        system._setup(csr)
        return system

    def _setup(self, csr: sp.csr_array) -> None:
        csr.sort_indices()
        self.m, self.n = csr.shape
        self.csr = csr
        self.csc = csr.tocsc()
        self.csc.sort_indices()
        self.pattern = (csr != 0).astype(np.int64)
        self.pattern_t = self.pattern.T.tocsr()
        self.positive = (csr > 0).astype(np.int64)
        self.negative = (csr < 0).astype(np.int64)
        # The same, as Python lists: the greedy loops read them one cell or equation at a time.
        self.row_cells = _split(csr.indptr, csr.indices)
        self.cell_rows = _split(self.csc.indptr, self.csc.indices)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.csr.indptr[r], self.csr.indptr[r + 1]
        return self.csr.indices[a:b], self.csr.data[a:b]

    def check(self, values: np.ndarray) -> None:
        residual = np.abs(self.csr @ values)
        scale = np.abs(self.csr) @ np.abs(values)
        bad = np.flatnonzero(residual > RELATION_RTOL * np.maximum(1.0, scale))
        if bad.size:
            r = int(bad[0])
            rel = self.relations[r]
            raise ValueError(
                f"relation {r} does not hold: cell {rel.total} = {values[rel.total]:g} but its "
                f"parts {list(rel.parts)} add up to {values[list(rel.parts)].sum():g} "
                f"({bad.size} relation(s) off)"
            )

    def components(self):
        """(cells, relations) of each connected component that has a relation, in cell order."""
        yield from _groups(self.pattern)

    def subsystem(self, cells: np.ndarray, rows: np.ndarray) -> _System:
        """The relations ``rows`` (sorted), over the cells ``cells`` (sorted; renumbered
        0..len(cells) - 1)."""
        return type(self)._of_matrix(self.csr[rows][:, cells].tocsr())

    def heights(self) -> np.ndarray:
        """How many levels of totals lie under each cell (0: a cell that totals nothing)."""
        keep = [rel for rel in self.relations if len(rel.parts) >= 2]
        h = np.zeros(self.n, dtype=np.int64)
        if not keep:
            return h
        totals = np.array([rel.total for rel in keep], dtype=np.int64)
        lengths = np.array([len(rel.parts) for rel in keep], dtype=np.int64)
        parts = np.concatenate([np.asarray(rel.parts, dtype=np.int64) for rel in keep])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for _ in range(64):  # hierarchies are shallow; a cycle (bad input) just stops here
            new = h.copy()
            np.maximum.at(new, totals, np.maximum.reduceat(h[parts], starts) + 1)
            if np.array_equal(new, h):
                break
            h = new
        return h


def _validate(values, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if values.ndim != 1 or mask.shape != values.shape:
        raise ValueError(f"values and {name} must be 1-D arrays of the same length")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("values must be finite, non-negative counts (withheld ones included)")
    return values, mask


def _audit(
    values: np.ndarray,
    withheld: np.ndarray,
    system: _System,
    combine: bool = True,
    cache: dict | None = None,
    memo: MutableMapping | None = None,
) -> dict[int, Finding]:
    """The attacker: every withheld cell it recovers, in the order it recovers them."""
    unknown = withheld.copy()
    zero = np.abs(values) <= ZERO_TOL
    u = unknown.astype(np.int64)
    count = system.pattern @ u  # unknowns per relation
    findings: dict[int, Finding] = {}

    def reveal(cells: list[int], r: int, method: str) -> None:
        idx, _ = system.row(r)
        known = idx[~unknown[idx]]
        published = tuple(int(j) for j in known if not withheld[j])
        via = tuple(int(j) for j in known if withheld[j])
        for c in cells:
            findings[c] = Finding(c, method, (r,), published, via)
            unknown[c] = False
        for c in cells:
            for s in system.cell_rows[c]:
                count[s] -= 1
                if count[s] >= 1:
                    queue.append(s)

    def propagate() -> None:
        while queue:
            r = queue.popleft()
            if count[r] == 0:
                continue
            idx, coef = system.row(r)
            mine = unknown[idx]
            cells = idx[mine]
            if cells.size == 1:
                reveal([int(cells[0])], r, "single")
            elif zero[cells].all() and (np.all(coef[mine] > 0) or np.all(coef[mine] < 0)):
                reveal([int(c) for c in cells], r, "zero")

    # Cheap first pass: equations with a single unknown, and the zero-remainder rule.
    nonzero_unknown = system.pattern @ (unknown & ~zero).astype(np.int64)
    one_sign = ((system.positive @ u) == 0) | ((system.negative @ u) == 0)
    start = (count == 1) | ((count >= 1) & (nonzero_unknown == 0) & one_sign)
    queue: deque[int] = deque(int(r) for r in np.flatnonzero(start))
    propagate()
    while combine:
        new = _combinations(system, unknown, count, withheld, cache, memo)
        if not new:
            break
        for f in new:
            findings[f.cell] = f
            unknown[f.cell] = False
        for f in new:
            for s in system.cell_rows[f.cell]:
                count[s] -= 1
                if count[s] >= 1:
                    queue.append(s)
        # Within the linear closure nothing new is single; only the zero rule can fire again.
        before = len(findings)
        propagate()
        if len(findings) == before:
            break
    return findings


def _combinations(
    system: _System,
    unknown: np.ndarray,
    count: np.ndarray,
    withheld: np.ndarray,
    cache: dict | None = None,
    memo: MutableMapping | None = None,
) -> list[Finding]:
    """Unknown cells determined by combining equations (e_i in the row space of A).

    A: the equations that still have unknowns, over the unknown cells (after propagation every
    equation has 0 or at least 2 unknowns). A finding's ``relations`` are the equations of its
    connected group (cells linked by shared equations: the attacker's formula uses some of them),
    its ``published`` cells those of the equations that contain it.

    Each connected group is solved on its own (``_determined``). Its answer depends on its set of
    unknown cells alone (its equations are those of ``system`` that hold two or more of them), so
    ``cache`` (a dict kept by the caller across audits of one system) maps that set to the
    answer: secondary suppression re-audits after each round, and most groups have not changed.
    ``memo`` remembers answers by the group's equations themselves, across systems (see
    ``_determined_cells``).
    """
    cells = np.flatnonzero(unknown)
    rows = np.flatnonzero(count >= 2)
    if cells.size == 0 or rows.size == 0:
        return []
    A = system.csr[rows][:, cells].tocsr()
    found = []
    for C, R in _groups(A):
        group = cells[C]
        key = group.tobytes()
        determined = None if cache is None else cache.get(key)
        if determined is None:
            determined = group[_determined_cells(A[R][:, C].tocsr(), memo)].tolist()
            if cache is not None:
                cache[key] = determined
        if not determined:
            continue
        group_rows = tuple(int(r) for r in rows[R])
        for cell in determined:
            near = {j for r in system.cell_rows[cell] for j in system.row_cells[r]}
            published = tuple(sorted(j for j in near if not withheld[j]))
            found.append(Finding(cell, "combination", group_rows, published, ()))
    found.sort(key=lambda f: f.cell)
    return found


def _determined_cells(A: sp.csr_array, memo: MutableMapping | None) -> np.ndarray:
    """The columns ``_determined`` finds, by index. ``memo`` (any mapping, e.g. one a refresh
    keeps in the warehouse) remembers them by a digest of the matrix itself: the answer depends
    on nothing else, so a group of unknown cells met again — in the next round, or in the next
    refresh of a year where one municipality changed — is not solved again, and the result is
    exactly what solving it would give."""
    if memo is None:
        return np.flatnonzero(_determined(A))
    A.sort_indices()
    digest = hashlib.sha256()
    for part in (A.shape, A.indptr, A.indices, np.rint(A.data)):
        digest.update(np.asarray(part, dtype=np.int64).tobytes())
    key = digest.hexdigest()
    found = memo.get(key)
    if found is None:
        found = np.flatnonzero(_determined(A))
        memo[key] = found
    return np.asarray(found, dtype=np.int64)


def _determined(A: sp.csr_array) -> np.ndarray:
    """Which columns x_i of ``A x = b`` the equations determine, i.e. e_i in the row space of A.

    1. Exact sparse elimination (compiled: ``obsx.elimination``), shortest equation first: an
       equation with one unknown determines it (it is then removed everywhere); otherwise an
       unknown x with coefficient +-1 (the rarest one: least fill) is expressed as
       ``x = sum(c * y) + const`` and substituted into the other equations. Coefficients stay
       integers, so this is exact; an unknown whose substitution would fill too much or grow a
       coefficient past ``_MAX_COEFFICIENT``, or without a +-1 coefficient, is left for step 2.
    2. What is left (the "core") is split into connected groups; in each, ``_null_projections``
       projects ``_PROJECTION`` fixed random directions on the null space (a null-space basis N
       seen through them: rows stay short), and a core unknown is determined iff its row is 0
       (tolerances above). Unknowns in no equation any more are free.
    3. The projections are carried back through the eliminations (row of x = sum(c * row of
       y)): an eliminated unknown is determined iff its row is 0. A projection hides a non-zero
       row of N only with probability ~ (1e-4)^8 for the smallest rows possible, and then errs on
       the safe side (a cell counted recoverable).
    """
    from obsx.elimination import eliminate  # compiled: imported when an audit needs it

    k = A.shape[1]
    A = sp.csr_array(A, copy=True)
    A.sum_duplicates()  # sorted, one entry per cell
    fixed, core_ptr, core_idx, core_val, ex, e_ptr, e_idx, e_val = eliminate(
        A.indptr, A.indices, np.rint(A.data).astype(np.int64), k, _MAX_FILL, _MAX_COEFFICIENT
    )
    rng = np.random.default_rng(0)  # fixed: the result is deterministic
    basis = np.zeros((k, _PROJECTION))
    in_core = np.zeros(k, dtype=bool)
    if core_ptr.size > 1:
        used, local = np.unique(core_idx, return_inverse=True)  # the core's few columns
        B = sp.csr_array(
            (core_val.astype(float), local, core_ptr), shape=(core_ptr.size - 1, used.size)
        )
        for group, projected in _null_projections(B, rng):
            cols = used[group]
            in_core[cols] = True
            fixed[cols[np.linalg.norm(projected, axis=1) <= DETERMINED_TOL]] = True
            basis[cols] = projected
    done = np.zeros(k, dtype=bool)
    done[ex] = True
    free = ~(fixed | in_core | done)
    basis[free] = rng.standard_normal((int(free.sum()), _PROJECTION))
    basis[fixed] = 0.0
    if ex.size:
        # basis[x] = sum(c * basis[y]) for each eliminated x, last eliminated first: a y is
        # eliminated after x or not at all, so (I - L) basis[E] = L' basis is upper triangular.
        p = ex.size
        where = np.full(k, -1, dtype=np.int64)
        where[ex] = np.arange(p)
        t = np.repeat(np.arange(p), np.diff(e_ptr))
        inner = where[e_idx] >= 0
        L = sp.csr_array(
            (e_val[inner].astype(float), (t[inner], where[e_idx[inner]])), shape=(p, p)
        )
        outer = ~inner
        rhs = (
            sp.csr_array((e_val[outer].astype(float), (t[outer], e_idx[outer])), shape=(p, k))
            @ basis
        )
        U = (sp.eye_array(p, format="csr") - L).tocsr()
        basis[ex] = scipy.sparse.linalg.spsolve_triangular(U, rhs, lower=False)
    return np.linalg.norm(basis, axis=1) <= DETERMINED_TOL


def _null_projections(B: sp.csr_array, rng: np.random.Generator):
    """(columns, ``_PROJECTION`` random directions projected on the null space over them) per
    connected group of ``B``.

    The row space comes from a QR of the group's transpose followed by an SVD of its small
    triangle (B^T = QR, R = U S V^T: the row space is spanned by Q U over the singular values
    kept, the same as B's). A core has few equations over many cells (1,600 over 10,800 in a
    national year): an SVD of B that also returned its null space was a 10,800-square problem
    (60 s); this is two problems of the equations' size (3 to 6 s)."""
    for C, R in _groups(B):
        q, r = scipy.linalg.qr(B[R][:, C].toarray().T, mode="economic")
        u, s, _ = scipy.linalg.svd(r, full_matrices=False)
        rank = int(np.sum(s > RANK_RTOL * max(1.0, s[0])))
        u = u[:, :rank]
        directions = rng.standard_normal((C.size, _PROJECTION))
        yield C, directions - q @ (u @ (u.T @ (q.T @ directions)))


def threshold_rule(values, threshold: int = 5) -> np.ndarray:
    """Primary suppression: the counts from 1 to ``threshold - 1`` (zeros are published)."""
    values = np.asarray(values, dtype=np.float64)
    return (values >= 1 - ZERO_TOL) & (values < threshold - ZERO_TOL)


def audit(values, withheld, relations: Sequence[RelationLike]) -> dict[int, Finding]:
    """The attacker's audit, with its formulas: ``{cell: Finding}`` for every recovered cell.

    ``values``: the true counts of all n cells (withheld ones included; they are only used through
    the relations, which hold exactly). ``withheld``: boolean mask of the cells not published.
    ``relations``: the identities the attacker knows (``Relation`` or ``(total, parts)``).
    """
    values, withheld = _validate(values, withheld, "withheld")
    system = _System(values.size, relations)
    system.check(values)
    with _one_blas_thread():
        return _audit(values, withheld, system)


def recoverable(values, withheld, relations: Sequence[RelationLike]) -> set[int]:
    """The withheld cells an attacker determines exactly from the published ones (see module doc).

    Exact method: with the published cells substituted, cell i is determined iff e_i lies in the
    row space of the remaining equations' coefficient matrix over the unknown cells (every null
    vector has x_i = 0). Equations with a single unknown are solved first (cheap propagation);
    what remains goes through exact sparse elimination, and the null space (QR, then SVD) of the small core
    it leaves, per connected group (``_determined``). An equation whose
    unknowns all enter with one sign and whose known remainder is 0 reveals them all as 0 (counts
    are not negative); with exact relations this only happens to withheld zeros — a withheld cell
    of 1..4 always leaves a positive remainder. Bounds (intervals) are not audited.
    """
    return set(audit(values, withheld, relations))


def secondary_suppression(
    values,
    primary,
    relations: Sequence[RelationLike],
    *,
    cost=None,
    protected=None,
    memo: MutableMapping | None = None,
) -> np.ndarray:
    """The cells to withhold: ``primary`` plus secondary cells, so that nothing is recoverable.

    ``values``: the true counts of the n cells. ``primary``: boolean mask of the cells withheld by
    the threshold rule (the caller's decision, e.g. ``threshold_rule``; they stay withheld).
    ``relations``: the identities the attacker knows. ``cost``: optional per-cell cost of
    withholding (default: the value, the usual information-loss measure). ``protected``:
    optional mask of cells withheld only when no other cell protects (the headline totals a
    bulletin cannot do without: chosen last, whatever the exposures). ``memo``: optional mapping
    that keeps the audit's answers from one call to the next (``_determined_cells``; a refresh
    keeps them in the warehouse): faster, never different. Returns a new boolean mask
    (primary | secondary) for which ``recoverable`` is empty.

    Correct by construction: it returns only when the full audit finds nothing. Each connected
    component of the relations is solved alone (the attacker cannot link two; the answer is the
    same as for that component alone). In a component, repeat:

    1. audit, with the cheap attacker (single-unknown equations, the zero rule) until it finds
       nothing, then with the full one (combinations); nothing found by the full one: done. The
       full audit remembers its answer for each group of unknown cells (``_combinations``):
       only the groups this round changed are solved again;
    2. for each cell recovered from one equation (``single``, ``zero``; by index), withhold one
       published cell of that equation (or of the formulas of its ``via`` cells, else of the
       equations around its group of withheld cells). Preferred, in this order: a positive cell
       before a zero (a withheld zero protects little: an attacker who knows a cell is
       structurally zero learns nothing from its suppression, and see the zero rule), then the
       fewest *exposures* (the candidate's equations where nothing is withheld yet, in which it
       would itself be the single unknown and need another cell: this closes suppressions into
       rectangles and cubes instead of chains — ordered by value alone, the 20,000-cell test
       block had 7,500 cells withheld and growing after 20 rounds against about 2,800 in all),
       then the cost, then parts before totals (fewer levels of totals beneath: a district
       before its province, the province before the nation), then the index. A recovered cell
       waits for the next audit (often protected by then) when one of its equations changed
       this round, or when a cell of its formula was withheld this round;
    3. for each cell recovered by combination, withhold the cheapest set of published cells
       that leaves it undetermined, found by a linear program (``_protection``: the fewest
       cells, then the cheapest by the order above; a zero costs a thousand cells, so it is
       chosen only where the LP's rings hold no protection without one — one LP, not a first
       pass without zeros that grew ring by ring to the whole component when a zero was
       needed: 153 LPs and 28 s on a national year, now 36 and 10 s, the same cells). The LP's
       answer is a direction in which the unknown cells can move together without changing
       anything published; it stays one as more cells are withheld, so a later recovered cell
       that it moves needs nothing more this round.

    A cell that the relations alone determine, with the zero rule (a structural zero: ``a = b``
    and ``a = b + c`` make ``c`` 0), cannot be protected and protects nothing. The first time a
    formula runs out of published cells or a large LP has no solution, those cells are computed
    (an audit with every cell withheld; the LP stops growing for them): a secondary one is
    published again and never chosen, a primary one raises ValueError.

    Deterministic. Each round withholds one more cell or publishes one for good, so it ends.
    The result is a good choice, not an optimal one (that is an integer program). On the demo
    warehouse's published tables (9,599 cells, 18% primary, 11 components) it takes 1.2 to 2 s
    on the 2-core machine and withholds 4,450 cells (the version before components, the LP and
    the waiting rule: about 20 s, 5,373 cells).
    """
    values, primary = _validate(values, primary, "primary")
    system = _System(values.size, relations)
    system.check(values)
    n = values.size
    cost = values if cost is None else np.asarray(cost, dtype=np.float64)
    if cost.shape != values.shape:
        raise ValueError("cost must have one entry per cell")
    protected = np.zeros(n, dtype=bool) if protected is None else np.asarray(protected, bool)
    if protected.shape != values.shape:
        raise ValueError("protected must have one entry per cell")
    order = np.lexsort((np.arange(n), system.heights(), cost))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    withheld = primary.copy()
    with _one_blas_thread():
        for cells, rows in system.components():
            if primary[cells].any():
                sub = system.subsystem(cells, rows)
                withheld[cells] = _suppress(
                    values[cells], primary[cells], sub, rank[cells], cells, protected[cells], memo
                )
    return withheld


def _suppress(
    values: np.ndarray,
    primary: np.ndarray,
    system: _System,
    rank: np.ndarray,
    names: np.ndarray,
    protected: np.ndarray,
    memo: MutableMapping | None = None,
) -> np.ndarray:
    """``secondary_suppression`` on one connected component (``names``: the caller's indices)."""
    n = values.size
    zero_mask = np.abs(values) <= ZERO_TOL
    zero, rank_l, cell_rows = zero_mask.tolist(), rank.tolist(), system.cell_rows
    kept = protected.tolist()
    withheld = primary.copy()
    never = np.zeros(n, dtype=bool)  # cells whose suppression protects nothing
    wcount = (system.pattern @ withheld.astype(np.int64)).tolist()  # withheld cells per relation
    structural_known = False  # see ``unprotectable``
    cache: dict = {}  # the full audit's answers, per group of unknown cells
    # LP prices: 1 per cell, plus the cell's place in the cost order (< 1); a zero, 1000 more.
    # A protected cell, 10^6 more: chosen only where nothing else protects.
    lp_price = (
        1.0 + (rank - rank.min()) / (np.ptp(rank) + 1.0) + 1000.0 * zero_mask + 1e6 * protected
    )
    changes = 0

    def key(j: int):
        exposure = sum(1 for r in cell_rows[j] if wcount[r] == 0)
        return (kept[j], zero[j], exposure, rank_l[j])

    def cheapest(candidates) -> int | None:
        c = [j for j in candidates if j is not None and not never[j] and not withheld[j]]
        return min(c, key=key) if c else None

    def withhold(j: int, flag: bool) -> None:
        nonlocal changes
        changes += 1
        withheld[j] = flag
        for r in cell_rows[j]:
            wcount[r] += 1 if flag else -1

    structural: dict | None = None

    def structural_cells() -> dict:
        # The cells an attacker recovers with every cell withheld, from the relations and the
        # zero rule alone: no suppression protects them, and withholding them protects nothing.
        nonlocal structural
        if structural is None:
            structural = _audit(values, np.ones(n, dtype=bool), system, memo=memo)
        return structural

    def unprotectable() -> None:
        nonlocal structural_known
        structural_known = True
        found = structural_cells()
        mask = np.zeros(n, dtype=bool)
        mask[list(found)] = True
        bad = np.flatnonzero(mask & primary)
        if bad.size:
            raise ValueError(
                f"cell {int(names[bad[0]])} is determined by the relations alone (its value must "
                "be 0): it cannot be protected"
            )
        never[mask] = True
        for j in np.flatnonzero(mask & withheld).tolist():
            withhold(j, False)  # a secondary cell the attacker knows anyway: published again

    combine = False
    for _ in range(4 * n + 4):
        findings = _audit(values, withheld, system, combine=combine, cache=cache, memo=memo)
        if not findings:
            if combine:
                return withheld
            combine = True  # clean for the cheap attacker: now the full audit
            continue
        combine = False
        known_before = _known_before(findings, n)
        start = changes

        def candidate(cell: int, depth: int = 0, findings=findings) -> int | None:
            # -1: a cell of the formula was withheld this round (it was published at the audit):
            # the formula may be broken already, the next audit will tell.
            f = findings[cell]
            if any(withheld[j] for j in f.published):
                return -1
            j = cheapest(f.published)
            if j is None and depth < 50:  # the formula's published cells sit behind `via`
                js = [candidate(v, depth + 1) for v in f.via if v in findings]
                if -1 in js:
                    return -1
                j = cheapest(js)
            return j

        touched = np.zeros(system.m, dtype=bool)
        moves: list[np.ndarray] = []  # the LPs' null vectors, this round
        for cell in sorted(findings):
            f = findings[cell]
            if not withheld[cell]:
                continue  # published again this round (``unprotectable``)
            if f.method == "combination":
                if any(abs(x[cell]) > DETERMINED_TOL for x in moves):
                    continue  # protected by what this round withheld already
                unknown = withheld & ~known_before[cell]
                price = np.where(withheld | never, np.inf, lp_price)  # zeros: priced high
                protect = _protection(
                    system, unknown, cell, price, hopeless=lambda c: c in structural_cells()
                )
                if protect is not None and (protect[0] or changes > start):
                    for j in protect[0]:
                        withhold(j, True)
                        touched[cell_rows[j]] = True
                    moves.append(protect[1])
                    continue
                if protect is None and not structural_known:  # nothing protects it: the sign
                    unprotectable()
                    touched[:] = True  # cells were published again: audit anew
                    continue
                # Else (it rests on cells recovered before it, or rounding made the LP disagree
                # with the audit): one cell at a time, as below.
            elif touched[list(f.relations)].any():
                continue  # its equation changed this round: the next audit will tell
            if touched[cell_rows[cell]].any():
                continue  # one of its equations changed this round: the next audit will tell
            j = candidate(cell)
            if j == -1:
                continue
            if j is None and not structural_known:
                unprotectable()
                touched[:] = True  # cells were published again: audit anew
                continue
            if j is None:
                j = cheapest(_published_around(system, withheld, cell))
            if j is None:
                if primary[cell]:
                    raise ValueError(
                        f"cell {int(names[cell])} is determined by the relations alone (its "
                        "value must be 0): it cannot be protected"
                    )
                withhold(cell, False)
                never[cell] = True
                touched[cell_rows[cell]] = True
                continue
            withhold(j, True)
            touched[cell_rows[j]] = True
    raise RuntimeError("secondary suppression did not converge")  # cannot happen: each round acts


def _known_before(findings: dict[int, Finding], n: int) -> dict[int, np.ndarray]:
    """For each combination, the cells the attacker had recovered before it (a mask).

    ``_audit`` reports in the order it recovers, and its combinations come in batches (runs);
    a batch is computed with the cells recovered before it known.
    """
    known_before: dict[int, np.ndarray] = {}
    known = np.zeros(n, dtype=bool)
    batch: list[int] = []
    for c, f in findings.items():
        if f.method == "combination":
            batch.append(c)
            continue
        if batch:
            for b in batch:
                known_before[b] = known
            known = known.copy()
            known[batch] = True
            batch = []
        known[c] = True
    for b in batch:
        known_before[b] = known
    return known_before


def _protection(
    system: _System,
    unknown: np.ndarray,
    cell: int,
    price: np.ndarray,
    reach: int = 2,
    hopeless: Callable[[int], bool] | None = None,
) -> tuple[list[int], np.ndarray] | None:
    """The cheapest published cells whose suppression leaves ``cell`` undetermined (an LP).

    ``cell`` is undetermined iff the system has a null vector x with x_cell != 0 (then
    ``values + x`` agrees with everything published). Withholding a set S of published cells
    adds their columns: the LP looks for x with x_cell = 1 over the unknown cells and S,
    minimising sum(price[j] * |x_j|) over published j (``price``: ``inf`` for a cell that may
    not be used). Its support on published cells is S; every equation that holds a cell of the
    support is a constraint, so x is a null vector of the whole system and S protects ``cell``
    (and each cell of S: x_j != 0) from any linear combination.

    To stay small, the published cells allowed are those of the equations within a few rings of
    ``cell`` (one ring more while the LP is infeasible), the unknown cells those and the ones
    ``reach`` rings further through unknown cells (so that a cycle of unknown cells closed by
    cells withheld a moment ago costs nothing). Returns S (empty: already protected) and x (over
    all cells: it stays a null vector when more cells are withheld), or ``None`` (infeasible on
    the whole component: nothing published protects it). ``hopeless(cell)``, asked when an LP of
    more than ``_LP_WHOLE`` cells is infeasible, says that the relations alone determine the
    cell: every larger ring would be infeasible too (one cell of a national year: seven LPs,
    8 s), so ``None`` at once.
    """
    pattern, pattern_t = system.pattern, system.pattern_t
    usable = unknown | np.isfinite(price)
    rings = [np.zeros(unknown.size, dtype=bool)]
    rings[0][cell] = True
    while True:  # all the rings, to the whole connected part
        grown = (pattern_t @ (pattern @ rings[-1])).astype(bool) & usable
        if np.array_equal(grown, rings[-1]):
            break
        rings.append(grown)
    # One LP of a few thousand variables takes tens of milliseconds: the whole part at once when
    # it is that small, else ring by ring from the smallest ring that is not tiny.
    sizes = [int(r.sum()) for r in rings]
    first = next((k for k, s in enumerate(sizes) if s >= _LP_SMALL or k == len(rings) - 1), 0)
    if sizes[-1] <= _LP_WHOLE:
        first = len(rings) - 1
    for ring in rings[max(first, 1) :]:
        free = ring & unknown
        for _ in range(reach):
            free |= (pattern_t @ (pattern @ free)).astype(bool) & unknown
        free_a = np.flatnonzero(free)
        pub = np.flatnonzero(ring & ~unknown)
        cols = system.csc[:, np.concatenate([free_a, pub])].tocsr()
        used = np.flatnonzero(np.diff(cols.indptr))
        cols = cols[used]
        target = sp.csr_array(
            ([1.0], ([0], [int(np.searchsorted(free_a, cell))])), shape=(1, free_a.size)
        )
        A_eq = sp.block_array(
            [
                [cols[:, : free_a.size], cols[:, free_a.size :], -cols[:, free_a.size :]],
                [target, None, None],
            ],
            format="csr",
        )
        b_eq = np.zeros(A_eq.shape[0])
        b_eq[-1] = 1.0
        c = np.concatenate([np.zeros(free_a.size), price[pub], price[pub]])
        bounds = np.zeros((free_a.size + 2 * pub.size, 2))
        bounds[:, 1] = np.inf
        bounds[: free_a.size, 0] = -np.inf
        res = scipy.optimize.linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs-ds")
        if res.status == 0:
            t = res.x[free_a.size : free_a.size + pub.size] - res.x[free_a.size + pub.size :]
            x = np.zeros(unknown.size)
            x[free_a] = res.x[: free_a.size]
            x[pub] = t
            return pub[np.abs(t) > DETERMINED_TOL].tolist(), x
        if hopeless is not None and free_a.size + pub.size > _LP_WHOLE and hopeless(cell):
            return None
    return None


def _published_around(system: _System, withheld: np.ndarray, cell: int) -> list[int]:
    """Published cells of the equations around ``cell``'s connected group of withheld cells."""
    seen_rows: set[int] = set()
    seen_cells = {cell}
    stack = [cell]
    published: set[int] = set()
    while stack:
        c = stack.pop()
        for r in system.cell_rows[c]:
            if r in seen_rows:
                continue
            seen_rows.add(r)
            for j in system.row_cells[r]:
                if not withheld[j]:
                    published.add(j)
                elif j not in seen_cells:
                    seen_cells.add(j)
                    stack.append(j)
    return sorted(published)
