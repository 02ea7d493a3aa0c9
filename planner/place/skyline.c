/* The skyline heuristic's passes, compiled (skyline.py says what the heuristic does and why).
 *
 * Blocks cover sections [lo[k], hi[k]); each section has a floor, the top of what is placed over
 * it. The lowest floor, leftmost, is taken from a heap of (floor, section) entries, stale ones
 * skipped. There a block is placed that starts at the section and whose sections are all at that
 * floor (the run of sections at the floor), the best by the pass's candidate order (`rule`, ties
 * to the first in the caller's order); if none fits, the section is raised to its next
 * neighbouring level and the gap is left empty.
 *
 * Reweighed passes (`reweighed`): the candidate order compares each block's weight where it
 * compared its size. From the best plain pass, each further pass redraws the weight of a tenth of
 * the blocks at random, between 0 and twice the block's size, and now and then takes another
 * order; a pass whose arena is no higher than the best so far becomes the one the next redraws
 * from. A step of local search over candidate orders, made cheap by the compiled pass.
 *
 * Compiled because the raises are many where the skyline is jagged: thousands of blocks of
 * unrelated sizes, or 10^5 blocks of a long program, take hundreds of thousands of raises a pass
 * (seconds to a minute a pass in Python, the same plans: docs/measurements.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef __int128 wide;                     /* size x length overflows 64 bits on huge inputs */
typedef struct { int64_t level; int section; } Entry;
enum { RULES = 4, KEYS = 4, CLOCK_EVERY = 4096 };
/* A pass runs without the GIL, so Ctrl-C's handler runs only when the pass asks for it: every
 * SIGNALS_EVERY_S (a pass over 10^5 blocks can take minutes). */
#define SIGNALS_EVERY_S 0.1
/* A reweighed pass redraws REDRAW_PER_MILLE of the weights, and takes another order at
 * OTHER_RULE_PER_MILLE of the passes (docs/measurements.md). */
enum { REDRAW_PER_MILLE = 100, OTHER_RULE_PER_MILLE = 200 };

typedef struct {
    int n, count;
    const int64_t *size;
    const int *lo, *hi;
    const int64_t *weight;                 /* what the candidate order compares: the sizes, or redrawn */
    int *start_at, *start_len, *start;     /* per section: the unplaced blocks starting there, in order */
    int *first_start, *first_over;         /* start and over before a pass */
    int *over;                             /* per section: the unplaced blocks over it */
    int64_t *floor, *offsets;
    int64_t *queued;                       /* per section: the level it was last pushed at (-1: none) */
    long steps;                            /* heap entries taken, over all passes: the work done */
    Entry *heap;
    long heap_len, heap_cap;
    int run_valid, run_end;                /* the run of sections at the lowest level */
    int64_t run_level;
    double signals_at;                     /* when to let Python's signal handlers run next */
} Pass;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);    /* the clock of Python's time.monotonic() */
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int before(Entry a, Entry b) { return a.level < b.level || (a.level == b.level && a.section < b.section); }

static int push(Pass *P, int64_t level, int section) {
    if (P->heap_len == P->heap_cap) {
        long cap = 2 * P->heap_cap + 16;
        Entry *grown = realloc(P->heap, sizeof(Entry) * cap);
        if (!grown) return 0;
        P->heap = grown;
        P->heap_cap = cap;
    }
    Entry e = {level, section};
    long i = P->heap_len++;
    while (i > 0 && before(e, P->heap[(i - 1) / 2])) {
        P->heap[i] = P->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    P->heap[i] = e;
    return 1;
}

static Entry pop(Pass *P) {
    Entry top = P->heap[0], last = P->heap[--P->heap_len];
    long i = 0, n = P->heap_len;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(P->heap[c + 1], P->heap[c])) c++;
        if (!before(P->heap[c], last)) break;
        P->heap[i] = P->heap[c];
        i = c;
    }
    if (n) P->heap[i] = last;
    return top;
}

/* One past the last section of the run at level m that holds section s. Sections at the lowest
 * level are visited left to right and a visit changes only sections from s on, so the end found
 * from an earlier section of the run still holds: each run is scanned once. */
static int run_end_at(Pass *P, int s, int64_t m) {
    if (!P->run_valid || P->run_level != m || P->run_end <= s) {
        int t = s + 1;
        while (t < P->count && P->floor[t] == m) t++;
        P->run_valid = 1;
        P->run_level = m;
        P->run_end = t;
    }
    return P->run_end;
}

/* The candidate order's key of a block that fits (skyline.py's SKYLINE_RULES), smaller first. */
static void key_of(int rule, int flush, int fills, int64_t length, int64_t size, wide key[KEYS]) {
    wide area = (wide)size * length;
    switch (rule) {
    case 0: key[0] = -flush; key[1] = -area; key[2] = 0; key[3] = 0; break;
    case 1: key[0] = -fills; key[1] = -flush; key[2] = -size; key[3] = -length; break;
    case 2: key[0] = -flush - fills; key[1] = -area; key[2] = 0; key[3] = 0; break;
    default: key[0] = -fills; key[1] = -length; key[2] = -size; key[3] = 0; break;
    }
}

static int less_key(const wide a[KEYS], const wide b[KEYS]) {
    for (int i = 0; i < KEYS; i++)
        if (a[i] != b[i]) return a[i] < b[i];
    return 0;
}

/* Where section s goes when nothing fits at floor m there: the lower of its left neighbour and the
 * first level right of its run at m (above m); else (no block from the left crosses s: each one left
 * starts here and reaches higher) the lowest of their highest floors. -1 if s has no such block. */
static int64_t next_level(Pass *P, int s, int64_t m, int run_end) {
    int64_t best = -1;
    if (s > 0 && P->floor[s - 1] > m) best = P->floor[s - 1];
    if (run_end < P->count && P->over[run_end] && P->floor[run_end] > m && (best < 0 || P->floor[run_end] < best))
        best = P->floor[run_end];
    if (best >= 0) return best;
    for (int j = 0; j < P->start_len[s]; j++) {
        int k = P->start[P->start_at[s] + j];
        int64_t high = 0;
        for (int t = s; t < P->hi[k]; t++)
            if (P->floor[t] > high) high = P->floor[t];
        if (best < 0 || high < best) best = high;
    }
    return best;
}

static void take(Pass *P, int s, int j) {
    int *list = P->start + P->start_at[s];
    memmove(list + j, list + j + 1, sizeof(int) * (P->start_len[s] - j - 1));
    P->start_len[s]--;
}

enum { DONE = 1, LATE = 0, NO_MEMORY = -1, STUCK = -2, INTERRUPTED = -3 };

/* Whether a signal handler raised (KeyboardInterrupt), its exception then set. */
static int signalled(void) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int raised = PyErr_CheckSignals() < 0;
    PyGILState_Release(gil);
    return raised;
}

/* Whether the pass must end now: LATE past the deadline, INTERRUPTED by a signal, else DONE. */
static int due(Pass *P, double deadline) {
    double t = now();
    if (deadline >= 0 && t > deadline) return LATE;
    if (t < P->signals_at) return DONE;
    P->signals_at = t + SIGNALS_EVERY_S;
    return signalled() ? INTERRUPTED : DONE;
}

/* Section s pushed at `level` unless it was pushed there already: a section of a run with nothing
 * over it keeps its floor when visited, and a second entry would visit it, and hand the visit on,
 * again (quadratic in the length of a run of such sections). */
static int visit(Pass *P, int64_t level, int s) {
    if (P->queued[s] == level) return 1;
    P->queued[s] = level;
    return push(P, level, s);
}

/* A section visited at level m hands the visit on to section t, the next along the run at m, if
 * the run goes on there: it is the lowest, leftmost section now. Only the first section of a run
 * is pushed when the run is made (a block placed over it, or a raise), the rest visited in turn:
 * a pass that pushed every section a block covers took 23 s on 6,000 nested lifetimes of 10^4
 * sections each. */
static int next_in_run(Pass *P, int t, int64_t m) {
    return t >= P->count || P->floor[t] != m || visit(P, m, t);
}

/* One pass. DONE, LATE (the deadline passed), INTERRUPTED, NO_MEMORY, or STUCK: a section with no
 * level to rise to (a bug) */
static int run(Pass *P, int rule, double deadline) {
    memcpy(P->start, P->first_start, sizeof(int) * P->n);
    memcpy(P->over, P->first_over, sizeof(int) * P->count);
    memset(P->floor, 0, sizeof(int64_t) * P->count);
    for (int s = 0; s < P->count; s++) P->start_len[s] = P->start_at[s + 1] - P->start_at[s];
    for (int s = 0; s < P->count; s++) P->queued[s] = -1;
    P->heap_len = 0;
    P->run_valid = 0;
    if (P->count && !visit(P, 0, 0)) return NO_MEMORY;
    while (P->heap_len) {
        int status;
        if (++P->steps % CLOCK_EVERY == 0 && (status = due(P, deadline)) != DONE) return status;
        Entry e = pop(P);
        int s = e.section;
        int64_t m = e.level;
        if (P->floor[s] != m) continue;                         /* a stale entry */
        if (!P->over[s]) {                                      /* nothing left over it: on along the run */
            if (!next_in_run(P, s + 1, m)) return NO_MEMORY;
            continue;
        }
        int run_end = run_end_at(P, s, m);
        int best = -1;
        wide best_key[KEYS], key[KEYS];
        for (int j = 0; j < P->start_len[s]; j++) {
            int k = P->start[P->start_at[s] + j], end = P->hi[k];
            if (end > run_end) continue;                        /* some section under it is higher */
            int64_t top = m + P->size[k];
            int flush = (s > 0 && top == P->floor[s - 1]) + (end < P->count && top == P->floor[end]);
            key_of(rule, flush, end == run_end, end - s, P->weight[k], key);
            if (best < 0 || less_key(key, best_key)) {
                best = j;
                memcpy(best_key, key, sizeof key);
            }
        }
        if (best >= 0) {
            int k = P->start[P->start_at[s] + best];
            take(P, s, best);
            int64_t top = m + P->size[k];
            P->offsets[k] = m;
            for (int t = s; t < P->hi[k]; t++) {
                P->floor[t] = top;
                P->over[t]--;
            }
            if (!visit(P, top, s) || !next_in_run(P, P->hi[k], m)) return NO_MEMORY;
        } else {
            int64_t level = next_level(P, s, m, run_end);
            if (level < 0) return STUCK;
            P->floor[s] = level;
            if (!visit(P, level, s) || !next_in_run(P, s + 1, m)) return NO_MEMORY;
        }
    }
    return DONE;
}

/* The blocks' extent under the offsets of the last pass. */
static int64_t extent(const Pass *P) {
    int64_t top = 0;
    for (int k = 0; k < P->n; k++)
        if (P->offsets[k] + P->size[k] > top) top = P->offsets[k] + P->size[k];
    return top;
}

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Reweighed passes from the plain pass of `rule` (see the header) until one's arena is at most
 * `goal`, `work` heap steps are spent, the deadline passes or the caller sets `stop[0]` (a
 * search beside it has a plan); the best plan's offsets stay in `best`. The random draws are
 * seeded by the count of blocks: the same blocks, the same plan (unless a deadline or stop
 * ends it). */
static int reweigh(Pass *P, int rule, int64_t goal, long work, double deadline, volatile const char *stop,
                   int64_t *best) {
    int64_t *weight = malloc(sizeof(int64_t) * (P->n + 1)), *trial = malloc(sizeof(int64_t) * (P->n + 1));
    if (!weight || !trial) { free(weight); free(trial); return NO_MEMORY; }
    memcpy(weight, P->size, sizeof(int64_t) * P->n);
    P->weight = weight;
    int status = run(P, rule, deadline);
    if (status != DONE) { free(weight); free(trial); return status; }
    int64_t best_extent = extent(P);
    memcpy(best, P->offsets, sizeof(int64_t) * P->n);
    uint64_t rng = (uint64_t)P->n;
    while (status == DONE && best_extent > goal && P->steps < work && !*stop) {
        memcpy(trial, weight, sizeof(int64_t) * P->n);
        for (int k = 0; k < P->n; k++)
            if (splitmix(&rng) % 1000 < REDRAW_PER_MILLE) {
                double u = (splitmix(&rng) >> 11) * 0x1.0p-53;
                trial[k] = (int64_t)(2 * u * (double)P->size[k]);
                if (trial[k] < 1) trial[k] = 1;
            }
        int trial_rule = splitmix(&rng) % 1000 < OTHER_RULE_PER_MILLE ? (int)(splitmix(&rng) % RULES) : rule;
        P->weight = trial;
        status = run(P, trial_rule, deadline);
        if (status == DONE && extent(P) <= best_extent) {
            best_extent = extent(P);
            memcpy(best, P->offsets, sizeof(int64_t) * P->n);
            memcpy(weight, trial, sizeof(int64_t) * P->n);
            rule = trial_rule;
        }
    }
    free(weight);
    free(trial);
    return status == LATE ? DONE : status;      /* past the deadline, the best plan so far */
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

/* The passes of `rule` over size, lo, hi (array('q'), array('i'), array('i'): sections [lo, hi)
 * within `count`, every size positive): plain when `work` is 0, else reweighed (see reweigh).
 * Offsets, or None if time.monotonic() passed `deadline` (negative: none) in the plain pass. */
static PyObject *passes_stopped(PyObject *size_obj, PyObject *lo_obj, PyObject *hi_obj, int count, int rule,
                                long long goal, long long work, double deadline, int reweighed,
                                volatile const char *stop) {
    if (rule < 0 || rule >= RULES) return PyErr_Format(PyExc_ValueError, "rule: 0 to %d", RULES - 1);
    Py_buffer size_view, lo_view, hi_view;
    Py_ssize_t n = PyObject_Length(size_obj);
    if (n < 0 || !read_array(size_obj, &size_view, n, sizeof(int64_t), "size")) return NULL;
    if (!read_array(lo_obj, &lo_view, n, sizeof(int), "lo")) { PyBuffer_Release(&size_view); return NULL; }
    if (!read_array(hi_obj, &hi_view, n, sizeof(int), "hi")) {
        PyBuffer_Release(&size_view); PyBuffer_Release(&lo_view); return NULL;
    }
    Pass P;
    memset(&P, 0, sizeof P);
    P.n = (int)n; P.count = count;
    P.size = size_view.buf; P.lo = lo_view.buf; P.hi = hi_view.buf; P.weight = P.size;
    int ok = 1;
    for (int k = 0; k < P.n && ok; k++)
        if (P.lo[k] < 0 || P.hi[k] > count || P.lo[k] >= P.hi[k] || P.size[k] <= 0) {
            PyErr_Format(PyExc_ValueError, "block %d: sections [%d, %d) of %d, size %lld", k, P.lo[k], P.hi[k],
                         count, (long long)P.size[k]);
            ok = 0;
        }
    int status = NO_MEMORY;
    int64_t *best = NULL;
    if (ok) {
        P.start_at = calloc(count + 1, sizeof(int));
        P.start_len = calloc(count + 1, sizeof(int));
        P.start = malloc(sizeof(int) * (n + 1));
        P.first_start = malloc(sizeof(int) * (n + 1));
        P.over = calloc(count + 1, sizeof(int));
        P.first_over = calloc(count + 1, sizeof(int));
        P.floor = calloc(count + 1, sizeof(int64_t));
        P.queued = calloc(count + 1, sizeof(int64_t));
        P.offsets = calloc(n + 1, sizeof(int64_t));
        best = calloc(n + 1, sizeof(int64_t));
        if (P.start_at && P.start_len && P.start && P.first_start && P.over && P.first_over && P.floor && P.queued
            && P.offsets && best) {
            for (int k = 0; k < P.n; k++) {
                P.start_at[P.lo[k] + 1]++;
                for (int t = P.lo[k]; t < P.hi[k]; t++) P.first_over[t]++;
            }
            for (int s = 0; s < count; s++) P.start_at[s + 1] += P.start_at[s];
            for (int k = 0; k < P.n; k++) P.first_start[P.start_at[P.lo[k]] + P.start_len[P.lo[k]]++] = k;
            Py_BEGIN_ALLOW_THREADS
            if (reweighed) {
                status = reweigh(&P, rule, goal, work, deadline, stop, best);
            } else {
                status = run(&P, rule, deadline);
                memcpy(best, P.offsets, sizeof(int64_t) * P.n);
            }
            Py_END_ALLOW_THREADS
        }
    }
    PyObject *result = NULL;
    if (status == DONE) {
        result = PyList_New(n);
        for (Py_ssize_t k = 0; result && k < n; k++) PyList_SET_ITEM(result, k, PyLong_FromLongLong(best[k]));
    } else if (status == LATE) {
        result = Py_NewRef(Py_None);
    } else if (status == STUCK) {
        PyErr_SetString(PyExc_RuntimeError, "skyline: a section with no level to rise to");
    } else if (ok && status != INTERRUPTED) {     /* (interrupted: the handler's exception is set) */
        PyErr_NoMemory();
    }
    free(P.start_at); free(P.start_len); free(P.start); free(P.first_start); free(P.over); free(P.first_over);
    free(P.floor); free(P.queued); free(P.offsets); free(P.heap); free(best);
    PyBuffer_Release(&size_view); PyBuffer_Release(&lo_view); PyBuffer_Release(&hi_view);
    return result;
}

/* The arguments of skyline_pass and reweighed (whose optional last one is `stop`, a writable
 * buffer: see reweigh) to passes_stopped. */
static PyObject *passes(PyObject *args, int reweighed) {
    PyObject *size_obj, *lo_obj, *hi_obj;
    int count, rule;
    long long goal = 0, work = 0;
    double deadline;
    Py_buffer stop = {0};
    int parsed = reweighed ? PyArg_ParseTuple(args, "OOOiiLLd|w*", &size_obj, &lo_obj, &hi_obj, &count, &rule, &goal,
                                              &work, &deadline, &stop)
                           : PyArg_ParseTuple(args, "OOOiid", &size_obj, &lo_obj, &hi_obj, &count, &rule, &deadline);
    if (!parsed) return NULL;
    PyObject *result = passes_stopped(size_obj, lo_obj, hi_obj, count, rule, goal, work, deadline, reweighed,
                                      stop.buf && stop.len ? stop.buf : "");
    if (stop.buf) PyBuffer_Release(&stop);
    return result;
}

/* skyline_pass(size, lo, hi, count, rule, deadline) -> offsets or None */
static PyObject *py_skyline_pass(PyObject *self, PyObject *args) { return passes(args, 0); }

/* reweighed(size, lo, hi, count, rule, goal, work, deadline[, stop]) -> offsets or None */
static PyObject *py_reweighed(PyObject *self, PyObject *args) { return passes(args, 1); }

static PyMethodDef methods[] = {
    {"skyline_pass", py_skyline_pass, METH_VARARGS, "One skyline pass: offsets, or None past the deadline."},
    {"reweighed", py_reweighed, METH_VARARGS, "Reweighed skyline passes: the best plan's offsets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_skyline", NULL, -1, methods};

PyMODINIT_FUNC PyInit__skyline(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256);   /* setup.py's; planner/compiled.py checks it */
    return m;
}
