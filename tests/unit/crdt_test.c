/*
 * crdt_test.c: targeted cases of crdt/ (the randomised ones are in
 * crdt_prop_test.c): what prepare refuses at the origin and why, delivery
 * (hold, duplicate, refused events), the conflict rules on small
 * hand-written histories, compaction and merge refusals, and the document
 * and ops decoders on hand-made bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "crdt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers -- */

/* An op on a dotted path ("cart.sku1.qty"); the path string must outlive
 * the op (literals do). */
static struct crdt_op
mk(uint8_t type, uint8_t kind, const char *path, int64_t delta,
    const char *value)
{
    struct crdt_op op;
    memset(&op, 0, sizeof op);
    op.type  = type;
    op.kind  = kind;
    op.delta = delta;
    for (const char *p = path;;) {
        const char *dot = strchr(p, '.');
        size_t      len = dot ? (size_t) (dot - p) : strlen(p);
        op.path[op.depth++]
            = (struct crdt_bytes) { (const uint8_t *) p, (uint32_t) len };
        if (dot == NULL) {
            break;
        }
        p = dot + 1;
    }
    if (value != NULL) {
        op.value = (struct crdt_bytes) { (const uint8_t *) value,
            (uint32_t) strlen(value) };
    }
    return op;
}

static struct crdt_op
inc(const char *path, int64_t delta)
{
    return mk(MRD_STATE_COUNTER, MRD_OP_INC, path, delta, NULL);
}

static struct crdt_op
add(const char *path, const char *member)
{
    return mk(MRD_STATE_SET, MRD_OP_ADD, path, 0, member);
}

static struct crdt_op
rem(const char *path, const char *member)
{
    return mk(MRD_STATE_SET, MRD_OP_REMOVE, path, 0, member);
}

static struct crdt_op
del(const char *path)
{
    return mk(0, MRD_OP_DELETE, path, 0, NULL);
}

/* A version vector from origin/seq pairs, 0-terminated. */
static void
vv_set(struct crdt_vv *vv, const uint64_t *pairs)
{
    crdt_vv_init(vv);
    for (; pairs[0] != 0; pairs += 2) {
        assert_int_equal(crdt_vv_raise(vv, pairs[0], pairs[1]), MRD_OK);
    }
}

/* Applies one event; returns its delivery. */
static enum crdt_delivery
apply(struct crdt_doc *doc, uint64_t origin, uint64_t seq, uint64_t hlc,
    const uint64_t *deps, const struct crdt_op *ops, uint32_t n)
{
    struct crdt_vv     vv;
    enum crdt_delivery d;
    vv_set(&vv, deps);
    assert_int_equal(crdt_doc_apply(doc, (struct crdt_dot) { origin, seq }, hlc,
                         &vv, ops, n, &d),
        MRD_OK);
    crdt_vv_free(&vv);
    return d;
}

static msgpack_sbuffer sb;
static msgpack_packer  pk;

static void
start(void)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}

/* The document's encoding, in a fresh malloc'd copy. */
static char *
encode(const struct crdt_doc *doc, size_t *len)
{
    start();
    assert_int_equal(crdt_doc_encode(doc, &pk), MRD_OK);
    char *p = malloc(sb.size);
    assert_non_null(p);
    memcpy(p, sb.data, sb.size);
    *len = sb.size;
    return p;
}

static void
assert_doc_bytes(const struct crdt_doc *doc, const char *bytes, size_t len)
{
    size_t n;
    char  *now = encode(doc, &n);
    assert_int_equal(n, len);
    assert_memory_equal(now, bytes, len);
    free(now);
}

static const struct crdt_val *
field(const struct crdt_doc *doc, const char *name, uint8_t type)
{
    return crdt_map_find(
        &doc->root, (const uint8_t *) name, (uint32_t) strlen(name), type);
}

static const uint64_t none[] = { 0 };

/* ------------------------------------------------------------- prepare -- */

static void
test_prepare_type_mismatch(void **state)
{
    (void) state;
    struct crdt_doc doc;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    struct crdt_op ops[] = { inc("hits", 1), inc("cart.sku1", 2) };
    assert_int_equal(apply(&doc, 1, 1, 10, none, ops, 2), CRDT_APPLY);

    struct crdt_op bad = add("hits", "x");
    assert_int_equal(crdt_doc_prepare(&doc, &bad, 1, &why), MRD_ETYPE);
    assert_non_null(why);
    assert_non_null(strstr(why, "'hits'"));
    assert_non_null(strstr(why, "counter"));
    assert_non_null(strstr(why, "set"));

    /* Through a path: "hits" is no map, "cart.sku1" no set. */
    struct crdt_op nested = inc("hits.deep", 1);
    why                   = NULL;
    assert_int_equal(crdt_doc_prepare(&doc, &nested, 1, &why), MRD_ETYPE);
    assert_non_null(strstr(why, "'hits'"));
    assert_non_null(strstr(why, "map"));
    nested = add("cart.sku1", "x");
    why    = NULL;
    assert_int_equal(crdt_doc_prepare(&doc, &nested, 1, &why), MRD_ETYPE);
    assert_non_null(strstr(why, "'sku1'"));
    /* Deleting a key under a non-map is the same mistake. */
    nested = del("hits.deep");
    assert_int_equal(crdt_doc_prepare(&doc, &nested, 1, &why), MRD_ETYPE);

    /* The right types, and new names, are fine. */
    struct crdt_op good[] = { inc("hits", 5), inc("cart.sku2", 1),
        add("tags", "a"), del("cart.nothing.here") };
    assert_int_equal(crdt_doc_prepare(&doc, good, 4, &why), MRD_OK);
    /* An op checked alone is not enough: "inc x; add to x" is refused. */
    struct crdt_op two[] = { inc("fresh", 1), add("fresh", "a") };
    why                  = NULL;
    assert_int_equal(crdt_doc_prepare(&doc, two, 2, &why), MRD_ETYPE);
    assert_non_null(strstr(why, "'fresh'"));
    crdt_doc_free(&doc);
}

static void
test_prepare_delete_then_retype(void **state)
{
    (void) state;
    struct crdt_doc doc;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    struct crdt_op c = inc("x", 3);
    assert_int_equal(apply(&doc, 1, 1, 10, none, &c, 1), CRDT_APPLY);

    /* "delete x; add x as a set": a valid type change in one event. */
    struct crdt_op ops[] = { del("x"), add("x", "a") };
    assert_int_equal(crdt_doc_prepare(&doc, ops, 2, &why), MRD_OK);
    const uint64_t deps[] = { 1, 1, 0 };
    assert_int_equal(apply(&doc, 1, 2, 11, deps, ops, 2), CRDT_APPLY);
    assert_null(field(&doc, "x", MRD_STATE_COUNTER));
    const struct crdt_val *s = field(&doc, "x", MRD_STATE_SET);
    assert_non_null(s);
    assert_int_equal(s->n, 1);
    assert_int_equal(s->u.members[0].ndots, 1);
    /* And back, in one event as well. */
    struct crdt_op back[] = { del("x"), inc("x", 1), inc("x", 1) };
    assert_int_equal(crdt_doc_prepare(&doc, back, 3, &why), MRD_OK);
    crdt_doc_free(&doc);
}

static void
test_prepare_overflow(void **state)
{
    (void) state;
    struct crdt_doc doc;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    struct crdt_op ops[] = { inc("hi", INT64_MAX - 1), inc("lo", INT64_MIN) };
    assert_int_equal(apply(&doc, 1, 1, 10, none, ops, 2), CRDT_APPLY);

    struct crdt_op op = inc("hi", 1);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_OK);
    op = inc("hi", 2);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "overflow"));
    op = inc("hi", INT64_MIN); /* down is fine */
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_OK);
    op  = inc("lo", -1);
    why = NULL;
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "overflow"));
    op = inc("lo", INT64_MAX);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_OK);
    /* Two incs of one event add up before the check. */
    struct crdt_op two[] = { inc("hi", 1), inc("hi", 1) };
    assert_int_equal(crdt_doc_prepare(&doc, two, 2, &why), MRD_EINVAL);
    struct crdt_op fresh[] = { inc("new", INT64_MAX), inc("new", 1) };
    assert_int_equal(crdt_doc_prepare(&doc, fresh, 2, &why), MRD_EINVAL);
    /* Deleting first resets the count. */
    struct crdt_op reset[] = { del("hi"), inc("hi", INT64_MAX) };
    assert_int_equal(crdt_doc_prepare(&doc, reset, 2, &why), MRD_OK);
    crdt_doc_free(&doc);
}

static void
test_prepare_bad_ops(void **state)
{
    (void) state;
    struct crdt_doc doc;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    struct crdt_op op = mk(MRD_STATE_LWW, MRD_OP_INC, "x", 1, NULL);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    op = mk(MRD_STATE_SET, MRD_OP_DELETE, "x", 0, NULL);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    op = inc("a.b.c.d.e.f.g.h", 1); /* 8 names: the limit */
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_OK);
    op.depth = CRDT_PATH_MAX + 1; /* one more: refused before it is read */
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    op = inc("a..b", 1); /* an empty name */
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_EINVAL);
    static char big[CRDT_VALUE_SIZE_MAX + 2];
    memset(big, 'v', sizeof big - 1);
    op = add("s", big);
    assert_int_equal(crdt_doc_prepare(&doc, &op, 1, &why), MRD_ETOOBIG);
    static struct crdt_op many[CRDT_OPS_MAX + 1];
    for (unsigned i = 0; i <= CRDT_OPS_MAX; i++) {
        many[i] = inc("n", 1);
    }
    assert_int_equal(crdt_doc_prepare(&doc, many, CRDT_OPS_MAX, &why), MRD_OK);
    assert_int_equal(
        crdt_doc_prepare(&doc, many, CRDT_OPS_MAX + 1, &why), MRD_EINVAL);
    crdt_doc_free(&doc);
}

/* ------------------------------------------------------------ delivery -- */

static void
test_hold_and_duplicate(void **state)
{
    (void) state;
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    struct crdt_op a = add("s", "a"), b = rem("s", "a"), c = inc("n", 1);
    const uint64_t d11[] = { 1, 1, 0 }, d12[] = { 1, 2, 0 };
    assert_int_equal(apply(&doc, 1, 1, 10, none, &a, 1), CRDT_APPLY);
    size_t len;
    char  *before = encode(&doc, &len);

    /* (2,1) saw (1,2), which this replica has not: hold, nothing changes,
     * and it stays held until (1,2) is in. */
    assert_int_equal(apply(&doc, 2, 1, 12, d12, &b, 1), CRDT_HOLD);
    assert_doc_bytes(&doc, before, len);
    assert_int_equal(apply(&doc, 2, 1, 12, d12, &b, 1), CRDT_HOLD);
    assert_doc_bytes(&doc, before, len);
    /* Seqs skip: (1,3) after (1,1) is fine; its deps are what counts. */
    assert_int_equal(apply(&doc, 1, 3, 11, d11, &c, 1), CRDT_APPLY);
    free(before);
    before = encode(&doc, &len);
    /* (1,2) is now below the context: a duplicate, whatever it holds. */
    assert_int_equal(apply(&doc, 1, 2, 11, d11, &c, 1), CRDT_DUPLICATE);
    assert_doc_bytes(&doc, before, len);
    assert_int_equal(apply(&doc, 1, 1, 10, none, &a, 1), CRDT_DUPLICATE);
    assert_int_equal(apply(&doc, 1, 3, 11, d11, &c, 1), CRDT_DUPLICATE);
    assert_doc_bytes(&doc, before, len);
    /* The held event now goes in; again is a duplicate. */
    assert_int_equal(apply(&doc, 2, 1, 12, d12, &b, 1), CRDT_APPLY);
    assert_null(field(&doc, "s", MRD_STATE_SET));
    assert_int_equal(apply(&doc, 2, 1, 12, d12, &b, 1), CRDT_DUPLICATE);
    free(before);
    crdt_doc_free(&doc);
}

static void
test_apply_refuses_impossible_events(void **state)
{
    (void) state;
    struct crdt_doc    doc;
    struct crdt_vv     deps;
    enum crdt_delivery d;
    struct crdt_op     op = inc("n", 1);
    crdt_doc_init(&doc);
    const uint64_t self[] = { 1, 5, 0 };
    vv_set(&deps, self);
    /* Its own dot inside its deps; zero origin or seq; the reserved
     * origin; too many ops; a malformed op. */
    assert_int_equal(
        crdt_doc_apply(&doc, (struct crdt_dot) { 1, 5 }, 1, &deps, &op, 1, &d),
        MRD_EINVAL);
    assert_int_equal(
        crdt_doc_apply(&doc, (struct crdt_dot) { 0, 1 }, 1, &deps, &op, 1, &d),
        MRD_EINVAL);
    assert_int_equal(
        crdt_doc_apply(&doc, (struct crdt_dot) { 2, 0 }, 1, &deps, &op, 1, &d),
        MRD_EINVAL);
    assert_int_equal(crdt_doc_apply(&doc, (struct crdt_dot) { UINT64_MAX, 1 },
                         1, &deps, &op, 1, &d),
        MRD_EINVAL);
    assert_int_equal(crdt_doc_apply(&doc, (struct crdt_dot) { 2, 1 }, 1, &deps,
                         &op, CRDT_OPS_MAX + 1, &d),
        MRD_EINVAL);
    op.kind = MRD_OP_ADD;
    assert_int_equal(
        crdt_doc_apply(&doc, (struct crdt_dot) { 2, 1 }, 1, &deps, &op, 1, &d),
        MRD_EINVAL);
    assert_true(crdt_doc_empty(&doc));
    crdt_vv_free(&deps);
    crdt_doc_free(&doc);
}

/* ---------------------------------------------------------- semantics -- */

static void
test_conflict_rules(void **state)
{
    (void) state;
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    const uint64_t d11[] = { 1, 1, 0 };
    /* (1,1) adds x, enables f, sets r, creates counter c. */
    struct crdt_op first[]
        = { add("s", "x"), mk(MRD_STATE_FLAG, MRD_OP_ENABLE, "f", 0, NULL),
              mk(MRD_STATE_MVREG, MRD_OP_SET, "r", 0, "one"),
              mk(MRD_STATE_LWW, MRD_OP_SET, "w", 0, "one"), inc("c", 1) };
    assert_int_equal(apply(&doc, 1, 1, 100, none, first, 5), CRDT_APPLY);
    /* (2,1) saw it and removes x, disables f, sets r and w, deletes c;
     * (3,1), concurrent with (2,1), adds x, enables f, sets r and w (same
     * hlc as (2,1): the higher origin wins), incs c. */
    struct crdt_op second[]
        = { rem("s", "x"), mk(MRD_STATE_FLAG, MRD_OP_DISABLE, "f", 0, NULL),
              mk(MRD_STATE_MVREG, MRD_OP_SET, "r", 0, "two"),
              mk(MRD_STATE_LWW, MRD_OP_SET, "w", 0, "two"), del("c") };
    struct crdt_op third[]
        = { add("s", "x"), mk(MRD_STATE_FLAG, MRD_OP_ENABLE, "f", 0, NULL),
              mk(MRD_STATE_MVREG, MRD_OP_SET, "r", 0, "three"),
              mk(MRD_STATE_LWW, MRD_OP_SET, "w", 0, "three"), inc("c", 5) };
    assert_int_equal(apply(&doc, 3, 1, 200, d11, third, 5), CRDT_APPLY);
    assert_int_equal(apply(&doc, 2, 1, 200, d11, second, 5), CRDT_APPLY);

    const struct crdt_val *v = field(&doc, "s", MRD_STATE_SET);
    assert_non_null(v); /* add wins */
    assert_int_equal(v->n, 1);
    assert_int_equal(v->u.members[0].ndots, 1);
    assert_int_equal(v->u.members[0].dots[0].origin, 3);
    assert_true(crdt_flag_value(field(&doc, "f", MRD_STATE_FLAG)));
    v = field(&doc, "r", MRD_STATE_MVREG); /* both concurrent values */
    assert_non_null(v);
    assert_int_equal(v->n, 2);
    const struct crdt_write *w
        = crdt_lww_winner(field(&doc, "w", MRD_STATE_LWW));
    assert_non_null(w);
    assert_int_equal(w->dot.origin, 3);
    assert_int_equal(w->value.len, 5);
    assert_memory_equal(w->value.ptr, "three", 5);
    /* The delete removed the inc it saw, not the concurrent one. */
    assert_int_equal(
        crdt_counter_value(field(&doc, "c", MRD_STATE_COUNTER)), 5);

    /* Ops of one event act in order. */
    struct crdt_op seq[] = { add("t", "y"), rem("t", "y"), inc("d", 2),
        del("d"), inc("d", 3), add("u", "z"), del("u") };
    const uint64_t all[] = { 1, 1, 2, 1, 3, 1, 0 };
    assert_int_equal(apply(&doc, 1, 2, 300, all, seq, 7), CRDT_APPLY);
    assert_null(field(&doc, "t", 0));
    assert_null(field(&doc, "u", 0));
    assert_int_equal(
        crdt_counter_value(field(&doc, "d", MRD_STATE_COUNTER)), 3);
    crdt_doc_free(&doc);
}

static void
test_type_conflict_siblings(void **state)
{
    (void) state;
    struct crdt_doc doc;
    const char     *why = NULL;
    crdt_doc_init(&doc);
    /* Two origins create "x" concurrently as a counter and as a set. */
    struct crdt_op a = inc("x", 1), b = add("x", "m");
    assert_int_equal(apply(&doc, 1, 1, 1, none, &a, 1), CRDT_APPLY);
    assert_int_equal(apply(&doc, 2, 1, 1, none, &b, 1), CRDT_APPLY);
    assert_non_null(field(&doc, "x", MRD_STATE_COUNTER));
    assert_non_null(field(&doc, "x", MRD_STATE_SET));
    /* Either type may be written now; a third is refused. */
    assert_int_equal(crdt_doc_prepare(&doc, &a, 1, &why), MRD_OK);
    assert_int_equal(crdt_doc_prepare(&doc, &b, 1, &why), MRD_OK);
    struct crdt_op c = mk(MRD_STATE_FLAG, MRD_OP_ENABLE, "x", 0, NULL);
    assert_int_equal(crdt_doc_prepare(&doc, &c, 1, &why), MRD_ETYPE);
    /* One delete removes both. */
    struct crdt_op d     = del("x");
    const uint64_t all[] = { 1, 1, 2, 1, 0 };
    assert_int_equal(apply(&doc, 3, 1, 2, all, &d, 1), CRDT_APPLY);
    assert_null(field(&doc, "x", 0));
    crdt_doc_free(&doc);
}

static void
test_compact_and_merge(void **state)
{
    (void) state;
    struct crdt_doc a, b;
    crdt_doc_init(&a);
    struct crdt_op i1 = inc("c", 2), i2 = inc("c", 3);
    const uint64_t d11[] = { 1, 1, 0 }, d12[] = { 1, 2, 0 };
    const uint64_t d13[] = { 1, 3, 0 };
    assert_int_equal(apply(&a, 1, 1, 1, none, &i1, 1), CRDT_APPLY);
    assert_int_equal(apply(&a, 1, 2, 1, d11, &i1, 1), CRDT_APPLY);
    assert_int_equal(apply(&a, 1, 3, 1, d12, &i1, 1), CRDT_APPLY);
    assert_int_equal(apply(&a, 2, 1, 2, d13, &i2, 1), CRDT_APPLY);
    assert_int_equal(crdt_doc_copy(&b, &a), MRD_OK);
    size_t before = crdt_doc_meta_count(&a);

    struct crdt_vv st;
    vv_set(&st, d11);
    assert_int_equal(crdt_doc_compact(&a, &st), MRD_OK);
    const struct crdt_val *c = field(&a, "c", MRD_STATE_COUNTER);
    assert_true(c->has_base);
    assert_int_equal(c->base, 2);
    assert_int_equal(c->n, 3);
    assert_int_equal(crdt_counter_value(c), 9);
    crdt_vv_free(&st);

    /* a is stable at {1:1}, b at {2:1}: not ordered, no merge. */
    const uint64_t d21[] = { 2, 1, 0 };
    vv_set(&st, d21);
    assert_int_equal(crdt_doc_compact(&b, &st), MRD_OK);
    crdt_vv_free(&st);
    struct crdt_doc x;
    assert_int_equal(crdt_doc_copy(&x, &a), MRD_OK);
    assert_int_equal(crdt_doc_merge(&x, &b), MRD_EINVAL);
    crdt_doc_free(&x);

    /* Fully compacted, both agree, and merge is a no-op. */
    const uint64_t both[] = { 1, 3, 2, 1, 0 };
    vv_set(&st, both);
    assert_int_equal(crdt_doc_compact(&a, &st), MRD_OK);
    assert_int_equal(crdt_doc_compact(&b, &st), MRD_OK);
    crdt_vv_free(&st);
    assert_true(crdt_doc_meta_count(&a) < before);
    c = field(&a, "c", MRD_STATE_COUNTER);
    assert_int_equal(c->n, 0);
    assert_int_equal(c->base, 9);
    assert_int_equal(crdt_doc_copy(&x, &a), MRD_OK);
    assert_int_equal(crdt_doc_merge(&x, &b), MRD_OK);
    size_t len;
    char  *ea = encode(&a, &len);
    assert_doc_bytes(&x, ea, len);
    assert_doc_bytes(&b, ea, len);
    free(ea);
    crdt_doc_free(&x);
    crdt_doc_free(&a);
    crdt_doc_free(&b);
}

/* -------------------------------------------------------------- decoder -- */

static int
decode_sb(const char **why)
{
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    *why   = NULL;
    int rc = crdt_doc_decode(&doc, sb.data, sb.size, why);
    if (rc != MRD_OK) {
        assert_true(crdt_doc_empty(&doc));
        assert_non_null(*why);
    }
    crdt_doc_free(&doc);
    return rc;
}

static void
expect_refused(const char *part)
{
    const char *why;
    assert_int_equal(decode_sb(&why), MRD_EPROTO);
    if (strstr(why, part) == NULL) {
        fail_msg("reason \"%s\" lacks \"%s\"", why, part);
    }
}

/* Writers for hand-made documents. */
static void
u(uint64_t v)
{
    assert_int_equal(msgpack_pack_uint64(&pk, v), 0);
}

static void
arr(uint32_t n)
{
    assert_int_equal(msgpack_pack_array(&pk, n), 0);
}

static void
str(const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(msgpack_pack_str_with_body(&pk, s, n), 0);
}

static void
bin(const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(msgpack_pack_bin_with_body(&pk, s, n), 0);
}

/* [1, ctx {1: ctx1}, stable {}, [6, [<n entries follow>]]] */
static void
doc_head(uint64_t ctx1, uint32_t entries)
{
    start();
    arr(4);
    u(CRDT_FORMAT);
    arr(2);
    u(1);
    u(ctx1);
    arr(0);
    arr(2);
    u(MRD_STATE_MAP);
    arr(entries * 2);
}

/* A counter holding one inc at (1, seq). */
static void
counter_val(uint64_t seq)
{
    arr(3);
    u(MRD_STATE_COUNTER);
    msgpack_pack_nil(&pk);
    arr(3);
    u(1);
    u(seq);
    u(7);
}

static void
test_decode_accepts_hand_made(void **state)
{
    (void) state;
    const char *why;
    doc_head(3, 2);
    str("a");
    counter_val(1);
    str("b");
    counter_val(3);
    assert_int_equal(decode_sb(&why), MRD_OK);
    /* One name, two types: sorted by type. */
    doc_head(3, 2);
    str("a");
    counter_val(1);
    str("a");
    arr(2);
    u(MRD_STATE_SET);
    arr(2);
    bin("m");
    arr(2);
    u(1);
    u(2);
    assert_int_equal(decode_sb(&why), MRD_OK);
}

static void
test_decode_refuses_unsorted(void **state)
{
    (void) state;
    doc_head(3, 2); /* map entries */
    str("b");
    counter_val(1);
    str("a");
    counter_val(2);
    expect_refused("not sorted");
    doc_head(3, 2); /* the same entry twice */
    str("a");
    counter_val(1);
    str("a");
    counter_val(2);
    expect_refused("not sorted");
    doc_head(3, 1); /* set members */
    str("s");
    arr(2);
    u(MRD_STATE_SET);
    arr(4);
    bin("y");
    arr(2);
    u(1);
    u(1);
    bin("x");
    arr(2);
    u(1);
    u(2);
    expect_refused("not sorted");
    doc_head(3, 1); /* flag dots */
    str("f");
    arr(2);
    u(MRD_STATE_FLAG);
    arr(4);
    u(1);
    u(2);
    u(1);
    u(1);
    expect_refused("not sorted");
    start(); /* the context */
    arr(4);
    u(CRDT_FORMAT);
    arr(4);
    u(2);
    u(1);
    u(1);
    u(1);
    arr(0);
    arr(2);
    u(MRD_STATE_MAP);
    arr(0);
    expect_refused("not sorted");
}

static void
test_decode_refuses_dots_beyond_ctx(void **state)
{
    (void) state;
    doc_head(3, 1);
    str("a");
    counter_val(4); /* ctx has (1,3) */
    expect_refused("beyond the document's context");
    doc_head(3, 1); /* another origin altogether */
    str("f");
    arr(2);
    u(MRD_STATE_FLAG);
    arr(2);
    u(2);
    u(1);
    expect_refused("beyond the document's context");
    start(); /* stable beyond ctx */
    arr(4);
    u(CRDT_FORMAT);
    arr(2);
    u(1);
    u(1);
    arr(2);
    u(1);
    u(2);
    arr(2);
    u(MRD_STATE_MAP);
    arr(0);
    expect_refused("stable point beyond the context");

    /* A counter base needs a stable point to have been folded at. */
    for (int stable = 0; stable <= 1; stable++) {
        start();
        arr(4);
        u(CRDT_FORMAT);
        arr(2);
        u(1);
        u(2);
        arr(stable ? 2 : 0);
        if (stable) {
            u(1);
            u(1);
        }
        arr(2);
        u(MRD_STATE_MAP);
        arr(2);
        str("c");
        arr(3);
        u(MRD_STATE_COUNTER);
        u(5);
        arr(0);
        if (stable) {
            const char *why;
            assert_int_equal(decode_sb(&why), MRD_OK);
        } else {
            expect_refused("counter base without a stable point");
        }
    }
}

static void
test_decode_refuses_empty_values(void **state)
{
    (void) state;
    doc_head(3, 1); /* a counter with nothing */
    str("a");
    arr(3);
    u(MRD_STATE_COUNTER);
    msgpack_pack_nil(&pk);
    arr(0);
    expect_refused("empty value");
    doc_head(3, 1); /* an empty nested map */
    str("m");
    arr(2);
    u(MRD_STATE_MAP);
    arr(0);
    expect_refused("empty value");
    doc_head(3, 1); /* a set member without dots */
    str("s");
    arr(2);
    u(MRD_STATE_SET);
    arr(2);
    bin("x");
    arr(0);
    expect_refused("bad set member");
    doc_head(3, 1); /* an empty name */
    str("");
    counter_val(1);
    expect_refused("bad map key");
}

static void
test_decode_refuses_lying_counts(void **state)
{
    (void) state;
    const char            *why;
    struct crdt_doc        doc;
    static struct crdt_ops ops;
    static const uint8_t   huge[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
    crdt_doc_init(&doc);
    assert_int_equal(
        crdt_doc_decode(&doc, huge, sizeof huge, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "array count"));
    assert_int_equal(
        crdt_ops_decode(&ops, huge, sizeof huge, &why), MRD_EPROTO);
    /* Inside: the context, a map, a string. */
    static const uint8_t in_ctx[]
        = { 0x94, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xfe, 0x01, 0x01 };
    assert_int_equal(
        crdt_doc_decode(&doc, in_ctx, sizeof in_ctx, &why), MRD_EPROTO);
    static const uint8_t in_map[]
        = { 0x94, 0x01, 0x90, 0x90, 0x92, 0x06, 0xdd, 0x7f, 0xff, 0xff, 0xfe };
    assert_int_equal(
        crdt_doc_decode(&doc, in_map, sizeof in_map, &why), MRD_EPROTO);
    static const uint8_t in_str[] = { 0x94, 0x01, 0x90, 0x90, 0x92, 0x06, 0x92,
        0xdb, 0xff, 0xff, 0xff, 0xff, 0x61 };
    assert_int_equal(
        crdt_doc_decode(&doc, in_str, sizeof in_str, &why), MRD_EPROTO);
    assert_true(crdt_doc_empty(&doc));
    crdt_doc_free(&doc);
}

static void
test_decode_refuses_deep_nesting(void **state)
{
    (void) state;
    const char *why;
    /* An op of the deepest path makes maps at levels 0..6: that decodes. */
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    struct crdt_op op = inc("a.b.c.d.e.f.g.h", 1);
    assert_int_equal(op.depth, CRDT_PATH_MAX);
    assert_int_equal(apply(&doc, 1, 1, 1, none, &op, 1), CRDT_APPLY);
    size_t len;
    char  *e = encode(&doc, &len);
    crdt_doc_free(&doc);
    crdt_doc_init(&doc);
    assert_int_equal(crdt_doc_decode(&doc, e, len, &why), MRD_OK);
    crdt_doc_free(&doc);
    free(e);
    /* By hand: maps at levels 0..levels-1, then a counter. */
    for (unsigned levels = CRDT_PATH_MAX - 1; levels <= CRDT_PATH_MAX + 2;
         levels++) {
        doc_head(1, 1);
        for (unsigned l = 0; l < levels; l++) {
            str("k");
            arr(2);
            u(MRD_STATE_MAP);
            arr(2);
        }
        str("c");
        counter_val(1);
        if (levels < CRDT_PATH_MAX) {
            assert_int_equal(decode_sb(&why), MRD_OK);
        } else {
            expect_refused("nested deeper");
        }
    }
}

/* A document with every type, nested, for the byte-level cases. */
static char *
rich_doc(size_t *len)
{
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    struct crdt_op ops[] = { inc("c", -3), add("s", "x"), add("s", ""),
        mk(MRD_STATE_FLAG, MRD_OP_ENABLE, "f", 0, NULL),
        mk(MRD_STATE_LWW, MRD_OP_SET, "w", 0, "val"),
        mk(MRD_STATE_MVREG, MRD_OP_SET, "r", 0, ""), inc("m.k.n", 9),
        add("m.t", "y") };
    assert_int_equal(apply(&doc, 1, 1, 5, none, ops, 8), CRDT_APPLY);
    const uint64_t d[] = { 1, 1, 0 };
    assert_int_equal(apply(&doc, 2, 7, 6, d, ops, 3), CRDT_APPLY);
    struct crdt_vv st;
    vv_set(&st, d);
    assert_int_equal(crdt_doc_compact(&doc, &st), MRD_OK);
    crdt_vv_free(&st);
    char *e = encode(&doc, len);
    crdt_doc_free(&doc);
    return e;
}

static void
test_decode_refuses_truncated_and_trailing(void **state)
{
    (void) state;
    const char     *why;
    size_t          len;
    char           *e = rich_doc(&len);
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    assert_int_equal(crdt_doc_decode(&doc, e, len, &why), MRD_OK);
    crdt_doc_free(&doc);
    crdt_doc_init(&doc);
    for (size_t n = 0; n < len; n++) {
        char *cut = malloc(n + 1); /* exact size: ASan sees overreads */
        assert_non_null(cut);
        memcpy(cut, e, n);
        assert_int_equal(crdt_doc_decode(&doc, cut, n, &why), MRD_EPROTO);
        assert_true(crdt_doc_empty(&doc));
        free(cut);
    }
    char *more = malloc(len + 1);
    assert_non_null(more);
    memcpy(more, e, len);
    more[len] = (char) 0xc0;
    assert_int_equal(crdt_doc_decode(&doc, more, len + 1, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "trailing"));
    /* Any single bit flipped: refused or a valid document, never a crash;
     * what is accepted encodes to bytes that decode to themselves. */
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(more, e, len);
            more[i] = (char) (more[i] ^ (1u << bit));
            if (crdt_doc_decode(&doc, more, len, &why) != MRD_OK) {
                continue;
            }
            size_t          n1;
            char           *e1 = encode(&doc, &n1);
            struct crdt_doc again;
            crdt_doc_init(&again);
            assert_int_equal(crdt_doc_decode(&again, e1, n1, &why), MRD_OK);
            assert_doc_bytes(&again, e1, n1);
            crdt_doc_free(&again);
            free(e1);
            crdt_doc_free(&doc);
            crdt_doc_init(&doc);
        }
    }
    free(more);
    free(e);
    crdt_doc_free(&doc);
}

static void
test_ops_round_trip_and_refusals(void **state)
{
    (void) state;
    static struct crdt_ops out;
    const char            *why;
    struct crdt_op         ops[] = { inc("m.k", INT64_MIN), add("s", ""),
                mk(MRD_STATE_LWW, MRD_OP_SET, "w", 0, "v"), del("x.y"),
                mk(MRD_STATE_FLAG, MRD_OP_DISABLE, "f", 0, NULL) };
    const uint64_t         dp[]  = { 1, 4, 9, 2, 0 };
    struct crdt_vv         deps;
    vv_set(&deps, dp);
    start();
    assert_int_equal(crdt_ops_encode(&pk, &deps, ops, 5, &why), MRD_OK);
    size_t len = sb.size;
    char  *e   = malloc(len + 1);
    assert_non_null(e);
    memcpy(e, sb.data, len);
    assert_int_equal(crdt_ops_decode(&out, e, len, &why), MRD_OK);
    assert_int_equal(out.count, 5);
    assert_true(crdt_vv_equal(&out.deps, &deps));
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(out.op[i].type, ops[i].type);
        assert_int_equal(out.op[i].kind, ops[i].kind);
        assert_int_equal(out.op[i].depth, ops[i].depth);
        assert_int_equal(out.op[i].delta, ops[i].delta);
        assert_int_equal(out.op[i].value.len, ops[i].value.len);
    }
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(crdt_ops_decode(&out, e, n, &why), MRD_EPROTO);
    }
    e[len] = (char) 0xc0;
    assert_int_equal(crdt_ops_decode(&out, e, len + 1, &why), MRD_EPROTO);
    free(e);
    /* No ops, a bad op, an unsorted deps vector: refused. */
    start();
    arr(3);
    u(CRDT_FORMAT);
    arr(0);
    arr(0);
    assert_int_equal(crdt_ops_decode(&out, sb.data, sb.size, &why), MRD_EPROTO);
    start();
    arr(3);
    u(CRDT_FORMAT);
    arr(0);
    arr(1);
    arr(4);
    u(MRD_STATE_LWW);
    u(MRD_OP_INC);
    arr(1);
    str("x");
    u(1);
    assert_int_equal(crdt_ops_decode(&out, sb.data, sb.size, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "kind"));
    start();
    arr(3);
    u(CRDT_FORMAT);
    arr(4);
    u(2);
    u(1);
    u(1);
    u(1);
    arr(1);
    arr(4);
    u(MRD_STATE_COUNTER);
    u(MRD_OP_INC);
    arr(1);
    str("x");
    u(1);
    assert_int_equal(crdt_ops_decode(&out, sb.data, sb.size, &why), MRD_EPROTO);
    /* The encoder checks shapes first and writes nothing. */
    struct crdt_op bad = mk(MRD_STATE_SET, MRD_OP_SET, "x", 0, "v");
    start();
    assert_int_equal(crdt_ops_encode(&pk, NULL, &bad, 1, &why), MRD_EINVAL);
    assert_int_equal(sb.size, 0);
    crdt_vv_free(&deps);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepare_type_mismatch),
        cmocka_unit_test(test_prepare_delete_then_retype),
        cmocka_unit_test(test_prepare_overflow),
        cmocka_unit_test(test_prepare_bad_ops),
        cmocka_unit_test(test_hold_and_duplicate),
        cmocka_unit_test(test_apply_refuses_impossible_events),
        cmocka_unit_test(test_conflict_rules),
        cmocka_unit_test(test_type_conflict_siblings),
        cmocka_unit_test(test_compact_and_merge),
        cmocka_unit_test(test_decode_accepts_hand_made),
        cmocka_unit_test(test_decode_refuses_unsorted),
        cmocka_unit_test(test_decode_refuses_dots_beyond_ctx),
        cmocka_unit_test(test_decode_refuses_empty_values),
        cmocka_unit_test(test_decode_refuses_lying_counts),
        cmocka_unit_test(test_decode_refuses_deep_nesting),
        cmocka_unit_test(test_decode_refuses_truncated_and_trailing),
        cmocka_unit_test(test_ops_round_trip_and_refusals),
    };
    msgpack_sbuffer_init(&sb);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    msgpack_sbuffer_destroy(&sb);
    return failed;
}
