/*
 * codec.c: the canonical msgpack encoding of documents and of event ops
 * (docs/CRDT.md, "Encoding"), and their bounded decoders.
 *
 * The decoders read bytes from disk and from peers, so they trust nothing:
 * every length is checked against the bytes left before it is used, counts
 * are checked the same way before anything is allocated, nesting follows
 * the op path limit, and every invariant the rest of crdt/ relies on
 * (sorted, unique, non-empty, every dot inside the context) is checked, so
 * a decoded document is one crdt/ could have built. msgpack-c's unpacker
 * is not used: it trusts declared lengths (msgpack-c issue 1013).
 */
#include "crdt_int.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ encoding -- */

static int
pack_vv(msgpack_packer *pk, const struct crdt_vv *vv)
{
    int rc = msgpack_pack_array(pk, vv->n * 2);
    for (uint32_t i = 0; i < vv->n; i++) {
        rc |= msgpack_pack_uint64(pk, vv->e[i].origin);
        rc |= msgpack_pack_uint64(pk, vv->e[i].seq);
    }
    return rc;
}

static int
pack_bytes_bin(msgpack_packer *pk, struct crdt_bytes b)
{
    return msgpack_pack_bin(pk, b.len)
        | msgpack_pack_bin_body(pk, b.ptr, b.len);
}

static int
pack_bytes_str(msgpack_packer *pk, struct crdt_bytes b)
{
    return msgpack_pack_str(pk, b.len)
        | msgpack_pack_str_body(pk, b.ptr, b.len);
}

static int
pack_val(msgpack_packer *pk, const struct crdt_val *v)
{
    int rc = 0;
    switch ((mrd_state_type) v->type) {
    case MRD_STATE_COUNTER:
        rc |= msgpack_pack_array(pk, 3);
        rc |= msgpack_pack_uint8(pk, v->type);
        rc |= v->has_base ? msgpack_pack_int64(pk, v->base)
                          : msgpack_pack_nil(pk);
        rc |= msgpack_pack_array(pk, v->n * 3);
        for (uint32_t i = 0; i < v->n; i++) {
            rc |= msgpack_pack_uint64(pk, v->u.incs[i].dot.origin);
            rc |= msgpack_pack_uint64(pk, v->u.incs[i].dot.seq);
            rc |= msgpack_pack_int64(pk, v->u.incs[i].delta);
        }
        break;
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        rc |= msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_uint8(pk, v->type);
        rc |= msgpack_pack_array(pk, v->n * 4);
        for (uint32_t i = 0; i < v->n; i++) {
            const struct crdt_write *w = &v->u.writes[i];
            rc |= msgpack_pack_uint64(pk, w->dot.origin);
            rc |= msgpack_pack_uint64(pk, w->dot.seq);
            rc |= msgpack_pack_uint64(pk, w->hlc);
            rc |= pack_bytes_bin(pk, w->value);
        }
        break;
    case MRD_STATE_FLAG:
        rc |= msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_uint8(pk, v->type);
        rc |= msgpack_pack_array(pk, v->n * 2);
        for (uint32_t i = 0; i < v->n; i++) {
            rc |= msgpack_pack_uint64(pk, v->u.dots[i].origin);
            rc |= msgpack_pack_uint64(pk, v->u.dots[i].seq);
        }
        break;
    case MRD_STATE_SET:
        rc |= msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_uint8(pk, v->type);
        rc |= msgpack_pack_array(pk, v->n * 2);
        for (uint32_t i = 0; i < v->n; i++) {
            const struct crdt_member *m = &v->u.members[i];
            rc |= pack_bytes_bin(pk, m->member);
            rc |= msgpack_pack_array(pk, m->ndots * 2);
            for (uint32_t j = 0; j < m->ndots; j++) {
                rc |= msgpack_pack_uint64(pk, m->dots[j].origin);
                rc |= msgpack_pack_uint64(pk, m->dots[j].seq);
            }
        }
        break;
    case MRD_STATE_MAP:
        rc |= msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_uint8(pk, v->type);
        rc |= msgpack_pack_array(pk, v->n * 2);
        for (uint32_t i = 0; i < v->n; i++) {
            rc |= pack_bytes_str(pk, v->u.entries[i].name);
            rc |= pack_val(pk, v->u.entries[i].val);
        }
        break;
    }
    return rc;
}

int
crdt_doc_encode(const struct crdt_doc *doc, msgpack_packer *pk)
{
    int rc = msgpack_pack_array(pk, 4);
    rc |= msgpack_pack_uint32(pk, CRDT_FORMAT);
    rc |= pack_vv(pk, &doc->ctx);
    rc |= pack_vv(pk, &doc->stable);
    rc |= pack_val(pk, &doc->root);
    return rc == 0 ? MRD_OK : MRD_ENOMEM;
}

int
crdt_ops_encode(msgpack_packer *pk, const struct crdt_vv *deps,
    const struct crdt_op *ops, uint32_t count, const char **why)
{
    if (count > CRDT_OPS_MAX) {
        if (why != NULL) {
            *why = "more than 64 ops on one event";
        }
        return MRD_EINVAL;
    }
    for (uint32_t i = 0; i < count; i++) {
        int rc = crdt_op_check(&ops[i], why);
        if (rc != MRD_OK) {
            return rc;
        }
    }
    static const struct crdt_vv none = { 0, 0, NULL };
    int                         rc   = msgpack_pack_array(pk, 3);
    rc |= msgpack_pack_uint32(pk, CRDT_FORMAT);
    rc |= pack_vv(pk, deps != NULL ? deps : &none);
    rc |= msgpack_pack_array(pk, count);
    for (uint32_t i = 0; i < count; i++) {
        const struct crdt_op *op = &ops[i];
        rc |= msgpack_pack_array(pk, 4);
        rc |= msgpack_pack_uint8(pk, op->type);
        rc |= msgpack_pack_uint8(pk, op->kind);
        rc |= msgpack_pack_array(pk, op->depth);
        for (uint32_t j = 0; j < op->depth; j++) {
            rc |= pack_bytes_str(pk, op->path[j]);
        }
        switch (op->kind) {
        case MRD_OP_INC:
            rc |= msgpack_pack_int64(pk, op->delta);
            break;
        case MRD_OP_SET:
        case MRD_OP_ADD:
        case MRD_OP_REMOVE:
            rc |= pack_bytes_bin(pk, op->value);
            break;
        default:
            rc |= msgpack_pack_nil(pk);
            break;
        }
    }
    if (rc != 0) {
        if (why != NULL) {
            *why = "out of memory";
        }
        return MRD_ENOMEM;
    }
    return MRD_OK;
}

/* ------------------------------------------------------ bounded reading -- */

struct in {
    const uint8_t *p;
    const uint8_t *end;
    const char    *why; /* first failure */
};

static bool
in_fail(struct in *in, const char *why)
{
    if (in->why == NULL) {
        in->why = why;
    }
    return false;
}

static size_t
in_left(const struct in *in)
{
    return (size_t) (in->end - in->p);
}

static uint64_t
be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Reads a tag's n-byte big-endian argument. */
static bool
in_arg(struct in *in, unsigned n, uint64_t *v)
{
    if (in_left(in) < n) {
        return in_fail(in, "truncated");
    }
    *v = be(in->p, n);
    in->p += n;
    return true;
}

static bool
in_array(struct in *in, uint32_t *count)
{
    if (in_left(in) < 1) {
        return in_fail(in, "truncated");
    }
    uint8_t  t = *in->p++;
    uint64_t n;
    if (t >= 0x90 && t <= 0x9f) {
        n = t & 0x0f;
    } else if (t == 0xdc) {
        if (!in_arg(in, 2, &n)) {
            return false;
        }
    } else if (t == 0xdd) {
        if (!in_arg(in, 4, &n)) {
            return false;
        }
    } else {
        return in_fail(in, "expected an array");
    }
    /* Every element takes at least one byte: a count larger than what is
     * left is a lie, refused before anyone allocates for it. */
    if (n > in_left(in)) {
        return in_fail(in, "array count larger than the bytes left");
    }
    *count = (uint32_t) n;
    return true;
}

static bool
in_uint(struct in *in, uint64_t *v)
{
    if (in_left(in) < 1) {
        return in_fail(in, "truncated");
    }
    uint8_t t = *in->p++;
    if (t <= 0x7f) {
        *v = t;
        return true;
    }
    switch (t) {
    case 0xcc:
        return in_arg(in, 1, v);
    case 0xcd:
        return in_arg(in, 2, v);
    case 0xce:
        return in_arg(in, 4, v);
    case 0xcf:
        return in_arg(in, 8, v);
    default:
        return in_fail(in, "expected an unsigned integer");
    }
}

static bool
in_int(struct in *in, int64_t *v)
{
    if (in_left(in) < 1) {
        return in_fail(in, "truncated");
    }
    uint8_t  t = *in->p;
    uint64_t u;
    if (t >= 0xe0) {
        in->p++;
        *v = (int8_t) t;
        return true;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        in->p++;
        unsigned n = 1u << (t - 0xd0);
        if (!in_arg(in, n, &u)) {
            return false;
        }
        /* Sign-extend from n bytes. */
        unsigned shift = 64 - 8 * n;
        *v             = (int64_t) (u << shift) >> shift;
        return true;
    }
    if (!in_uint(in, &u)) {
        return false;
    }
    if (u > INT64_MAX) {
        return in_fail(in, "integer out of the int64 range");
    }
    *v = (int64_t) u;
    return true;
}

static bool
in_raw(struct in *in, bool str, struct crdt_bytes *out)
{
    if (in_left(in) < 1) {
        return in_fail(in, "truncated");
    }
    uint8_t  t = *in->p++;
    uint64_t n;
    bool     ok;
    if (str && t >= 0xa0 && t <= 0xbf) {
        n  = t & 0x1f;
        ok = true;
    } else if (t == (str ? 0xd9 : 0xc4)) {
        ok = in_arg(in, 1, &n);
    } else if (t == (str ? 0xda : 0xc5)) {
        ok = in_arg(in, 2, &n);
    } else if (t == (str ? 0xdb : 0xc6)) {
        ok = in_arg(in, 4, &n);
    } else {
        return in_fail(in, str ? "expected a string" : "expected bytes");
    }
    if (!ok) {
        return false;
    }
    if (n > in_left(in)) {
        return in_fail(in, "length larger than the bytes left");
    }
    out->ptr = in->p;
    out->len = (uint32_t) n;
    in->p += n;
    return true;
}

static bool
in_nil(struct in *in)
{
    if (in_left(in) >= 1 && *in->p == 0xc0) {
        in->p++;
        return true;
    }
    return false;
}

static bool
in_dot(struct in *in, struct crdt_dot *d)
{
    if (!in_uint(in, &d->origin) || !in_uint(in, &d->seq)) {
        return false;
    }
    if (d->origin == 0 || d->origin == UINT64_MAX || d->seq == 0) {
        return in_fail(in, "dot with a zero origin or seq");
    }
    return true;
}

/* A flat [origin, seq, ...] vector into vv (allocating, or into fixed room
 * when room != NULL). */
static bool
in_vv(struct in *in, struct crdt_vv *vv, struct crdt_dot *room)
{
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 2 != 0 || n / 2 > CRDT_ORIGINS_MAX) {
        return in_fail(in, "bad version vector length");
    }
    n /= 2;
    if (room != NULL) {
        vv->e   = room;
        vv->cap = 0;
    } else if (n > 0) {
        vv->e = malloc(n * sizeof vv->e[0]);
        if (vv->e == NULL) {
            return in_fail(in, "out of memory");
        }
        vv->cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct crdt_dot d;
        if (!in_dot(in, &d)) {
            return false;
        }
        if (i > 0 && d.origin <= vv->e[i - 1].origin) {
            return in_fail(in, "version vector not sorted by origin");
        }
        vv->e[i] = d;
        vv->n    = i + 1;
    }
    return true;
}

/* ------------------------------------------------------ document decode -- */

struct dctx {
    const struct crdt_vv *ctx;
    const struct crdt_vv *stable;
};

static bool
in_doc_dot(struct in *in, const struct dctx *dc, struct crdt_dot *d)
{
    if (!in_dot(in, d)) {
        return false;
    }
    if (!crdt_vv_covers_dot(dc->ctx, *d)) {
        return in_fail(in, "dot beyond the document's context");
    }
    return true;
}

static bool in_val(
    struct in *in, const struct dctx *dc, struct crdt_val *v, uint32_t level);

static bool
in_counter(struct in *in, const struct dctx *dc, struct crdt_val *v)
{
    if (!in_nil(in)) {
        if (!in_int(in, &v->base)) {
            return false;
        }
        /* A base folds increments at or below the stable point: without
         * one, no replica could have made it (and merge would drop it). */
        if (dc->stable->n == 0) {
            return in_fail(in, "counter base without a stable point");
        }
        v->has_base = true;
    }
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 3 != 0 || crdt_val_reserve(v, n / 3) != MRD_OK) {
        return in_fail(in, "bad counter");
    }
    for (uint32_t i = 0; i < n / 3; i++) {
        struct crdt_inc inc;
        if (!in_doc_dot(in, dc, &inc.dot) || !in_int(in, &inc.delta)) {
            return false;
        }
        if (i > 0 && crdt_dot_cmp(inc.dot, v->u.incs[i - 1].dot) <= 0) {
            return in_fail(in, "counter increments not sorted");
        }
        if (crdt_vv_covers_dot(dc->stable, inc.dot)) {
            return in_fail(in, "counter increment below the stable point");
        }
        v->u.incs[v->n++] = inc;
    }
    return true;
}

static bool
in_reg(struct in *in, const struct dctx *dc, struct crdt_val *v)
{
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 4 != 0 || crdt_val_reserve(v, n / 4) != MRD_OK) {
        return in_fail(in, "bad register");
    }
    for (uint32_t i = 0; i < n / 4; i++) {
        struct crdt_write w;
        struct crdt_bytes b;
        if (!in_doc_dot(in, dc, &w.dot) || !in_uint(in, &w.hlc)
            || !in_raw(in, false, &b)) {
            return false;
        }
        if (b.len > CRDT_VALUE_SIZE_MAX) {
            return in_fail(in, "register value too big");
        }
        if (i > 0 && crdt_dot_cmp(w.dot, v->u.writes[i - 1].dot) <= 0) {
            return in_fail(in, "register writes not sorted");
        }
        if (crdt_bytes_dup(&w.value, b) != MRD_OK) {
            return in_fail(in, "out of memory");
        }
        v->u.writes[v->n++] = w;
    }
    return true;
}

static bool
in_flag(struct in *in, const struct dctx *dc, struct crdt_val *v)
{
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 2 != 0 || crdt_val_reserve(v, n / 2) != MRD_OK) {
        return in_fail(in, "bad flag");
    }
    for (uint32_t i = 0; i < n / 2; i++) {
        struct crdt_dot d;
        if (!in_doc_dot(in, dc, &d)) {
            return false;
        }
        if (i > 0 && crdt_dot_cmp(d, v->u.dots[i - 1]) <= 0) {
            return in_fail(in, "flag dots not sorted");
        }
        v->u.dots[v->n++] = d;
    }
    return true;
}

static bool
in_set(struct in *in, const struct dctx *dc, struct crdt_val *v)
{
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 2 != 0 || crdt_val_reserve(v, n / 2) != MRD_OK) {
        return in_fail(in, "bad set");
    }
    for (uint32_t i = 0; i < n / 2; i++) {
        struct crdt_bytes b;
        uint32_t          nd;
        if (!in_raw(in, false, &b) || !in_array(in, &nd)) {
            return false;
        }
        if (b.len > CRDT_VALUE_SIZE_MAX || nd == 0 || nd % 2 != 0
            || nd / 2 > CRDT_DOTS_MAX) {
            return in_fail(in, "bad set member");
        }
        if (i > 0 && crdt_bytes_cmp(b, v->u.members[i - 1].member) <= 0) {
            return in_fail(in, "set members not sorted");
        }
        struct crdt_member *m = &v->u.members[v->n];
        memset(m, 0, sizeof *m);
        if (crdt_bytes_dup(&m->member, b) != MRD_OK) {
            return in_fail(in, "out of memory");
        }
        v->n++;
        m->dots = malloc((nd / 2) * sizeof m->dots[0]);
        if (m->dots == NULL) {
            return in_fail(in, "out of memory");
        }
        for (uint32_t j = 0; j < nd / 2; j++) {
            if (!in_doc_dot(in, dc, &m->dots[j])) {
                return false;
            }
            if (j > 0 && crdt_dot_cmp(m->dots[j], m->dots[j - 1]) <= 0) {
                return in_fail(in, "set member dots not sorted");
            }
            m->ndots = j + 1;
        }
    }
    return true;
}

static bool
in_map(struct in *in, const struct dctx *dc, struct crdt_val *v, uint32_t level)
{
    uint32_t n;
    if (!in_array(in, &n)) {
        return false;
    }
    if (n % 2 != 0 || crdt_val_reserve(v, n / 2) != MRD_OK) {
        return in_fail(in, "bad map");
    }
    for (uint32_t i = 0; i < n / 2; i++) {
        struct crdt_bytes name;
        if (!in_raw(in, true, &name)) {
            return false;
        }
        if (name.len == 0 || name.len > CRDT_NAME_SIZE_MAX
            || !mrd_utf8_valid((const char *) name.ptr, name.len)) {
            return in_fail(in, "bad map key");
        }
        struct crdt_entry *e = &v->u.entries[v->n];
        e->val               = malloc(sizeof *e->val);
        if (e->val == NULL) {
            return in_fail(in, "out of memory");
        }
        crdt_val_init(e->val, MRD_STATE_MAP); /* retyped by in_val */
        if (crdt_bytes_dup(&e->name, name) != MRD_OK) {
            free(e->val);
            return in_fail(in, "out of memory");
        }
        v->n++;
        if (!in_val(in, dc, e->val, level)) {
            return false;
        }
        if (i > 0
            && crdt_entry_cmp(e->name, e->val->type, v->u.entries[i - 1].name,
                   v->u.entries[i - 1].val->type)
                <= 0) {
            return in_fail(in, "map entries not sorted");
        }
    }
    return true;
}

/* A value named at path position `level`. */
static bool
in_val(struct in *in, const struct dctx *dc, struct crdt_val *v, uint32_t level)
{
    uint32_t n;
    uint64_t type;
    if (!in_array(in, &n) || !in_uint(in, &type)) {
        return false;
    }
    if (!crdt_type_valid((unsigned) type) || type > MRD_STATE_MAP
        || n != (type == MRD_STATE_COUNTER ? 3u : 2u)) {
        return in_fail(in, "bad value type");
    }
    if (type == MRD_STATE_MAP && level + 1 >= CRDT_PATH_MAX) {
        return in_fail(in, "maps nested deeper than the path limit");
    }
    crdt_val_init(v, (uint8_t) type);
    bool ok = false;
    switch ((mrd_state_type) type) {
    case MRD_STATE_COUNTER:
        ok = in_counter(in, dc, v);
        break;
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        ok = in_reg(in, dc, v);
        break;
    case MRD_STATE_FLAG:
        ok = in_flag(in, dc, v);
        break;
    case MRD_STATE_SET:
        ok = in_set(in, dc, v);
        break;
    case MRD_STATE_MAP:
        ok = in_map(in, dc, v, level + 1);
        break;
    }
    if (ok && crdt_val_empty(v)) {
        return in_fail(in, "empty value");
    }
    return ok;
}

int
crdt_doc_decode(
    struct crdt_doc *doc, const void *buf, size_t len, const char **why)
{
    const char *w = NULL;
    if (why == NULL) {
        why = &w;
    }
    MRD_ASSERT(crdt_doc_empty(doc));
    if (len > CRDT_DOC_DECODE_MAX) {
        *why = "state document larger than the decode limit";
        return MRD_ETOOBIG;
    }
    struct in in = { buf, (const uint8_t *) buf + len, NULL };
    uint32_t  n;
    uint64_t  format;
    bool      ok = in_array(&in, &n) && in_uint(&in, &format);
    if (ok && (n != 4 || format != CRDT_FORMAT)) {
        ok = in_fail(&in, "not a state document of format 1");
    }
    ok = ok && in_vv(&in, &doc->ctx, NULL) && in_vv(&in, &doc->stable, NULL);
    if (ok && !crdt_vv_covers(&doc->ctx, &doc->stable)) {
        ok = in_fail(&in, "stable point beyond the context");
    }
    if (ok) {
        struct dctx dc = { &doc->ctx, &doc->stable };
        uint64_t    type;
        ok = in_array(&in, &n) && in_uint(&in, &type);
        if (ok && (n != 2 || type != MRD_STATE_MAP)) {
            ok = in_fail(&in, "document root is not a map");
        }
        /* The root's entries are fields: path position 0. */
        ok = ok && in_map(&in, &dc, &doc->root, 0);
    }
    if (ok && in.p != in.end) {
        ok = in_fail(&in, "trailing bytes after the document");
    }
    if (!ok) {
        *why = in.why;
        crdt_doc_free(doc);
        crdt_doc_init(doc);
        return strcmp(in.why, "out of memory") == 0 ? MRD_ENOMEM : MRD_EPROTO;
    }
    return MRD_OK;
}

/* ------------------------------------------------------------ op decode -- */

int
crdt_ops_decode(
    struct crdt_ops *out, const void *buf, size_t len, const char **why)
{
    const char *w = NULL;
    if (why == NULL) {
        why = &w;
    }
    if (len > CRDT_OPS_SIZE_MAX) {
        *why = "ops larger than their limit";
        return MRD_ETOOBIG;
    }
    memset(&out->deps, 0, sizeof out->deps);
    out->count   = 0;
    struct in in = { buf, (const uint8_t *) buf + len, NULL };
    uint32_t  n;
    uint64_t  format;
    bool      ok = in_array(&in, &n) && in_uint(&in, &format);
    if (ok && (n != 3 || format != CRDT_FORMAT)) {
        ok = in_fail(&in, "not ops of format 1");
    }
    ok = ok && in_vv(&in, &out->deps, out->dep) && in_array(&in, &n);
    if (ok && (n == 0 || n > CRDT_OPS_MAX)) {
        ok = in_fail(&in, "an event carries 1 to 64 ops");
    }
    for (uint32_t i = 0; ok && i < n; i++) {
        struct crdt_op *op = &out->op[i];
        memset(op, 0, sizeof *op);
        uint32_t fields, depth;
        uint64_t type, kind;
        ok = in_array(&in, &fields) && in_uint(&in, &type)
            && in_uint(&in, &kind) && in_array(&in, &depth);
        if (ok
            && (fields != 4 || type > 255 || kind > 255 || depth == 0
                || depth > CRDT_PATH_MAX)) {
            ok = in_fail(&in, "bad op");
        }
        if (!ok) {
            break;
        }
        op->type  = (uint8_t) type;
        op->kind  = (uint8_t) kind;
        op->depth = (uint8_t) depth;
        for (uint32_t j = 0; ok && j < depth; j++) {
            ok = in_raw(&in, true, &op->path[j]);
        }
        if (!ok) {
            break;
        }
        switch (op->kind) {
        case MRD_OP_INC:
            ok = in_int(&in, &op->delta);
            break;
        case MRD_OP_SET:
        case MRD_OP_ADD:
        case MRD_OP_REMOVE:
            ok = in_raw(&in, false, &op->value);
            break;
        default:
            ok = in_nil(&in) || in_fail(&in, "op argument must be nil");
            break;
        }
        const char *bad = NULL;
        if (ok && crdt_op_check(op, &bad) != MRD_OK) {
            ok = in_fail(&in, bad);
        }
        out->count = i + 1;
    }
    if (ok && in.p != in.end) {
        ok = in_fail(&in, "trailing bytes after the ops");
    }
    if (!ok) {
        *why       = in.why;
        out->count = 0;
        return MRD_EPROTO;
    }
    return MRD_OK;
}
