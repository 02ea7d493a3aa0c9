/* The canonical search, compiled: does a component fit under a capacity?
 *
 * google/minimalloc's search (Moffitt, ASPLOS 2023), written from its paper. Any plan can be
 * pushed down until every buffer rests on offset 0 or on a buffer it conflicts with; read in
 * order of offset, such a plan places each buffer at its floor, the highest top of the placed
 * buffers it conflicts with (`floor[k]`). So the search places one buffer at a time at its
 * floor, offsets never decreasing (`base`, the last offset placed, is a floor for all).
 *
 * Why each rule below loses no plan: take, of the plans that extend the placements so far with
 * every later offset >= base, one with the least sum of offsets, and let x be its lowest
 * unplaced buffer. x sits at floor[x] (else it could drop), and floor[x] < floor[y] + size[y]
 * for every other unplaced y (else y could drop to its floor, under everything unplaced).
 *   - canonical order: only buffers with base <= floor < the lowest floor + size of any
 *     unplaced buffer are tried, lowest floor first (at one floor, those whose tops line up
 *     with the sections beside them first: a choice of order only, which loses nothing);
 *   - section inference: over each section, the unplaced buffers whose floor is >= t must fit
 *     in [t, capacity), for every t (the floors counted from at least base); after the first
 *     placement, propagation's overload checks (below) are this rule;
 *   - a buffer x whose top is at or under the floor of every unplaced buffer it conflicts with
 *     ("hatless") can drop to its floor in any plan that places a later candidate first: when
 *     x first fails, so do they;
 *   - dynamic decomposition: where no unplaced buffer crosses a section boundary, the two sides
 *     are solved apart, and when one fails the node fails;
 *   - failed states are remembered: the unplaced buffers of a part, their floors and base fully
 *     decide it (a 128-bit hash of them);
 *   - buffers alike in span, size and floor lead to the same states: only the first is tried;
 *   - a section with no slack left whose lowest free byte is at base must have that byte covered
 *     now, by one of its buffers whose floor is base: of such sections, the one with the fewest of
 *     them narrows the candidates to those (`forced`);
 *   - propagation: over one section, the unplaced buffers are the jobs of one machine, each between
 *     a least offset (its floor, base, or `est`) and a greatest top (`lct`). Overload checks, edge
 *     finding both ways and compulsory parts tighten these bounds (`propagate_section`), and a
 *     buffer whose bounds moved has its sections looked at again (the sections where the rules
 *     failed most often first: they refute four placements in five). A buffer whose least offset is
 *     above its floor cannot go there now. CP-SAT's presolve refutes the search's wrong early
 *     placements by this reasoning and no other (docs/measurements.md, "Deadlines").
 * The search restarts with another order of the buffers (the caller's `ranks`) each time it
 * spends its node budget, which grows by half every round of orders. After the first round over
 * them the restarts are guided: each takes the order of the restart that placed the most (area:
 * size x sections, at its deepest), moves a few buffers to random ranks (GUIDE_PER_MILLE), and
 * becomes the one to follow if it places at least as much; and the candidates' order is shaken at
 * a few nodes (NOISE_PER_MILLE). Where plans are many (slack, or a few hundred buffers), one
 * search either finds one in milliseconds or wanders for seconds below a wrong early choice;
 * restarts that differ early find the quick ones, and an order that got far is a better place to
 * look near than one drawn afresh. Remembered failures stay valid across restarts.
 * It runs without the GIL, so a caller can run it on a thread of its own beside other work, and
 * stops it early by setting the first byte of `stop`. Meanwhile the caller may ask for the deepest
 * path since it last asked (`deepest`, answered at the next node): the search could not extend it,
 * but CP-SAT often completes most of it by putting the buffers after it below its last offset.
 * So can this search, given a prefix's placements as a skyline to start from (`tops`): the
 * buffers left then rest on it, as low as it lets them, wherever the prefix's last offset is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FOUND = 1, FAILED = 0, STOPPED = -1 };
/* After the first pass over the orders, at NOISE_PER_MILLE of the nodes the first candidate trades
 * places with one of the next NOISE_WIDTH - 1: restarts that differ high in the tree, not only where
 * the orders break ties. */
enum { NOISE_PER_MILLE = 20, NOISE_WIDTH = 3 };
/* A guided restart moves this many buffers in a thousand of its order to a random rank. */
enum { GUIDE_PER_MILLE = 30 };
/* The longest queue of sections that propagation sorts by their failures. */
enum { SORTED_QUEUE = 256 };

typedef struct { int buffer; int64_t old; } Entry;   /* old == -1: the buffer was placed; buffer < 0: section
                                                       * -1 - buffer's top was old; buffer in [n, 2n): est of
                                                       * buffer - n was old; in [2n, 3n): lct of buffer - 2n;
                                                       * else the buffer's floor was old */
typedef struct { uint64_t a, b; } Key;

typedef struct {
    int n, nsec, nranks;
    int64_t capacity;
    int64_t *size;
    int *lo, *hi;                        /* buffer k covers sections [lo[k], hi[k]) */
    int *conflict_at, *conflict;         /* CSR: the buffers sharing a section with k */
    int *start_at, *start;               /* CSR: the buffers starting at section s */
    int *cover_at, *cover;               /* CSR: the buffers over section s */
    int *by_low;                         /* cover, each section's part reordered by its last rules' sort by
                                          * least offset (the unplaced first): the next sort starts near done */
    int *ranks, *rank;                   /* nranks orders; rank: the one in use */
    int64_t *floor, *left;               /* a placed buffer's floor is its offset; left[s]: sizes of the
                                          * unplaced buffers over s */
    int64_t *top;                        /* top[s]: the highest top of the placed buffers over s */
    char *placed;
    Entry *trail;
    int ntrail, trail_size;
    uint64_t *zobrist;
    Key *failed;
    size_t failed_mask, failed_count;
    long long nodes, budget, calls;        /* calls: of the rules over a section */
    double deadline;
    volatile const char *stop;           /* the caller's flag: nonzero stops the search */
    int stopped, timed_out;
    uint64_t rng;                        /* the candidates' noise: its counter, and whether it is on */
    int noisy;
    int depth, *path;                    /* the buffers placed, in order */
    volatile int64_t *deepest;           /* the caller's window on the deepest path (NULL: none), see py_fit */
    int deep_depth, deep_valid, *deep_path; /* the deepest path since the caller last asked; deep_path[:deep_valid]
                                          * is also path[:deep_valid] */
    int64_t *deep_offset;
    double area, furthest;               /* size x sections of the placed buffers; the most in this restart */
    int64_t *est, *lct;                  /* per buffer: propagation's least offset and greatest top */
    int *queue;                          /* a ring of the sections left to propagate over */
    long long *queued, queue_stamp;      /* queued[s] == queue_stamp: s is in the ring */
    int64_t *fails;                      /* per section: how often the rules failed over it */
    int *jobs, *order, *low_order, *placed_jobs;  /* propagate_section's scratch, n each; low_order: the jobs
                                          * by least offset, as section_rules sorted them (order: by greatest top) */
    int64_t *low, *high, *low_was, *job_size;      /* low_was: low before the rules */
    int64_t *widest;                     /* section_rules' scratch, n + 1 */
} Search;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t mix(uint64_t x) {        /* splitmix64's finalizer */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static size_t slot(const Search *S, Key key) { return (size_t)(key.a ^ (key.b >> 7)) & S->failed_mask; }

static int known_failed(const Search *S, Key key) {
    for (size_t i = slot(S, key);; i = (i + 1) & S->failed_mask) {
        if (S->failed[i].a == 0) return 0;
        if (S->failed[i].a == key.a && S->failed[i].b == key.b) return 1;
    }
}

static void remember_failed(Search *S, Key key) {
    if (4 * (S->failed_count + 1) > 3 * (S->failed_mask + 1)) return;    /* full: forget nothing, add nothing */
    size_t i = slot(S, key);
    while (S->failed[i].a != 0) i = (i + 1) & S->failed_mask;
    S->failed[i] = key;
    S->failed_count++;
}

static void log_entry(Search *S, int buffer, int64_t old) {
    if (S->ntrail == S->trail_size) {        /* bounds may tighten many times on one path */
        S->trail_size *= 2;
        S->trail = realloc(S->trail, sizeof(Entry) * S->trail_size);
    }
    S->trail[S->ntrail++] = (Entry){buffer, old};
}

static void place(Search *S, int k) {
    int64_t top = S->floor[k] + S->size[k];
    log_entry(S, k, -1);
    S->placed[k] = 1;
    S->path[S->depth++] = k;
    S->area += (double)S->size[k] * (S->hi[k] - S->lo[k]);
    if (S->area > S->furthest) S->furthest = S->area;
    for (int s = S->lo[k]; s < S->hi[k]; s++) {
        S->left[s] -= S->size[k];
        log_entry(S, -1 - s, S->top[s]);
        S->top[s] = top;
    }
    for (int i = S->conflict_at[k]; i < S->conflict_at[k + 1]; i++) {
        int y = S->conflict[i];
        if (!S->placed[y] && S->floor[y] < top) {
            log_entry(S, y, S->floor[y]);
            S->floor[y] = top;
        }
    }
    if (S->deepest && S->depth > S->deep_depth) {
        for (int d = S->deep_valid; d < S->depth; d++) {
            S->deep_path[d] = S->path[d];
            S->deep_offset[d] = S->floor[S->path[d]];
        }
        S->deep_depth = S->deep_valid = S->depth;
    }
}

/* The caller asked (deepest[0] set), and a buffer was placed since it last asked: the deepest path
 * since then goes to deepest[3:], as (buffer, offset) pairs, its length to deepest[2], and
 * deepest[1] counts the answers. */
static void answer_deepest(Search *S) {
    for (int d = 0; d < S->deep_depth; d++) {
        S->deepest[3 + 2 * d] = S->deep_path[d];
        S->deepest[4 + 2 * d] = S->deep_offset[d];
    }
    S->deepest[2] = S->deep_depth;
    S->deepest[0] = 0;
    __atomic_fetch_add((int64_t *)&S->deepest[1], 1, __ATOMIC_RELEASE);
    S->deep_depth = 0;
}

static void undo(Search *S, int mark) {
    while (S->ntrail > mark) {
        Entry e = S->trail[--S->ntrail];
        if (e.buffer < 0) {
            S->top[-1 - e.buffer] = e.old;
        } else if (e.buffer >= 2 * S->n) {
            S->lct[e.buffer - 2 * S->n] = e.old;
        } else if (e.buffer >= S->n) {
            S->est[e.buffer - S->n] = e.old;
        } else if (e.old >= 0) {
            S->floor[e.buffer] = e.old;
        } else {
            int k = e.buffer;
            S->placed[k] = 0;
            if (--S->depth < S->deep_valid) S->deep_valid = S->depth;
            for (int s = S->lo[k]; s < S->hi[k]; s++) S->left[s] += S->size[k];
            S->area -= (double)S->size[k] * (S->hi[k] - S->lo[k]);
        }
    }
}

/* After placing a buffer at base: every section of the part holds its unplaced bytes above base.
 * (Over the sections of the buffers placed or raised, propagation's overload checks then are
 * section inference: each floor is a least offset there, each greatest top at most the capacity.) */
static int room_above(const Search *S, int a, int b, int64_t base) {
    for (int s = a; s < b; s++)
        if (S->left[s] > 0 && base + S->left[s] > S->capacity) return 0;
    return 1;
}

/* `items` (count of them) by key[item], highest first (down) or lowest first, ties as they were:
 * insertion sort, for the lists are short (a section's tens of jobs, its queue) and qsort's calls
 * cost more than the sort itself. */
static void sort_by(int *items, int count, const int64_t *key, int down) {
    for (int i = 1; i < count; i++) {
        int x = items[i], j = i;
        for (; j > 0 && (down ? key[items[j - 1]] < key[x] : key[items[j - 1]] > key[x]); j--) items[j] = items[j - 1];
        items[j] = x;
    }
}

/* Section inference over section s before any placement: its buffers whose floor (the top under
 * them, from `tops`) is >= t fit in [t, capacity), for each floor t among them. */
static int section_fits(Search *S, int s) {
    int m = 0;
    for (int i = S->cover_at[s]; i < S->cover_at[s + 1]; i++) S->jobs[m++] = S->cover[i];
    sort_by(S->jobs, m, S->floor, 1);
    int64_t above = 0;
    for (int i = 0; i < m; i++) {
        above += S->size[S->jobs[i]];
        if (S->floor[S->jobs[i]] + above > S->capacity) return 0;
    }
    return 1;
}

static void queue_sections(Search *S, int k, int *tail) {
    for (int s = S->lo[k]; s < S->hi[k]; s++)
        if (S->queued[s] != S->queue_stamp) {
            S->queued[s] = S->queue_stamp;
            S->queue[*tail] = s;
            *tail = (*tail + 1) % (S->nsec + 1);
        }
}

/* The rules over one section, job j (of m) being an unplaced buffer of size w[j] with its offset in
 * [low[j], high[j] - w[j]]; 0 where they show that no plan exists. A job whose offset range is
 * shorter than itself surely covers [high - w, low + w): no other job may cross that compulsory
 * part. Omega, the jobs whose low is at least a, go above a: more than fits under their highest
 * top is an overload, and a job k below a that cannot go among them goes under them all (edge
 * finding: high[k] <= their highest top - their sizes; an Omega with room for the widest job
 * below a moves none, and is passed at once). Theta, the jobs whose high is at most b,
 * mirror that. A section whose bounds moved is queued again (with its buffers' other sections), so
 * one pass of each rule here is enough. */
static int section_rules(Search *S, int m, const int64_t *w) {
    int64_t *low = S->low, *high = S->high;
    int *order = S->low_order;          /* by low: propagate_section keeps this order */
    for (int j = 0; j < m; j++) {
        int64_t from = high[j] - w[j], to = low[j] + w[j];
        if (from >= to) continue;
        for (int k = 0; k < m; k++) {
            if (k == j) continue;
            if (from < low[k] + w[k] && low[k] < to) low[k] = to;
            if (from < high[k] && high[k] - w[k] < to) high[k] = from;
            if (low[k] + w[k] > high[k]) return 0;
        }
    }
    for (int i = 0; i < m; i++) order[i] = i;
    sort_by(order, m, low, 1);
    int64_t *widest = S->widest;         /* widest[i]: the largest job from the i-th on, in order */
    widest[m] = 0;
    for (int i = m - 1; i >= 0; i--) widest[i] = max64(widest[i + 1], w[order[i]]);
    int64_t sizes = 0, top = INT64_MIN;
    for (int i = 0; i < m; i++) {
        int j = order[i];
        sizes += w[j];
        top = max64(top, high[j]);
        if (i + 1 < m && low[order[i + 1]] == low[j]) continue;
        if (low[j] + sizes > top) return 0;
        if (low[j] + sizes + widest[i + 1] <= top) continue;     /* every job after fits among them */
        for (int r = i + 1; r < m; r++) {
            int k = order[r];
            if (low[j] + sizes + w[k] > max64(top, high[k]) && top - sizes < high[k]) {
                high[k] = top - sizes;
                if (low[k] + w[k] > high[k]) return 0;
            }
        }
    }
    /* by high, lowest first: most jobs' greatest top is the capacity, the highest there is, so
     * only the others need sorting (the same order as sorting them all, ties as they were) */
    int below = 0, *by_high = S->order;
    for (int i = 0; i < m; i++)
        if (high[i] < S->capacity) by_high[below++] = i;
    sort_by(by_high, below, high, 0);
    for (int i = 0, r = below; i < m; i++)
        if (high[i] >= S->capacity) by_high[r++] = i;
    for (int i = m - 1; i >= 0; i--) widest[i] = max64(widest[i + 1], w[by_high[i]]);
    int64_t bottom = INT64_MAX;
    sizes = 0;
    for (int i = 0; i < m; i++) {
        int j = by_high[i];
        sizes += w[j];
        if (low[j] < bottom) bottom = low[j];
        if (i + 1 < m && high[by_high[i + 1]] == high[j]) continue;
        if (bottom + sizes > high[j]) return 0;
        if (bottom + sizes + widest[i + 1] <= high[j]) continue;
        for (int r = i + 1; r < m; r++) {
            int k = by_high[r];
            if ((low[k] < bottom ? low[k] : bottom) + sizes + w[k] > high[j] && bottom + sizes > low[k]) {
                low[k] = bottom + sizes;
                if (low[k] + w[k] > high[k]) return 0;
            }
        }
    }
    return 1;
}

/* The rules over section s at `base`; bounds that tightened go on the trail, and the sections of
 * their buffers into the ring. */
static int propagate_section(Search *S, int s, int64_t base, int *tail) {
    int m = 0, p = 0;
    for (int i = S->cover_at[s]; i < S->cover_at[s + 1]; i++) {
        int k = S->by_low[i];
        if (S->placed[k]) { S->placed_jobs[p++] = k; continue; }
        S->jobs[m] = k;
        S->low[m] = S->low_was[m] = max64(max64(S->est[k], S->floor[k]), base);
        S->high[m] = S->lct[k];
        S->job_size[m] = S->size[k];
        m++;
    }
    if (!section_rules(S, m, S->job_size)) return 0;
    /* the order of the rules' sort by least offset, kept for the next call: its insertion sort (a
     * sixth of the search's time before) then has little to move; no bound the rules settle on
     * depends on the jobs' order */
    int *at = S->by_low + S->cover_at[s];
    for (int i = 0; i < m; i++) at[i] = S->jobs[S->low_order[i]];
    memcpy(at + m, S->placed_jobs, sizeof(int) * p);
    for (int j = 0; j < m; j++) {
        int k = S->jobs[j];
        if (S->low[j] > S->low_was[j]) {
            log_entry(S, S->n + k, S->est[k]);
            S->est[k] = S->low[j];
            queue_sections(S, k, tail);
        }
        if (S->high[j] < S->lct[k]) {
            log_entry(S, 2 * S->n + k, S->lct[k]);
            S->lct[k] = S->high[j];
            queue_sections(S, k, tail);
        }
    }
    return 1;
}

/* After placing a buffer at base (its floor changes on the trail from `mark` on): the rules over the
 * sections of the buffers placed or raised above their least offsets, then over those of the buffers
 * they tighten, until nothing moves. */
static int propagated(Search *S, int mark, int64_t base) {
    int head = 0, tail = 0, end = S->ntrail;
    S->queue_stamp++;
    for (int e = mark; e < end; e++) {
        int k = S->trail[e].buffer;
        /* a floor raised but still at or under the buffer's least offset changes nothing the
         * rules read: that offset stays its least (base is under the floor) */
        if (k < 0 || k >= S->n || (S->trail[e].old >= 0 && S->floor[k] <= S->est[k])) continue;
        queue_sections(S, k, &tail);
    }
    /* the sections that failed most often first, since most placements fail (a queue of more than
     * SORTED_QUEUE keeps the trail's order: sorting it by insertion would cost more than it saves) */
    if (tail <= SORTED_QUEUE) sort_by(S->queue, tail, S->fails, 1);
    while (head != tail) {
        /* the clock here too, every 16 sections: on thousands of buffers one placement's propagation
         * can take a second */
        if ((++S->calls & 15) == 0 && (*S->stop || now() > S->deadline)) { S->stopped = S->timed_out = 1; return 0; }
        int s = S->queue[head];
        head = (head + 1) % (S->nsec + 1);
        S->queued[s] = 0;
        if (!propagate_section(S, s, base, &tail)) { S->fails[s]++; return 0; }
    }
    return 1;
}

static int hatless(const Search *S, int k) {
    int64_t top = S->floor[k] + S->size[k];
    for (int i = S->conflict_at[k]; i < S->conflict_at[k + 1]; i++) {
        int y = S->conflict[i];
        if (!S->placed[y] && S->floor[y] < top) return 0;
    }
    return 1;
}

static int fit(Search *S, int a, int b, int64_t base);

static _Thread_local const Search *sorting;      /* for the candidates' comparator */

/* How many of the sections beside k's span have their top where k's would be (and whether that is
 * the capacity): a candidate that lines up with its neighbours leaves the skyline flat, as
 * skyline's flush term prefers, and fewer slivers to fill later. */
static int flush(const Search *S, int k) {
    int64_t t = S->floor[k] + S->size[k];
    return (S->lo[k] > 0 && S->top[S->lo[k] - 1] == t) + (S->hi[k] < S->nsec && S->top[S->hi[k]] == t) + (t == S->capacity);
}

/* The candidates' order: lowest floor first, then the flushest, then the order's rank. */
static int candidate_order(const void *p, const void *q) {
    int x = *(const int *)p, y = *(const int *)q;
    if (sorting->floor[x] != sorting->floor[y]) return sorting->floor[x] < sorting->floor[y] ? -1 : 1;
    int fx = flush(sorting, x), fy = flush(sorting, y);
    if (fx != fy) return fy - fx;
    return sorting->rank[x] - sorting->rank[y];
}

static int alike(const Search *S, int x, int y) {
    return S->lo[x] == S->lo[y] && S->hi[x] == S->hi[y] && S->size[x] == S->size[y] && S->floor[x] == S->floor[y];
}

/* A section with no slack at base, whose byte at base is free, must have it covered by a buffer
 * placed there now: by one of its unplaced buffers whose floor is base. Of such sections, the
 * one with the fewest of them narrows the candidates to those (-1: one has none). */
static int forced(Search *S, int a, int b, int64_t base, int *candidates, int kept) {
    int best = -1, fewest = kept + 1;
    for (int s = a; s < b && fewest > 0; s++) {
        if (S->left[s] == 0 || S->top[s] > base || base + S->left[s] != S->capacity) continue;
        int count = 0;
        for (int i = S->cover_at[s]; i < S->cover_at[s + 1]; i++) {
            int y = S->cover[i];
            count += !S->placed[y] && S->floor[y] == base;
        }
        if (count < fewest) { fewest = count; best = s; }
    }
    if (best < 0) return kept;
    if (fewest == 0) return -1;
    int count = 0;
    for (int c = 0; c < kept; c++) {
        int k = candidates[c];
        if (S->floor[k] == base && S->lo[k] <= best && best < S->hi[k]) candidates[count++] = k;
    }
    return count;
}

/* One part: sections [a, b), which no unplaced buffer crosses. */
static int fit_part(Search *S, int a, int b, int64_t base) {
    if (S->stopped) return STOPPED;
    if (++S->nodes >= S->budget) { S->stopped = 1; return STOPPED; }
    /* the clock every 16 nodes: with propagation a node can take a millisecond on a large part */
    if ((S->nodes & 15) == 0 && (now() > S->deadline || *S->stop)) { S->stopped = S->timed_out = 1; return STOPPED; }
    if (S->deepest && S->deepest[0] && S->deep_depth > 0) answer_deepest(S);
    int count = 0, *candidates = malloc(sizeof(int) * (S->start_at[b] - S->start_at[a] + 1));
    int64_t lowest_top = INT64_MAX;
    Key key = {mix((uint64_t)base), mix((uint64_t)base ^ 0x5851f42d4c957f2dULL)};
    for (int i = S->start_at[a]; i < S->start_at[b]; i++) {
        int k = S->start[i];
        if (S->placed[k]) continue;
        int64_t top = S->floor[k] + S->size[k];
        if (max64(S->floor[k], base) + S->size[k] > S->capacity) { free(candidates); return FAILED; }
        if (top < lowest_top) lowest_top = top;
        key.a += mix(S->zobrist[k] ^ (uint64_t)S->floor[k]);
        key.b += mix(S->zobrist[k] + 0x632be59bd9b4e019ULL * (uint64_t)S->floor[k]);
        if (S->floor[k] >= base) candidates[count++] = k;
    }
    key.a |= 1;
    if (lowest_top <= base || known_failed(S, key)) { free(candidates); return FAILED; }
    int kept = 0;
    for (int c = 0; c < count; c++)
        if (S->floor[candidates[c]] < lowest_top) candidates[kept++] = candidates[c];
    kept = forced(S, a, b, base, candidates, kept);
    if (kept < 0) { free(candidates); remember_failed(S, key); return FAILED; }
    sorting = S;
    qsort(candidates, kept, sizeof(int), candidate_order);
    if (S->noisy && kept > 1) {
        uint64_t r = mix(S->rng++);         /* splitmix64 */
        if (r % 1000 < NOISE_PER_MILLE) {
            int j = 1 + (int)((r >> 32) % (uint64_t)((kept < NOISE_WIDTH ? kept : NOISE_WIDTH) - 1));
            int first = candidates[0];
            candidates[0] = candidates[j];
            candidates[j] = first;
        }
    }
    int result = FAILED;
    for (int c = 0; c < kept; c++) {
        int k = candidates[c], twin = 0;
        for (int d = 0; d < c && !twin; d++) twin = alike(S, k, candidates[d]);
        if (twin) continue;
        int mark = S->ntrail;
        int64_t at = S->floor[k];
        place(S, k);
        int room = S->est[k] <= at && at + S->size[k] <= S->lct[k];
        result = room && room_above(S, a, b, at) && propagated(S, mark, at) ? fit(S, a, b, at) : FAILED;
        if (S->stopped) result = STOPPED;       /* propagation stopped halfway: no failure to remember */
        if (result == FOUND) break;
        undo(S, mark);
        if (result == STOPPED || hatless(S, k)) break;
    }
    free(candidates);
    if (result == FAILED) remember_failed(S, key);
    return result;
}

/* Sections [a, b): split into the parts the unplaced buffers chain together, each solved apart. */
static int fit(Search *S, int a, int b, int64_t base) {
    int mark = S->ntrail;
    int s = a;
    while (s < b) {
        int end = s;
        for (int t = s; t < b && (t < end || t == s); t++)
            for (int i = S->start_at[t]; i < S->start_at[t + 1]; i++)
                if (!S->placed[S->start[i]] && S->hi[S->start[i]] > end) end = S->hi[S->start[i]];
        if (end == s) { s++; continue; }    /* nothing unplaced starts here */
        int result = fit_part(S, s, end, base);
        if (result != FOUND) { undo(S, mark); return result; }
        s = end;
    }
    return FOUND;
}

static _Thread_local const double *drawn;         /* for guided_order's comparator */

static int by_drawn(const void *p, const void *q) {
    double x = drawn[*(const int *)p], y = drawn[*(const int *)q];
    return (x > y) - (x < y);
}

/* A guided restart's order, in `trial`: the ranks of `guide` with GUIDE_PER_MILLE of the buffers
 * moved to a random rank (between two others), drawn from the round's number. */
static int *guided_order(int n, const int *guide, int *trial, int round) {
    double *key = malloc(sizeof(double) * (n + 1));
    int *order = malloc(sizeof(int) * (n + 1));
    for (int k = 0; k < n; k++) {
        uint64_t r = mix(((uint64_t)round << 32) + (uint64_t)k);
        key[k] = r % 1000 < GUIDE_PER_MILLE ? (double)((r >> 16) % (uint64_t)n) + 0.5 : guide[k];
        order[k] = k;
    }
    drawn = key;
    qsort(order, n, sizeof(int), by_drawn);
    for (int r = 0; r < n; r++) trial[order[r]] = r;
    free(key);
    free(order);
    return trial;
}

/* CSR of lists given as (owner, item) pairs, owners in [0, m). */
static void csr(int m, int count, const int *owner, const int *item, int **at_out, int **items_out) {
    int *at = calloc(m + 1, sizeof(int)), *items = malloc(sizeof(int) * (count + 1)), *fill = malloc(sizeof(int) * (m + 1));
    for (int i = 0; i < count; i++) at[owner[i] + 1]++;
    for (int s = 0; s < m; s++) at[s + 1] += at[s];
    memcpy(fill, at, sizeof(int) * (m + 1));
    for (int i = 0; i < count; i++) items[fill[owner[i]]++] = item[i];
    free(fill);
    *at_out = at;
    *items_out = items;
}

static int read_ints(PyObject *seq, int n, int64_t *out, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return 0;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: expected %d values", what, n);
        return 0;
    }
    for (int i = 0; i < n; i++) out[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
    Py_DECREF(fast);
    return !PyErr_Occurred();
}

static void setup_lists(Search *S) {
    int n = S->n, m = S->nsec;
    long cover_count = 0;
    for (int k = 0; k < n; k++) cover_count += S->hi[k] - S->lo[k];
    int *owner = calloc(cover_count + n, sizeof(int)), *item = calloc(cover_count + n, sizeof(int));
    for (int k = 0; k < n; k++) { owner[k] = S->lo[k]; item[k] = k; }
    csr(m, n, owner, item, &S->start_at, &S->start);
    long c = 0;
    for (int k = 0; k < n; k++)
        for (int s = S->lo[k]; s < S->hi[k]; s++) { owner[c] = s; item[c] = k; c++; }
    csr(m, (int)c, owner, item, &S->cover_at, &S->cover);
    S->by_low = malloc(sizeof(int) * (c + 1));
    memcpy(S->by_low, S->cover, sizeof(int) * c);
    free(owner);
    free(item);
    /* conflicts: for each k, the distinct buffers over its sections */
    int *seen = malloc(sizeof(int) * n);
    for (int k = 0; k < n; k++) seen[k] = -1;
    long total = 0;
    for (int k = 0; k < n; k++)
        for (int s = S->lo[k]; s < S->hi[k]; s++)
            for (int i = S->cover_at[s]; i < S->cover_at[s + 1]; i++)
                if (S->cover[i] != k && seen[S->cover[i]] != k) { seen[S->cover[i]] = k; total++; }
    S->conflict_at = malloc(sizeof(int) * (n + 1));
    S->conflict = malloc(sizeof(int) * (total + 1));
    for (int k = 0; k < n; k++) seen[k] = -1;
    long at = 0;
    for (int k = 0; k < n; k++) {
        S->conflict_at[k] = (int)at;
        for (int s = S->lo[k]; s < S->hi[k]; s++)
            for (int i = S->cover_at[s]; i < S->cover_at[s + 1]; i++) {
                int y = S->cover[i];
                if (y != k && seen[y] != k) { seen[y] = k; S->conflict[at++] = y; }
            }
    }
    S->conflict_at[n] = (int)at;
    free(seen);
}

static void release(Search *S) {
    free(S->size); free(S->lo); free(S->hi); free(S->ranks);
    free(S->conflict_at); free(S->conflict); free(S->start_at); free(S->start);
    free(S->cover_at); free(S->cover); free(S->floor); free(S->left);
    free(S->placed); free(S->trail); free(S->zobrist); free(S->failed); free(S->top);
    free(S->path); free(S->deep_path); free(S->deep_offset);
    free(S->est); free(S->lct); free(S->queue); free(S->queued); free(S->fails); free(S->jobs); free(S->order);
    free(S->low_order); free(S->placed_jobs); free(S->by_low);
    free(S->low); free(S->high); free(S->low_was); free(S->job_size); free(S->widest);
}

/* fit(size, lo, hi, sections, capacity, ranks, seconds, first_budget, stop, deepest[, tops])
 *   -> (status, offsets or None): status 1 a plan, 0 proven none, -1 out of time or stopped;
 * stop: a writable buffer whose first byte stops the search when set;
 * deepest: empty, or 3 + 2 * len(size) writable int64s through which the caller asks for the
 * deepest path since it last asked (answer_deepest) while the search runs;
 * tops (optional): per section, the top of what is already there: buffers go above it */
static PyObject *py_fit(PyObject *self, PyObject *args) {
    PyObject *size_obj, *lo_obj, *hi_obj, *ranks_obj, *tops_obj = NULL;
    int nsec;
    long long capacity, first_budget;
    double seconds;
    Py_buffer stop, deepest;
    if (!PyArg_ParseTuple(args, "OOOiLOdLw*w*|O", &size_obj, &lo_obj, &hi_obj, &nsec, &capacity, &ranks_obj,
                          &seconds, &first_budget, &stop, &deepest, &tops_obj))
        return NULL;
    Py_ssize_t n = PySequence_Size(size_obj);
    if (stop.len < 1 || (deepest.len != 0 && deepest.len != (Py_ssize_t)sizeof(int64_t) * (3 + 2 * n))) {
        PyBuffer_Release(&stop);
        PyBuffer_Release(&deepest);
        PyErr_SetString(PyExc_ValueError, "stop: at least one byte; deepest: none, or 3 + 2n int64s");
        return NULL;
    }
    Search S;
    memset(&S, 0, sizeof S);
    Py_ssize_t nranks = PySequence_Size(ranks_obj);
    if (n < 0 || nranks < 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "ranks: at least one order");
        PyBuffer_Release(&stop);
        PyBuffer_Release(&deepest);
        return NULL;
    }
    S.n = (int)n; S.nsec = nsec; S.nranks = (int)nranks; S.capacity = capacity;
    S.size = malloc(sizeof(int64_t) * (n + 1));
    int64_t *tmp = malloc(sizeof(int64_t) * (n + 1));
    S.lo = malloc(sizeof(int) * (n + 1)); S.hi = malloc(sizeof(int) * (n + 1));
    S.ranks = malloc(sizeof(int) * (n * nranks + 1));
    int ok = read_ints(size_obj, S.n, S.size, "size");
    ok = ok && read_ints(lo_obj, S.n, tmp, "lo");
    for (int k = 0; ok && k < n; k++) S.lo[k] = (int)tmp[k];
    ok = ok && read_ints(hi_obj, S.n, tmp, "hi");
    for (int k = 0; ok && k < n; k++) S.hi[k] = (int)tmp[k];
    for (int r = 0; ok && r < nranks; r++) {
        PyObject *order = PySequence_GetItem(ranks_obj, r);
        ok = order && read_ints(order, S.n, tmp, "ranks");
        Py_XDECREF(order);
        for (int k = 0; ok && k < n; k++) S.ranks[r * n + k] = (int)tmp[k];
    }
    for (int k = 0; ok && k < n; k++)
        if (S.lo[k] < 0 || S.hi[k] > nsec || S.lo[k] >= S.hi[k] || S.size[k] <= 0) {
            PyErr_Format(PyExc_ValueError, "buffer %d: sections [%d, %d) of %d, size %lld", k, S.lo[k], S.hi[k],
                         nsec, (long long)S.size[k]);
            ok = 0;
        }
    S.top = calloc(nsec + 1, sizeof(int64_t));
    ok = ok && (!tops_obj || read_ints(tops_obj, nsec, S.top, "tops"));
    free(tmp);
    if (!ok) { release(&S); PyBuffer_Release(&stop); PyBuffer_Release(&deepest); return NULL; }
    setup_lists(&S);
    S.floor = calloc(n + 1, sizeof(int64_t));
    S.left = calloc(nsec + 1, sizeof(int64_t));
    S.placed = calloc(n + 1, 1);
    long conflicts = S.conflict_at[n];
    long spans = 0;
    for (int k = 0; k < n; k++) spans += S.hi[k] - S.lo[k];
    S.trail_size = (int)(n + conflicts + spans + 1);
    S.trail = malloc(sizeof(Entry) * S.trail_size);
    S.est = calloc(n + 1, sizeof(int64_t));
    S.lct = malloc(sizeof(int64_t) * (n + 1));
    for (int k = 0; k < n; k++) S.lct[k] = capacity;
    S.queue = malloc(sizeof(int) * (nsec + 1));
    S.queued = calloc(nsec + 1, sizeof(long long));
    S.fails = calloc(nsec + 1, sizeof(int64_t));
    S.jobs = malloc(sizeof(int) * (n + 1));
    S.order = malloc(sizeof(int) * (n + 1));
    S.low_order = malloc(sizeof(int) * (n + 1));
    S.placed_jobs = malloc(sizeof(int) * (n + 1));
    S.low = malloc(sizeof(int64_t) * (n + 1));
    S.high = malloc(sizeof(int64_t) * (n + 1));
    S.low_was = malloc(sizeof(int64_t) * (n + 1));
    S.job_size = malloc(sizeof(int64_t) * (n + 1));
    S.widest = malloc(sizeof(int64_t) * (n + 1));
    S.zobrist = malloc(sizeof(uint64_t) * (n + 1));
    for (int k = 0; k < n; k++) {
        S.zobrist[k] = mix(0x2545f4914f6cdd1dULL * (k + 1));
        for (int s = S.lo[k]; s < S.hi[k]; s++) {
            S.left[s] += S.size[k];
            S.floor[k] = max64(S.floor[k], S.top[s]);
        }
    }
    S.path = malloc(sizeof(int) * (n + 1));
    S.deep_path = malloc(sizeof(int) * (n + 1));
    S.deep_offset = malloc(sizeof(int64_t) * (n + 1));
    S.deepest = deepest.len ? (volatile int64_t *)deepest.buf : NULL;
    S.failed_mask = (1u << 20) - 1;
    S.failed = calloc(S.failed_mask + 1, sizeof(Key));
    S.deadline = now() + seconds;
    S.stop = stop.buf;

    int result = FAILED;
    int *guide = malloc(sizeof(int) * (n + 1)), *trial = malloc(sizeof(int) * (n + 1));
    Py_BEGIN_ALLOW_THREADS
    for (int s = 0; s < nsec; s++)
        if (!section_fits(&S, s)) goto done;    /* FAILED: a section's bytes over its top exceed it */
    double budget = (double)first_budget, furthest = -1;
    for (int round = 0;; round++) {
        int guided = round >= S.nranks;
        S.rank = guided ? guided_order(S.n, guide, trial, round) : S.ranks + round * n;
        S.noisy = guided;
        S.rng = (uint64_t)round << 40;
        S.budget = S.nodes + (long long)budget;
        S.stopped = 0;
        S.furthest = 0;
        result = fit(&S, 0, nsec, 0);
        if (result != STOPPED || S.timed_out) break;
        if (S.furthest >= furthest) {
            furthest = S.furthest;
            memcpy(guide, S.rank, sizeof(int) * n);
        }
        if (round % S.nranks == S.nranks - 1) budget *= 1.5;
    }
done:;
    Py_END_ALLOW_THREADS
    free(guide);
    free(trial);
    PyBuffer_Release(&stop);
    PyBuffer_Release(&deepest);
    PyObject *offsets = Py_None;
    Py_INCREF(Py_None);
    if (result == FOUND) {
        Py_DECREF(Py_None);
        offsets = PyList_New(n);
        for (int k = 0; k < n; k++) PyList_SET_ITEM(offsets, k, PyLong_FromLongLong(S.floor[k]));
    }
    release(&S);
    return Py_BuildValue("(iN)", result, offsets);
}

static PyMethodDef methods[] = {
    {"fit", py_fit, METH_VARARGS, "Canonical search: (status, offsets or None); see canonical.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_canonical", NULL, -1, methods};

PyMODINIT_FUNC PyInit__canonical(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256);   /* setup.py's; planner/compiled.py checks it */
    return m;
}
