"""Exact sparse elimination of an integer system, compiled (numba): step 1 of
``disclosure._determined``.

The audit of a national year solves systems of 30,000 to 52,000 equations over 40,000 to 119,000
cells, several times per refresh. With the elimination written with Python dicts and sets,
``_determined`` took 0.52-1.44 s per such system (most of disclosure control's time after one
new file); compiled, 0.17-0.51 s, the same answers. The algorithm is unchanged: shortest equation first; an
equation with one unknown fixes it (it leaves every other equation); otherwise the unknown of
coefficient +-1 that occurs in the fewest equations is expressed by the others and substituted
wherever it occurs, unless that would add more than ``max_fill`` entries. Coefficients stay
integers, so every step is exact.

A row is a pair of sorted arrays (columns, coefficients); a substitution merges two of them.
Each column keeps the exact count of live rows holding it, and a list of the rows it was ever
added to, checked against the row when it is read.

The compiled code is cached on disk next to this file (numba's ``cache=True``; where that is
read-only, in numba's user cache or ``NUMBA_CACHE_DIR``): compiling it takes about 10 s on 2
cores, once per installation — or once per process where no cache folder is writable.
"""

import heapq

import numpy as np
from numba import njit, types
from numba.typed import List


def _compiled(function):
    try:
        return njit(cache=True)(function)
    except RuntimeError:  # numba found no writable cache folder: compile in each process
        return njit(function)


@_compiled
def _find(cols: np.ndarray, c: int) -> int:
    """Position of column ``c`` in a row's sorted columns, or -1."""
    i = np.searchsorted(cols, c)
    if i < cols.size and cols[i] == c:
        return i
    return -1


@_compiled
def _rows_with(x, head, pool_row, pool_next, alive, rcols, seen, stamp, scratch) -> np.ndarray:
    """The live rows holding column ``x``, sorted (in ``scratch``, which it returns a view of)."""
    found = 0
    n = head[x]
    while n != -1:
        q = pool_row[n]
        if alive[q] and seen[q] != stamp and _find(rcols[q], x) != -1:
            seen[q] = stamp
            scratch[found] = q
            found += 1
        n = pool_next[n]
    out = scratch[:found]
    out.sort()
    return out


@_compiled
def eliminate(indptr, indices, data, k, max_fill, max_coefficient):
    """Eliminate what can be eliminated exactly in the m x k system (CSR, integer data, sorted
    indices without duplicates).

    A substitution that could make a coefficient larger than ``max_coefficient`` in magnitude is
    not made (the equation is left for the core, as one that would fill too much): coefficients
    stay exact in int64 and in the floats the core and the back-substitution use. (Margins give
    coefficients of 1 and 2; the bound is there so that no input can overflow silently.)

    Returns ``fixed`` (k: columns an equation of one unknown determines), the core (CSR of the
    live equations of two unknowns or more: ptr, indices, data, over the original columns) and
    the eliminations in order: the columns x and their expressions as CSR (``x[t] = sum(c * y)``
    over indices / data between ptr[t] and ptr[t + 1]; a later elimination never uses an earlier
    x)."""
    m = indptr.size - 1
    fixed = np.zeros(k, np.bool_)
    alive = np.ones(m, np.bool_)
    count = np.zeros(k, np.int64)  # live rows holding each column
    head = np.full(k, -1, np.int64)  # each column's list of rows (pool_row / pool_next)
    cap = indices.size + 64  # grows (doubles) with the fill: every large system exercises it
    pool_row = np.empty(cap, np.int64)
    pool_next = np.empty(cap, np.int64)
    used = 0
    rcols = List()
    rvals = List()
    largest = np.zeros(m, np.int64)  # a bound on each row's largest |coefficient|
    heap = [(np.int64(0), np.int64(0)) for _ in range(0)]
    for r in range(m):
        a, b = indptr[r], indptr[r + 1]
        keep = data[a:b] != 0
        cols = indices[a:b][keep].astype(np.int64)
        vals = data[a:b][keep].astype(np.int64)
        rcols.append(cols)
        rvals.append(vals)
        largest[r] = np.abs(vals).max() if vals.size else 0
        for c in cols:
            count[c] += 1
            pool_row[used] = r
            pool_next[used] = head[c]
            head[c] = used
            used += 1
        heap.append((np.int64(cols.size), np.int64(r)))
    heapq.heapify(heap)
    seen = np.full(m, -1, np.int64)
    scratch = np.empty(m, np.int64)
    stamp = 0
    ex = List.empty_list(types.int64)
    e_ptr = List.empty_list(types.int64)
    e_idx = List.empty_list(types.int64)
    e_val = List.empty_list(types.int64)
    e_ptr.append(0)
    while len(heap) > 0:
        length, r = heapq.heappop(heap)
        cols, vals = rcols[r], rvals[r]
        if not alive[r] or length != cols.size:
            continue
        if length == 0:
            alive[r] = False
            continue
        if length == 1:
            v = cols[0]
            alive[r] = False
            fixed[v] = True
            stamp += 1
            seen[r] = stamp  # not itself
            for q in _rows_with(v, head, pool_row, pool_next, alive, rcols, seen, stamp, scratch):
                i = _find(rcols[q], v)
                rcols[q] = np.concatenate((rcols[q][:i], rcols[q][i + 1 :]))
                rvals[q] = np.concatenate((rvals[q][:i], rvals[q][i + 1 :]))
                heapq.heappush(heap, (np.int64(rcols[q].size), q))
            head[v] = -1
            count[v] = 0
            continue
        x = -1
        for i in range(length):
            c = cols[i]
            if abs(vals[i]) == 1 and (
                x == -1 or count[c] < count[x] or (count[c] == count[x] and c < x)
            ):
                x = c
        if x == -1:
            continue
        if (length - 1) * (count[x] - 1) > max_fill:
            continue
        at = _find(cols, x)
        a = vals[at]
        expr_cols = np.concatenate((cols[:at], cols[at + 1 :]))
        expr_vals = -a * np.concatenate((vals[:at], vals[at + 1 :]))
        stamp += 1
        seen[r] = stamp
        rows = _rows_with(x, head, pool_row, pool_next, alive, rcols, seen, stamp, scratch)
        grows = float(np.abs(expr_vals).max())
        too_large = False
        for q in rows:
            cx = float(abs(rvals[q][_find(rcols[q], x)]))
            if float(largest[q]) + cx * grows > max_coefficient:
                too_large = True
                break
        if too_large:
            continue
        alive[r] = False
        ex.append(x)
        for i in range(expr_cols.size):
            e_idx.append(expr_cols[i])
            e_val.append(expr_vals[i])
        e_ptr.append(len(e_idx))
        for c in cols:
            count[c] -= 1
        for q in rows:
            qc, qv = rcols[q], rvals[q]
            cx = qv[_find(qc, x)]
            n = qc.size + expr_cols.size
            oc = np.empty(n, np.int64)
            ov = np.empty(n, np.int64)
            i = j = o = top = 0
            while i < qc.size or j < expr_cols.size:
                if j >= expr_cols.size or (i < qc.size and qc[i] < expr_cols[j]):
                    c, v = qc[i], qv[i]
                    i += 1
                    if c == x:
                        continue
                elif i >= qc.size or expr_cols[j] < qc[i]:
                    c, v = expr_cols[j], cx * expr_vals[j]
                    j += 1
                    count[c] += 1  # new in this row
                    if used == pool_row.size:
                        pool_row = np.concatenate((pool_row, np.empty(used, np.int64)))
                        pool_next = np.concatenate((pool_next, np.empty(used, np.int64)))
                    pool_row[used] = q
                    pool_next[used] = head[c]
                    head[c] = used
                    used += 1
                else:
                    c, v = qc[i], qv[i] + cx * expr_vals[j]
                    i += 1
                    j += 1
                    if v == 0:
                        count[c] -= 1  # cancelled out of this row
                if v != 0:
                    oc[o] = c
                    ov[o] = v
                    o += 1
                    top = max(top, abs(v))
            rcols[q] = oc[:o].copy()
            rvals[q] = ov[:o].copy()
            largest[q] = top
            heapq.heappush(heap, (np.int64(o), q))
        head[x] = -1
        count[x] = 0

    size = 0
    for r in range(m):
        if alive[r] and rcols[r].size >= 2:
            size += rcols[r].size
    core_ptr = [0]
    core_idx = np.empty(size, np.int64)
    core_val = np.empty(size, np.int64)
    o = 0
    for r in range(m):
        if alive[r] and rcols[r].size >= 2:
            core_idx[o : o + rcols[r].size] = rcols[r]
            core_val[o : o + rcols[r].size] = rvals[r]
            o += rcols[r].size
            core_ptr.append(o)
    return (
        fixed,
        np.array(core_ptr, np.int64),
        core_idx,
        core_val,
        _array(ex),
        _array(e_ptr),
        _array(e_idx),
        _array(e_val),
    )


@_compiled
def _array(values) -> np.ndarray:
    out = np.empty(len(values), np.int64)
    for i in range(len(values)):
        out[i] = values[i]
    return out
