/*
 * val.c: CRDT values in memory: allocation, ordering, copies and the
 * sorted-array helpers every type uses. Entries are kept sorted (by dot, by
 * bytes, by name then type) so that lookups are binary searches, joins are
 * merges of sorted lists, and the encoding is canonical for free.
 */
#include "crdt_int.h"

#include <stdlib.h>
#include <string.h>

int
crdt_dot_cmp(struct crdt_dot a, struct crdt_dot b)
{
    if (a.origin != b.origin) {
        return a.origin < b.origin ? -1 : 1;
    }
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    return 0;
}

int
crdt_bytes_cmp(struct crdt_bytes a, struct crdt_bytes b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int      c = n > 0 ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    if (a.len != b.len) {
        return a.len < b.len ? -1 : 1;
    }
    return 0;
}

int
crdt_bytes_dup(struct crdt_bytes *dst, struct crdt_bytes src)
{
    dst->len = src.len;
    dst->ptr = NULL;
    if (src.len == 0) {
        return MRD_OK;
    }
    uint8_t *p = malloc(src.len);
    if (p == NULL) {
        return MRD_ENOMEM;
    }
    memcpy(p, src.ptr, src.len);
    dst->ptr = p;
    return MRD_OK;
}

void
crdt_bytes_free(struct crdt_bytes *b)
{
    free((void *) (uintptr_t) b->ptr);
    b->ptr = NULL;
    b->len = 0;
}

/* Size of one element of a value's array. */
static size_t
val_elem_size(uint8_t type)
{
    switch ((mrd_state_type) type) {
    case MRD_STATE_COUNTER:
        return sizeof(struct crdt_inc);
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        return sizeof(struct crdt_write);
    case MRD_STATE_FLAG:
        return sizeof(struct crdt_dot);
    case MRD_STATE_SET:
        return sizeof(struct crdt_member);
    case MRD_STATE_MAP:
        return sizeof(struct crdt_entry);
    }
    MRD_ASSERT(!"unknown value type");
    return 0;
}

bool
crdt_type_valid(unsigned type)
{
    return type >= MRD_STATE_COUNTER && type <= MRD_STATE_MAP;
}

void
crdt_val_init(struct crdt_val *v, uint8_t type)
{
    MRD_ASSERT(crdt_type_valid(type));
    memset(v, 0, sizeof *v);
    v->type = type;
}

struct crdt_val *
crdt_val_new(uint8_t type)
{
    struct crdt_val *v = malloc(sizeof *v);
    if (v != NULL) {
        crdt_val_init(v, type);
    }
    return v;
}

/* Frees element i's owned parts (not the array slot itself). */
static void
val_elem_fini(struct crdt_val *v, uint32_t i)
{
    switch ((mrd_state_type) v->type) {
    case MRD_STATE_COUNTER:
    case MRD_STATE_FLAG:
        break;
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        crdt_bytes_free(&v->u.writes[i].value);
        break;
    case MRD_STATE_SET:
        crdt_bytes_free(&v->u.members[i].member);
        free(v->u.members[i].dots);
        break;
    case MRD_STATE_MAP:
        crdt_bytes_free(&v->u.entries[i].name);
        crdt_val_free(v->u.entries[i].val);
        break;
    }
}

void
crdt_val_fini(struct crdt_val *v)
{
    for (uint32_t i = 0; i < v->n; i++) {
        val_elem_fini(v, i);
    }
    free(v->u.incs); /* any member of the union: one pointer */
    crdt_val_init(v, v->type);
}

void
crdt_val_free(struct crdt_val *v)
{
    if (v != NULL) {
        crdt_val_fini(v);
        free(v);
    }
}

bool
crdt_val_empty(const struct crdt_val *v)
{
    return v->n == 0 && !v->has_base;
}

int
crdt_val_reserve(struct crdt_val *v, uint32_t extra)
{
    if (v->n + extra <= v->cap) {
        return MRD_OK;
    }
    if ((uint64_t) v->n + extra > CRDT_ENTRIES_MAX) {
        return MRD_EFULL;
    }
    uint32_t cap = v->cap ? v->cap : 4;
    while (cap < v->n + extra) {
        cap *= 2;
    }
    void *p = realloc(v->u.incs, (size_t) cap * val_elem_size(v->type));
    if (p == NULL) {
        return MRD_ENOMEM;
    }
    v->u.incs = p;
    v->cap    = cap;
    return MRD_OK;
}

/* Opens a hole at i (the caller fills it). */
int
crdt_val_insert_at(struct crdt_val *v, uint32_t i)
{
    MRD_ASSERT(i <= v->n);
    int rc = crdt_val_reserve(v, 1);
    if (rc != MRD_OK) {
        return rc;
    }
    size_t   es = val_elem_size(v->type);
    uint8_t *a  = (uint8_t *) v->u.incs;
    memmove(a + (i + 1) * es, a + i * es, (v->n - i) * es);
    memset(a + i * es, 0, es);
    v->n++;
    return MRD_OK;
}

void
crdt_val_remove_at(struct crdt_val *v, uint32_t i)
{
    MRD_ASSERT(i < v->n);
    val_elem_fini(v, i);
    size_t   es = val_elem_size(v->type);
    uint8_t *a  = (uint8_t *) v->u.incs;
    memmove(a + i * es, a + (i + 1) * es, (v->n - i - 1) * es);
    v->n--;
}

/* ------------------------------------------------------------- lookups -- */

/* Each finder returns the index of the first element >= key and sets
 * *found when that element equals key. */

uint32_t
crdt_find_dot(const struct crdt_val *v, struct crdt_dot dot, bool *found)
{
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t        mid = lo + (hi - lo) / 2;
        struct crdt_dot d;
        switch ((mrd_state_type) v->type) {
        case MRD_STATE_COUNTER:
            d = v->u.incs[mid].dot;
            break;
        case MRD_STATE_LWW:
        case MRD_STATE_MVREG:
            d = v->u.writes[mid].dot;
            break;
        case MRD_STATE_FLAG:
            d = v->u.dots[mid];
            break;
        case MRD_STATE_SET:
        case MRD_STATE_MAP:
        default:
            MRD_ASSERT(!"not a dot-keyed value");
            return 0;
        }
        if (crdt_dot_cmp(d, dot) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    if (lo < v->n) {
        struct crdt_dot d = v->type == MRD_STATE_COUNTER ? v->u.incs[lo].dot
            : v->type == MRD_STATE_FLAG                  ? v->u.dots[lo]
                                                         : v->u.writes[lo].dot;
        *found            = crdt_dot_cmp(d, dot) == 0;
    }
    return lo;
}

uint32_t
crdt_find_member(const struct crdt_val *v, struct crdt_bytes m, bool *found)
{
    MRD_ASSERT(v->type == MRD_STATE_SET);
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (crdt_bytes_cmp(v->u.members[mid].member, m) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < v->n && crdt_bytes_cmp(v->u.members[lo].member, m) == 0;
    return lo;
}

int
crdt_entry_cmp(struct crdt_bytes name_a, uint8_t type_a,
    struct crdt_bytes name_b, uint8_t type_b)
{
    int c = crdt_bytes_cmp(name_a, name_b);
    if (c != 0) {
        return c;
    }
    return type_a < type_b ? -1 : type_a > type_b ? 1 : 0;
}

uint32_t
crdt_find_entry(
    const struct crdt_val *v, struct crdt_bytes name, uint8_t type, bool *found)
{
    MRD_ASSERT(v->type == MRD_STATE_MAP);
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t                 mid = lo + (hi - lo) / 2;
        const struct crdt_entry *e   = &v->u.entries[mid];
        if (crdt_entry_cmp(e->name, e->val->type, name, type) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < v->n
        && crdt_entry_cmp(
               v->u.entries[lo].name, v->u.entries[lo].val->type, name, type)
            == 0;
    return lo;
}

/* ------------------------------------------------------------- dropping -- */

uint32_t
crdt_member_drop(struct crdt_member *m, crdt_dot_pred drop, const void *arg)
{
    uint32_t keep = 0;
    for (uint32_t j = 0; j < m->ndots; j++) {
        if (!drop(m->dots[j], arg)) {
            m->dots[keep++] = m->dots[j];
        }
    }
    m->ndots = keep;
    return keep;
}

/* The dot of element i of a counter, register or flag. */
static struct crdt_dot
val_dot_at(const struct crdt_val *v, uint32_t i)
{
    switch ((mrd_state_type) v->type) {
    case MRD_STATE_COUNTER:
        return v->u.incs[i].dot;
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        return v->u.writes[i].dot;
    case MRD_STATE_FLAG:
        return v->u.dots[i];
    case MRD_STATE_SET:
    case MRD_STATE_MAP:
        break;
    }
    MRD_ASSERT(!"not a dot-keyed value");
    return (struct crdt_dot) { 0, 0 };
}

void
crdt_val_drop(
    struct crdt_val *v, crdt_dot_pred drop, const void *arg, bool keep_base)
{
    uint32_t i = 0;
    switch ((mrd_state_type) v->type) {
    case MRD_STATE_COUNTER:
        if (!keep_base) {
            v->has_base = false;
            v->base     = 0;
        }
        /* Increments are dot-keyed like the rest. */
        __attribute__((fallthrough));
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
    case MRD_STATE_FLAG: {
        /* One pass, in place: a dropped element's parts are freed, a kept
         * one moves down. */
        size_t   es   = val_elem_size(v->type);
        uint8_t *a    = (uint8_t *) v->u.incs;
        uint32_t keep = 0;
        for (i = 0; i < v->n; i++) {
            if (drop(val_dot_at(v, i), arg)) {
                val_elem_fini(v, i);
            } else {
                if (keep != i) {
                    memcpy(a + keep * es, a + i * es, es);
                }
                keep++;
            }
        }
        v->n = keep;
        break;
    }
    case MRD_STATE_SET:
        while (i < v->n) {
            if (crdt_member_drop(&v->u.members[i], drop, arg) == 0) {
                crdt_val_remove_at(v, i);
            } else {
                i++;
            }
        }
        break;
    case MRD_STATE_MAP:
        while (i < v->n) {
            crdt_val_drop(v->u.entries[i].val, drop, arg, keep_base);
            if (crdt_val_empty(v->u.entries[i].val)) {
                crdt_val_remove_at(v, i);
            } else {
                i++;
            }
        }
        break;
    }
}

int
crdt_map_insert_at(struct crdt_val *map, uint32_t i, struct crdt_bytes name,
    struct crdt_val *v)
{
    MRD_ASSERT(map->type == MRD_STATE_MAP);
    struct crdt_bytes n;
    int               rc = v != NULL ? crdt_bytes_dup(&n, name) : MRD_ENOMEM;
    if (rc == MRD_OK) {
        rc = crdt_val_insert_at(map, i);
        if (rc != MRD_OK) {
            crdt_bytes_free(&n);
        }
    }
    if (rc != MRD_OK) {
        crdt_val_free(v);
        return rc;
    }
    map->u.entries[i] = (struct crdt_entry) { n, v };
    return MRD_OK;
}

/* --------------------------------------------------------------- copies -- */

static int
dots_dup(struct crdt_dot **dst, const struct crdt_dot *src, uint32_t n)
{
    *dst = NULL;
    if (n == 0) {
        return MRD_OK;
    }
    *dst = malloc(n * sizeof **dst);
    if (*dst == NULL) {
        return MRD_ENOMEM;
    }
    memcpy(*dst, src, n * sizeof **dst);
    return MRD_OK;
}

int
crdt_val_copy(struct crdt_val *dst, const struct crdt_val *src)
{
    crdt_val_init(dst, src->type);
    dst->has_base = src->has_base;
    dst->base     = src->base;
    int rc        = crdt_val_reserve(dst, src->n);
    for (uint32_t i = 0; rc == MRD_OK && i < src->n; i++) {
        switch ((mrd_state_type) src->type) {
        case MRD_STATE_COUNTER:
            dst->u.incs[i] = src->u.incs[i];
            break;
        case MRD_STATE_FLAG:
            dst->u.dots[i] = src->u.dots[i];
            break;
        case MRD_STATE_LWW:
        case MRD_STATE_MVREG:
            dst->u.writes[i] = src->u.writes[i];
            rc               = crdt_bytes_dup(
                              &dst->u.writes[i].value, src->u.writes[i].value);
            break;
        case MRD_STATE_SET: {
            struct crdt_member       *d = &dst->u.members[i];
            const struct crdt_member *s = &src->u.members[i];
            d->ndots                    = 0;
            d->dots                     = NULL;
            rc                          = crdt_bytes_dup(&d->member, s->member);
            if (rc == MRD_OK) {
                rc = dots_dup(&d->dots, s->dots, s->ndots);
                if (rc == MRD_OK) {
                    d->ndots = s->ndots;
                }
            }
            break;
        }
        case MRD_STATE_MAP: {
            struct crdt_entry *d = &dst->u.entries[i];
            d->val               = NULL;
            rc = crdt_bytes_dup(&d->name, src->u.entries[i].name);
            if (rc == MRD_OK) {
                d->val = crdt_val_new(src->u.entries[i].val->type);
                rc     = d->val == NULL
                        ? MRD_ENOMEM
                        : crdt_val_copy(d->val, src->u.entries[i].val);
            }
            break;
        }
        }
        /* Count the element even when half-built: fini frees its parts. */
        dst->n = i + 1;
    }
    if (rc != MRD_OK) {
        crdt_val_fini(dst);
    }
    return rc;
}

/* ----------------------------------------------------------- documents -- */

void
crdt_doc_init(struct crdt_doc *doc)
{
    crdt_vv_init(&doc->ctx);
    crdt_vv_init(&doc->stable);
    crdt_val_init(&doc->root, MRD_STATE_MAP);
}

void
crdt_doc_free(struct crdt_doc *doc)
{
    crdt_vv_free(&doc->ctx);
    crdt_vv_free(&doc->stable);
    crdt_val_fini(&doc->root);
}

int
crdt_doc_copy(struct crdt_doc *dst, const struct crdt_doc *src)
{
    crdt_doc_init(dst);
    int rc = crdt_vv_copy(&dst->ctx, &src->ctx);
    if (rc == MRD_OK) {
        rc = crdt_vv_copy(&dst->stable, &src->stable);
    }
    if (rc == MRD_OK) {
        rc = crdt_val_copy(&dst->root, &src->root);
    }
    if (rc != MRD_OK) {
        crdt_doc_free(dst);
    }
    return rc;
}

bool
crdt_doc_empty(const struct crdt_doc *doc)
{
    return doc->ctx.n == 0 && doc->root.n == 0;
}

/* ---------------------------------------------------------- reading -- */

const struct crdt_val *
crdt_map_find(const struct crdt_val *map, const uint8_t *name,
    uint32_t name_len, uint8_t type)
{
    if (map == NULL || map->type != MRD_STATE_MAP) {
        return NULL;
    }
    struct crdt_bytes key = { name, name_len };
    bool              found;
    uint32_t          i = crdt_find_entry(map, key, type, &found);
    if (found) {
        return map->u.entries[i].val;
    }
    /* type 0 sorts before every type: i is the first entry of that name. */
    if (type == 0 && i < map->n
        && crdt_bytes_cmp(map->u.entries[i].name, key) == 0) {
        return map->u.entries[i].val;
    }
    return NULL;
}

int64_t
crdt_counter_value(const struct crdt_val *c)
{
    if (c == NULL || c->type != MRD_STATE_COUNTER) {
        return 0;
    }
    /* Unsigned sums wrap the same way in every order: replicas agree even
     * past the int64 range. */
    uint64_t sum = c->has_base ? (uint64_t) c->base : 0;
    for (uint32_t i = 0; i < c->n; i++) {
        sum += (uint64_t) c->u.incs[i].delta;
    }
    return (int64_t) sum;
}

const struct crdt_write *
crdt_lww_winner(const struct crdt_val *reg)
{
    if (reg == NULL
        || (reg->type != MRD_STATE_LWW && reg->type != MRD_STATE_MVREG)) {
        return NULL;
    }
    const struct crdt_write *best = NULL;
    for (uint32_t i = 0; i < reg->n; i++) {
        const struct crdt_write *w = &reg->u.writes[i];
        if (best == NULL || w->hlc > best->hlc
            || (w->hlc == best->hlc && w->dot.origin > best->dot.origin)) {
            best = w;
        }
    }
    return best;
}

bool
crdt_flag_value(const struct crdt_val *flag)
{
    return flag != NULL && flag->type == MRD_STATE_FLAG && flag->n > 0;
}

static size_t
val_meta_count(const struct crdt_val *v)
{
    size_t n = 0;
    switch ((mrd_state_type) v->type) {
    case MRD_STATE_COUNTER:
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
    case MRD_STATE_FLAG:
        n = v->n;
        break;
    case MRD_STATE_SET:
        for (uint32_t i = 0; i < v->n; i++) {
            n += v->u.members[i].ndots;
        }
        break;
    case MRD_STATE_MAP:
        for (uint32_t i = 0; i < v->n; i++) {
            n += val_meta_count(v->u.entries[i].val);
        }
        break;
    }
    return n;
}

size_t
crdt_doc_meta_count(const struct crdt_doc *doc)
{
    return doc->ctx.n + doc->stable.n + val_meta_count(&doc->root);
}

void
crdt_doc_keep_field(
    struct crdt_doc *doc, const uint8_t *name, uint32_t name_len)
{
    struct crdt_bytes key = { name, name_len };
    for (uint32_t i = 0; i < doc->root.n;) {
        if (crdt_bytes_cmp(doc->root.u.entries[i].name, key) != 0) {
            crdt_val_remove_at(&doc->root, i);
        } else {
            i++;
        }
    }
}
