/*
 * crdt_fuzz.c: libFuzzer target for crdt_doc_decode and crdt_ops_decode,
 * the readers of state documents (from disk, snapshots, peers) and of the
 * ops carried by every event record.
 *
 * The first byte picks the decoder (even: document, odd: ops); the rest is
 * its input. Whatever a decoder accepts must behave like something crdt/
 * built itself:
 *
 *   - document: it re-encodes to bytes that decode again and re-encode to
 *     the same bytes; merging it with a copy of itself, with an empty
 *     document and into an empty document gives it back to the byte; a
 *     small fixed event (every kind of op, on names the corpus uses) applies
 *     on top of it, and compaction at its own context, leaving a document
 *     that still round-trips;
 *   - ops: encoded again they decode to the same deps and ops, and encode
 *     again to the same bytes; applied to a document whose context is their
 *     deps they are delivered (never held), and the result round-trips.
 *
 * Seeds (tests/fuzz/corpus/crdt_fuzz): documents (empty, one event of every
 * op kind with nested maps and the deepest path, type siblings, compacted,
 * compacted then deleted) and ops (every kind, with and without deps), all
 * written by crdt's own encoders behind their mode byte.
 */
#include <stdlib.h>
#include <string.h>

#include "crdt.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct crdt_ops ops_a, ops_b; /* ~28 KiB each: off the stack */

static void
encode_doc(const struct crdt_doc *doc, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    CHECK(crdt_doc_encode(doc, &pk) == MRD_OK);
}

static bool
same(const msgpack_sbuffer *a, const msgpack_sbuffer *b)
{
    return a->size == b->size
        && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

/* doc encodes to bytes that decode and re-encode to themselves; *out gets
 * the bytes. */
static void
round_trip(const struct crdt_doc *doc, msgpack_sbuffer *out)
{
    msgpack_sbuffer again;
    struct crdt_doc back;
    const char     *why = NULL;
    encode_doc(doc, out);
    crdt_doc_init(&back);
    CHECK(crdt_doc_decode(&back, out->data, out->size, &why) == MRD_OK);
    encode_doc(&back, &again);
    CHECK(same(out, &again));
    msgpack_sbuffer_destroy(&again);
    crdt_doc_free(&back);
}

/* merge(into, from) must give the bytes `want`. */
static void
check_merge(const struct crdt_doc *into, const struct crdt_doc *from,
    const msgpack_sbuffer *want)
{
    struct crdt_doc m;
    msgpack_sbuffer got;
    if (crdt_doc_copy(&m, into) != MRD_OK) {
        return;
    }
    int rc = crdt_doc_merge(&m, from);
    CHECK(rc == MRD_OK || rc == MRD_ENOMEM || rc == MRD_EFULL);
    if (rc == MRD_OK) {
        encode_doc(&m, &got);
        CHECK(same(&got, want));
        msgpack_sbuffer_destroy(&got);
    }
    crdt_doc_free(&m);
}

static struct crdt_bytes
B(const char *s) {
    return (struct crdt_bytes) { (const uint8_t *) s, (uint32_t) strlen(s) };
}

/* An event of every op kind, delivered on top of doc by a new origin. */
static void
apply_fixed(struct crdt_doc *doc)
{
    struct crdt_op ops[7];
    memset(ops, 0, sizeof ops);
    ops[0] = (struct crdt_op) { .type = MRD_STATE_COUNTER,
        .kind                         = MRD_OP_INC,
        .depth                        = 1,
        .path                         = { B("c") },
        .delta                        = 1 };
    ops[1] = (struct crdt_op) { .type = MRD_STATE_SET,
        .kind                         = MRD_OP_ADD,
        .depth                        = 2,
        .path                         = { B("m"), B("s") },
        .value                        = B("x") };
    ops[2] = (struct crdt_op) { .type = MRD_STATE_SET,
        .kind                         = MRD_OP_REMOVE,
        .depth                        = 1,
        .path                         = { B("s") },
        .value                        = B("a") };
    ops[3] = (struct crdt_op) { .type = MRD_STATE_LWW,
        .kind                         = MRD_OP_SET,
        .depth                        = 1,
        .path                         = { B("w") },
        .value                        = B("v") };
    ops[4] = (struct crdt_op) { .type = MRD_STATE_FLAG,
        .kind                         = MRD_OP_DISABLE,
        .depth                        = 1,
        .path                         = { B("f") } };
    ops[5] = (struct crdt_op) { .type = MRD_STATE_MVREG,
        .kind                         = MRD_OP_SET,
        .depth                        = 1,
        .path                         = { B("r") },
        .value                        = B("") };
    ops[6] = (struct crdt_op) {
        .type = 0, .kind = MRD_OP_DELETE, .depth = 1, .path = { B("d") }
    };
    const char *why = NULL;
    (void) crdt_doc_prepare(doc, ops, 7, &why); /* may refuse: ETYPE */

    /* A new origin: one above every origin of the context. */
    uint64_t origin = doc->ctx.n ? doc->ctx.e[doc->ctx.n - 1].origin + 1 : 1;
    if (origin == UINT64_MAX) {
        return;
    }
    struct crdt_vv deps;
    crdt_vv_init(&deps);
    if (crdt_vv_copy(&deps, &doc->ctx) != MRD_OK) {
        return;
    }
    enum crdt_delivery d;
    int                rc = crdt_doc_apply(
                       doc, (struct crdt_dot) { origin, 1 }, 1, &deps, ops, 7, &d);
    crdt_vv_free(&deps);
    CHECK(rc == MRD_OK || rc == MRD_EFULL || rc == MRD_ENOMEM);
    if (rc != MRD_OK) {
        return; /* the document must be discarded */
    }
    CHECK(d == CRDT_APPLY);
    msgpack_sbuffer sb;
    round_trip(doc, &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void
fuzz_doc(const uint8_t *p, size_t len)
{
    struct crdt_doc doc, empty;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    int rc = crdt_doc_decode(&doc, p, len, &why);
    if (rc != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rc == MRD_EPROTO || rc == MRD_ETOOBIG || rc == MRD_ENOMEM);
        CHECK(crdt_doc_empty(&doc));
        crdt_doc_free(&doc);
        return;
    }
    CHECK(crdt_vv_covers(&doc.ctx, &doc.stable));
    msgpack_sbuffer bytes;
    round_trip(&doc, &bytes);

    crdt_doc_init(&empty);
    check_merge(&doc, &doc, &bytes);
    check_merge(&doc, &empty, &bytes);
    check_merge(&empty, &doc, &bytes);
    msgpack_sbuffer_destroy(&bytes);

    struct crdt_doc c;
    if (crdt_doc_copy(&c, &doc) == MRD_OK) {
        if (crdt_doc_compact(&c, &c.ctx) == MRD_OK) {
            msgpack_sbuffer sb;
            round_trip(&c, &sb);
            msgpack_sbuffer_destroy(&sb);
        }
        crdt_doc_free(&c);
    }
    apply_fixed(&doc);
    crdt_doc_free(&doc);
}

static bool
ops_equal(const struct crdt_ops *a, const struct crdt_ops *b)
{
    if (a->count != b->count || !crdt_vv_equal(&a->deps, &b->deps)) {
        return false;
    }
    for (uint32_t i = 0; i < a->count; i++) {
        const struct crdt_op *x = &a->op[i], *y = &b->op[i];
        if (x->type != y->type || x->kind != y->kind || x->depth != y->depth
            || x->delta != y->delta || x->value.len != y->value.len
            || (x->value.len > 0
                && memcmp(x->value.ptr, y->value.ptr, x->value.len) != 0)) {
            return false;
        }
        for (uint32_t j = 0; j < x->depth; j++) {
            if (x->path[j].len != y->path[j].len
                || memcmp(x->path[j].ptr, y->path[j].ptr, x->path[j].len)
                    != 0) {
                return false;
            }
        }
    }
    return true;
}

static void
fuzz_ops(const uint8_t *p, size_t len)
{
    const char *why = NULL;
    int         rc  = crdt_ops_decode(&ops_a, p, len, &why);
    if (rc != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rc == MRD_EPROTO || rc == MRD_ETOOBIG);
        return;
    }
    CHECK(ops_a.count >= 1 && ops_a.count <= CRDT_OPS_MAX);
    for (uint32_t i = 0; i < ops_a.count; i++) {
        CHECK(crdt_op_check(&ops_a.op[i], NULL) == MRD_OK);
    }
    msgpack_sbuffer one, two;
    msgpack_packer  pk;
    msgpack_sbuffer_init(&one);
    msgpack_packer_init(&pk, &one, msgpack_sbuffer_write);
    CHECK(crdt_ops_encode(&pk, &ops_a.deps, ops_a.op, ops_a.count, &why)
        == MRD_OK);
    CHECK(crdt_ops_decode(&ops_b, one.data, one.size, &why) == MRD_OK);
    CHECK(ops_equal(&ops_a, &ops_b));
    msgpack_sbuffer_init(&two);
    msgpack_packer_init(&pk, &two, msgpack_sbuffer_write);
    CHECK(crdt_ops_encode(&pk, &ops_b.deps, ops_b.op, ops_b.count, &why)
        == MRD_OK);
    CHECK(same(&one, &two));
    msgpack_sbuffer_destroy(&two);

    /* Delivered to a replica that has exactly their deps. */
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    const struct crdt_vv *deps = &ops_b.deps;
    uint64_t              origin
        = deps->n ? deps->e[deps->n - 1].origin : 1; /* its own last seq */
    uint64_t seq = crdt_vv_get(deps, origin);
    if (seq < UINT64_MAX && crdt_vv_copy(&doc.ctx, deps) == MRD_OK) {
        enum crdt_delivery d;
        rc = crdt_doc_apply(&doc, (struct crdt_dot) { origin, seq + 1 }, 7,
            deps, ops_b.op, ops_b.count, &d);
        CHECK(rc == MRD_OK || rc == MRD_EFULL || rc == MRD_ENOMEM);
        if (rc == MRD_OK) {
            CHECK(d == CRDT_APPLY);
            msgpack_sbuffer sb;
            round_trip(&doc, &sb);
            msgpack_sbuffer_destroy(&sb);
        }
    }
    crdt_doc_free(&doc);
    msgpack_sbuffer_destroy(&one);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if (data[0] % 2 == 0) {
        fuzz_doc(data + 1, size - 1);
    } else {
        fuzz_ops(data + 1, size - 1);
    }
    return 0;
}
