"""The skyline search's loop, compiled by numba: the problem as flat arrays, the state as
arrays changed in place and undone from a trail. search.py says what the search does and
why it is complete; this module is the same steps, written for speed (every function
here runs per node, and Python's per-node cost was what kept the search from the
production-like instances: docs/measurements.md).

Problem arrays (`P`): size, lo, hi per block (blocks numbered by first section);
`starts` and `covers` in CSR form (per section: the blocks starting there, in trial
order; the blocks over it); first_block per section and one past the last.
State (`T`): floor and slack per section, off per block (-1: unplaced), the trail, and
`ctr`, a few counters (below).
"""
from __future__ import annotations

import time

import numpy as np
from numba import njit, objmode, types
from numba.typed import Dict, List

# ctr's slots: nodes visited, the least shortfall, how it ended, when to look at the
# clock next; for the oracle: placements made, when to ask next, blocks placed now, the
# prefix it left undecided, how much of the placements has not moved since, the depth a
# refutation unwinds to (0: none), and the refutations so far.
(NODES, SHORT, STATUS, CLOCK, PLACEMENTS, ASK, DEPTH, UNDECIDED, KEPT, REFUTED,
 REFUTATIONS) = range(11)
RUNNING, TIMED_OUT, SOLVED = 0, 1, 2
CHECK_EVERY = 4096          # nodes between two looks at the clock
NONE = np.iinfo(np.int64).max
_KEY = types.ListType(types.int64)


@njit(cache=True)
def _missed(ctr, by):
    if by < ctr[SHORT]:
        ctr[SHORT] = by


@njit(cache=True)
def _place(P, T, k, m):
    size, lo, hi = P[0], P[1], P[2]
    floor, off, trail, ctr = T[0], T[2], T[3], T[4]
    trail.append(k)
    trail.append(m)
    trail.append(0)                 # a placement; its offset in the slot before
    off[k] = m
    ctr[DEPTH] += 1
    ctr[PLACEMENTS] += 1
    top = m + size[k]
    for s in range(lo[k], hi[k]):
        floor[s] = top


@njit(cache=True)
def _lift(T, s, up):
    floor, slack, trail = T[0], T[1], T[3]
    trail.append(s)
    trail.append(floor[s])
    trail.append(1)                 # a lift; the old floor in the slot before
    floor[s] += up
    slack[s] -= up


@njit(cache=True)
def _undo(P, T, mark):
    lo, hi = P[1], P[2]
    floor, slack, off, trail, ctr = T[0], T[1], T[2], T[3], T[4]
    while len(trail) > mark:
        kind = trail.pop()
        value = trail.pop()
        where = trail.pop()
        if kind == 0:
            off[where] = -1
            ctr[DEPTH] -= 1
            ctr[KEPT] = min(ctr[KEPT], ctr[DEPTH])
            for s in range(lo[where], hi[where]):
                floor[s] = value
        else:
            slack[where] += floor[where] - value
            floor[where] = value


@njit(cache=True)
def _top(P, floor, k):
    """The highest floor under block k: where it would sit now."""
    lo, hi = P[1], P[2]
    top = floor[lo[k]]
    for s in range(lo[k] + 1, hi[k]):
        if floor[s] > top:
            top = floor[s]
    return top


@njit(cache=True)
def _parts(P, T, a, b):
    """The maximal ranges of sections in [a, b) chained by unplaced blocks, as a flat
    array (c0, d0, c1, d1, ...) and their count."""
    hi, start_ptr, start_idx = P[2], P[3], P[4]
    off = T[2]
    out = np.empty(2 * (b - a), np.int64)
    count = 0
    for s in range(a, b):
        end = s
        for i in range(start_ptr[s], start_ptr[s + 1]):
            k = start_idx[i]
            if off[k] < 0 and hi[k] > end:
                end = hi[k]
        if count and s < out[2 * count - 1]:
            if end > out[2 * count - 1]:
                out[2 * count - 1] = end
        elif end > s:
            out[2 * count] = s
            out[2 * count + 1] = end
            count += 1
    return out, count


@njit(cache=True)
def _candidates(P, T, s, m):
    """Unplaced blocks starting at s whose sections are all at floor m, one of each
    (span, size) (the others lead to the same states), those whose top comes flush with
    the floor on either side first, then in trial order."""
    size, hi, start_ptr, start_idx = P[0], P[2], P[3], P[4]
    floor, off = T[0], T[2]
    n = start_ptr[s + 1] - start_ptr[s]
    found = np.empty(n, np.int64)
    flush = np.empty(n, np.int64)
    count = 0
    left = floor[s - 1] if s > 0 else -1
    for i in range(start_ptr[s], start_ptr[s + 1]):
        k = start_idx[i]
        if off[k] >= 0 or _top(P, floor, k) != m:
            continue
        twin = False
        for j in range(count):
            if hi[found[j]] == hi[k] and size[found[j]] == size[k]:
                twin = True
                break
        if twin:
            continue
        top = m + size[k]
        right = floor[hi[k]] if hi[k] < len(floor) else -1
        found[count] = k
        flush[count] = (top == left) + (top == right)
        count += 1
    out = np.empty(count, np.int64)
    n = 0
    for want in (2, 1, 0):
        for j in range(count):
            if flush[j] == want:
                out[n] = found[j]
                n += 1
    return out


@njit(cache=True)
def _raise(P, T, a, b, s, m):
    """How far section s rises when byte m of it stays empty: to the least height the
    next block over it can sit at (search.py's module doc)."""
    size, cov_ptr, cov_idx, first_block = P[0], P[5], P[6], P[7]
    floor, off = T[0], T[2]
    least, smallest = NONE, NONE
    for i in range(cov_ptr[s], cov_ptr[s + 1]):
        k = cov_idx[i]
        if off[k] >= 0:
            continue
        top = _top(P, floor, k)
        if top == m:
            if smallest == NONE:
                for j in range(first_block[a], first_block[b]):
                    if off[j] < 0 and size[j] < smallest:
                        smallest = size[j]
            top = m + smallest
        if top - m < least:
            least = top - m
    return least


@njit(cache=True)
def _supported(P, T, k, lowest, stamp):
    """Spatial inference after placing block k (search.py's `Search` doc): in a section s,
    the bytes [floor[s], x) hold only blocks whose floor is below x, or stay empty, which
    costs slack. Only the sections under unplaced blocks sharing a section with k can
    have changed. `lowest` caches each block's floor for this call (`stamp` marks it)."""
    size, lo, hi, cov_ptr, cov_idx = P[0], P[1], P[2], P[5], P[6]
    floor, slack, off, ctr = T[0], T[1], T[2], T[4]
    a, b = lo[k], hi[k]
    for s in range(lo[k], hi[k]):
        for i in range(cov_ptr[s], cov_ptr[s + 1]):
            j = cov_idx[i]
            if off[j] < 0:
                if lo[j] < a:
                    a = lo[j]
                if hi[j] > b:
                    b = hi[j]
    stamp[0] += 1
    mark = stamp[0]
    for s in range(a, b):
        n = cov_ptr[s + 1] - cov_ptr[s]
        xs = np.empty(n, np.int64)
        sizes = np.empty(n, np.int64)
        count = 0
        for i in range(cov_ptr[s], cov_ptr[s + 1]):
            j = cov_idx[i]
            if off[j] < 0:
                if stamp[j + 1] != mark:
                    stamp[j + 1] = mark
                    lowest[j] = _top(P, floor, j)
                xs[count] = lowest[j]
                sizes[count] = size[j]
                count += 1
        order = np.argsort(xs[:count])
        below = 0                   # summed sizes of the blocks with a lower floor
        for i in order:
            missing = xs[i] - floor[s] - slack[s] - below
            if missing > 0:
                _missed(ctr, missing)
                return False
            below += sizes[i]
    return True


@njit(cache=True)
def _key(P, T, a, b):
    """A failed part's state: its sections, their floors, its unplaced blocks."""
    first_block = P[7]
    floor, off = T[0], T[2]
    key = List.empty_list(np.int64)
    key.append(a)
    key.append(b)
    for s in range(a, b):
        key.append(floor[s])
    for j in range(first_block[a], first_block[b]):
        if off[j] < 0:
            key.append(j)
    h = np.int64(1469598103934665603)
    for v in key:
        h = (h ^ v) * np.int64(1099511628211)
    return key, h


@njit(cache=True)
def _known(memo, keys, key, h):
    if h not in memo:
        return False
    old = keys[memo[h]]
    if len(old) != len(key):
        return False
    for i in range(len(key)):
        if old[i] != key[i]:
            return False
    return True


# A frame of the search's stack: a row of `frames`. A GROUP frame places every unplaced
# block of sections [a, b), one part at a time (a part: sections chained by unplaced
# blocks; when one part fails, no choice made in another can save it: dynamic
# decomposition). A PART frame branches at its lowest floor m, leftmost, at section s:
# each candidate sits at m over s in turn (a GROUP frame over the part above it), and
# when all have failed, byte m of s stays empty and s is lifted. Its candidates lie in
# cands[FIRST:END], the last slot (-1) standing for the lift.
GROUP, PART = 0, 1
KIND, A, B, S, M, MARK, UNDO, FIRST, NEXT, END, LIVE, REFS = range(12)     # a frame's fields
ENTER, FAILED, DONE = -1, 0, 1      # what the frame above the top one returned


@njit(cache=True)
def _placed(T):
    """The placements on the trail, in order, as rows (block, offset)."""
    trail = T[3]
    out = np.empty((len(trail) // 3, 2), np.int64)
    count = 0
    for i in range(0, len(trail), 3):
        if trail[i + 2] == 0:
            out[count, 0], out[count, 1] = trail[i], trail[i + 1]
            count += 1
    return out[:count]


@njit(cache=True)
def _consult(T, frames, top, step):
    """Ask the oracle (search.py's `consult`) about the placements so far. Returns
    whether it completed the plan (then `off` holds it); when it refutes them, sets
    ctr[REFUTED] to the depth of the first frame on the stack whose placement it
    refutes (search.py finds that placement by bisection)."""
    off, ctr = T[2], T[4]
    placed = _placed(T)
    with objmode(kind="int64", high="int64", later="int64"):
        kind, high, later = consult(placed, ctr[UNDECIDED], ctr[KEPT], ctr[PLACEMENTS])
    ctr[ASK] = ctr[PLACEMENTS] + later
    if kind == 0:                       # undecided
        ctr[UNDECIDED], ctr[KEPT] = len(placed), ctr[DEPTH]
        return False
    if kind == 1:
        with objmode(plan="int64[:]"):
            plan = solution()
        off[:] = plan
        ctr[STATUS] = SOLVED
        return True
    ctr[UNDECIDED], ctr[KEPT] = high - 1, ctr[DEPTH]
    ctr[REFUTATIONS] += 1
    _missed(ctr, step)                  # a refuted branch might fit one step up: claim no more
    for i in range(top + 1):
        if frames[i, KIND] == PART and frames[i, LIVE] >= high:
            ctr[REFUTED] = frames[i, LIVE]
            break
    return False


@njit(cache=True)
def _fits(P, T, memo, keys, lowest, stamp, deadline, step):
    """Whether every block fits; False also when out of time (ctr[STATUS] says which)."""
    floor, slack, trail, ctr = T[0], T[1], T[3], T[4]
    n, sections = len(P[0]), len(floor)
    most = np.max(np.diff(P[3])) + 1             # candidates at one point, the lift included
    frames = np.empty((2 * n + 4, 12), np.int64)
    cands = np.empty((n + 1) * most, np.int64)   # each PART frame's candidates, stacked
    frames[0, KIND], frames[0, A], frames[0, B], frames[0, END] = GROUP, 0, sections, 0
    top, ret = 0, ENTER
    while top >= 0:
        f = frames[top]
        if f[KIND] == GROUP:
            if ret == FAILED:
                top -= 1
                continue
            parts, count = _parts(P, T, f[A], f[B])
            if count == 0:
                top, ret = top - 1, DONE
                continue
            top += 1
            g = frames[top]
            g[KIND], g[A], g[B], g[FIRST] = PART, parts[0], parts[1], f[END]
            ret = ENTER
            continue
        a, b = f[A], f[B]
        if ret == DONE:
            top -= 1
            continue
        if ret == ENTER:
            key, h = _key(P, T, a, b)
            if _known(memo, keys, key, h):
                top, ret = top - 1, FAILED
                continue
            f[MARK], f[REFS] = len(trail), ctr[REFUTATIONS]
            f[NEXT] = f[END] = f[FIRST]         # no candidates yet: find the branch point
        else:
            _undo(P, T, f[UNDO])
            if ctr[REFUTED]:                    # unwind to the frame that made the refuted placement
                if ctr[REFUTED] != f[LIVE]:
                    top -= 1
                    continue
                ctr[REFUTED] = 0
        while True:
            if f[NEXT] == f[END]:
                if f[END] != f[FIRST]:          # every candidate failed: leave byte m empty
                    up = _raise(P, T, a, b, f[S], f[M])
                    if up > slack[f[S]]:
                        _missed(ctr, up - slack[f[S]])
                        _undo(P, T, f[MARK])
                        if ctr[REFUTATIONS] == f[REFS]:     # a refutation speaks of all placements, not of this part
                            key, h = _key(P, T, a, b)
                            if h not in memo:
                                memo[h] = len(keys)
                                keys.append(key)
                        top, ret = top - 1, FAILED
                        break
                    _lift(T, f[S], up)
                ctr[NODES] += 1
                if ctr[NODES] >= ctr[CLOCK]:
                    ctr[CLOCK] = ctr[NODES] + CHECK_EVERY
                    with objmode(now="float64"):
                        now = time.monotonic()
                    if now > deadline:
                        ctr[STATUS] = TIMED_OUT
                        return False
                s = a
                for t in range(a + 1, b):
                    if floor[t] < floor[s]:
                        s = t
                f[S], f[M] = s, floor[s]
                found = _candidates(P, T, s, floor[s])
                f[NEXT] = f[FIRST]
                f[END] = f[FIRST] + len(found) + 1
                cands[f[FIRST]:f[END] - 1] = found
                cands[f[END] - 1] = -1
            k = cands[f[NEXT]]
            f[NEXT] += 1
            if k < 0:
                f[NEXT] = f[END]
                continue
            f[UNDO] = len(trail)
            _place(P, T, k, f[M])
            f[LIVE] = ctr[DEPTH]
            if ctr[PLACEMENTS] >= ctr[ASK]:
                if _consult(T, frames, top, step):
                    return True
                if ctr[REFUTED]:
                    _undo(P, T, f[UNDO])
                    if ctr[REFUTED] != f[LIVE]:
                        top, ret = top - 1, FAILED
                        break
                    ctr[REFUTED] = 0
                    continue
            if _supported(P, T, k, lowest, stamp):
                top += 1
                g = frames[top]
                g[KIND], g[A], g[B], g[END] = GROUP, a, b, f[END]
                ret = ENTER
                break
            _undo(P, T, f[UNDO])
    return ret == DONE


@njit(cache=True)
def search(size, lo, hi, start_ptr, start_idx, cov_ptr, cov_idx, first_block, slack, deadline, step, ask):
    """(status: 1 fits, 0 no plan, -1 out of time; offsets; short: by how much the
    least-short failure missed, NONE if none was recorded; nodes). The oracle is first
    asked after `ask` placements, and then when it says."""
    n, sections = len(size), len(slack)
    P = (size, lo, hi, start_ptr, start_idx, cov_ptr, cov_idx, first_block)
    trail = List.empty_list(np.int64)
    ctr = np.zeros(11, np.int64)
    ctr[SHORT], ctr[ASK] = NONE, ask
    T = (np.zeros(sections, np.int64), slack.copy(), np.full(n, -1, np.int64), trail, ctr)
    memo = Dict.empty(key_type=np.int64, value_type=np.int64)
    keys = List.empty_list(_KEY)
    fits = _fits(P, T, memo, keys, np.zeros(n, np.int64), np.zeros(n + 1, np.int64), deadline, step)
    status = -1 if ctr[STATUS] == TIMED_OUT else (1 if fits else 0)
    return status, T[2], ctr[SHORT], ctr[NODES]


# The oracle of the search running now, set by search.Search: the compiled loop calls
# back into Python through these two.
ORACLE = None


def consult(placed, undecided, kept, placements):
    return ORACLE.consult(placed, undecided, kept, placements)


def solution():
    return ORACLE.plan
