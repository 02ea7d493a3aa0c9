/* Greedy placement over reweighed orders, compiled (reordered.py says what the heuristic does and why).
 *
 * A pass takes the blocks in order of weight, heaviest first (ties in the caller's order), and puts
 * each among the placed blocks it conflicts with (their lifetimes meet): at the lowest offset where
 * it fits (first fit), or at the bottom of the smallest gap that holds it (TensorFlow Lite's greedy
 * by size), else on top of them all. Two chains of passes, one for each placement, start from the
 * weights equal to the sizes; each further pass of a chain redraws the weight of REDRAW_PER_MILLE
 * of the blocks of the chain's best order, between 0 and twice the block's size (as skyline.c's
 * reweighed passes do), and becomes the chain's best where its arena is no higher. A pass ends
 * as soon as its arena rises above its chain's best: it could not be kept.
 *
 * Compiled because a pass visits every conflicting pair: hundreds of thousands on 5,000 blocks,
 * and the chains want thousands of passes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A block placed costs about as much as BLOCK_WORK conflicting pairs visited (its share of the
 * pass's sort and draws, 300 ns here), where blocks conflict with few others (pipelines): counted
 * as one, 10^8 of work took 4-6 s on 2,000-20,000 of them, and 0.6-1.3 s elsewhere. */
enum { REDRAW_PER_MILLE = 100, BLOCK_WORK = 40, INSERTION_MAX = 512 };
/* A pass runs without the GIL: Python's signal handlers (Ctrl-C) run between passes, at most
 * every SIGNALS_EVERY_S. */
#define SIGNALS_EVERY_S 0.1

typedef struct { int64_t lo, hi; } Interval;
typedef struct { int64_t key; int rank, block; } Item;

typedef struct {
    int n;
    const int64_t *size;
    const int *rank;                       /* the caller's order: ties of weight go by it */
    int *at, *conflicts;                   /* CSR: the blocks that conflict with each */
    int *order;
    Item *items;                           /* scratch of sort_blocks */
    char *placed;
    Interval *taken;                       /* scratch: the placed conflicting blocks of one block */
    int64_t *offsets;
    long work;                             /* conflicting pairs visited, and BLOCK_WORK a block placed */
} Passes;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);    /* the clock of Python's time.monotonic() */
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int by_lo(const void *p, const void *q) {
    const Interval *a = p, *b = q;
    return (a->lo > b->lo) - (a->lo < b->lo);
}

/* by lo: by insertion where they are few, as a block's placed conflicting blocks mostly are (tens:
 * qsort's calls cost more than the sort itself, 70% of the time), else qsort (a long-lived block
 * among 10^5 short ones) */
static void sort_by_lo(Interval *items, int count) {
    if (count > INSERTION_MAX) { qsort(items, count, sizeof(Interval), by_lo); return; }
    for (int i = 1; i < count; i++) {
        Interval x = items[i];
        int j = i;
        for (; j > 0 && items[j - 1].lo > x.lo; j--) items[j] = items[j - 1];
        items[j] = x;
    }
}

/* by key, lowest first, then by rank */
static int by_key(const void *p, const void *q) {
    const Item *a = p, *b = q;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return a->rank - b->rank;
}

/* `order` (n blocks) by key[block], lowest first (highest first if `down`), ties by rank */
static void sort_blocks(int n, const int64_t *key, const int *rank, int down, Item *items, int *order) {
    for (int k = 0; k < n; k++) { items[k].key = down ? -key[k] : key[k]; items[k].rank = rank[k]; items[k].block = k; }
    qsort(items, n, sizeof(Item), by_key);
    for (int k = 0; k < n; k++) order[k] = items[k].block;
}

/* The conflicting pairs of blocks [first, last] (closed), as CSR lists in P; 0 where there are more
 * than max_pairs of them or memory runs out. One sweep in order of first step, over the live blocks. */
static int conflicts(Passes *P, const int64_t *first, const int64_t *last, long long max_pairs) {
    int n = P->n, *order = P->order, *live = malloc(sizeof(int) * (n + 1));
    int *count = calloc(n + 1, sizeof(int));
    int ok = live && count;
    if (ok) sort_blocks(n, first, P->rank, 0, P->items, order);
    long long pairs = 0;
    for (int pass = 0; pass < 2 && ok; pass++) {
        int m = 0;
        for (int r = 0; r < n && pairs <= max_pairs; r++) {       /* (counting stops past max_pairs) */
            int i = order[r], kept = 0;
            for (int q = 0; q < m; q++) {
                int j = live[q];
                if (last[j] < first[i]) continue;
                live[kept++] = j;
                if (pass == 0) { count[i]++; count[j]++; pairs += 2; }
                else { P->conflicts[P->at[i] + count[i]++] = j; P->conflicts[P->at[j] + count[j]++] = i; }
            }
            live[kept] = i;
            m = kept + 1;
        }
        if (pass == 0) {
            if (pairs > max_pairs || !(P->at = malloc(sizeof(int) * (n + 1)))
                || !(P->conflicts = malloc(sizeof(int) * (pairs + 1)))) { ok = 0; break; }
            P->at[0] = 0;
            for (int k = 0; k < n; k++) P->at[k + 1] = P->at[k] + count[k];
            memset(count, 0, sizeof(int) * n);
        }
    }
    free(live); free(count);
    return ok;
}

/* One pass in the order of `weight` with first fit (or the smallest gap): its arena, or a value
 * above `cut` as soon as the arena passes it. */
static int64_t pass(Passes *P, const int64_t *weight, int smallest_gap, int64_t cut) {
    sort_blocks(P->n, weight, P->rank, 1, P->items, P->order);
    memset(P->placed, 0, (unsigned)P->n);
    int64_t top = 0;
    for (int r = 0; r < P->n; r++) {
        int i = P->order[r], m = 0;
        for (int e = P->at[i]; e < P->at[i + 1]; e++) {
            int j = P->conflicts[e];
            if (P->placed[j]) { P->taken[m].lo = P->offsets[j]; P->taken[m].hi = P->offsets[j] + P->size[j]; m++; }
        }
        P->work += P->at[i + 1] - P->at[i] + BLOCK_WORK;
        sort_by_lo(P->taken, m);
        int64_t size = P->size[i], offset = 0, gap_at = -1, gap = INT64_MAX;
        for (int q = 0; q < m; q++) {
            if (P->taken[q].lo - offset >= size) {
                if (!smallest_gap) break;
                if (P->taken[q].lo - offset < gap) { gap = P->taken[q].lo - offset; gap_at = offset; }
            }
            if (P->taken[q].hi > offset) offset = P->taken[q].hi;
        }
        if (gap_at >= 0) offset = gap_at;
        P->offsets[i] = offset;
        P->placed[i] = 1;
        if (offset + size > top && (top = offset + size) > cut) return top;
    }
    return top;
}

typedef struct {
    int64_t arena;
    int64_t *weight;                       /* the chain's best order */
} Chain;

/* The two chains (see the header) until a plan's arena is at most `goal`, `work` is spent (a
 * quarter of it, where the best plan is still above `rival`'s arena, another heuristic's: these
 * passes seldom catch up from there), the deadline passes (negative: none), the caller sets
 * `stop[0]`, or a signal handler raises (-1, its exception set); the best plan's offsets go to
 * `best`. 0 if the deadline passed before the first two passes were done. The draws are seeded
 * by the count of blocks: the same blocks, the same plan (unless a deadline or stop ends it). */
static int search(Passes *P, Chain *chains, int64_t goal, int64_t rival, long long work, double deadline,
                  volatile const char *stop, int64_t *trial, int64_t *best) {
    uint64_t rng = (uint64_t)P->n;
    double signals_at = now() + SIGNALS_EVERY_S;
    int64_t best_arena = INT64_MAX;
    for (long round = 0;; round++) {
        int c = round % 2;
        Chain *chain = &chains[c];
        if (round < 2) {
            memcpy(trial, P->size, sizeof(int64_t) * P->n);
        } else {
            memcpy(trial, chain->weight, sizeof(int64_t) * P->n);
            for (int k = 0; k < P->n; k++)
                if (splitmix(&rng) % 1000 < REDRAW_PER_MILLE)
                    trial[k] = (int64_t)(2 * ((splitmix(&rng) >> 11) * 0x1.0p-53) * (double)P->size[k]);
        }
        int64_t arena = pass(P, trial, c, round < 2 ? INT64_MAX : chain->arena);
        if (round < 2 || arena <= chain->arena) {
            chain->arena = arena;
            memcpy(chain->weight, trial, sizeof(int64_t) * P->n);
            if (arena < best_arena) { best_arena = arena; memcpy(best, P->offsets, sizeof(int64_t) * P->n); }
        }
        double t = now();
        if (deadline >= 0 && t > deadline) return round >= 1;
        if (round >= 1 && (best_arena <= goal || P->work >= work || *stop
                           || (best_arena > rival && P->work >= work / 4))) return 1;
        if (t > signals_at) {
            signals_at = t + SIGNALS_EVERY_S;
            PyGILState_STATE gil = PyGILState_Ensure();
            int raised = PyErr_CheckSignals() < 0;
            PyGILState_Release(gil);
            if (raised) return -1;
        }
    }
}

static int read_array(PyObject *obj, Py_buffer *view, Py_ssize_t n, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return 0;
    if (view->itemsize != itemsize || view->len != n * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes", what, n, itemsize);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* reordered(size, first, last, rank, goal, rival, work, deadline, max_pairs[, stop]) -> offsets or None:
 * size, first and last array('q') (every size positive, first <= last), rank array('i') (each
 * block's place in the caller's order, ties of weight going by it). None past the deadline before
 * the first passes, or with more than max_pairs conflicting pairs (counted both ways). */
static PyObject *py_reordered(PyObject *self, PyObject *args) {
    PyObject *objs[4];
    long long goal, rival, work, max_pairs;
    double deadline;
    Py_buffer views[4], stop = {0};
    if (!PyArg_ParseTuple(args, "OOOOLLLdL|w*", &objs[0], &objs[1], &objs[2], &objs[3], &goal, &rival, &work,
                          &deadline, &max_pairs, &stop))
        return NULL;
    Py_ssize_t n = PyObject_Length(objs[0]);
    const char *names[4] = {"size", "first", "last", "rank"};
    int read = 0;
    while (n >= 0 && read < 4 && read_array(objs[read], &views[read], n, read == 3 ? sizeof(int) : sizeof(int64_t),
                                            names[read]))
        read++;
    Passes P = {.n = (int)n};
    Chain chains[2] = {{0}};
    int64_t *trial = NULL, *best = NULL;
    int status = 0, ok = read == 4;
    PyObject *result = NULL;
    if (ok) {
        P.size = views[0].buf; P.rank = views[3].buf;
        P.order = malloc(sizeof(int) * (n + 1));
        P.items = malloc(sizeof(Item) * (n + 1));
        P.placed = malloc(n + 1);
        P.offsets = calloc(n + 1, sizeof(int64_t));
        trial = malloc(sizeof(int64_t) * (n + 1));
        best = malloc(sizeof(int64_t) * (n + 1));
        for (int c = 0; c < 2; c++) chains[c].weight = malloc(sizeof(int64_t) * (n + 1));
        int allocated = P.order && P.items && P.placed && P.offsets && trial && best && chains[0].weight
                        && chains[1].weight;
        Py_BEGIN_ALLOW_THREADS
        if (allocated && conflicts(&P, views[1].buf, views[2].buf, max_pairs)) {
            int widest = 0;
            for (int k = 0; k < P.n; k++) if (P.at[k + 1] - P.at[k] > widest) widest = P.at[k + 1] - P.at[k];
            if ((P.taken = malloc(sizeof(Interval) * (widest + 1))))
                status = search(&P, chains, goal, rival, work, deadline, stop.buf && stop.len ? stop.buf : "", trial,
                                best);
        }
        Py_END_ALLOW_THREADS
        if (status == 1) {
            result = PyList_New(n);
            for (Py_ssize_t k = 0; result && k < n; k++) PyList_SET_ITEM(result, k, PyLong_FromLongLong(best[k]));
        } else if (status == 0) {
            result = Py_NewRef(Py_None);
        }                                   /* (-1: the signal handler's exception is set) */
    }
    free(P.order); free(P.items); free(P.placed); free(P.offsets); free(P.at); free(P.conflicts); free(P.taken);
    free(trial); free(best);
    for (int c = 0; c < 2; c++) free(chains[c].weight);
    for (int v = 0; v < read; v++) PyBuffer_Release(&views[v]);
    if (stop.buf) PyBuffer_Release(&stop);
    return result;
}

static PyMethodDef methods[] = {
    {"reordered", py_reordered, METH_VARARGS, "Greedy passes over reweighed orders: the best plan's offsets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_reordered", NULL, -1, methods};

PyMODINIT_FUNC PyInit__reordered(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256);   /* setup.py's; compiled.py checks it */
    return m;
}
