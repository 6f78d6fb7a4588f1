/*
 * state.c: mrd_state_read() and the mrd_state / mrd_value tree it returns.
 *
 * The node sends a stream's state document in crdt's canonical encoding.
 * The reply is decoded on the NNG thread that received it, like a read
 * reply: crdt_doc_decode walks the bytes with explicit bounds, and a
 * document that does not decode fails the attempt (MRD_EPROTO), which is
 * retried, on the next node when there is one. The public tree is then
 * built over the decoded crdt_doc, which the mrd_state keeps: register
 * values and set members point into it, and everything else lives in four
 * arrays sized exactly by a first pass over the document (values, byte
 * items, entry names and their characters), so building never reallocates
 * and mrd_state_free() is five frees.
 *
 * What each type shows (meridian.h): a counter its value, a flag whether
 * it is on, an LWW register its winning write, a multi-value register the
 * distinct values of its concurrent writes sorted by bytes (memcmp, then
 * length), a set its members and a map its entries, both already in that
 * order in the document (map entries by name, then type).
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "crdt.h"

_Static_assert(CRDT_DOC_DECODE_MAX <= PROTO_STATE_SIZE_MAX,
    "every document crdt decodes fits a STATE reply");

struct mrd_value {
    int                      type; /* mrd_state_type */
    int                      flag; /* MRD_STATE_FLAG */
    int64_t                  counter; /* MRD_STATE_COUNTER */
    size_t                   count; /* items or entries */
    const struct crdt_bytes *items; /* LWW, MVREG, SET */
    const char *const       *names; /* MAP: entry names, NUL-terminated */
    const struct mrd_value  *entries; /* MAP: entry values */
};

struct mrd_state {
    struct crdt_doc    doc; /* owns every byte items point at */
    int64_t            version;
    struct mrd_value  *values; /* [0] is the root */
    struct crdt_bytes *items;
    const char       **names;
    char              *chars;
};

/* Array sizes from the first pass, then the cursors of the second. */
struct client_state_size {
    size_t values;
    size_t items;
    size_t names;
    size_t chars;
};

/* ------------------------------------------------------------- building -- */

/* Pass one. level is the nesting of v: 0 for the root map, whose entries
 * are the fields (path[0]); a map deeper than a path can reach is refused,
 * so the recursion is bounded whatever the bytes said (crdt's decoder
 * refuses it too). */
static MRD_MUST_USE int
client_state_measure(
    const struct crdt_val *v, uint32_t level, struct client_state_size *sz)
{
    switch (v->type) {
    case MRD_STATE_COUNTER:
    case MRD_STATE_FLAG:
        return MRD_OK;
    case MRD_STATE_LWW:
        sz->items += 1; /* the winner only */
        return MRD_OK;
    case MRD_STATE_MVREG:
    case MRD_STATE_SET:
        sz->items += v->n;
        return MRD_OK;
    case MRD_STATE_MAP:
        break;
    default:
        return MRD_EPROTO;
    }
    if (level >= CRDT_PATH_MAX) {
        return MRD_EPROTO;
    }
    sz->values += v->n;
    sz->names += v->n;
    for (uint32_t i = 0; i < v->n; i++) {
        const struct crdt_entry *e = &v->u.entries[i];
        /* Names become C strings: no NUL inside, ever. */
        if (e->val == NULL
            || !mrd_utf8_valid((const char *) e->name.ptr, e->name.len)) {
            return MRD_EPROTO;
        }
        sz->chars += (size_t) e->name.len + 1;
        int rv = client_state_measure(e->val, level + 1, sz);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    return MRD_OK;
}

static int
client_bytes_cmp(const void *a, const void *b)
{
    const struct crdt_bytes *x = a;
    const struct crdt_bytes *y = b;
    uint32_t                 n = x->len < y->len ? x->len : y->len;
    int                      c = n > 0 ? memcmp(x->ptr, y->ptr, n) : 0;

    if (c != 0) {
        return c;
    }
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

/* A multi-value register: the values of its writes, sorted, each once
 * (two concurrent writes of the same bytes are one value to a reader). */
static size_t
client_state_mvreg(const struct crdt_val *v, struct crdt_bytes *items)
{
    size_t count = 0;

    for (uint32_t i = 0; i < v->n; i++) {
        items[i] = v->u.writes[i].value;
    }
    if (v->n > 1) {
        qsort(items, v->n, sizeof *items, client_bytes_cmp);
    }
    for (uint32_t i = 0; i < v->n; i++) {
        if (count == 0 || client_bytes_cmp(&items[count - 1], &items[i]) != 0) {
            items[count++] = items[i];
        }
    }
    return count;
}

static void client_state_fill(struct mrd_state *st,
    struct client_state_size *at, const struct crdt_val *v,
    struct mrd_value *out);

static void
client_state_fill_map(struct mrd_state *st, struct client_state_size *at,
    const struct crdt_val *v, struct mrd_value *out)
{
    struct mrd_value *children = &st->values[at->values];
    const char      **names    = &st->names[at->names];

    at->values += v->n;
    at->names += v->n;
    out->entries = children;
    out->names   = names;
    out->count   = v->n;
    for (uint32_t i = 0; i < v->n; i++) {
        const struct crdt_entry *e    = &v->u.entries[i];
        char                    *name = &st->chars[at->chars];
        if (e->name.len > 0) {
            memcpy(name, e->name.ptr, e->name.len);
        }
        name[e->name.len] = '\0';
        at->chars += (size_t) e->name.len + 1;
        names[i] = name;
        client_state_fill(st, at, e->val, &children[i]);
    }
}

/* Pass two, over the same document: the cursors in *at never pass the
 * sizes pass one found (checked after the pass). */
static void
client_state_fill(struct mrd_state *st, struct client_state_size *at,
    const struct crdt_val *v, struct mrd_value *out)
{
    const struct crdt_write *w;

    memset(out, 0, sizeof *out);
    out->type = v->type;
    switch (v->type) {
    case MRD_STATE_COUNTER:
        out->counter = crdt_counter_value(v);
        break;
    case MRD_STATE_FLAG:
        out->flag = crdt_flag_value(v) ? 1 : 0;
        break;
    case MRD_STATE_LWW:
        out->items = &st->items[at->items];
        w          = crdt_lww_winner(v);
        if (w != NULL) {
            st->items[at->items] = w->value;
            out->count           = 1;
        }
        at->items += 1;
        break;
    case MRD_STATE_MVREG:
        out->items = &st->items[at->items];
        out->count = client_state_mvreg(v, &st->items[at->items]);
        at->items += v->n;
        break;
    case MRD_STATE_SET:
        out->items = &st->items[at->items];
        out->count = v->n;
        for (uint32_t i = 0; i < v->n; i++) {
            st->items[at->items + i] = v->u.members[i].member;
        }
        at->items += v->n;
        break;
    case MRD_STATE_MAP:
        client_state_fill_map(st, at, v, out);
        break;
    default:
        MRD_ASSERT(!"client_state_measure let an unknown type through");
        break;
    }
}

/* Builds the tree over st->doc. MRD_EPROTO for a document no node should
 * have sent, MRD_ENOMEM. */
static MRD_MUST_USE int
client_state_build(struct mrd_state *st)
{
    struct client_state_size sz = { 1, 0, 0, 0 }; /* the root value */
    struct client_state_size at = { 1, 0, 0, 0 };

    if (st->doc.root.type != MRD_STATE_MAP) {
        return MRD_EPROTO;
    }
    int rv = client_state_measure(&st->doc.root, 0, &sz);
    if (rv != MRD_OK) {
        return rv;
    }
    /* At least one of each, so calloc never answers NULL for 0 bytes. */
    st->values = calloc(sz.values, sizeof *st->values);
    st->items  = calloc(sz.items + 1, sizeof *st->items);
    st->names  = calloc(sz.names + 1, sizeof *st->names);
    st->chars  = malloc(sz.chars + 1);
    if (st->values == NULL || st->items == NULL || st->names == NULL
        || st->chars == NULL) {
        return MRD_ENOMEM;
    }
    client_state_fill(st, &at, &st->doc.root, &st->values[0]);
    MRD_ASSERT(at.values == sz.values && at.items == sz.items);
    MRD_ASSERT(at.names == sz.names && at.chars == sz.chars);
    return MRD_OK;
}

/* ------------------------------------------------------------- the call -- */

static MRD_MUST_USE int
client_state_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_state_rep rep;
    const char            *why = NULL;
    struct mrd_state      *st;
    int                    rv;

    if (proto_state_rep_decode(body, &rep, &why) != MRD_OK) {
        return MRD_EPROTO;
    }
    st = calloc(1, sizeof *st);
    if (st == NULL) {
        return MRD_ENOMEM;
    }
    crdt_doc_init(&st->doc);
    st->version = rep.version;
    rv          = crdt_doc_decode(&st->doc, rep.state.ptr, rep.state.len, &why);
    if (rv == MRD_OK) {
        rv = client_state_build(st);
    }
    if (rv != MRD_OK) {
        mrd_state_free(st);
        return rv == MRD_ENOMEM ? MRD_ENOMEM : MRD_EPROTO;
    }
    call->doc_state = st;
    return MRD_OK;
}

int
mrd_state_read(mrd_client *client, const char *stream, const char *field,
    mrd_state **state_out)
{
    struct client_call    *call = NULL;
    struct proto_state_req req;
    int                    rv;

    if (state_out != NULL) {
        *state_out = NULL;
    }
    if (client == NULL || stream == NULL || state_out == NULL) {
        return MRD_EINVAL;
    }
    memset(&req, 0, sizeof req);
    req.stream.ptr = stream;
    req.stream.len = (uint32_t) strnlen(stream, MRD_STREAM_NAME_SIZE_MAX + 1);
    rv             = mrd_stream_name_check(stream, req.stream.len);
    if (rv != MRD_OK) {
        return rv;
    }
    if (field != NULL) {
        size_t len = strnlen(field, (size_t) MRD_STATE_NAME_SIZE_MAX + 1);
        if (len == 0) {
            return MRD_EINVAL; /* NULL asks for every field; "" names none */
        }
        req.field.ptr = field;
        req.field.len = (uint32_t) len;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_STATE;
    call->decode = client_state_decode;
    client_route_stream(call, stream, req.stream.len);
    /* The encoder refuses a long field (MRD_ETOOBIG) or one that is not
     * UTF-8 (MRD_EINVAL) before anything is sent. */
    rv = client_call_exec(call, proto_state_req_encode(&call->req, &req), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *state_out      = call->doc_state;
    call->doc_state = NULL;
    client_call_put(call);
    return MRD_OK;
}

void
mrd_state_free(mrd_state *state)
{
    if (state == NULL) {
        return;
    }
    crdt_doc_free(&state->doc);
    free(state->values);
    free(state->items);
    free(state->names);
    free(state->chars);
    free(state);
}

/* ------------------------------------------------------------ accessors -- */

int64_t
mrd_state_version(const mrd_state *state)
{
    return state != NULL ? state->version : MRD_VERSION_NONE;
}

size_t
mrd_state_context_count(const mrd_state *state)
{
    return state != NULL ? state->doc.ctx.n : 0;
}

mrd_dot
mrd_state_context_at(const mrd_state *state, size_t i)
{
    mrd_dot dot = { 0, 0 };

    if (state != NULL && i < state->doc.ctx.n) {
        dot.origin = state->doc.ctx.e[i].origin;
        dot.seq    = state->doc.ctx.e[i].seq;
    }
    return dot;
}

const mrd_value *
mrd_state_root(const mrd_state *state)
{
    return state != NULL ? &state->values[0] : NULL;
}

int
mrd_value_type(const mrd_value *value)
{
    return value != NULL ? value->type : 0;
}

int64_t
mrd_value_int(const mrd_value *value)
{
    return value != NULL && value->type == MRD_STATE_COUNTER ? value->counter
                                                             : 0;
}

int
mrd_value_bool(const mrd_value *value)
{
    return value != NULL && value->type == MRD_STATE_FLAG ? value->flag : 0;
}

size_t
mrd_value_count(const mrd_value *value)
{
    return value != NULL ? value->count : 0;
}

const void *
mrd_value_bytes(const mrd_value *value, size_t i, size_t *size_out)
{
    if (size_out != NULL) {
        *size_out = 0;
    }
    if (value == NULL || value->items == NULL || i >= value->count) {
        return NULL; /* also every type without byte items */
    }
    const struct crdt_bytes *b = &value->items[i];
    if (size_out != NULL) {
        *size_out = b->len;
    }
    /* An empty value is still a value: never NULL for an item. */
    return b->ptr != NULL ? (const void *) b->ptr : (const void *) "";
}

const mrd_value *
mrd_value_entry(const mrd_value *map, size_t i, const char **name_out)
{
    if (name_out != NULL) {
        *name_out = NULL;
    }
    if (map == NULL || map->type != MRD_STATE_MAP || i >= map->count) {
        return NULL;
    }
    if (name_out != NULL) {
        *name_out = map->names[i];
    }
    return &map->entries[i];
}

const mrd_value *
mrd_value_find(const mrd_value *map, const char *name, int type)
{
    if (map == NULL || map->type != MRD_STATE_MAP || name == NULL) {
        return NULL;
    }
    /* Linear: entries sort by crdt's byte order, and a state read is a
     * tree walk more often than a lookup. */
    for (size_t i = 0; i < map->count; i++) {
        if (strcmp(map->names[i], name) == 0
            && (type == 0 || map->entries[i].type == type)) {
            return &map->entries[i];
        }
    }
    return NULL;
}

/* mrd_state_type_name() is in common/common.c: the node's messages use it
 * too. */
