/*
 * apply.c: checking ops at the origin, applying delivered ops, folding
 * stable counter increments.
 *
 * One rule does all the removing: an op removes exactly the dots it
 * observed, i.e. the dots its event's deps cover, plus the dots of its own
 * event (so ops of one event act in order: "add x; remove x" leaves no x).
 * Dots that arrive later and were not observed are concurrent, and survive:
 * that is add-wins for sets and maps, enable-wins for flags, and "a causally
 * later write replaces, concurrent writes coexist" for registers.
 */
#include "crdt_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct actx {
    struct crdt_dot       dot; /* the event's dot */
    uint64_t              hlc; /* the event's timestamp */
    const struct crdt_vv *deps; /* what the event observed */
};

static bool
observed(const struct actx *a, struct crdt_dot d)
{
    return crdt_dot_cmp(d, a->dot) == 0 || crdt_vv_covers_dot(a->deps, d);
}

/* --------------------------------------------------------- op shapes -- */

static bool
name_ok(struct crdt_bytes n)
{
    return n.len >= 1 && n.len <= CRDT_NAME_SIZE_MAX
        && mrd_utf8_valid((const char *) n.ptr, n.len);
}

int
crdt_op_check(const struct crdt_op *op, const char **why)
{
    const char *w = NULL;
    if (op->depth < 1 || op->depth > CRDT_PATH_MAX) {
        w = "op path must have 1 to 8 names";
    }
    for (uint32_t i = 0; w == NULL && i < op->depth; i++) {
        if (!name_ok(op->path[i])) {
            w = "op path names must be UTF-8, 1 to 255 bytes, no NUL";
        }
    }
    if (w == NULL && op->value.len > CRDT_VALUE_SIZE_MAX) {
        if (why != NULL) {
            *why = "op value is larger than 4096 bytes";
        }
        return MRD_ETOOBIG;
    }
    if (w == NULL) {
        bool ok;
        switch (op->kind) {
        case MRD_OP_INC:
            ok = op->type == MRD_STATE_COUNTER;
            break;
        case MRD_OP_SET:
            ok = op->type == MRD_STATE_LWW || op->type == MRD_STATE_MVREG;
            break;
        case MRD_OP_ENABLE:
        case MRD_OP_DISABLE:
            ok = op->type == MRD_STATE_FLAG;
            break;
        case MRD_OP_ADD:
        case MRD_OP_REMOVE:
            ok = op->type == MRD_STATE_SET;
            break;
        case MRD_OP_DELETE:
            ok = op->type == 0;
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            w = "op kind does not fit its type (inc: counter; set: lww or "
                "mvreg; enable/disable: flag; add/remove: set; delete: "
                "type 0)";
        }
    }
    if (w != NULL) {
        if (why != NULL) {
            *why = w;
        }
        return MRD_EINVAL;
    }
    return MRD_OK;
}

/* ------------------------------------------------------------ removing -- */

static bool
observed_pred(struct crdt_dot d, const void *arg)
{
    return observed(arg, d);
}

/* Drops what `a` observed from v, recursively. A counter's base goes too:
 * it holds only stable increments, which every op delivered from now on has
 * observed. */
static void
remove_observed(struct crdt_val *v, const struct actx *a)
{
    crdt_val_drop(v, observed_pred, a, false);
}

/* ---------------------------------------------------------- leaf ops -- */

static int
dots_insert(struct crdt_member *m, struct crdt_dot dot)
{
    uint32_t i = 0;
    while (i < m->ndots && crdt_dot_cmp(m->dots[i], dot) < 0) {
        i++;
    }
    if (i < m->ndots && crdt_dot_cmp(m->dots[i], dot) == 0) {
        return MRD_OK;
    }
    if (m->ndots >= CRDT_DOTS_MAX) {
        return MRD_EFULL;
    }
    struct crdt_dot *d = realloc(m->dots, (m->ndots + 1) * sizeof *d);
    if (d == NULL) {
        return MRD_ENOMEM;
    }
    memmove(&d[i + 1], &d[i], (m->ndots - i) * sizeof *d);
    d[i]     = dot;
    m->dots  = d;
    m->ndots = m->ndots + 1;
    return MRD_OK;
}

static int
apply_leaf(struct crdt_val *v, const struct crdt_op *op, const struct actx *a)
{
    bool     found;
    uint32_t i;
    int      rc;
    switch (op->kind) {
    case MRD_OP_INC:
        i = crdt_find_dot(v, a->dot, &found);
        if (found) {
            /* A second inc in one event: one dot, one summed delta. */
            v->u.incs[i].delta = (int64_t) ((uint64_t) v->u.incs[i].delta
                + (uint64_t) op->delta);
            return MRD_OK;
        }
        rc = crdt_val_insert_at(v, i);
        if (rc == MRD_OK) {
            v->u.incs[i] = (struct crdt_inc) { a->dot, op->delta };
        }
        return rc;
    case MRD_OP_SET: {
        struct crdt_bytes copy;
        rc = crdt_bytes_dup(&copy, op->value);
        if (rc != MRD_OK) {
            return rc;
        }
        remove_observed(v, a);
        i  = crdt_find_dot(v, a->dot, &found);
        rc = crdt_val_insert_at(v, i);
        if (rc != MRD_OK) {
            crdt_bytes_free(&copy);
            return rc;
        }
        v->u.writes[i] = (struct crdt_write) { a->dot, a->hlc, copy };
        return MRD_OK;
    }
    case MRD_OP_ENABLE:
        remove_observed(v, a);
        i  = crdt_find_dot(v, a->dot, &found);
        rc = crdt_val_insert_at(v, i);
        if (rc == MRD_OK) {
            v->u.dots[i] = a->dot;
        }
        return rc;
    case MRD_OP_DISABLE:
        remove_observed(v, a);
        return MRD_OK;
    case MRD_OP_ADD:
    case MRD_OP_REMOVE: {
        i = crdt_find_member(v, op->value, &found);
        if (!found) {
            if (op->kind == MRD_OP_REMOVE) {
                return MRD_OK;
            }
            rc = crdt_val_insert_at(v, i);
            if (rc != MRD_OK) {
                return rc;
            }
            rc = crdt_bytes_dup(&v->u.members[i].member, op->value);
            if (rc != MRD_OK) {
                crdt_val_remove_at(v, i);
                return rc;
            }
        }
        struct crdt_member *m = &v->u.members[i];
        crdt_member_drop(m, observed_pred, a);
        rc = op->kind == MRD_OP_ADD ? dots_insert(m, a->dot) : MRD_OK;
        if (m->ndots == 0) {
            crdt_val_remove_at(v, i);
        }
        return rc;
    }
    default:
        MRD_ASSERT(!"op kind checked before apply");
        return MRD_EINVAL;
    }
}

/* ----------------------------------------------------------- op paths -- */

/* Finds or creates entry (name, type) of map; *created tells which. */
static int
map_entry(struct crdt_val *map, struct crdt_bytes name, uint8_t type,
    struct crdt_val **out)
{
    bool     found;
    uint32_t i = crdt_find_entry(map, name, type, &found);
    if (found) {
        *out = map->u.entries[i].val;
        return MRD_OK;
    }
    struct crdt_val *v  = crdt_val_new(type);
    int              rc = crdt_map_insert_at(map, i, name, v);
    if (rc == MRD_OK) {
        *out = v;
    }
    return rc;
}

/* Drops entry (name, type) of map if its value is empty. */
static void
map_prune(struct crdt_val *map, struct crdt_bytes name, uint8_t type)
{
    bool     found;
    uint32_t i = crdt_find_entry(map, name, type, &found);
    if (found && crdt_val_empty(map->u.entries[i].val)) {
        crdt_val_remove_at(map, i);
    }
}

static int
apply_path(struct crdt_val *map, const struct crdt_op *op, uint32_t level,
    const struct actx *a)
{
    MRD_ASSERT(map->type == MRD_STATE_MAP && level < op->depth);
    struct crdt_bytes name = op->path[level];
    bool              leaf = level + 1 == op->depth;
    if (leaf && op->kind == MRD_OP_DELETE) {
        /* Every type under this name: a delete names a key, not a type. */
        bool     found;
        uint32_t i = crdt_find_entry(map, name, 0, &found);
        while (
            i < map->n && crdt_bytes_cmp(map->u.entries[i].name, name) == 0) {
            remove_observed(map->u.entries[i].val, a);
            if (crdt_val_empty(map->u.entries[i].val)) {
                crdt_val_remove_at(map, i);
            } else {
                i++;
            }
        }
        return MRD_OK;
    }
    uint8_t type = crdt_op_type_at(op, level);
    if (op->kind == MRD_OP_DELETE
        && crdt_map_find(map, name.ptr, name.len, type) == NULL) {
        return MRD_OK; /* nothing there to delete */
    }
    struct crdt_val *child;
    int              rc = map_entry(map, name, type, &child);
    if (rc != MRD_OK) {
        return rc;
    }
    rc = leaf ? apply_leaf(child, op, a) : apply_path(child, op, level + 1, a);
    map_prune(map, name, type);
    return rc;
}

/* ------------------------------------------------------------ prepare -- */

static const char *
type_name(uint8_t type)
{
    return mrd_state_type_name(type);
}

/* The origin's checks for one op against the state so far. */
static int
check_op(
    const struct crdt_val *root, const struct crdt_op *op, const char **why)
{
    const struct crdt_val *map = root;
    for (uint32_t level = 0; level < op->depth; level++) {
        struct crdt_bytes name = op->path[level];
        bool              leaf = level + 1 == op->depth;
        if (leaf && op->kind == MRD_OP_DELETE) {
            return MRD_OK;
        }
        uint8_t                want = crdt_op_type_at(op, level);
        const struct crdt_val *v = crdt_map_find(map, name.ptr, name.len, want);
        if (v == NULL) {
            const struct crdt_val *other
                = crdt_map_find(map, name.ptr, name.len, 0);
            if (other != NULL) {
                static _Thread_local char msg[160];
                snprintf(msg, sizeof msg,
                    "state field '%.*s' is a %s, not a %s", (int) name.len,
                    (const char *) name.ptr, type_name(other->type),
                    type_name(want));
                *why = msg;
                return MRD_ETYPE;
            }
            return MRD_OK; /* absent: the op creates it */
        }
        if (leaf && op->kind == MRD_OP_INC) {
            int64_t cur = crdt_counter_value(v);
            if ((op->delta > 0 && cur > INT64_MAX - op->delta)
                || (op->delta < 0 && cur < INT64_MIN - op->delta)) {
                *why = "counter would overflow int64";
                return MRD_EINVAL;
            }
        }
        map = v;
    }
    return MRD_OK;
}

int
crdt_doc_prepare(const struct crdt_doc *doc, const struct crdt_op *ops,
    uint32_t count, const char **why)
{
    const char *w = NULL;
    if (why == NULL) {
        why = &w;
    }
    if (count > CRDT_OPS_MAX) {
        *why = "more than 64 ops on one event";
        return MRD_EINVAL;
    }
    for (uint32_t i = 0; i < count; i++) {
        int rc = crdt_op_check(&ops[i], why);
        if (rc != MRD_OK) {
            return rc;
        }
    }
    /* Ops on distinct fields cannot see each other: check each against the
     * document as it is. That is the common case, and it copies nothing. */
    bool distinct = true;
    for (uint32_t i = 0; distinct && i < count; i++) {
        for (uint32_t j = i + 1; distinct && j < count; j++) {
            distinct = crdt_bytes_cmp(ops[i].path[0], ops[j].path[0]) != 0;
        }
    }
    if (distinct) {
        for (uint32_t i = 0; i < count; i++) {
            int rc = check_op(&doc->root, &ops[i], why);
            if (rc != MRD_OK) {
                return rc;
            }
        }
        return MRD_OK;
    }
    /* Otherwise run the ops on a scratch copy of the fields they touch,
     * checking each against the state the earlier ops left: "delete x; add
     * to x as a set" is a valid type change, "inc x; add to x" is not. */
    struct crdt_val scratch;
    crdt_val_init(&scratch, MRD_STATE_MAP);
    int rc = MRD_OK;
    for (uint32_t i = 0; rc == MRD_OK && i < doc->root.n; i++) {
        const struct crdt_entry *e       = &doc->root.u.entries[i];
        bool                     touched = false;
        for (uint32_t j = 0; !touched && j < count; j++) {
            touched = crdt_bytes_cmp(e->name, ops[j].path[0]) == 0;
        }
        if (!touched) {
            continue;
        }
        struct crdt_val *copy = crdt_val_new(e->val->type);
        rc = copy != NULL ? crdt_val_copy(copy, e->val) : MRD_ENOMEM;
        if (rc != MRD_OK) {
            free(copy); /* a failed copy holds nothing */
            break;
        }
        rc = crdt_map_insert_at(&scratch, scratch.n, e->name, copy);
    }
    /* A dot no real node has: origin ids are < UINT64_MAX. */
    struct actx a = { { UINT64_MAX, 1 }, 0, &doc->ctx };
    for (uint32_t i = 0; rc == MRD_OK && i < count; i++) {
        rc = check_op(&scratch, &ops[i], why);
        if (rc == MRD_OK) {
            rc = apply_path(&scratch, &ops[i], 0, &a);
        }
    }
    crdt_val_fini(&scratch);
    if (rc == MRD_EFULL) {
        *why = "a state value has too many entries";
    } else if (rc == MRD_ENOMEM) {
        *why = "out of memory";
    }
    return rc;
}

/* ------------------------------------------------------------ delivery -- */

enum crdt_delivery
crdt_doc_delivery(
    const struct crdt_doc *doc, struct crdt_dot dot, const struct crdt_vv *deps)
{
    if (crdt_vv_covers_dot(&doc->ctx, dot)) {
        return CRDT_DUPLICATE;
    }
    if (!crdt_vv_covers(&doc->ctx, deps)) {
        return CRDT_HOLD;
    }
    return CRDT_APPLY;
}

int
crdt_doc_apply(struct crdt_doc *doc, struct crdt_dot dot, uint64_t hlc,
    const struct crdt_vv *deps, const struct crdt_op *ops, uint32_t count,
    enum crdt_delivery *delivery)
{
    *delivery = CRDT_HOLD;
    /* Input from disk or peers: refuse what no origin could have made. */
    if (dot.origin == 0 || dot.origin == UINT64_MAX || dot.seq == 0
        || crdt_vv_get(deps, dot.origin) >= dot.seq || count > CRDT_OPS_MAX) {
        return MRD_EINVAL;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (crdt_op_check(&ops[i], NULL) != MRD_OK) {
            return MRD_EINVAL;
        }
    }
    *delivery = crdt_doc_delivery(doc, dot, deps);
    if (*delivery != CRDT_APPLY) {
        return MRD_OK;
    }
    int rc = crdt_vv_raise(&doc->ctx, dot.origin, dot.seq);
    if (rc != MRD_OK) {
        return rc;
    }
    struct actx a = { dot, hlc, deps };
    for (uint32_t i = 0; i < count; i++) {
        rc = apply_path(&doc->root, &ops[i], 0, &a);
        if (rc != MRD_OK) {
            return rc;
        }
    }
    return MRD_OK;
}

/* ------------------------------------------------------------ compact -- */

static void
fold_counters(struct crdt_val *v, const struct crdt_vv *stable)
{
    if (v->type == MRD_STATE_MAP) {
        for (uint32_t i = 0; i < v->n; i++) {
            fold_counters(v->u.entries[i].val, stable);
        }
        return;
    }
    if (v->type != MRD_STATE_COUNTER) {
        return;
    }
    uint32_t keep = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        if (crdt_vv_covers_dot(stable, v->u.incs[i].dot)) {
            v->base     = (int64_t) ((uint64_t) v->base
                + (uint64_t) v->u.incs[i].delta);
            v->has_base = true;
        } else {
            v->u.incs[keep++] = v->u.incs[i];
        }
    }
    v->n = keep;
}

int
crdt_doc_compact(struct crdt_doc *doc, const struct crdt_vv *stable)
{
    /* Only what this state has seen can be stable for it. */
    struct crdt_vv st;
    crdt_vv_init(&st);
    int rc = crdt_vv_meet(&st, stable, &doc->ctx);
    if (rc == MRD_OK) {
        rc = crdt_vv_join(&doc->stable, &st);
    }
    if (rc == MRD_OK) {
        fold_counters(&doc->root, &doc->stable);
    }
    crdt_vv_free(&st);
    return rc;
}
