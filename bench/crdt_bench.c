/*
 * crdt_bench.c: in-memory speed of crdt/, no node, no disk.
 *
 * Apply-only workloads: events prepared in advance (one op each, the local
 * origin writing after three peers wrote once, so deps carry 4 entries) are
 * applied to one document, timed alone: counter inc, LWW set, MV-register
 * set, flag enable/disable, set add/remove over ~1,000 members, and a
 * counter nested in a map (cart.<sku>.qty over 100 skus). Then the per-append
 * path of the node on a small document (about ten fields of every type): ops
 * decode + document decode + apply + compact + encode per op, ops cycling
 * through every kind; and the same on a document holding a 1,000-member set,
 * to show how the document's size drives it. Every figure is the median of
 * --runs runs, each on a fresh document.
 *
 * Usage: crdt_bench [--runs N] [--quick]
 */
#include "common.h"
#include "crdt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_RUNS_MAX 15u
#define SET_MEMBERS 1000u
#define SKUS 100u
#define PEERS 3u /* origins 2..4 wrote once before origin 1 writes */

struct bench_opts {
    unsigned runs;
    bool     quick;
};

struct sizes {
    uint32_t apply_ops; /* per apply-only workload */
    uint32_t pipe_ops; /* per decode+apply+encode workload */
};

/* One prepared event with a single op; deps is a view of dep. */
struct pev {
    struct crdt_dot dot;
    uint64_t        hlc;
    struct crdt_dot dep[1 + PEERS];
    struct crdt_vv  deps;
    struct crdt_op  op;
};

static char member_names[SET_MEMBERS * 2][16];
static char sku_names[SKUS][16];

static void
die(const char *what, int err)
{
    fprintf(stderr, "crdt_bench: %s: %s (%s)\n", what, mrd_strerror(err),
        mrd_errname(err));
    exit(1);
}

static struct crdt_bytes
B(const char *s) {
    return (struct crdt_bytes) { (const uint8_t *) s, (uint32_t) strlen(s) };
}

/* xorshift64: the same sequence in every run. */
static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int
dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, unsigned n)
{
    qsort(v, n, sizeof(double), dbl_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ----------------------------------------------------------- workloads -- */

enum {
    W_COUNTER,
    W_LWW,
    W_MVREG,
    W_FLAG,
    W_SET,
    W_NESTED,
    W_PIPE_SMALL,
    W_PIPE_SET,
    W_COUNT
};
static const char *const w_names[W_COUNT] = {
    "apply: counter inc",
    "apply: lww set",
    "apply: mvreg set",
    "apply: flag enable/disable",
    "apply: set add/remove, 1000 members",
    "apply: nested map counter inc",
    "decode+apply+encode, small doc",
    "decode+apply+encode, 1000-member set",
};

static void
apply_one(struct crdt_doc *doc, struct crdt_dot dot, uint64_t hlc,
    const struct crdt_vv *deps, const struct crdt_op *ops, uint32_t n)
{
    enum crdt_delivery d;
    int                rc = crdt_doc_apply(doc, dot, hlc, deps, ops, n, &d);
    if (rc != MRD_OK) {
        die("apply", rc);
    }
    if (d != CRDT_APPLY) {
        fprintf(stderr, "crdt_bench: event not delivered (%d)\n", (int) d);
        exit(1);
    }
}

/* The op of event i of workload w. */
static struct crdt_op
workload_op(int w, uint32_t i, uint64_t *rng)
{
    struct crdt_op op;
    memset(&op, 0, sizeof op);
    op.depth   = 1;
    op.path[0] = B("f");
    switch (w) {
    case W_COUNTER:
        op.type  = MRD_STATE_COUNTER;
        op.kind  = MRD_OP_INC;
        op.delta = 1;
        break;
    case W_LWW:
    case W_MVREG:
        op.type = w == W_LWW ? MRD_STATE_LWW : MRD_STATE_MVREG;
        op.kind = MRD_OP_SET;
        op.value
            = B(i % 2 ? "a value of some 24 bytes" : "another value, 24 bytes");
        break;
    case W_FLAG:
        op.type = MRD_STATE_FLAG;
        op.kind = i % 2 ? MRD_OP_DISABLE : MRD_OP_ENABLE;
        break;
    case W_SET:
        /* Members drawn from 2,000 names, half of them in the set at any
         * time: adds and removes both mostly find their member. */
        op.type  = MRD_STATE_SET;
        op.kind  = i % 2 ? MRD_OP_REMOVE : MRD_OP_ADD;
        op.value = B(member_names[next_rand(rng) % (2 * SET_MEMBERS)]);
        break;
    case W_NESTED:
        op.type    = MRD_STATE_COUNTER;
        op.kind    = MRD_OP_INC;
        op.delta   = 1;
        op.depth   = 3;
        op.path[0] = B("cart");
        op.path[1] = B(sku_names[next_rand(rng) % SKUS]);
        op.path[2] = B("qty");
        break;
    default:
        MRD_ASSERT(!"not an apply workload");
    }
    return op;
}

/* Origins 2..4 write once (and the set starts with 1,000 members). */
static void
seed_doc(struct crdt_doc *doc, int w)
{
    struct crdt_vv none = { 0, 0, NULL };
    for (uint64_t o = 2; o <= 1 + PEERS; o++) {
        struct crdt_op op;
        memset(&op, 0, sizeof op);
        op.type    = MRD_STATE_FLAG;
        op.kind    = MRD_OP_ENABLE;
        op.depth   = 1;
        op.path[0] = B("peer");
        apply_one(doc, (struct crdt_dot) { o, 1 }, 1, &none, &op, 1);
    }
    if (w != W_SET && w != W_PIPE_SET) {
        return;
    }
    /* 1,000 members in 16 events of up to 64 adds, from origin 2. */
    static struct crdt_op ops[CRDT_OPS_MAX];
    struct crdt_vv        deps;
    crdt_vv_init(&deps);
    uint64_t seq = 2;
    for (uint32_t m = 0; m < SET_MEMBERS; seq++) {
        uint32_t n = 0;
        for (; n < CRDT_OPS_MAX && m < SET_MEMBERS; n++, m++) {
            memset(&ops[n], 0, sizeof ops[n]);
            ops[n].type    = MRD_STATE_SET;
            ops[n].kind    = MRD_OP_ADD;
            ops[n].depth   = 1;
            ops[n].path[0] = B("f");
            ops[n].value   = B(member_names[2 * m]);
        }
        int rc = crdt_vv_copy(&deps, &doc->ctx);
        if (rc != MRD_OK) {
            die("vv", rc);
        }
        apply_one(doc, (struct crdt_dot) { 2, seq }, seq, &deps, ops, n);
    }
    crdt_vv_free(&deps);
}

/* Events from origin 1, each seeing everything before it. */
static struct pev *
prepare_events(const struct crdt_doc *doc, int w, uint32_t n)
{
    struct pev *ev = calloc(n, sizeof *ev);
    if (ev == NULL) {
        die("calloc", MRD_ENOMEM);
    }
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < n; i++) {
        struct pev *e = &ev[i];
        e->dot        = (struct crdt_dot) { 1, i + 1 };
        e->hlc        = 1000 + i;
        uint32_t k    = 0;
        if (i > 0) {
            e->dep[k++] = (struct crdt_dot) { 1, i };
        }
        for (uint32_t p = 0; p < doc->ctx.n; p++) {
            if (doc->ctx.e[p].origin != 1) {
                e->dep[k++] = doc->ctx.e[p];
            }
        }
        e->deps = (struct crdt_vv) { k, 0, e->dep };
        e->op   = workload_op(w, i, &rng);
    }
    return ev;
}

static double
run_apply(int w, uint32_t n, size_t *meta)
{
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    seed_doc(&doc, w);
    struct pev *ev = prepare_events(&doc, w, n);
    uint64_t    t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < n; i++) {
        apply_one(&doc, ev[i].dot, ev[i].hlc, &ev[i].deps, &ev[i].op, 1);
    }
    uint64_t us = mrd_now_mono_us() - t0;
    *meta       = crdt_doc_meta_count(&doc);
    free(ev);
    crdt_doc_free(&doc);
    return (double) n * 1e6 / (double) (us ? us : 1);
}

/* ---------------------------------------------------- the append path -- */

static struct crdt_op
mk(uint8_t type, uint8_t kind, const char *name, int64_t delta,
    const char *value)
{
    struct crdt_op op;
    memset(&op, 0, sizeof op);
    op.type    = type;
    op.kind    = kind;
    op.depth   = 1;
    op.path[0] = B(name);
    op.delta   = delta;
    if (value != NULL) {
        op.value = B(value);
    }
    return op;
}

/* About ten fields of every type. */
static void
small_doc(struct crdt_doc *doc)
{
    struct crdt_op ops[] = {
        mk(MRD_STATE_COUNTER, MRD_OP_INC, "hits", 12, NULL),
        mk(MRD_STATE_COUNTER, MRD_OP_INC, "stock", -3, NULL),
        mk(MRD_STATE_LWW, MRD_OP_SET, "name", 0, "Ada Lovelace"),
        mk(MRD_STATE_LWW, MRD_OP_SET, "email", 0, "ada@example.org"),
        mk(MRD_STATE_MVREG, MRD_OP_SET, "status", 0, "active"),
        mk(MRD_STATE_FLAG, MRD_OP_ENABLE, "verified", 0, NULL),
        mk(MRD_STATE_SET, MRD_OP_ADD, "tags", 0, "vip"),
        mk(MRD_STATE_SET, MRD_OP_ADD, "tags", 0, "beta"),
        mk(MRD_STATE_SET, MRD_OP_ADD, "tags", 0, "eu"),
    };
    struct crdt_op cart = mk(MRD_STATE_COUNTER, MRD_OP_INC, "cart", 1, NULL);
    cart.depth          = 3;
    struct crdt_vv deps;
    crdt_vv_init(&deps);
    int rc = crdt_vv_copy(&deps, &doc->ctx);
    if (rc != MRD_OK) {
        die("vv", rc);
    }
    apply_one(doc, (struct crdt_dot) { 3, 2 }, 5, &deps, ops,
        (uint32_t) MRD_ARRAY_SIZE(ops));
    for (uint32_t k = 0; k < 3; k++) {
        cart.path[1] = B(sku_names[k]);
        cart.path[2] = B("qty");
        rc           = crdt_vv_copy(&deps, &doc->ctx);
        if (rc != MRD_OK) {
            die("vv", rc);
        }
        apply_one(doc, (struct crdt_dot) { 4, 2 + k }, 6, &deps, &cart, 1);
    }
    crdt_vv_free(&deps);
}

/* The op of append i: every kind in turn, the document's size steady. */
static struct crdt_op
pipe_op(int w, uint32_t i)
{
    bool odd = (i / 6) % 2; /* each kind toggles on its own turns */
    if (w == W_PIPE_SET) {
        return mk(MRD_STATE_SET, i % 2 ? MRD_OP_REMOVE : MRD_OP_ADD, "f", 0,
            member_names[1 + 2 * (i / 2 % SET_MEMBERS)]);
    }
    switch (i % 6) {
    case 0:
        return mk(MRD_STATE_COUNTER, MRD_OP_INC, "hits", 1, NULL);
    case 1:
        return mk(MRD_STATE_LWW, MRD_OP_SET, "name", 0,
            odd ? "Ada King" : "Ada Lovelace");
    case 2:
        return mk(MRD_STATE_FLAG, odd ? MRD_OP_DISABLE : MRD_OP_ENABLE,
            "verified", 0, NULL);
    case 3:
        return mk(
            MRD_STATE_SET, odd ? MRD_OP_REMOVE : MRD_OP_ADD, "tags", 0, "new");
    case 4:
        return mk(
            MRD_STATE_MVREG, MRD_OP_SET, "status", 0, odd ? "away" : "active");
    default:
        return mk(MRD_STATE_COUNTER, MRD_OP_INC, "stock", -1, NULL);
    }
}

/* What the node does per append: decode the event's ops and the stored
 * document, apply, compact (a single writer: everything it applied is
 * stable), encode the document to store it again. */
static double
run_pipe(int w, uint32_t n, size_t *doc_bytes)
{
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    seed_doc(&doc, w);
    if (w == W_PIPE_SMALL) {
        small_doc(&doc);
    }
    msgpack_sbuffer stored, rec;
    msgpack_packer  pk;
    msgpack_sbuffer_init(&stored);
    msgpack_packer_init(&pk, &stored, msgpack_sbuffer_write);
    int rc = crdt_doc_encode(&doc, &pk);
    if (rc != MRD_OK) {
        die("encode", rc);
    }
    uint64_t seq0 = crdt_vv_get(&doc.ctx, 1);
    crdt_doc_free(&doc);
    /* The events' records, encoded in advance. */
    size_t   *off = malloc((n + 1) * sizeof *off);
    uint64_t *dep = malloc(n * sizeof *dep);
    if (off == NULL || dep == NULL) {
        die("malloc", MRD_ENOMEM);
    }
    msgpack_sbuffer_init(&rec);
    msgpack_packer_init(&pk, &rec, msgpack_sbuffer_write);
    struct crdt_doc peek;
    crdt_doc_init(&peek);
    const char *why = NULL;
    rc              = crdt_doc_decode(&peek, stored.data, stored.size, &why);
    if (rc != MRD_OK) {
        die(why, rc);
    }
    struct crdt_vv deps;
    crdt_vv_init(&deps);
    for (uint32_t i = 0; i < n; i++) {
        struct crdt_op op = pipe_op(w, i);
        rc                = crdt_vv_copy(&deps, &peek.ctx);
        if (rc == MRD_OK && i > 0) {
            rc = crdt_vv_raise(&deps, 1, seq0 + i);
        }
        if (rc != MRD_OK) {
            die("vv", rc);
        }
        off[i] = rec.size;
        rc     = crdt_ops_encode(&pk, &deps, &op, 1, &why);
        if (rc != MRD_OK) {
            die(why, rc);
        }
        dep[i] = seq0 + i + 1;
    }
    off[n] = rec.size;
    crdt_vv_free(&deps);
    crdt_doc_free(&peek);

    static struct crdt_ops ops;
    msgpack_sbuffer        out;
    msgpack_sbuffer_init(&out);
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < n; i++) {
        struct crdt_doc d;
        crdt_doc_init(&d);
        rc = crdt_ops_decode(
            &ops, rec.data + off[i], off[i + 1] - off[i], &why);
        if (rc == MRD_OK) {
            rc = crdt_doc_decode(&d, stored.data, stored.size, &why);
        }
        if (rc != MRD_OK) {
            die(why, rc);
        }
        apply_one(&d, (struct crdt_dot) { 1, dep[i] }, 2000 + i, &ops.deps,
            ops.op, ops.count);
        rc = crdt_doc_compact(&d, &d.ctx);
        if (rc != MRD_OK) {
            die("compact", rc);
        }
        msgpack_sbuffer_clear(&out);
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        rc = crdt_doc_encode(&d, &pk);
        if (rc != MRD_OK) {
            die("encode", rc);
        }
        crdt_doc_free(&d);
        /* The new document is what the next append reads. */
        msgpack_sbuffer tmp = stored;
        stored              = out;
        out                 = tmp;
    }
    uint64_t us = mrd_now_mono_us() - t0;
    *doc_bytes  = stored.size;
    msgpack_sbuffer_destroy(&stored);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&rec);
    free(off);
    free(dep);
    return (double) n * 1e6 / (double) (us ? us : 1);
}

/* ---------------------------------------------------------------- main -- */

static void
parse_args(int argc, char **argv, struct bench_opts *o)
{
    o->runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            o->runs = (unsigned) atoi(argv[++i]);
        } else if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
        } else {
            printf("Usage: crdt_bench [--runs N (1..%u, default 5)] "
                   "[--quick]\n",
                BENCH_RUNS_MAX);
            exit(strcmp(argv[i], "--help") == 0 ? 0 : 2);
        }
    }
    if (o->runs < 1 || o->runs > BENCH_RUNS_MAX) {
        fprintf(stderr, "crdt_bench: --runs must be 1..%u\n", BENCH_RUNS_MAX);
        exit(2);
    }
}

int
main(int argc, char **argv)
{
    struct bench_opts o = { 0 };
    struct sizes      z = { 500000, 100000 };
    double            rate[W_COUNT][BENCH_RUNS_MAX];
    size_t            info[W_COUNT] = { 0 };

    parse_args(argc, argv, &o);
    if (o.quick) {
        z = (struct sizes) { 50000, 5000 };
    }
    for (uint32_t i = 0; i < 2 * SET_MEMBERS; i++) {
        snprintf(member_names[i], sizeof member_names[i], "member-%04u", i);
    }
    for (uint32_t i = 0; i < SKUS; i++) {
        snprintf(sku_names[i], sizeof sku_names[i], "sku-%03u", i);
    }
    for (unsigned run = 0; run < o.runs; run++) {
        fprintf(stderr, "run %u/%u...\n", run + 1, o.runs);
        for (int w = 0; w < W_COUNT; w++) {
            rate[w][run] = w < W_PIPE_SMALL
                ? run_apply(w, z.apply_ops, &info[w])
                : run_pipe(w, z.pipe_ops, &info[w]);
        }
    }
    printf("\n%-40s %12s %9s %12s\n", "workload (1 op per event)", "ops/s",
        "ns/op", "after");
    for (int w = 0; w < W_COUNT; w++) {
        double m = median(rate[w], o.runs);
        printf("%-40s %12.0f %9.0f %12zu %s\n", w_names[w], m, 1e9 / m, info[w],
            w < W_PIPE_SMALL ? "meta" : "doc bytes");
    }
    printf("\nmedians of %u runs; %u events per apply workload, %u per "
           "decode+apply+encode workload%s\n",
        o.runs, z.apply_ops, z.pipe_ops, o.quick ? " (--quick sizes)" : "");
    return 0;
}
