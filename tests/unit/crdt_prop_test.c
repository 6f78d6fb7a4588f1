/*
 * crdt_prop_test.c: seeded property tests of crdt/ against a sequential
 * specification computed here, independently of crdt/'s internals.
 *
 * Each case simulates 3 to 5 replicas (origins 1..N) of one stream's state
 * document. A step either has a replica prepare an event (1 to 3 random ops
 * on a small set of names, members and values so they collide, sometimes
 * after a delete of the first op's path; deps = its context; seqs that skip
 * numbers; an HLC that mostly grows) and broadcast it,
 * or has a replica receive a random message from its inbox (any order,
 * duplicates injected), holding back what crdt_doc_apply() refuses with
 * CRDT_HOLD and retrying it after every apply. Along the way:
 *
 *   - every delivery outcome (apply, hold, duplicate) must be the one this
 *     file computes from the events it knows the replica applied: nothing is
 *     ever applied before its deps, and hold/duplicate change no byte;
 *   - at random points every value of a replica's document is compared with
 *     the specification over the events it applied (below), the document is
 *     walked for empty or extra entries, and encode/decode/encode must give
 *     the same bytes; every event's ops survive crdt_ops_encode/decode;
 *   - crdt_doc_prepare() must accept or refuse (MRD_ETYPE, naming the field)
 *     exactly as the specification says;
 *   - in about a third of the cases, replicas compact with a stable vector
 *     computed soundly from what each learnt of the others' contexts (the
 *     pointwise min of its own context and, for every other replica, the
 *     join of deps and dot of that replica's events it applied); values must
 *     not change, and for counters the metadata must shrink;
 *   - merge is checked at random points: commutative, associative and
 *     idempotent to the byte, empty is its unit, and merging two replicas
 *     equals applying the union of their events (compacted states: when
 *     their stable points are ordered, else merge must refuse them; the
 *     union replica then compacts at the merged stable point);
 *   - at the end everything is delivered and all replicas must encode to the
 *     same bytes (compacted cases: after a final compaction at the common
 *     context) and match the specification.
 *
 * The specification: op o1 (of event e1) is observed by op o2 (of e2) iff
 * e1 == e2 and o1 comes first, or e1.dot.seq <= e2.deps[e1.origin]. A leaf
 * (path, type) holds the creating ops at that key (inc, set, enable, add)
 * that no killer observed. Killers: a delete of the path or of any prefix of
 * it (whatever the type); a set of the same register; an enable or disable of
 * the same flag; an add or remove of the same member of the same set.
 * Counters never kill each other's incs.
 *
 * Environment: MRD_TEST_SEED=<n> replays a run (otherwise seeded from the
 * clock and printed), MRD_CRDT_CASES=<n> cases per test, MRD_CRDT_CASE=<k>
 * runs only case k of each test (what a failure message tells you to use).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "crdt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PROP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROP_SANITIZED 1
#endif
#endif
#ifdef PROP_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

#define NR_MAX 5u /* replicas: origins 1..NR_MAX */
#define EV_OPS_MAX 4u /* ops on one generated event */
#define DEPTH_MAX 3u /* path depth of generated ops */
#define STEPS_MAX 72u /* steps of one case */
#define EVS_MAX (STEPS_MAX + 1u) /* events of one case */
#define ITEMS_MAX (EVS_MAX * EV_OPS_MAX) /* ops of one case */
#define DEFAULT_CASES 3000u

/* ------------------------------------------------------------ context -- */

struct sim;

static uint64_t run_seed; /* MRD_TEST_SEED */
static unsigned run_cases; /* cases per test */
static long     only_case = -1; /* MRD_CRDT_CASE */

static struct {
    const char *test;
    unsigned    ncase;
    unsigned    step;
    uint64_t    rng;
    struct sim *sim;
} g;

static struct {
    unsigned long events, rejects, applies, holds, dups, checks, merges;
    unsigned long merges_compacted, merges_refused, siblings;
    unsigned long compactions, compactions_shrunk;
    unsigned long meta_before, meta_after; /* counter cases only */
} stats;

static void dump_sim(const struct sim *s);

/* Which case was running, for a crash (a sanitizer report, MRD_ASSERT):
 * written before each case, printed by the death hooks below. */
static char crash_note[256];

static void
print_crash_note(void)
{
    size_t n = strlen(crash_note);
    if (n > 0) {
        ssize_t w = write(2, crash_note, n);
        (void) w;
    }
}

static void
on_abort(int sig)
{
    print_crash_note();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void MRD_PRINTF(3, 4)
    pfail(int line, const char *expr, const char *fmt, ...)
{
    char    detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (g.sim != NULL) {
        dump_sim(g.sim);
    }
    fail_msg("crdt_prop_test.c:%d: %s failed: %s [MRD_TEST_SEED=%llu, test "
             "%s, case %u, step %u; replay this case alone with "
             "MRD_TEST_SEED=%llu MRD_CRDT_CASE=%u]",
        line, expr, detail, (unsigned long long) run_seed, g.test, g.ncase,
        g.step, (unsigned long long) run_seed, g.ncase);
}

#define PCHECKF(c, ...)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            pfail(__LINE__, #c, __VA_ARGS__);                                  \
        }                                                                      \
    } while (0)
#define PCHECK(c) PCHECKF(c, "%s", "-")

/* --------------------------------------------------------------- PRNG -- */

static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t
rnd(uint32_t n)
{
    return (uint32_t) (splitmix64(&g.rng) % n);
}

static bool
chance(unsigned pct)
{
    return rnd(100) < pct;
}

/* -------------------------------------------------------------- pools -- */

static const char *const names[] = { "a", "b", "m", "x", "y", "n", "z" };
enum { N_A, N_B, N_M, N_X, N_Y, N_N, N_Z };
/* Register values 0..3, set members 0 and 4..7 ("" is both). */
static const char *const vals[] = { "", "v1", "v2", "v3", "p", "q", "r", "s" };
static const uint8_t     members[] = { 0, 4, 5, 6, 7 };

static struct crdt_bytes
B(const char *s) {
    return (struct crdt_bytes) { (const uint8_t *) s, (uint32_t) strlen(s) };
}

static bool
bytes_is(struct crdt_bytes b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.ptr, s, b.len) == 0);
}

static int
str_cmp_bytes(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;
    int    c = memcmp(a, b, n);
    if (c != 0) {
        return c;
    }
    return la < lb ? -1 : la > lb;
}

static bool
dot_eq(struct crdt_dot a, struct crdt_dot b)
{
    return a.origin == b.origin && a.seq == b.seq;
}

static int
dot_cmp(struct crdt_dot a, struct crdt_dot b)
{
    if (a.origin != b.origin) {
        return a.origin < b.origin ? -1 : 1;
    }
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

/* ------------------------------------------------------------- events -- */

/* An op in this file's terms: names and values by pool index. */
struct sop {
    uint8_t type, kind, depth;
    uint8_t path[DEPTH_MAX];
    uint8_t val;
    int64_t delta;
};

struct ev {
    struct crdt_dot dot;
    uint64_t        hlc;
    uint64_t        deps[NR_MAX + 1]; /* by origin */
    uint32_t        nops;
    struct sop      op[EV_OPS_MAX];
    uint8_t        *enc; /* crdt_ops_encode() of deps and ops */
    size_t          enclen;
};

struct msg {
    uint32_t ev;
    uint32_t dups;
};

struct rep {
    struct crdt_doc doc;
    uint64_t        ctx[NR_MAX + 1]; /* what it applied, tracked here */
    /* know[q][o]: the join of deps and dot of q's events it applied. */
    uint64_t    know[NR_MAX + 1][NR_MAX + 1];
    uint64_t    next_seq;
    uint32_t    log[EVS_MAX]; /* events applied, in order */
    uint32_t    nlog;
    struct msg *inbox;
    uint32_t    ninbox, capinbox;
    uint32_t    hold[EVS_MAX * 4];
    uint32_t    nhold;
};

struct sim {
    unsigned   mode; /* 0: all types mixed; else the one mrd_state_type */
    unsigned   nrep;
    bool       compact; /* compaction case */
    uint8_t    pref[MRD_ARRAY_SIZE(names)]; /* mixed: a name's usual type */
    uint64_t   clock;
    struct ev  ev[EVS_MAX];
    uint32_t   nev;
    struct rep rep[NR_MAX + 1];
};

static void
to_op(const struct sop *o, struct crdt_op *out)
{
    memset(out, 0, sizeof *out);
    out->type  = o->type;
    out->kind  = o->kind;
    out->depth = o->depth;
    for (unsigned i = 0; i < o->depth; i++) {
        out->path[i] = B(names[o->path[i]]);
    }
    out->delta = o->delta;
    if (o->kind == MRD_OP_SET || o->kind == MRD_OP_ADD
        || o->kind == MRD_OP_REMOVE) {
        out->value = B(vals[o->val]);
    }
}

static bool
op_matches(const struct crdt_op *a, const struct sop *o)
{
    if (a->type != o->type || a->kind != o->kind || a->depth != o->depth) {
        return false;
    }
    for (unsigned i = 0; i < o->depth; i++) {
        if (!bytes_is(a->path[i], names[o->path[i]])) {
            return false;
        }
    }
    switch (o->kind) {
    case MRD_OP_INC:
        return a->delta == o->delta;
    case MRD_OP_SET:
    case MRD_OP_ADD:
    case MRD_OP_REMOVE:
        return bytes_is(a->value, vals[o->val]);
    default:
        return true;
    }
}

static const char *
kind_name(unsigned k)
{
    static const char *const n[]
        = { "?", "inc", "set", "enable", "disable", "add", "remove", "delete" };
    return k < 8 ? n[k] : "?";
}

static void
dump_sim(const struct sim *s)
{
    fprintf(stderr, "--- %u replicas, mode %s, %s; events:\n", s->nrep,
        s->mode ? mrd_state_type_name((int) s->mode) : "mixed",
        s->compact ? "compacting" : "not compacting");
    for (uint32_t i = 0; i < s->nev; i++) {
        const struct ev *e = &s->ev[i];
        fprintf(stderr, "  #%u dot (%llu,%llu) hlc %llu deps [", i,
            (unsigned long long) e->dot.origin, (unsigned long long) e->dot.seq,
            (unsigned long long) e->hlc);
        for (unsigned o = 1; o <= s->nrep; o++) {
            fprintf(stderr, "%s%llu", o > 1 ? " " : "",
                (unsigned long long) e->deps[o]);
        }
        fprintf(stderr, "]:");
        for (uint32_t j = 0; j < e->nops; j++) {
            const struct sop *o = &e->op[j];
            fprintf(stderr, " %s %s ", kind_name(o->kind),
                o->type ? mrd_state_type_name(o->type) : "-");
            for (unsigned k = 0; k < o->depth; k++) {
                fprintf(stderr, "%s%s", k ? "." : "", names[o->path[k]]);
            }
            if (o->kind == MRD_OP_INC) {
                fprintf(stderr, " %+lld", (long long) o->delta);
            } else if (o->kind == MRD_OP_SET || o->kind == MRD_OP_ADD
                || o->kind == MRD_OP_REMOVE) {
                fprintf(stderr, " \"%s\"", vals[o->val]);
            }
            fprintf(stderr, ";");
        }
        fprintf(stderr, "\n");
    }
    for (unsigned r = 1; r <= s->nrep; r++) {
        fprintf(stderr, "  replica %u applied:", r);
        for (uint32_t i = 0; i < s->rep[r].nlog; i++) {
            fprintf(stderr, " #%u", s->rep[r].log[i]);
        }
        fprintf(stderr, "\n");
    }
}

/* ------------------------------------------------------------ encoding -- */

/* Two buffers reused by every encoding (allocating one per encoding is
 * most of the run time under ASan). */
static msgpack_sbuffer sbufs[2];

static const msgpack_sbuffer *
encode(const struct crdt_doc *d, unsigned which)
{
    msgpack_sbuffer *sb = &sbufs[which];
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    PCHECK(crdt_doc_encode(d, &pk) == MRD_OK);
    return sb;
}

static bool
sbuf_eq(const msgpack_sbuffer *a, const msgpack_sbuffer *b)
{
    return a->size == b->size
        && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

static bool
doc_eq(const struct crdt_doc *a, const struct crdt_doc *b)
{
    return sbuf_eq(encode(a, 0), encode(b, 1));
}

/* decode(encode(d)) encodes to the same bytes. */
static void
check_round_trip(const struct crdt_doc *d)
{
    const msgpack_sbuffer *a = encode(d, 0);
    struct crdt_doc        back;
    const char            *why = NULL;
    crdt_doc_init(&back);
    int rc = crdt_doc_decode(&back, a->data, a->size, &why);
    PCHECKF(rc == MRD_OK, "decode of an encoded document: %s", why ? why : "?");
    PCHECK(sbuf_eq(a, encode(&back, 1)));
    crdt_doc_free(&back);
}

static void
vv_from(struct crdt_vv *vv, const uint64_t *v, unsigned nrep)
{
    crdt_vv_init(vv);
    for (unsigned o = 1; o <= nrep; o++) {
        if (v[o] > 0) {
            PCHECK(crdt_vv_raise(vv, o, v[o]) == MRD_OK);
        }
    }
}

static bool
vv_is(const struct crdt_vv *vv, const uint64_t *v, unsigned nrep)
{
    unsigned n = 0;
    for (unsigned o = 1; o <= nrep; o++) {
        if (crdt_vv_get(vv, o) != v[o]) {
            return false;
        }
        n += v[o] > 0;
    }
    return vv->n == n;
}

/* ------------------------------------------------------ specification -- */

struct key {
    uint8_t depth, type;
    uint8_t path[DEPTH_MAX];
};

static bool
prefix_of(const uint8_t *p, unsigned np, const uint8_t *q, unsigned nq)
{
    return np <= nq && memcmp(p, q, np) == 0;
}

static bool
op_at(const struct sop *o, const struct key *k)
{
    return o->kind != MRD_OP_DELETE && o->type == k->type
        && o->depth == k->depth && memcmp(o->path, k->path, k->depth) == 0;
}

static bool
creates(const struct sop *o)
{
    return o->kind == MRD_OP_INC || o->kind == MRD_OP_SET
        || o->kind == MRD_OP_ENABLE || o->kind == MRD_OP_ADD;
}

/* Op j of e1 is observed by op k of e2. */
static bool
observes(const struct ev *e1, uint32_t j, const struct ev *e2, uint32_t k)
{
    if (dot_eq(e1->dot, e2->dot)) {
        return j < k;
    }
    return e1->dot.seq <= e2->deps[e1->dot.origin];
}

/* Op k would remove what victim (at key) put there, if it observed it. */
static bool
kills(const struct sop *victim, const struct sop *k, const struct key *key)
{
    if (k->kind == MRD_OP_DELETE) {
        return prefix_of(k->path, k->depth, key->path, key->depth);
    }
    if (!op_at(k, key)) {
        return false;
    }
    switch (key->type) {
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        return k->kind == MRD_OP_SET;
    case MRD_STATE_FLAG:
        return true;
    case MRD_STATE_SET:
        return k->val == victim->val;
    default:
        return false;
    }
}

static bool
survives(const struct ev *const *evs, uint32_t nevs, const struct ev *e,
    uint32_t j, const struct key *key)
{
    for (uint32_t i = 0; i < nevs; i++) {
        const struct ev *e2 = evs[i];
        for (uint32_t k = 0; k < e2->nops; k++) {
            if (kills(&e->op[j], &e2->op[k], key) && observes(e, j, e2, k)) {
                return false;
            }
        }
    }
    return true;
}

struct item {
    struct crdt_dot dot;
    uint64_t        hlc;
    int64_t         delta;
    uint8_t         val;
};

static int
item_cmp(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    if (a->val != b->val) {
        /* Set members in the document's byte order. */
        int c = str_cmp_bytes(vals[a->val], vals[b->val]);
        if (c != 0) {
            return c;
        }
    }
    return dot_cmp(a->dot, b->dot);
}

/* The surviving creating ops at key, sorted (by member, then by dot), with
 * one item per dot (per member and dot for sets; deltas summed). */
static uint32_t
spec_items(const struct ev *const *evs, uint32_t nevs, const struct key *key,
    struct item *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < nevs; i++) {
        const struct ev *e = evs[i];
        for (uint32_t j = 0; j < e->nops; j++) {
            const struct sop *o = &e->op[j];
            if (!op_at(o, key) || !creates(o)
                || !survives(evs, nevs, e, j, key)) {
                continue;
            }
            PCHECK(n < ITEMS_MAX);
            out[n++] = (struct item) { e->dot, e->hlc, o->delta,
                key->type == MRD_STATE_SET ? o->val : 0 };
        }
    }
    qsort(out, n, sizeof out[0], item_cmp);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m > 0 && out[m - 1].val == out[i].val
            && dot_eq(out[m - 1].dot, out[i].dot)) {
            /* Registers: two surviving sets of one event cannot be. */
            PCHECK(key->type != MRD_STATE_LWW && key->type != MRD_STATE_MVREG);
            out[m - 1].delta = (int64_t) ((uint64_t) out[m - 1].delta
                + (uint64_t) out[i].delta);
        } else {
            out[m++] = out[i];
        }
    }
    return m;
}

static bool
spec_present(const struct ev *const *evs, uint32_t nevs, const struct key *key)
{
    for (uint32_t i = 0; i < nevs; i++) {
        const struct ev *e = evs[i];
        for (uint32_t j = 0; j < e->nops; j++) {
            if (op_at(&e->op[j], key) && creates(&e->op[j])
                && survives(evs, nevs, e, j, key)) {
                return true;
            }
        }
    }
    return false;
}

/* A map at path q[0..nq) exists: some leaf below it is present. */
static bool
spec_map_present(
    const struct ev *const *evs, uint32_t nevs, const uint8_t *q, unsigned nq)
{
    for (uint32_t i = 0; i < nevs; i++) {
        const struct ev *e = evs[i];
        for (uint32_t j = 0; j < e->nops; j++) {
            const struct sop *o = &e->op[j];
            if (o->kind == MRD_OP_DELETE || o->depth <= nq
                || !prefix_of(q, nq, o->path, o->depth)) {
                continue;
            }
            struct key k = { o->depth, o->type, { 0 } };
            memcpy(k.path, o->path, o->depth);
            if (spec_present(evs, nevs, &k)) {
                return true;
            }
        }
    }
    return false;
}

static bool
spec_type_present(const struct ev *const *evs, uint32_t nevs, const uint8_t *q,
    unsigned nq, unsigned type)
{
    if (type == MRD_STATE_MAP) {
        return spec_map_present(evs, nevs, q, nq);
    }
    struct key k = { (uint8_t) nq, (uint8_t) type, { 0 } };
    memcpy(k.path, q, nq);
    return spec_present(evs, nevs, &k);
}

/* What crdt_doc_prepare() must answer for event e at a replica that applied
 * evs: MRD_ETYPE (and the name it must cite) when some op, after the ops
 * before it, finds its path's name held by another type only. */
static int
spec_prepare(
    const struct ev **evs, uint32_t nevs, const struct ev *e, const char **name)
{
    static struct ev hyp; /* evs[nevs] points at it: not on the stack */
    hyp       = *e;
    evs[nevs] = &hyp;
    for (uint32_t i = 0; i < e->nops; i++) {
        hyp.nops            = i; /* the ops before op i */
        const struct sop *o = &e->op[i];
        for (unsigned l = 0; l < o->depth; l++) {
            bool leaf = l + 1 == o->depth;
            if (leaf && o->kind == MRD_OP_DELETE) {
                break;
            }
            unsigned want = leaf ? o->type : MRD_STATE_MAP;
            if (spec_type_present(evs, nevs + 1, o->path, l + 1, want)) {
                continue;
            }
            for (unsigned t = MRD_STATE_COUNTER; t <= MRD_STATE_MAP; t++) {
                if (t != want
                    && spec_type_present(evs, nevs + 1, o->path, l + 1, t)) {
                    *name = names[o->path[l]];
                    return MRD_ETYPE;
                }
            }
            break; /* absent: the op creates it */
        }
    }
    return MRD_OK;
}

/* ------------------------------------------- document vs specification -- */

static const struct crdt_val *
doc_find(const struct crdt_doc *doc, const struct key *k)
{
    const struct crdt_val *v = &doc->root;
    for (unsigned l = 0; v != NULL && l < k->depth; l++) {
        const char *nm = names[k->path[l]];
        v = crdt_map_find(v, (const uint8_t *) nm, (uint32_t) strlen(nm),
            l + 1 < k->depth ? MRD_STATE_MAP : k->type);
    }
    return v;
}

static char *
key_str(const struct key *k, char *buf, size_t size)
{
    size_t at = 0;
    for (unsigned l = 0; l < k->depth && at < size; l++) {
        at += (size_t) snprintf(
            buf + at, size - at, "%s%s", l ? "." : "", names[k->path[l]]);
    }
    if (at < size) {
        snprintf(buf + at, size - at, " (%s)", mrd_state_type_name(k->type));
    }
    return buf;
}

static void
check_key(const struct crdt_doc *doc, const struct ev *const *evs,
    uint32_t nevs, const struct key *key)
{
    static struct item     it[ITEMS_MAX];
    char                   ks[64];
    uint32_t               n = spec_items(evs, nevs, key, it);
    const struct crdt_val *v = doc_find(doc, key);
    key_str(key, ks, sizeof ks);
    if (n == 0) {
        PCHECKF(v == NULL, "%s must be absent", ks);
        return;
    }
    PCHECKF(v != NULL, "%s must be present", ks);
    PCHECK(v->type == key->type);
    switch ((mrd_state_type) key->type) {
    case MRD_STATE_COUNTER: {
        uint64_t sum = 0;
        uint32_t m   = 0;
        for (uint32_t i = 0; i < n; i++) {
            sum += (uint64_t) it[i].delta;
            if (crdt_vv_covers_dot(&doc->stable, it[i].dot)) {
                continue; /* folded into the base */
            }
            PCHECKF(m < v->n && dot_eq(v->u.incs[m].dot, it[i].dot)
                    && v->u.incs[m].delta == it[i].delta,
                "%s: increment %u", ks, m);
            m++;
        }
        PCHECKF(m == v->n, "%s: %u increments, want %u", ks, v->n, m);
        PCHECKF(crdt_counter_value(v) == (int64_t) sum, "%s = %lld, want %lld",
            ks, (long long) crdt_counter_value(v), (long long) sum);
        PCHECK(doc->stable.n > 0 || !v->has_base);
        break;
    }
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG: {
        PCHECKF(v->n == n, "%s: %u writes, want %u", ks, v->n, n);
        const struct item *best = NULL;
        for (uint32_t i = 0; i < n; i++) {
            const struct crdt_write *w = &v->u.writes[i];
            PCHECKF(dot_eq(w->dot, it[i].dot) && w->hlc == it[i].hlc,
                "%s: write %u", ks, i);
            /* The value is the op's: find it by dot. */
            bool found = false;
            for (uint32_t a = 0; a < nevs && !found; a++) {
                if (!dot_eq(evs[a]->dot, w->dot)) {
                    continue;
                }
                /* The last set at key of that event is the survivor. */
                for (uint32_t j = evs[a]->nops; j-- > 0;) {
                    if (op_at(&evs[a]->op[j], key)) {
                        PCHECKF(bytes_is(w->value, vals[evs[a]->op[j].val]),
                            "%s: value of write %u", ks, i);
                        found = true;
                        break;
                    }
                }
            }
            PCHECK(found);
            if (best == NULL || it[i].hlc > best->hlc
                || (it[i].hlc == best->hlc
                    && it[i].dot.origin > best->dot.origin)) {
                best = &it[i];
            }
        }
        const struct crdt_write *win = crdt_lww_winner(v);
        PCHECKF(win != NULL && dot_eq(win->dot, best->dot), "%s: winner", ks);
        break;
    }
    case MRD_STATE_FLAG:
        PCHECKF(v->n == n, "%s: %u enable dots, want %u", ks, v->n, n);
        for (uint32_t i = 0; i < n; i++) {
            PCHECKF(dot_eq(v->u.dots[i], it[i].dot), "%s: dot %u", ks, i);
        }
        PCHECK(crdt_flag_value(v));
        break;
    case MRD_STATE_SET: {
        uint32_t mi = 0;
        for (uint32_t i = 0; i < n;) {
            PCHECKF(mi < v->n, "%s: too few members", ks);
            const struct crdt_member *m = &v->u.members[mi];
            PCHECKF(bytes_is(m->member, vals[it[i].val]),
                "%s: member %u is not \"%s\"", ks, mi, vals[it[i].val]);
            uint32_t d = 0;
            for (; i < n && it[i].val == it[i - d].val; i++, d++) {
                PCHECKF(d < m->ndots && dot_eq(m->dots[d], it[i].dot),
                    "%s: member \"%s\" dot %u", ks, vals[it[i].val], d);
            }
            PCHECKF(d == m->ndots, "%s: member \"%s\": %u dots, want %u", ks,
                vals[it[i - 1].val], m->ndots, d);
            mi++;
        }
        PCHECKF(mi == v->n, "%s: %u members, want %u", ks, v->n, mi);
        break;
    }
    case MRD_STATE_MAP:
        PCHECK(!"a map is never a leaf");
        break;
    }
}

/* Leaves of the document; no entry may be empty. */
static unsigned
count_leaves(const struct crdt_val *map, unsigned depth)
{
    unsigned n = 0;
    PCHECK(depth < DEPTH_MAX);
    for (uint32_t i = 0; i < map->n; i++) {
        const struct crdt_val *v = map->u.entries[i].val;
        PCHECK(v->n > 0 || v->has_base);
        if (i > 0
            && map->u.entries[i].name.len == map->u.entries[i - 1].name.len
            && memcmp(map->u.entries[i].name.ptr,
                   map->u.entries[i - 1].name.ptr, map->u.entries[i].name.len)
                == 0) {
            stats.siblings++; /* one name, two types: concurrent creation */
        }
        n += v->type == MRD_STATE_MAP ? count_leaves(v, depth + 1) : 1;
    }
    return n;
}

/* The document holds exactly the specification of evs. */
static void
check_doc(
    const struct crdt_doc *doc, const struct ev *const *evs, uint32_t nevs)
{
    static struct key keys[ITEMS_MAX];
    uint32_t          nk = 0, present = 0;
    for (uint32_t i = 0; i < nevs; i++) {
        for (uint32_t j = 0; j < evs[i]->nops; j++) {
            const struct sop *o = &evs[i]->op[j];
            if (o->kind == MRD_OP_DELETE) {
                continue;
            }
            struct key k = { o->depth, o->type, { 0 } };
            memcpy(k.path, o->path, o->depth);
            bool dup = false;
            for (uint32_t a = 0; a < nk && !dup; a++) {
                dup = memcmp(&keys[a], &k, sizeof k) == 0;
            }
            if (!dup) {
                keys[nk++] = k;
            }
        }
    }
    for (uint32_t a = 0; a < nk; a++) {
        check_key(doc, evs, nevs, &keys[a]);
        present += doc_find(doc, &keys[a]) != NULL;
    }
    PCHECKF(count_leaves(&doc->root, 0) == present,
        "document has %u leaves, the specification %u",
        count_leaves(&doc->root, 0), present);
    stats.checks++;
}

static uint32_t
log_evs(const struct sim *s, const struct rep *r, const struct ev **evs)
{
    for (uint32_t i = 0; i < r->nlog; i++) {
        evs[i] = &s->ev[r->log[i]];
    }
    return r->nlog;
}

static void
check_rep(struct sim *s, unsigned r)
{
    const struct ev *evs[EVS_MAX + 1];
    struct rep      *rp = &s->rep[r];
    PCHECK(vv_is(&rp->doc.ctx, rp->ctx, s->nrep));
    check_doc(&rp->doc, evs, log_evs(s, rp, evs));
    check_round_trip(&rp->doc);
}

/* ------------------------------------------------------------ delivery -- */

static struct crdt_ops rx; /* ~28 KiB: off the stack */

static void
record_apply(struct sim *s, unsigned r, uint32_t id)
{
    struct rep      *rp = &s->rep[r];
    const struct ev *e  = &s->ev[id];
    unsigned         q  = (unsigned) e->dot.origin;
    PCHECK(rp->nlog < EVS_MAX);
    rp->log[rp->nlog++] = id;
    rp->ctx[q]          = e->dot.seq;
    for (unsigned o = 1; o <= s->nrep; o++) {
        if (rp->know[q][o] < e->deps[o]) {
            rp->know[q][o] = e->deps[o];
        }
    }
    rp->know[q][q] = e->dot.seq;
    stats.applies++;
}

/* What delivery must be, from what this file knows r applied. */
static enum crdt_delivery
expected_delivery(const struct sim *s, unsigned r, const struct ev *e)
{
    const struct rep *rp = &s->rep[r];
    if (e->dot.seq <= rp->ctx[e->dot.origin]) {
        return CRDT_DUPLICATE;
    }
    for (unsigned o = 1; o <= s->nrep; o++) {
        if (e->deps[o] > rp->ctx[o]) {
            return CRDT_HOLD;
        }
    }
    return CRDT_APPLY;
}

/* Applies event id (decoded from its record bytes, as a peer would) to doc;
 * returns the outcome, checked against want. */
static enum crdt_delivery
apply_to(struct crdt_doc *doc, const struct ev *e, enum crdt_delivery want)
{
    const char *why = NULL;
    int         rc  = crdt_ops_decode(&rx, e->enc, e->enclen, &why);
    PCHECKF(rc == MRD_OK, "ops decode: %s", why ? why : "?");
    bool watch = want != CRDT_APPLY && chance(25);
    if (watch) {
        (void) encode(doc, 0);
    }
    enum crdt_delivery d;
    rc = crdt_doc_apply(doc, e->dot, e->hlc, &rx.deps, rx.op, rx.count, &d);
    PCHECKF(rc == MRD_OK, "apply: %s", mrd_errname(rc));
    PCHECKF(d == want, "delivery %d of (%llu,%llu), want %d", (int) d,
        (unsigned long long) e->dot.origin, (unsigned long long) e->dot.seq,
        (int) want);
    if (watch) {
        PCHECKF(sbuf_eq(&sbufs[0], encode(doc, 1)), "%s changed the document",
            d == CRDT_HOLD ? "hold" : "duplicate");
    }
    return d;
}

static enum crdt_delivery
try_apply(struct sim *s, unsigned r, uint32_t id)
{
    const struct ev   *e    = &s->ev[id];
    enum crdt_delivery want = expected_delivery(s, r, e);
    enum crdt_delivery d    = apply_to(&s->rep[r].doc, e, want);
    if (d == CRDT_APPLY) {
        record_apply(s, r, id);
    }
    return d;
}

static void
retry_held(struct sim *s, unsigned r)
{
    struct rep *rp = &s->rep[r];
    bool        progress;
    do {
        progress = false;
        for (uint32_t i = 0; i < rp->nhold;) {
            enum crdt_delivery d = try_apply(s, r, rp->hold[i]);
            if (d == CRDT_HOLD) {
                i++;
                continue;
            }
            rp->hold[i] = rp->hold[--rp->nhold];
            progress |= d == CRDT_APPLY;
        }
    } while (progress);
}

static void
receive(struct sim *s, unsigned r, uint32_t id)
{
    struct rep        *rp = &s->rep[r];
    enum crdt_delivery d  = try_apply(s, r, id);
    if (d == CRDT_HOLD) {
        PCHECK(rp->nhold < MRD_ARRAY_SIZE(rp->hold));
        rp->hold[rp->nhold++] = id;
        stats.holds++;
    } else if (d == CRDT_DUPLICATE) {
        stats.dups++;
    } else {
        retry_held(s, r);
    }
}

static void
post(struct rep *rp, uint32_t id, uint32_t dups)
{
    if (rp->ninbox == rp->capinbox) {
        rp->capinbox = rp->capinbox ? rp->capinbox * 2 : 32;
        rp->inbox    = realloc(rp->inbox, rp->capinbox * sizeof *rp->inbox);
        PCHECK(rp->inbox != NULL);
    }
    rp->inbox[rp->ninbox++] = (struct msg) { id, dups };
}

/* Replica r takes a random message from its inbox. */
static void
receive_one(struct sim *s, unsigned r)
{
    struct rep *rp = &s->rep[r];
    uint32_t    i  = rnd(rp->ninbox);
    struct msg  m  = rp->inbox[i];
    rp->inbox[i]   = rp->inbox[--rp->ninbox];
    if (m.dups < 2 && chance(8)) {
        post(rp, m.ev, m.dups + 1); /* delivered again later */
    }
    receive(s, r, m.ev);
}

/* ---------------------------------------------------------- generating -- */

static void
gen_path(const struct sim *s, struct sop *o)
{
    unsigned p = rnd(10);
    if (s->mode == 0) {
        /* "m" is mostly a map: a leaf there conflicts with nested ops. */
        static const uint8_t top[] = { N_A, N_B, N_A, N_B, N_M };
        if (p < 6) {
            o->depth   = 1;
            o->path[0] = top[rnd(MRD_ARRAY_SIZE(top))];
        } else {
            o->depth   = p < 9 ? 2 : 3;
            o->path[0] = N_M;
            o->path[1] = rnd(2) ? N_X : N_Y;
            o->path[2] = N_Z;
        }
    } else if (p < 5) {
        o->depth   = 1;
        o->path[0] = rnd(2) ? N_A : N_B;
    } else if (p < 8) {
        o->depth   = 2;
        o->path[0] = N_M;
        o->path[1] = rnd(2) ? N_X : N_Y;
    } else {
        o->depth   = 3;
        o->path[0] = N_M;
        o->path[1] = N_N;
        o->path[2] = N_X;
    }
}

static void
gen_op(const struct sim *s, struct sop *o)
{
    memset(o, 0, sizeof *o);
    gen_path(s, o);
    if (chance(s->mode == 0 ? 15 : 8)) {
        o->kind  = MRD_OP_DELETE;
        o->depth = (uint8_t) (1 + rnd(o->depth));
        return;
    }
    o->type = (uint8_t) (s->mode ? s->mode
            : chance(80)         ? s->pref[o->path[o->depth - 1]]
                                 : 1 + rnd(5));
    switch ((mrd_state_type) o->type) {
    case MRD_STATE_COUNTER:
        o->kind  = MRD_OP_INC;
        o->delta = (int64_t) rnd(9) - 4;
        break;
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        o->kind = MRD_OP_SET;
        o->val  = (uint8_t) rnd(4);
        break;
    case MRD_STATE_FLAG:
        o->kind = chance(60) ? MRD_OP_ENABLE : MRD_OP_DISABLE;
        break;
    case MRD_STATE_SET:
        o->kind = chance(60) ? MRD_OP_ADD : MRD_OP_REMOVE;
        o->val  = members[rnd(MRD_ARRAY_SIZE(members))];
        break;
    case MRD_STATE_MAP:
        break;
    }
}

/* Replica r prepares an event and, if its ops are accepted, applies it and
 * broadcasts it. */
static void
produce(struct sim *s, unsigned r)
{
    struct rep *rp = &s->rep[r];
    struct ev  *e  = &s->ev[s->nev];
    memset(e, 0, sizeof *e);
    e->dot = (struct crdt_dot) { r, rp->next_seq };
    s->clock += rnd(3); /* 0 sometimes: equal timestamps across origins */
    e->hlc = chance(10) ? rnd((uint32_t) s->clock + 1) : s->clock;
    memcpy(e->deps, rp->ctx, sizeof e->deps);
    e->nops = 1 + rnd(3);
    for (uint32_t i = 0; i < e->nops; i++) {
        gen_op(s, &e->op[i]);
    }
    if (chance(10)) {
        /* "delete x; <op on x>": a type change when the op's type is new. */
        struct sop o = e->op[0];
        if (o.kind != MRD_OP_DELETE) {
            memmove(&e->op[1], &e->op[0], e->nops * sizeof e->op[0]);
            e->op[0]       = o;
            e->op[0].kind  = MRD_OP_DELETE;
            e->op[0].type  = 0;
            e->op[0].val   = 0;
            e->op[0].delta = 0;
            e->nops++;
        }
    }
    struct crdt_op ops[EV_OPS_MAX];
    for (uint32_t i = 0; i < e->nops; i++) {
        to_op(&e->op[i], &ops[i]);
    }

    /* Prepare must decide as the specification does. */
    const char      *why = NULL, *name = NULL;
    int              rc = crdt_doc_prepare(&rp->doc, ops, e->nops, &why);
    const struct ev *evs[EVS_MAX + 1];
    uint32_t         nevs = log_evs(s, rp, evs);
    int              want = spec_prepare(evs, nevs, e, &name);
    PCHECKF(rc == want, "prepare of (%u,%llu) gave %s (%s), want %s", r,
        (unsigned long long) e->dot.seq, mrd_errname(rc), why ? why : "",
        mrd_errname(want));
    if (rc != MRD_OK) {
        char quoted[16];
        snprintf(quoted, sizeof quoted, "'%s'", name);
        PCHECKF(why != NULL && strstr(why, quoted) != NULL,
            "prepare's reason \"%s\" must name %s", why ? why : "", quoted);
        stats.rejects++;
        return;
    }

    /* The record carries the ops; they must come back the same. */
    struct crdt_vv deps;
    crdt_vv_init(&deps);
    PCHECK(crdt_vv_copy(&deps, &rp->doc.ctx) == MRD_OK);
    PCHECK(vv_is(&deps, e->deps, s->nrep));
    msgpack_sbuffer *sb = &sbufs[0];
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    PCHECK(crdt_ops_encode(&pk, &deps, ops, e->nops, &why) == MRD_OK);
    e->enc    = malloc(sb->size);
    e->enclen = sb->size;
    PCHECK(e->enc != NULL);
    memcpy(e->enc, sb->data, sb->size);
    PCHECK(crdt_ops_decode(&rx, e->enc, e->enclen, &why) == MRD_OK);
    PCHECK(rx.count == e->nops && crdt_vv_equal(&rx.deps, &deps));
    for (uint32_t i = 0; i < e->nops; i++) {
        PCHECKF(op_matches(&rx.op[i], &e->op[i]), "op %u round trip", i);
    }

    enum crdt_delivery d;
    rc = crdt_doc_apply(&rp->doc, e->dot, e->hlc, &deps, ops, e->nops, &d);
    PCHECK(rc == MRD_OK && d == CRDT_APPLY);
    crdt_vv_free(&deps);
    uint32_t id = s->nev++;
    record_apply(s, r, id);
    stats.events++;
    rp->next_seq += 1 + (chance(25) ? rnd(3) : 0); /* node-wide seqs skip */
    for (unsigned q = 1; q <= s->nrep; q++) {
        if (q != r) {
            post(&s->rep[q], id, 0);
            if (chance(10)) {
                post(&s->rep[q], id, 1);
            }
        }
    }
}

/* ---------------------------------------------------------- compaction -- */

/* Replica r's stable vector: the pointwise min of its own context and of
 * what it learnt of every other replica's context; false when it has heard
 * from some replica nothing yet. */
static bool
stable_of(const struct sim *s, unsigned r, uint64_t *st)
{
    const struct rep *rp = &s->rep[r];
    for (unsigned q = 1; q <= s->nrep; q++) {
        if (q != r && rp->know[q][q] == 0) {
            return false;
        }
    }
    for (unsigned o = 1; o <= s->nrep; o++) {
        st[o] = rp->ctx[o];
        for (unsigned q = 1; q <= s->nrep; q++) {
            if (q != r && rp->know[q][o] < st[o]) {
                st[o] = rp->know[q][o];
            }
        }
    }
    return true;
}

static void
compact_with(struct sim *s, unsigned r, const uint64_t *st)
{
    struct rep      *rp = &s->rep[r];
    struct crdt_vv   vv;
    const struct ev *evs[EVS_MAX + 1];
    uint32_t         nevs = log_evs(s, rp, evs);
    vv_from(&vv, st, s->nrep);
    check_doc(&rp->doc, evs, nevs);
    size_t before = crdt_doc_meta_count(&rp->doc);
    PCHECK(crdt_doc_compact(&rp->doc, &vv) == MRD_OK);
    size_t after = crdt_doc_meta_count(&rp->doc);
    crdt_vv_free(&vv);
    check_doc(&rp->doc, evs, nevs); /* same values */
    check_round_trip(&rp->doc);
    stats.compactions++;
    stats.compactions_shrunk += after < before;
    if (s->mode == MRD_STATE_COUNTER) {
        stats.meta_before += before;
        stats.meta_after += after;
    }
}

static void
compact_all(struct sim *s)
{
    for (unsigned r = 1; r <= s->nrep; r++) {
        uint64_t st[NR_MAX + 1];
        if (stable_of(s, r, st)) {
            compact_with(s, r, st);
        }
    }
}

/* --------------------------------------------------------------- merge -- */

static bool
stables_ordered(const struct crdt_doc *a, const struct crdt_doc *b)
{
    return crdt_vv_covers(&a->stable, &b->stable)
        || crdt_vv_covers(&b->stable, &a->stable);
}

/* out = merge(a, b), a fresh doc the caller frees; false (and out empty)
 * when the stable points are not ordered, which merge must refuse. */
static bool
merged(struct crdt_doc *out, const struct crdt_doc *a, const struct crdt_doc *b)
{
    PCHECK(crdt_doc_copy(out, a) == MRD_OK);
    int rc = crdt_doc_merge(out, b);
    if (!stables_ordered(a, b)) {
        PCHECKF(rc == MRD_EINVAL, "merge of unordered stable points gave %s",
            mrd_errname(rc));
        crdt_doc_free(out);
        crdt_doc_init(out);
        stats.merges_refused++;
        return false;
    }
    PCHECKF(rc == MRD_OK, "merge: %s", mrd_errname(rc));
    return true;
}

/* Merge laws on the states of three random replicas, and merge against op
 * application. Compacted states join too when their stable points are
 * ordered; the union replica then compacts at the merged stable point. */
static void
check_merges(struct sim *s)
{
    unsigned         r1 = 1 + rnd(s->nrep), r2 = 1 + rnd(s->nrep);
    unsigned         r3 = 1 + rnd(s->nrep);
    struct crdt_doc *a = &s->rep[r1].doc, *b = &s->rep[r2].doc;
    struct crdt_doc *c = &s->rep[r3].doc;
    struct crdt_doc  ab, ba, x, y, bc, empty;

    crdt_doc_init(&empty);
    PCHECK(merged(&x, &empty, a));
    PCHECKF(doc_eq(&x, a), "merge(empty, %u) != %u", r1, r1);
    crdt_doc_free(&x);
    PCHECK(merged(&x, a, &empty));
    PCHECKF(doc_eq(&x, a), "merge(%u, empty) != %u", r1, r1);
    crdt_doc_free(&x);
    PCHECK(merged(&x, a, a));
    PCHECKF(doc_eq(&x, a), "merge(%u,%u) != %u", r1, r1, r1);
    crdt_doc_free(&x);

    if (!merged(&ab, a, b)) {
        return;
    }
    PCHECK(merged(&ba, b, a));
    PCHECKF(doc_eq(&ab, &ba), "merge(%u,%u) != merge(%u,%u)", r1, r2, r2, r1);
    crdt_doc_free(&ba);

    if (merged(&bc, b, c)) {
        bool ok1 = merged(&x, &ab, c); /* (a b) c */
        bool ok2 = merged(&y, a, &bc); /* a (b c) */
        if (ok1 && ok2) {
            PCHECKF(
                doc_eq(&x, &y), "merge not associative (%u,%u,%u)", r1, r2, r3);
        }
        crdt_doc_free(&x);
        crdt_doc_free(&y);
        crdt_doc_free(&bc);
    }

    /* The union of their events, applied in a causal order: r1's log, then
     * r2's events r1 lacks, in r2's order. */
    bool             in[EVS_MAX] = { false };
    const struct ev *evs[EVS_MAX + 1];
    uint32_t         n = 0;
    struct crdt_doc  u;
    crdt_doc_init(&u);
    for (uint32_t i = 0; i < s->rep[r1].nlog; i++) {
        in[s->rep[r1].log[i]] = true;
        evs[n++]              = &s->ev[s->rep[r1].log[i]];
    }
    for (uint32_t i = 0; i < s->rep[r2].nlog; i++) {
        if (!in[s->rep[r2].log[i]]) {
            evs[n++] = &s->ev[s->rep[r2].log[i]];
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        (void) apply_to(&u, evs[i], CRDT_APPLY);
    }
    if (ab.stable.n > 0) {
        PCHECK(crdt_doc_compact(&u, &ab.stable) == MRD_OK);
    }
    PCHECKF(doc_eq(&u, &ab), "merge(%u,%u) != their events applied", r1, r2);
    check_doc(&ab, evs, n);
    check_round_trip(&ab);
    crdt_doc_free(&u);
    stats.merges_compacted += ab.stable.n > 0;
    crdt_doc_free(&ab);
    stats.merges++;
}

/* ---------------------------------------------------------------- cases -- */

static void
sim_free(struct sim *s)
{
    for (unsigned r = 1; r <= NR_MAX; r++) {
        crdt_doc_free(&s->rep[r].doc);
        free(s->rep[r].inbox);
    }
    for (uint32_t i = 0; i < s->nev; i++) {
        free(s->ev[i].enc);
    }
}

static void
deliver_all(struct sim *s)
{
    bool more = true;
    while (more) {
        more = false;
        for (unsigned r = 1; r <= s->nrep; r++) {
            while (s->rep[r].ninbox > 0) {
                receive_one(s, r);
                more = true;
            }
        }
    }
    for (unsigned r = 1; r <= s->nrep; r++) {
        PCHECKF(s->rep[r].nhold == 0, "replica %u still holds %u events", r,
            s->rep[r].nhold);
        PCHECK(s->rep[r].nlog == s->nev);
    }
}

static void
run_case(struct sim *s, unsigned mode, unsigned ncase)
{
    memset(s, 0, sizeof *s);
    g.ncase = ncase;
    g.step  = 0;
    snprintf(crash_note, sizeof crash_note,
        "crdt_prop_test: died in MRD_TEST_SEED=%llu, test %s, case %u; replay "
        "this case alone with MRD_TEST_SEED=%llu MRD_CRDT_CASE=%u\n",
        (unsigned long long) run_seed, g.test, ncase,
        (unsigned long long) run_seed, ncase);
    g.rng = run_seed ^ (0x9e3779b97f4a7c15ull * (mode + 1));
    g.rng ^= splitmix64(&g.rng) + ncase;
    (void) splitmix64(&g.rng);
    g.sim      = s;
    s->mode    = mode;
    s->nrep    = 3 + rnd(3);
    s->compact = chance(35);
    for (unsigned i = 0; i < MRD_ARRAY_SIZE(s->pref); i++) {
        s->pref[i] = (uint8_t) (1 + rnd(5));
    }
    for (unsigned r = 1; r <= NR_MAX; r++) {
        crdt_doc_init(&s->rep[r].doc);
        s->rep[r].next_seq = 1 + rnd(3);
    }
    unsigned steps = 8 + rnd(STEPS_MAX - 8);
    for (g.step = 1; g.step <= steps; g.step++) {
        unsigned r = 1 + rnd(s->nrep);
        if (s->rep[r].ninbox == 0 || chance(40)) {
            produce(s, r);
        } else {
            receive_one(s, r);
        }
        if (chance(8)) {
            check_rep(s, 1 + rnd(s->nrep));
        }
        if (s->compact && chance(15)) {
            compact_all(s);
        }
        if (chance(s->compact ? 8 : 4)) {
            check_merges(s);
        }
    }
    deliver_all(s);
    for (unsigned r = 1; r <= s->nrep; r++) {
        check_rep(s, r);
    }
    if (s->compact) {
        /* No event will come any more: everything is stable. */
        for (unsigned r = 1; r <= s->nrep; r++) {
            compact_with(s, r, s->rep[r].ctx);
        }
    }
    check_merges(s);
    for (unsigned r = 2; r <= s->nrep; r++) {
        PCHECKF(doc_eq(&s->rep[1].doc, &s->rep[r].doc),
            "replicas 1 and %u differ after delivering everything", r);
    }
    sim_free(s);
    g.sim = NULL;
}

static void
prop_run(const char *test, unsigned mode)
{
    static struct sim s;
    memset(&stats, 0, sizeof stats);
    g.test = test;
    for (unsigned c = 0; c < run_cases; c++) {
        if (only_case < 0 || (unsigned long) only_case == c) {
            run_case(&s, mode, c);
        }
    }
    crash_note[0] = '\0';
    print_message(
        "%s: %u cases, %lu events (%lu refused at prepare), %lu "
        "applied, %lu held, %lu duplicates, %lu spec checks, %lu "
        "merge checks (%lu of compacted states, %lu refused: stable points "
        "not ordered), %lu compactions (%lu shrank)\n",
        test, only_case < 0 ? run_cases : 1, stats.events, stats.rejects,
        stats.applies, stats.holds, stats.dups, stats.checks, stats.merges,
        stats.merges_compacted, stats.merges_refused, stats.compactions,
        stats.compactions_shrunk);
}

static void
test_counter(void **state)
{
    (void) state;
    prop_run("counter", MRD_STATE_COUNTER);
    print_message("counter: metadata %lu before compactions, %lu after\n",
        stats.meta_before, stats.meta_after);
    if (only_case < 0 && run_cases >= 20) {
        /* Compaction folds increments: it must actually shrink them. */
        if (stats.compactions_shrunk == 0
            || stats.meta_after >= stats.meta_before) {
            fail_msg("compaction did not shrink counters' metadata "
                     "[MRD_TEST_SEED=%llu]",
                (unsigned long long) run_seed);
        }
    }
}

static void
test_lww(void **state)
{
    (void) state;
    prop_run("lww", MRD_STATE_LWW);
}

static void
test_mvreg(void **state)
{
    (void) state;
    prop_run("mvreg", MRD_STATE_MVREG);
}

static void
test_flag(void **state)
{
    (void) state;
    prop_run("flag", MRD_STATE_FLAG);
}

static void
test_set(void **state)
{
    (void) state;
    prop_run("set", MRD_STATE_SET);
}

static void
test_mixed(void **state)
{
    (void) state;
    prop_run("mixed", 0);
    print_message(
        "mixed: %lu same-name entries of two types seen\n", stats.siblings);
    if (only_case < 0 && run_cases >= 20) {
        /* Type conflicts were tried, and concurrent ones coexisted. */
        if (stats.rejects == 0 || stats.siblings == 0) {
            fail_msg("no type conflict was tried or seen [MRD_TEST_SEED=%llu]",
                (unsigned long long) run_seed);
        }
    }
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char              *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "crdt_prop_test: %s must be a number\n", name);
        exit(2);
    }
    return n;
}

int
main(void)
{
    uint64_t t = (uint64_t) time(NULL) * 1000003u ^ (uint64_t) getpid();
    run_seed   = env_u64("MRD_TEST_SEED", splitmix64(&t));
    run_cases  = (unsigned) env_u64("MRD_CRDT_CASES", DEFAULT_CASES);
    if (getenv("MRD_CRDT_CASE") != NULL) {
        only_case = (long) env_u64("MRD_CRDT_CASE", 0);
    }
    signal(SIGABRT, on_abort);
#ifdef PROP_SANITIZED
    __sanitizer_set_death_callback(print_crash_note);
#endif
    printf("crdt_prop_test: MRD_TEST_SEED=%llu MRD_CRDT_CASES=%u\n",
        (unsigned long long) run_seed, run_cases);
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_lww),
        cmocka_unit_test(test_mvreg),
        cmocka_unit_test(test_flag),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_mixed),
    };
    msgpack_sbuffer_init(&sbufs[0]);
    msgpack_sbuffer_init(&sbufs[1]);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    msgpack_sbuffer_destroy(&sbufs[0]);
    msgpack_sbuffer_destroy(&sbufs[1]);
    return failed;
}
