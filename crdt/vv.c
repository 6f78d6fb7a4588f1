/*
 * vv.c: version vectors: per origin node, the highest seq covered. Kept
 * sorted by origin so lookups are a binary search and two vectors compare
 * in one pass.
 */
#include "crdt.h"

#include <stdlib.h>
#include <string.h>

void
crdt_vv_init(struct crdt_vv *vv)
{
    memset(vv, 0, sizeof *vv);
}

void
crdt_vv_free(struct crdt_vv *vv)
{
    /* cap 0 marks a view (crdt_ops.deps): its entries are not ours. */
    if (vv->cap > 0) {
        free(vv->e);
    }
    crdt_vv_init(vv);
}

/* Index of the first entry with origin >= `origin`. */
static uint32_t
vv_lower(const struct crdt_vv *vv, uint64_t origin)
{
    uint32_t lo = 0, hi = vv->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (vv->e[mid].origin < origin) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

uint64_t
crdt_vv_get(const struct crdt_vv *vv, uint64_t origin)
{
    uint32_t i = vv_lower(vv, origin);
    return (i < vv->n && vv->e[i].origin == origin) ? vv->e[i].seq : 0;
}

int
crdt_vv_raise(struct crdt_vv *vv, uint64_t origin, uint64_t seq)
{
    MRD_ASSERT(origin != 0 && seq != 0);
    uint32_t i = vv_lower(vv, origin);
    if (i < vv->n && vv->e[i].origin == origin) {
        if (vv->e[i].seq < seq) {
            vv->e[i].seq = seq;
        }
        return MRD_OK;
    }
    if (vv->n >= CRDT_ORIGINS_MAX) {
        return MRD_EFULL;
    }
    if (vv->n == vv->cap) {
        MRD_ASSERT(vv->cap > 0 || vv->e == NULL); /* never grow a view */
        uint32_t         cap = vv->cap ? vv->cap * 2 : 4;
        struct crdt_dot *e   = realloc(vv->e, cap * sizeof *e);
        if (e == NULL) {
            return MRD_ENOMEM;
        }
        vv->e   = e;
        vv->cap = cap;
    }
    memmove(&vv->e[i + 1], &vv->e[i], (vv->n - i) * sizeof vv->e[0]);
    vv->e[i] = (struct crdt_dot) { origin, seq };
    vv->n++;
    return MRD_OK;
}

int
crdt_vv_copy(struct crdt_vv *dst, const struct crdt_vv *src)
{
    crdt_vv_free(dst);
    if (src->n == 0) {
        return MRD_OK;
    }
    dst->e = malloc(src->n * sizeof dst->e[0]);
    if (dst->e == NULL) {
        return MRD_ENOMEM;
    }
    memcpy(dst->e, src->e, src->n * sizeof dst->e[0]);
    dst->n = dst->cap = src->n;
    return MRD_OK;
}

int
crdt_vv_join(struct crdt_vv *dst, const struct crdt_vv *src)
{
    for (uint32_t i = 0; i < src->n; i++) {
        int rc = crdt_vv_raise(dst, src->e[i].origin, src->e[i].seq);
        if (rc != MRD_OK) {
            return rc;
        }
    }
    return MRD_OK;
}

bool
crdt_vv_covers(const struct crdt_vv *a, const struct crdt_vv *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        if (crdt_vv_get(a, b->e[i].origin) < b->e[i].seq) {
            return false;
        }
    }
    return true;
}

bool
crdt_vv_covers_dot(const struct crdt_vv *vv, struct crdt_dot dot)
{
    return dot.seq <= crdt_vv_get(vv, dot.origin);
}

bool
crdt_vv_equal(const struct crdt_vv *a, const struct crdt_vv *b)
{
    return a->n == b->n
        && (a->n == 0 || memcmp(a->e, b->e, a->n * sizeof a->e[0]) == 0);
}

int
crdt_vv_meet(
    struct crdt_vv *dst, const struct crdt_vv *a, const struct crdt_vv *b)
{
    struct crdt_vv out;
    crdt_vv_init(&out);
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t s = crdt_vv_get(b, a->e[i].origin);
        if (s > a->e[i].seq) {
            s = a->e[i].seq;
        }
        if (s > 0) {
            int rc = crdt_vv_raise(&out, a->e[i].origin, s);
            if (rc != MRD_OK) {
                crdt_vv_free(&out);
                return rc;
            }
        }
    }
    crdt_vv_free(dst);
    *dst = out;
    return MRD_OK;
}
