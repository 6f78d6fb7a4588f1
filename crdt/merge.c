/*
 * merge.c: the join of two states of one stream's document.
 *
 * The classic rule for dot stores with a causal context: keep a dot that
 * both sides hold; keep a dot only one side holds unless the other side's
 * context covers it (then the other side has seen it and removed it).
 *
 * Counter bases are the one twist. A base folds increments at or below a
 * stable point `st`; stable means every replica has applied them, so a side
 * whose context covers the bigger st but holds neither a base nor any
 * increment below it for that counter must have removed them all. States
 * whose stable points are not ordered cannot be joined (we would have to
 * un-fold a base): crdt_doc_merge() refuses them.
 */
#include "crdt_int.h"

#include <stdlib.h>
#include <string.h>

struct mctx {
    const struct crdt_vv *ca; /* into's context */
    const struct crdt_vv *cb; /* from's context */
    const struct crdt_vv *st; /* the bigger stable point */
    bool                  a_big; /* into's stable point is the bigger one */
};

static bool
covered_pred(struct crdt_dot d, const void *arg)
{
    return crdt_vv_covers_dot(arg, d);
}

/* Drops from v (held by one side only) what the other side has seen:
 * dots covered by `other`, and the counter bases unless keep_base. */
static void
filter_val(struct crdt_val *v, const struct crdt_vv *other, bool keep_base)
{
    crdt_val_drop(v, covered_pred, other, keep_base);
}

/* Joins two sorted dot lists (a's dots, b's dots) into out; out must have
 * room for na + nb. Returns the count. */
static uint32_t
join_dots(struct crdt_dot *out, const struct crdt_dot *a, uint32_t na,
    const struct crdt_dot *b, uint32_t nb, const struct mctx *m)
{
    uint32_t i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : crdt_dot_cmp(a[i], b[j]);
        if (c == 0) {
            out[n++] = a[i];
            i++, j++;
        } else if (c < 0) {
            if (!crdt_vv_covers_dot(m->cb, a[i])) {
                out[n++] = a[i];
            }
            i++;
        } else {
            if (!crdt_vv_covers_dot(m->ca, b[j])) {
                out[n++] = b[j];
            }
            j++;
        }
    }
    return n;
}

static bool
has_inc_at_or_below(const struct crdt_val *c, const struct crdt_vv *st)
{
    for (uint32_t i = 0; i < c->n; i++) {
        if (crdt_vv_covers_dot(st, c->u.incs[i].dot)) {
            return true;
        }
    }
    return false;
}

static int join_val(
    struct crdt_val *a, const struct crdt_val *b, const struct mctx *m);

static int
join_counter(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    /* The base of the side with the bigger stable point survives unless the
     * other side provably removed everything under that point. */
    const struct crdt_val *big     = m->a_big ? a : b;
    const struct crdt_val *small   = m->a_big ? b : a;
    const struct crdt_vv  *c_small = m->a_big ? m->cb : m->ca;
    bool                   keep    = big->has_base
        && (small->has_base || has_inc_at_or_below(small, m->st)
            || !crdt_vv_covers(c_small, m->st));
    int64_t base = big->base;

    uint32_t         room = a->n + b->n + 1;
    struct crdt_inc *out  = malloc((size_t) room * sizeof *out);
    if (out == NULL) {
        return MRD_ENOMEM;
    }
    uint32_t i = 0, j = 0, n = 0;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1
            : j == b->n   ? -1
                          : crdt_dot_cmp(a->u.incs[i].dot, b->u.incs[j].dot);
        if (c == 0) {
            out[n++] = a->u.incs[i];
            i++, j++;
        } else if (c < 0) {
            if (!crdt_vv_covers_dot(m->cb, a->u.incs[i].dot)) {
                out[n++] = a->u.incs[i];
            }
            i++;
        } else {
            if (!crdt_vv_covers_dot(m->ca, b->u.incs[j].dot)) {
                out[n++] = b->u.incs[j];
            }
            j++;
        }
    }
    free(a->u.incs);
    a->u.incs   = out;
    a->n        = n;
    a->cap      = room;
    a->has_base = keep;
    a->base     = keep ? base : 0;
    return MRD_OK;
}

static int
join_flag(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    uint32_t         room = a->n + b->n + 1;
    struct crdt_dot *out  = malloc((size_t) room * sizeof *out);
    if (out == NULL) {
        return MRD_ENOMEM;
    }
    uint32_t n = join_dots(out, a->u.dots, a->n, b->u.dots, b->n, m);
    free(a->u.dots);
    a->u.dots = out;
    a->n      = n;
    a->cap    = room;
    return MRD_OK;
}

static int
join_reg(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    /* Drop a's writes b has seen and removed, then add b's writes a has not
     * seen. Same dot on both sides: the same write. */
    uint32_t i = 0;
    while (i < a->n) {
        bool found;
        (void) crdt_find_dot(b, a->u.writes[i].dot, &found);
        if (!found && crdt_vv_covers_dot(m->cb, a->u.writes[i].dot)) {
            crdt_val_remove_at(a, i);
        } else {
            i++;
        }
    }
    for (uint32_t j = 0; j < b->n; j++) {
        const struct crdt_write *w = &b->u.writes[j];
        bool                     found;
        uint32_t                 at = crdt_find_dot(a, w->dot, &found);
        if (found || crdt_vv_covers_dot(m->ca, w->dot)) {
            continue;
        }
        struct crdt_bytes copy;
        int               rc = crdt_bytes_dup(&copy, w->value);
        if (rc == MRD_OK) {
            rc = crdt_val_insert_at(a, at);
            if (rc != MRD_OK) {
                crdt_bytes_free(&copy);
            }
        }
        if (rc != MRD_OK) {
            return rc;
        }
        a->u.writes[at] = (struct crdt_write) { w->dot, w->hlc, copy };
    }
    return MRD_OK;
}

static int
join_set(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    /* Members in a: join their dots with b's (none when b lacks them). */
    for (uint32_t i = 0; i < a->n;) {
        struct crdt_member       *am = &a->u.members[i];
        bool                      found;
        uint32_t                  j  = crdt_find_member(b, am->member, &found);
        const struct crdt_member *bm = found ? &b->u.members[j] : NULL;
        uint32_t                  nb = bm ? bm->ndots : 0;
        struct crdt_dot          *out
            = malloc(((size_t) am->ndots + nb + 1) * sizeof *out);
        if (out == NULL) {
            return MRD_ENOMEM;
        }
        uint32_t n
            = join_dots(out, am->dots, am->ndots, bm ? bm->dots : NULL, nb, m);
        free(am->dots);
        am->dots  = out;
        am->ndots = n;
        if (n == 0) {
            crdt_val_remove_at(a, i);
        } else {
            i++;
        }
    }
    /* Members only in b: their dots a has not seen. */
    for (uint32_t j = 0; j < b->n; j++) {
        const struct crdt_member *bm = &b->u.members[j];
        bool                      found;
        uint32_t                  at = crdt_find_member(a, bm->member, &found);
        if (found) {
            continue; /* joined above */
        }
        struct crdt_dot *out = malloc(((size_t) bm->ndots + 1) * sizeof *out);
        if (out == NULL) {
            return MRD_ENOMEM;
        }
        uint32_t n = 0;
        for (uint32_t k = 0; k < bm->ndots; k++) {
            if (!crdt_vv_covers_dot(m->ca, bm->dots[k])) {
                out[n++] = bm->dots[k];
            }
        }
        /* A member a removed since, or never saw: only unseen dots count.
         * Member absent from a but all its dots seen: a removed it. */
        if (n == 0) {
            free(out);
            continue;
        }
        int rc = crdt_val_insert_at(a, at);
        if (rc == MRD_OK) {
            rc = crdt_bytes_dup(&a->u.members[at].member, bm->member);
            if (rc != MRD_OK) {
                crdt_val_remove_at(a, at);
            }
        }
        if (rc != MRD_OK) {
            free(out);
            return rc;
        }
        a->u.members[at].dots  = out;
        a->u.members[at].ndots = n;
    }
    return MRD_OK;
}

static int
join_map(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    /* Keys in a: join with b's value, or filter by what b has seen. */
    for (uint32_t i = 0; i < a->n;) {
        struct crdt_entry     *e = &a->u.entries[i];
        const struct crdt_val *bv
            = crdt_map_find(b, e->name.ptr, e->name.len, e->val->type);
        int rc = MRD_OK;
        if (bv != NULL) {
            rc = join_val(e->val, bv, m);
        } else {
            filter_val(
                e->val, m->cb, m->a_big && !crdt_vv_covers(m->cb, m->st));
        }
        if (rc != MRD_OK) {
            return rc;
        }
        if (crdt_val_empty(e->val)) {
            crdt_val_remove_at(a, i);
        } else {
            i++;
        }
    }
    /* Keys only in b: a copy, filtered by what a has seen. */
    for (uint32_t j = 0; j < b->n; j++) {
        const struct crdt_entry *be = &b->u.entries[j];
        bool                     found;
        uint32_t at = crdt_find_entry(a, be->name, be->val->type, &found);
        if (found) {
            continue;
        }
        struct crdt_val *v = crdt_val_new(be->val->type);
        if (v == NULL) {
            return MRD_ENOMEM;
        }
        int rc = crdt_val_copy(v, be->val);
        if (rc != MRD_OK) {
            free(v);
            return rc;
        }
        filter_val(v, m->ca, !m->a_big && !crdt_vv_covers(m->ca, m->st));
        if (crdt_val_empty(v)) {
            crdt_val_free(v);
            continue;
        }
        rc = crdt_map_insert_at(a, at, be->name, v);
        if (rc != MRD_OK) {
            return rc;
        }
    }
    return MRD_OK;
}

static int
join_val(struct crdt_val *a, const struct crdt_val *b, const struct mctx *m)
{
    MRD_ASSERT(a->type == b->type);
    switch ((mrd_state_type) a->type) {
    case MRD_STATE_COUNTER:
        return join_counter(a, b, m);
    case MRD_STATE_FLAG:
        return join_flag(a, b, m);
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        return join_reg(a, b, m);
    case MRD_STATE_SET:
        return join_set(a, b, m);
    case MRD_STATE_MAP:
        return join_map(a, b, m);
    }
    MRD_ASSERT(!"unknown value type");
    return MRD_EINVAL;
}

int
crdt_doc_merge(struct crdt_doc *into, const struct crdt_doc *from)
{
    bool a_big = crdt_vv_covers(&into->stable, &from->stable);
    if (!a_big && !crdt_vv_covers(&from->stable, &into->stable)) {
        return MRD_EINVAL;
    }
    struct crdt_vv st;
    crdt_vv_init(&st);
    int rc = crdt_vv_copy(&st, a_big ? &into->stable : &from->stable);
    if (rc != MRD_OK) {
        return rc;
    }
    struct mctx m = { &into->ctx, &from->ctx, &st, a_big };
    rc            = join_val(&into->root, &from->root, &m);
    if (rc == MRD_OK) {
        rc = crdt_vv_join(&into->ctx, &from->ctx);
    }
    if (rc == MRD_OK) {
        rc = crdt_vv_copy(&into->stable, &st);
    }
    crdt_vv_free(&st);
    return rc;
}
