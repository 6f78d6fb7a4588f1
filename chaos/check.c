/*
 * check.c: the chaos checker (definitions in check.h).
 *
 * Design: chaos_model_build() does every allocation and every sort once;
 * the checks then walk arrays. Ids and stream names are interned into
 * dense u32 indexes (one open-addressing table each, sized up front from
 * an upper bound of their mentions, so it never rehashes), which turns
 * "does node n hold id i" into one array read (where[]) and lets three
 * sorted copies of all events answer the other questions by walking
 * groups: by (node, shard, origin, log seq) for origin order, by (stream,
 * dot, node) for convergence, by (id, dot) for duplicates. Memory is a few
 * words per id, event and record, and nodes x ids for where[].
 *
 * Inputs are never asserted on: a malformed final state is MRD_EINVAL with
 * words. Assertions guard the model's own invariants.
 */
#include "check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CHAOS_IDX_NONE UINT32_MAX /* no id / stream / event */

/* An id's status: the best over the appends naming it. Ordered. */
enum chaos_status {
    CHAOS_STATUS_NONE  = 0, /* no append named it */
    CHAOS_STATUS_FAIL  = 1, /* every append naming it failed */
    CHAOS_STATUS_INDET = 2, /* some append's outcome is unknown */
    CHAOS_STATUS_OK    = 3, /* some append naming it was acknowledged */
};

/* ------------------------------------------------------ string tables -- */

/* Interns strings into dense indexes 0..count-1. The capacity is fixed at
 * creation from an upper bound, so inserts never fail for lack of room. */
struct chaos_strtab {
    const char **keys; /* by index; borrowed from the inputs */
    uint32_t    *slots; /* index + 1; 0 = empty */
    size_t       slot_mask;
    size_t       count;
    size_t       count_max;
};

static uint64_t
chaos_hash(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *) s; *p != 0; p++) {
        h = (h ^ *p) * 1099511628211u;
    }
    return h;
}

static int
chaos_strtab_init(struct chaos_strtab *t, size_t count_max)
{
    size_t slot_count = 16;
    /* At most half full, so probes stay short. */
    while (slot_count < 2 * count_max) {
        slot_count *= 2;
    }
    t->keys      = calloc(count_max + 1, sizeof(*t->keys));
    t->slots     = calloc(slot_count, sizeof(*t->slots));
    t->slot_mask = slot_count - 1;
    t->count     = 0;
    t->count_max = count_max;
    return t->keys == NULL || t->slots == NULL ? MRD_ENOMEM : MRD_OK;
}

static void
chaos_strtab_fini(struct chaos_strtab *t)
{
    free(t->keys);
    free(t->slots);
}

/* The slot holding s, or the empty slot where it would go. Bounded: the
 * table is never more than half full, so an empty slot exists. */
static size_t
chaos_strtab_slot(const struct chaos_strtab *t, const char *s)
{
    size_t i = (size_t) chaos_hash(s) & t->slot_mask;
    for (size_t probe = 0; probe <= t->slot_mask; probe++) {
        uint32_t slot = t->slots[i];
        if (slot == 0 || strcmp(t->keys[slot - 1], s) == 0) {
            return i;
        }
        i = (i + 1) & t->slot_mask;
    }
    MRD_ASSERT(!"string table full");
    return 0;
}

/* The index of s, or CHAOS_IDX_NONE. */
static uint32_t
chaos_strtab_find(const struct chaos_strtab *t, const char *s)
{
    return t->slots[chaos_strtab_slot(t, s)] - 1; /* 0 - 1: NONE */
}

/* The index of s, interned if new. */
static uint32_t
chaos_strtab_add(struct chaos_strtab *t, const char *s)
{
    size_t i = chaos_strtab_slot(t, s);
    if (t->slots[i] == 0) {
        MRD_ASSERT(t->count < t->count_max); /* sized from mentions */
        t->keys[t->count] = s;
        t->slots[i]       = (uint32_t) ++t->count;
    }
    return t->slots[i] - 1;
}

/* ------------------------------------------------------------- model -- */

/* One event of one node, with its interned names. */
struct chaos_ev {
    const struct chaos_event *e;
    uint32_t                  node; /* index into f->nodes */
    uint32_t                  stream;
    uint32_t                  id; /* CHAOS_IDX_NONE: the data had no id */
    uint32_t                  index; /* in the node's events */
};

/* One append of the history. */
struct chaos_app {
    size_t            invoke; /* record index */
    uint32_t          process;
    uint32_t          stream;
    enum chaos_status status;
};

/* A counter fact: an increment from the history or a value on a node. */
struct chaos_cnt {
    uint32_t          stream;
    const char       *field;
    bool              is_value; /* a node's value, else an increment */
    uint32_t          node;
    enum chaos_status status; /* of the increment's append */
    int64_t           value;
};

struct chaos_model {
    const struct chaos_ops   *ops;
    const struct chaos_final *f;
    struct chaos_strtab       ids;
    struct chaos_strtab       streams;
    /* Per id. */
    uint8_t  *id_status; /* enum chaos_status */
    uint32_t *id_stream; /* of its first append; NONE if never appended */
    size_t   *id_append; /* the invoke that gave its status */
    size_t   *id_stamp; /* scratch: see chaos_check_duplicate */
    uint64_t *id_mark; /* scratch: one bit per id */
    /* where[node * id_cap + id]: 1 + index of the id's first event on that
     * node, 0 when absent. */
    uint32_t *where;
    size_t    id_cap;
    /* Per stream: its replicas, a mask of node indexes. */
    uint64_t *stream_nodes;
    /* state[node * stream_cap + stream]: its state on that node or NULL. */
    const struct chaos_stream_state **state;
    size_t                            stream_cap;
    /* Every event, three orders. */
    struct chaos_ev  *by_log, *by_dot, *by_id;
    size_t            ev_count;
    struct chaos_app *apps; /* by (process, stream, invoke) */
    size_t            app_count;
    struct chaos_cnt *cnts; /* by (stream, field, is_value, node) */
    size_t            cnt_count;
};

static bool chaos_lost_to_wipe(const struct chaos_model *m, size_t inv);

const char *
chaos_check_name(enum chaos_check_kind kind)
{
    static const char *const names[] = {
        [CHAOS_CHECK_LOST]           = "lost",
        [CHAOS_CHECK_UNWRITTEN]      = "unwritten",
        [CHAOS_CHECK_DUPLICATE]      = "duplicate",
        [CHAOS_CHECK_ORIGIN_ORDER]   = "origin order",
        [CHAOS_CHECK_SESSION_ORDER]  = "session order",
        [CHAOS_CHECK_CONVERGENCE]    = "convergence",
        [CHAOS_CHECK_COUNTER_BOUNDS] = "counter bounds",
    };
    if ((int) kind < 0 || (size_t) kind >= MRD_ARRAY_SIZE(names)) {
        return "?";
    }
    return names[kind];
}

void
chaos_model_free(struct chaos_model *m)
{
    if (m == NULL) {
        return;
    }
    chaos_strtab_fini(&m->ids);
    chaos_strtab_fini(&m->streams);
    free(m->id_status);
    free(m->id_stream);
    free(m->id_append);
    free(m->id_stamp);
    free(m->id_mark);
    free(m->where);
    free(m->stream_nodes);
    free(m->state);
    free(m->by_log);
    free(m->by_dot);
    free(m->by_id);
    free(m->apps);
    free(m->cnts);
    free(m);
}

/* ------------------------------------------------------- model: input -- */

static bool
chaos_name_ok(const char *s, size_t size_max)
{
    if (s == NULL) {
        return false;
    }
    size_t size = strnlen(s, size_max + 1);
    return size > 0 && size <= size_max && mrd_utf8_valid(s, size);
}

static int
chaos_final_check_node(
    const struct chaos_node_final *n, size_t *ids_out, struct chaos_error *err)
{
    if (n->event_count > CHAOS_NODE_EVENTS_MAX
        || n->stream_count > CHAOS_STREAMS_MAX) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "node %" PRIu64 ": more than %u events or %u streams", n->node_id,
            CHAOS_NODE_EVENTS_MAX, CHAOS_STREAMS_MAX);
    }
    for (size_t i = 0; i < n->event_count; i++) {
        const struct chaos_event *e = &n->events[i];
        if (!chaos_name_ok(e->stream, MRD_STREAM_NAME_SIZE_MAX)
            || (e->id != NULL && !chaos_id_valid(e->id))) {
            return chaos_error_set(err, MRD_EINVAL, 0,
                "node %" PRIu64 " event %zu: bad stream name or id", n->node_id,
                i);
        }
        *ids_out += e->id != NULL;
    }
    for (size_t i = 0; i < n->stream_count; i++) {
        const struct chaos_stream_state *s = &n->streams[i];
        bool ok = chaos_name_ok(s->stream, MRD_STREAM_NAME_SIZE_MAX)
            && s->doc_size <= MRD_STATE_SIZE_MAX
            && (s->doc != NULL || s->doc_size == 0)
            && s->counter_count <= CHAOS_STREAM_COUNTERS_MAX;
        for (size_t c = 0; ok && c < s->counter_count; c++) {
            ok = chaos_name_ok(s->counters[c].field, MRD_STATE_NAME_SIZE_MAX);
        }
        if (!ok) {
            return chaos_error_set(err, MRD_EINVAL, 0,
                "node %" PRIu64 " stream state %zu: bad name, document or "
                "counters",
                n->node_id, i);
        }
    }
    return MRD_OK;
}

/* Checks what the structs cannot say and counts mentions, which bound
 * the interning tables. */
static int
chaos_final_check(const struct chaos_final *f, size_t *ids_out,
    size_t *streams_out, struct chaos_error *err)
{
    if (f->node_count == 0 || f->node_count > CHAOS_NODES_MAX
        || f->placement_count > CHAOS_STREAMS_MAX) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "1..%u nodes and at most %u placements", CHAOS_NODES_MAX,
            CHAOS_STREAMS_MAX);
    }
    for (size_t n = 0; n < f->node_count; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        for (size_t k = 0; k < n; k++) {
            if (f->nodes[k].node_id == node->node_id) {
                return chaos_error_set(err, MRD_EINVAL, 0,
                    "node %" PRIu64 " twice", node->node_id);
            }
        }
        int rv = chaos_final_check_node(node, ids_out, err);
        if (rv != MRD_OK) {
            return rv;
        }
        *streams_out += node->event_count + node->stream_count;
    }
    for (size_t i = 0; i < f->placement_count; i++) {
        if (!chaos_name_ok(f->placements[i].stream, MRD_STREAM_NAME_SIZE_MAX)
            || f->placements[i].node_count > CHAOS_NODES_MAX) {
            return chaos_error_set(
                err, MRD_EINVAL, 0, "placement %zu: bad stream or nodes", i);
        }
    }
    *streams_out += f->placement_count;
    return MRD_OK;
}

static enum chaos_status
chaos_append_status(const struct chaos_ops *ops, size_t invoke)
{
    size_t done = chaos_ops_completion(ops, invoke);
    if (done == CHAOS_NONE) {
        return CHAOS_STATUS_INDET;
    }
    switch (chaos_ops_at(ops, done)->type) {
    case CHAOS_TYPE_OK:
        return CHAOS_STATUS_OK;
    case CHAOS_TYPE_FAIL:
        return CHAOS_STATUS_FAIL;
    case CHAOS_TYPE_INFO:
    case CHAOS_TYPE_INVOKE:
        break;
    }
    return CHAOS_STATUS_INDET;
}

/* Interns one append's stream and ids and records their status. */
static int
chaos_model_add_append(struct chaos_model *m, size_t invoke,
    const struct chaos_op *op, struct chaos_error *err)
{
    enum chaos_status status = chaos_append_status(m->ops, invoke);
    uint32_t          stream = chaos_strtab_add(&m->streams, op->stream);
    m->apps[m->app_count++]  = (struct chaos_app) {
         .invoke  = invoke,
         .process = op->process,
         .stream  = stream,
         .status  = status,
    };
    for (size_t i = 0; i < op->id_count; i++) {
        uint32_t id = chaos_strtab_add(&m->ids, op->ids[i]);
        if (m->id_stream[id] == CHAOS_IDX_NONE) {
            m->id_stream[id] = stream;
        } else if (m->id_stream[id] != stream) {
            return chaos_error_set(err, MRD_EINVAL, invoke + 1,
                "id \"%s\" appended to two streams", op->ids[i]);
        }
        if (m->id_append[id] == CHAOS_NONE || status > m->id_status[id]) {
            m->id_status[id] = (uint8_t) status;
            m->id_append[id] = invoke;
        }
    }
    return MRD_OK;
}

/* Walks the history: appends, their counter increments, ids of ok reads. */
static int
chaos_model_add_history(struct chaos_model *m, struct chaos_error *err)
{
    for (size_t r = 0; r < chaos_ops_count(m->ops); r++) {
        const struct chaos_op *op = chaos_ops_at(m->ops, r);
        if (op->type == CHAOS_TYPE_INVOKE && op->f == CHAOS_F_READ) {
            (void) chaos_strtab_add(&m->streams, op->stream);
        }
        if (op->type == CHAOS_TYPE_OK && op->f == CHAOS_F_READ) {
            for (size_t i = 0; i < op->id_count; i++) {
                (void) chaos_strtab_add(&m->ids, op->ids[i]);
            }
        }
        if (op->type != CHAOS_TYPE_INVOKE || op->f != CHAOS_F_APPEND) {
            continue;
        }
        int rv = chaos_model_add_append(m, r, op, err);
        if (rv != MRD_OK) {
            return rv;
        }
        const struct chaos_app *app = &m->apps[m->app_count - 1];
        /* An increment acked locally by a node wiped since may be gone
         * with its event (chaos_check_lost excuses the event too). */
        enum chaos_status st = app->status == CHAOS_STATUS_OK && m->f != NULL
                && chaos_lost_to_wipe(m, r)
            ? CHAOS_STATUS_INDET
            : app->status;
        for (size_t c = 0; c < op->counter_count; c++) {
            m->cnts[m->cnt_count++] = (struct chaos_cnt) {
                .stream = app->stream,
                .field  = op->counters[c].field,
                .status = st,
                .value  = op->counters[c].value,
            };
        }
    }
    return MRD_OK;
}

/* The node index of a node id, or CHAOS_IDX_NONE. */
static uint32_t
chaos_model_node(const struct chaos_final *f, uint64_t node_id)
{
    for (size_t n = 0; n < f->node_count; n++) {
        if (f->nodes[n].node_id == node_id) {
            return (uint32_t) n;
        }
    }
    return CHAOS_IDX_NONE;
}

/* Replicas: every node, unless a placement names them. */
static int
chaos_model_add_placements(struct chaos_model *m, struct chaos_error *err)
{
    const struct chaos_final *f = m->f;
    uint64_t                  all
        = f->node_count == 64 ? UINT64_MAX : (UINT64_C(1) << f->node_count) - 1;
    for (size_t s = 0; s < m->streams.count_max; s++) {
        m->stream_nodes[s] = all;
    }
    for (size_t i = 0; i < f->placement_count; i++) {
        const struct chaos_placement *p = &f->placements[i];
        uint32_t s    = chaos_strtab_add(&m->streams, p->stream);
        uint64_t mask = 0;
        for (size_t k = 0; k < p->node_count; k++) {
            uint32_t n = chaos_model_node(f, p->node_ids[k]);
            if (n == CHAOS_IDX_NONE) {
                return chaos_error_set(err, MRD_EINVAL, 0,
                    "placement of \"%s\" names unknown node %" PRIu64,
                    p->stream, p->node_ids[k]);
            }
            mask |= UINT64_C(1) << n;
        }
        m->stream_nodes[s] = mask;
    }
    return MRD_OK;
}

/* Interns the streams of every node's states and events and the ids of
 * its events; collects its counter values. */
static void
chaos_model_intern_final(struct chaos_model *m)
{
    const struct chaos_final *f = m->f;
    for (uint32_t n = 0; n < f->node_count; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        for (size_t i = 0; i < node->event_count; i++) {
            const struct chaos_event *e = &node->events[i];
            (void) chaos_strtab_add(&m->streams, e->stream);
            if (e->id != NULL) {
                (void) chaos_strtab_add(&m->ids, e->id);
            }
        }
        for (size_t i = 0; i < node->stream_count; i++) {
            const struct chaos_stream_state *st = &node->streams[i];
            uint32_t s = chaos_strtab_add(&m->streams, st->stream);
            for (size_t c = 0; c < st->counter_count; c++) {
                m->cnts[m->cnt_count++] = (struct chaos_cnt) {
                    .stream   = s,
                    .field    = st->counters[c].field,
                    .is_value = true,
                    .node     = n,
                    .value    = st->counters[c].value,
                };
            }
        }
    }
}

/* The per-(node, stream) state map; a stream's state twice on one node is
 * an input error (which one would the replicas be compared on?). */
static int
chaos_model_map_states(struct chaos_model *m, struct chaos_error *err)
{
    const struct chaos_final *f = m->f;
    m->stream_cap               = m->streams.count;
    m->state = calloc(f->node_count * m->stream_cap + 1, sizeof(*m->state));
    if (m->state == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t n = 0; n < f->node_count; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        for (size_t i = 0; i < node->stream_count; i++) {
            const struct chaos_stream_state *st = &node->streams[i];
            uint32_t s = chaos_strtab_find(&m->streams, st->stream);
            const struct chaos_stream_state **slot
                = &m->state[n * m->stream_cap + s];
            if (*slot != NULL) {
                return chaos_error_set(err, MRD_EINVAL, 0,
                    "node %" PRIu64 ": two states of stream \"%s\"",
                    node->node_id, st->stream);
            }
            *slot = st;
        }
    }
    return MRD_OK;
}

/* Fills by_log with every event and where[] with first occurrences. */
static int
chaos_model_map_events(struct chaos_model *m)
{
    const struct chaos_final *f = m->f;
    m->id_cap                   = m->ids.count;
    m->where = calloc(f->node_count * m->id_cap + 1, sizeof(*m->where));
    if (m->where == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t n = 0; n < f->node_count; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        for (uint32_t i = 0; i < node->event_count; i++) {
            const struct chaos_event *e  = &node->events[i];
            uint32_t                  id = e->id == NULL ? CHAOS_IDX_NONE
                                                         : chaos_strtab_find(&m->ids, e->id);
            m->by_log[m->ev_count++]     = (struct chaos_ev) {
                    .e      = e,
                    .node   = n,
                    .stream = chaos_strtab_find(&m->streams, e->stream),
                    .id     = id,
                    .index  = i,
            };
            if (id != CHAOS_IDX_NONE && m->where[n * m->id_cap + id] == 0) {
                m->where[n * m->id_cap + id] = i + 1;
            }
        }
    }
    return MRD_OK;
}

/* ----------------------------------------------------- model: orders -- */

/* -1, 0 or 1 for any two integers. */
#define CHAOS_CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

static int
chaos_ev_cmp_log(const void *pa, const void *pb)
{
    const struct chaos_ev *a = pa, *b = pb;
    int                    c = CHAOS_CMP(a->node, b->node);
    c                        = c != 0 ? c : CHAOS_CMP(a->e->shard, b->e->shard);
    c = c != 0 ? c : CHAOS_CMP(a->e->dot.origin, b->e->dot.origin);
    c = c != 0 ? c : CHAOS_CMP(a->e->log_seq, b->e->log_seq);
    return c != 0 ? c : CHAOS_CMP(a->index, b->index);
}

static int
chaos_ev_cmp_dot(const void *pa, const void *pb)
{
    const struct chaos_ev *a = pa, *b = pb;
    int                    c = CHAOS_CMP(a->stream, b->stream);
    c = c != 0 ? c : CHAOS_CMP(a->e->dot.origin, b->e->dot.origin);
    c = c != 0 ? c : CHAOS_CMP(a->e->dot.seq, b->e->dot.seq);
    c = c != 0 ? c : CHAOS_CMP(a->node, b->node);
    return c != 0 ? c : CHAOS_CMP(a->index, b->index);
}

static int
chaos_ev_cmp_id(const void *pa, const void *pb)
{
    const struct chaos_ev *a = pa, *b = pb;
    int                    c = CHAOS_CMP(a->id, b->id);
    c = c != 0 ? c : CHAOS_CMP(a->e->dot.origin, b->e->dot.origin);
    c = c != 0 ? c : CHAOS_CMP(a->e->dot.seq, b->e->dot.seq);
    c = c != 0 ? c : CHAOS_CMP(a->node, b->node);
    return c != 0 ? c : CHAOS_CMP(a->index, b->index);
}

static int
chaos_app_cmp(const void *pa, const void *pb)
{
    const struct chaos_app *a = pa, *b = pb;
    int                     c = CHAOS_CMP(a->process, b->process);
    c                         = c != 0 ? c : CHAOS_CMP(a->stream, b->stream);
    return c != 0 ? c : CHAOS_CMP(a->invoke, b->invoke);
}

static int
chaos_cnt_cmp(const void *pa, const void *pb)
{
    const struct chaos_cnt *a = pa, *b = pb;
    int                     c = CHAOS_CMP(a->stream, b->stream);
    c                         = c != 0 ? c : strcmp(a->field, b->field);
    c = c != 0 ? c : CHAOS_CMP(a->is_value, b->is_value);
    return c != 0 ? c : CHAOS_CMP(a->node, b->node);
}

/* ------------------------------------------------------ model: build -- */

struct chaos_model_sizes {
    size_t ids; /* id mentions: history records, node events */
    size_t streams; /* stream mentions */
    size_t apps;
    size_t cnts;
    size_t events;
};

static void
chaos_model_count(const struct chaos_ops *ops, const struct chaos_final *f,
    struct chaos_model_sizes *sz)
{
    for (size_t r = 0; r < chaos_ops_count(ops); r++) {
        const struct chaos_op *op = chaos_ops_at(ops, r);
        sz->ids += op->id_count;
        sz->streams += op->stream != NULL;
        if (op->type == CHAOS_TYPE_INVOKE && op->f == CHAOS_F_APPEND) {
            sz->apps++;
            sz->cnts += op->counter_count;
        }
    }
    for (size_t n = 0; n < f->node_count; n++) {
        sz->events += f->nodes[n].event_count;
        for (size_t i = 0; i < f->nodes[n].stream_count; i++) {
            sz->cnts += f->nodes[n].streams[i].counter_count;
        }
    }
}

static int
chaos_model_alloc(struct chaos_model *m, const struct chaos_model_sizes *sz)
{
    if (chaos_strtab_init(&m->ids, sz->ids) != MRD_OK
        || chaos_strtab_init(&m->streams, sz->streams) != MRD_OK) {
        return MRD_ENOMEM;
    }
    size_t ids      = sz->ids + 1; /* + 1: calloc(0) may return NULL */
    m->id_status    = calloc(ids, sizeof(*m->id_status));
    m->id_stream    = malloc(ids * sizeof(*m->id_stream));
    m->id_append    = malloc(ids * sizeof(*m->id_append));
    m->id_stamp     = malloc(ids * sizeof(*m->id_stamp));
    m->id_mark      = calloc(ids / 64 + 1, sizeof(*m->id_mark));
    m->stream_nodes = calloc(sz->streams + 1, sizeof(*m->stream_nodes));
    m->by_log       = calloc(sz->events + 1, sizeof(*m->by_log));
    m->by_dot       = calloc(sz->events + 1, sizeof(*m->by_dot));
    m->by_id        = calloc(sz->events + 1, sizeof(*m->by_id));
    m->apps         = calloc(sz->apps + 1, sizeof(*m->apps));
    m->cnts         = calloc(sz->cnts + 1, sizeof(*m->cnts));
    if (m->id_status == NULL || m->id_stream == NULL || m->id_append == NULL
        || m->id_stamp == NULL || m->id_mark == NULL || m->stream_nodes == NULL
        || m->by_log == NULL || m->by_dot == NULL || m->by_id == NULL
        || m->apps == NULL || m->cnts == NULL) {
        return MRD_ENOMEM;
    }
    for (size_t i = 0; i < ids; i++) {
        m->id_stream[i] = CHAOS_IDX_NONE;
        m->id_append[i] = CHAOS_NONE;
    }
    return MRD_OK;
}

/* Everything after allocation: interning, maps, sorts. */
static int
chaos_model_fill(struct chaos_model *m, struct chaos_error *err)
{
    int rv = chaos_model_add_history(m, err);
    if (rv != MRD_OK) {
        return rv;
    }
    chaos_model_intern_final(m);
    rv = chaos_model_add_placements(m, err);
    if (rv == MRD_OK) {
        rv = chaos_model_map_states(m, err);
    }
    if (rv == MRD_OK) {
        rv = chaos_model_map_events(m);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    size_t bytes = m->ev_count * sizeof(struct chaos_ev);
    memcpy(m->by_dot, m->by_log, bytes);
    memcpy(m->by_id, m->by_log, bytes);
    qsort(m->by_log, m->ev_count, sizeof(*m->by_log), chaos_ev_cmp_log);
    qsort(m->by_dot, m->ev_count, sizeof(*m->by_dot), chaos_ev_cmp_dot);
    qsort(m->by_id, m->ev_count, sizeof(*m->by_id), chaos_ev_cmp_id);
    qsort(m->apps, m->app_count, sizeof(*m->apps), chaos_app_cmp);
    qsort(m->cnts, m->cnt_count, sizeof(*m->cnts), chaos_cnt_cmp);
    return MRD_OK;
}

int
chaos_model_build(const struct chaos_ops *ops, const struct chaos_final *f,
    struct chaos_error *err, struct chaos_model **out)
{
    *out                               = NULL;
    struct chaos_model_sizes sz        = { 0 };
    size_t                   final_ids = 0, final_streams = 0;
    int rv = chaos_final_check(f, &final_ids, &final_streams, err);
    if (rv != MRD_OK) {
        return rv;
    }
    chaos_model_count(ops, f, &sz);
    sz.ids += final_ids;
    sz.streams += final_streams;
    struct chaos_model *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return MRD_ENOMEM;
    }
    m->ops = ops;
    m->f   = f;
    rv     = chaos_model_alloc(m, &sz);
    if (rv == MRD_OK) {
        rv = chaos_model_fill(m, err);
    }
    if (rv != MRD_OK) {
        chaos_model_free(m);
        return rv == MRD_ENOMEM
            ? chaos_error_set(err, rv, 0, "out of memory building the model")
            : rv;
    }
    *out = m;
    return MRD_OK;
}

/* ------------------------------------------------------------ findings -- */

static void chaos_finding_add(struct chaos_finding *out, const char *fmt, ...)
    MRD_PRINTF(2, 3);

/* Counts one violation and keeps its words if there is room. */
static void
chaos_finding_add(struct chaos_finding *out, const char *fmt, ...)
{
    out->count++;
    if (out->example_count >= CHAOS_EXAMPLES_MAX) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(
        out->examples[out->example_count++], CHAOS_EXAMPLE_SIZE_MAX, fmt, ap);
    va_end(ap);
}

static void
chaos_finding_reset(struct chaos_finding *out)
{
    memset(out, 0, sizeof(*out));
}

static uint64_t
chaos_node_id(const struct chaos_model *m, uint32_t n)
{
    return m->f->nodes[n].node_id;
}

static const char *
chaos_stream_name(const struct chaos_model *m, uint32_t s)
{
    return m->streams.keys[s];
}

static const char *
chaos_id_name(const struct chaos_model *m, uint32_t id)
{
    return id == CHAOS_IDX_NONE ? "(none)" : m->ids.keys[id];
}

/* The event of id on node n, or NULL. */
static const struct chaos_event *
chaos_model_find(const struct chaos_model *m, uint32_t n, uint32_t id)
{
    uint32_t where = m->where[(size_t) n * m->id_cap + id];
    return where == 0 ? NULL : &m->f->nodes[n].events[where - 1];
}

/* ---------------------------------------------------------- the checks -- */

/* Whether the ok append invoked at record inv was acknowledged at level
 * local by a node whose data dir was wiped after the invoke: its one disk
 * is gone, which that level allows. */
static bool
chaos_lost_to_wipe(const struct chaos_model *m, size_t inv)
{
    const struct chaos_op *op   = chaos_ops_at(m->ops, inv);
    size_t                 done = chaos_ops_completion(m->ops, inv);
    if (op->ack != CHAOS_ACK_LOCAL || done == CHAOS_NONE) {
        return false;
    }
    const struct chaos_op *ok = chaos_ops_at(m->ops, done);
    if (ok->type != CHAOS_TYPE_OK || !ok->has_dot) {
        return false;
    }
    for (size_t w = 0; w < m->f->wipe_count; w++) {
        if (m->f->wipes[w].node_id == ok->dot.origin
            && m->f->wipes[w].t_us >= op->t_us) {
            return true;
        }
    }
    return false;
}

void
chaos_check_lost(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    for (uint32_t id = 0; id < m->ids.count; id++) {
        if (m->id_status[id] != CHAOS_STATUS_OK) {
            continue;
        }
        uint32_t               s   = m->id_stream[id];
        const struct chaos_op *inv = chaos_ops_at(m->ops, m->id_append[id]);
        if (chaos_lost_to_wipe(m, m->id_append[id])) {
            continue;
        }
        for (uint32_t n = 0; n < m->f->node_count; n++) {
            if ((m->stream_nodes[s] >> n & 1) == 0
                || chaos_model_find(m, n, id) != NULL) {
                continue;
            }
            chaos_finding_add(out,
                "id %s (stream %s, acked append of p%" PRIu32
                " invoked at t=%" PRIu64
                "us, ack %s) is missing on node %" PRIu64,
                chaos_id_name(m, id), chaos_stream_name(m, s), inv->process,
                inv->t_us, chaos_ack_name(inv->ack), chaos_node_id(m, n));
        }
    }
}

/* Unwritten ids in ok reads: the read's stream is its invoke's. */
static void
chaos_check_unwritten_reads(struct chaos_model *m, struct chaos_finding *out)
{
    for (size_t r = 0; r < chaos_ops_count(m->ops); r++) {
        const struct chaos_op *inv  = chaos_ops_at(m->ops, r);
        size_t                 done = chaos_ops_completion(m->ops, r);
        if (inv->type != CHAOS_TYPE_INVOKE || inv->f != CHAOS_F_READ
            || done == CHAOS_NONE
            || chaos_ops_at(m->ops, done)->type != CHAOS_TYPE_OK) {
            continue;
        }
        const struct chaos_op *ok = chaos_ops_at(m->ops, done);
        uint32_t               s  = chaos_strtab_find(&m->streams, inv->stream);
        for (size_t i = 0; i < ok->id_count; i++) {
            uint32_t id = chaos_strtab_find(&m->ids, ok->ids[i]);
            if (m->id_status[id] <= CHAOS_STATUS_FAIL
                || m->id_stream[id] != s) {
                chaos_finding_add(out,
                    "id %s in the read of stream %s by p%" PRIu32
                    " at t=%" PRIu64 "us: %s",
                    ok->ids[i], inv->stream, inv->process, ok->t_us,
                    m->id_status[id] == CHAOS_STATUS_NONE ? "no append named it"
                        : m->id_status[id] == CHAOS_STATUS_FAIL
                        ? "every append naming it failed"
                        : "appended to another stream");
            }
        }
    }
}

void
chaos_check_unwritten(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    for (size_t i = 0; i < m->ev_count; i++) {
        const struct chaos_ev *ev  = &m->by_log[i];
        const char            *why = NULL;
        if (ev->id == CHAOS_IDX_NONE) {
            why = "no id in its data";
        } else if (m->id_status[ev->id] == CHAOS_STATUS_NONE) {
            why = "no append named its id";
        } else if (m->id_status[ev->id] == CHAOS_STATUS_FAIL) {
            why = "every append naming its id failed";
        } else if (m->id_stream[ev->id] != ev->stream) {
            why = "its id was appended to another stream";
        } else {
            continue;
        }
        chaos_finding_add(out,
            "node %" PRIu64 " stream %s position %" PRIu64 " dot %" PRIu64
            ":%" PRIu64 " id %s: %s",
            chaos_node_id(m, ev->node), chaos_stream_name(m, ev->stream),
            ev->e->position, ev->e->dot.origin, ev->e->dot.seq,
            chaos_id_name(m, ev->id), why);
    }
    chaos_check_unwritten_reads(m, out);
}

/* Marks id as duplicated; true the first time, so each id counts once. */
static bool
chaos_model_mark(struct chaos_model *m, uint32_t id)
{
    uint64_t bit = UINT64_C(1) << (id % 64);
    if ((m->id_mark[id / 64] & bit) != 0) {
        return false;
    }
    m->id_mark[id / 64] |= bit;
    return true;
}

/* An id twice in one ok read: id_stamp holds the last read that had it. */
static void
chaos_check_duplicate_reads(struct chaos_model *m, struct chaos_finding *out)
{
    for (size_t i = 0; i < m->ids.count; i++) {
        m->id_stamp[i] = CHAOS_NONE;
    }
    for (size_t r = 0; r < chaos_ops_count(m->ops); r++) {
        const struct chaos_op *op = chaos_ops_at(m->ops, r);
        if (op->type != CHAOS_TYPE_OK || op->f != CHAOS_F_READ) {
            continue;
        }
        for (size_t i = 0; i < op->id_count; i++) {
            uint32_t id = chaos_strtab_find(&m->ids, op->ids[i]);
            if (m->id_stamp[id] == r && chaos_model_mark(m, id)) {
                chaos_finding_add(out,
                    "id %s twice in one read by p%" PRIu32 " at t=%" PRIu64
                    "us",
                    op->ids[i], op->process, op->t_us);
            }
            m->id_stamp[id] = r;
        }
    }
}

void
chaos_check_duplicate(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    memset(m->id_mark, 0, (m->ids.count / 64 + 1) * sizeof(*m->id_mark));
    /* Twice on one node: an event that is not its id's first there. */
    for (size_t i = 0; i < m->ev_count; i++) {
        const struct chaos_ev    *ev = &m->by_log[i];
        const struct chaos_event *first;
        if (ev->id == CHAOS_IDX_NONE) {
            continue;
        }
        first = chaos_model_find(m, ev->node, ev->id);
        if (first != ev->e && chaos_model_mark(m, ev->id)) {
            chaos_finding_add(out,
                "id %s twice on node %" PRIu64 ": positions %" PRIu64
                " and %" PRIu64 " of stream %s",
                chaos_id_name(m, ev->id), chaos_node_id(m, ev->node),
                first->position, ev->e->position,
                chaos_stream_name(m, ev->stream));
        }
    }
    /* Under two dots anywhere: by_id is sorted by (id, dot). */
    for (size_t i = 1; i < m->ev_count; i++) {
        const struct chaos_ev *a = &m->by_id[i - 1], *b = &m->by_id[i];
        if (a->id != b->id || b->id == CHAOS_IDX_NONE
            || (a->e->dot.origin == b->e->dot.origin
                && a->e->dot.seq == b->e->dot.seq)) {
            continue;
        }
        if (chaos_model_mark(m, b->id)) {
            chaos_finding_add(out,
                "id %s under two dots: %" PRIu64 ":%" PRIu64 " (node %" PRIu64
                ") and %" PRIu64 ":%" PRIu64 " (node %" PRIu64 ")",
                chaos_id_name(m, b->id), a->e->dot.origin, a->e->dot.seq,
                chaos_node_id(m, a->node), b->e->dot.origin, b->e->dot.seq,
                chaos_node_id(m, b->node));
        }
    }
    chaos_check_duplicate_reads(m, out);
}

void
chaos_check_origin_order(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    /* by_log is sorted by (node, shard, origin, log seq): within a group,
     * seqs must rise. Each descent counts once. */
    for (size_t i = 1; i < m->ev_count; i++) {
        const struct chaos_ev *a = &m->by_log[i - 1], *b = &m->by_log[i];
        if (a->node != b->node || a->e->shard != b->e->shard
            || a->e->dot.origin != b->e->dot.origin
            || b->e->dot.seq > a->e->dot.seq) {
            continue;
        }
        chaos_finding_add(out,
            "node %" PRIu64 " shard %" PRIu32 ": origin %" PRIu64
            " seq %" PRIu64 " at log seq %" PRIu64
            " comes after its seq %" PRIu64 " at log seq %" PRIu64,
            chaos_node_id(m, b->node), b->e->shard, b->e->dot.origin,
            b->e->dot.seq, b->e->log_seq, a->e->dot.seq, a->e->log_seq);
    }
}

/* Where one append's events sit on one node: the lowest and highest
 * positions of its ids held there in its own stream. */
struct chaos_span {
    bool     present;
    uint64_t min, max;
    uint32_t min_id, max_id;
};

static struct chaos_span
chaos_model_span(
    const struct chaos_model *m, const struct chaos_app *app, uint32_t n)
{
    const struct chaos_op *op   = chaos_ops_at(m->ops, app->invoke);
    struct chaos_span      span = { .present = false };
    for (size_t i = 0; i < op->id_count; i++) {
        uint32_t                  id = chaos_strtab_find(&m->ids, op->ids[i]);
        const struct chaos_event *e  = chaos_model_find(m, n, id);
        if (e == NULL || strcmp(e->stream, op->stream) != 0) {
            continue;
        }
        if (!span.present || e->position < span.min) {
            span.min    = e->position;
            span.min_id = id;
        }
        if (!span.present || e->position > span.max) {
            span.max    = e->position;
            span.max_id = id;
        }
        span.present = true;
    }
    return span;
}

/* One (process, stream) group of apps, in invoke order. prior[n] is the
 * span, on node n, of everything the process had acked before. */
static void
chaos_check_session_group(struct chaos_model *m, const struct chaos_app *apps,
    size_t count, struct chaos_finding *out)
{
    struct chaos_span prior[CHAOS_NODES_MAX] = { { .present = false } };
    for (size_t a = 0; a < count; a++) {
        const struct chaos_app *app = &apps[a];
        if (app->status == CHAOS_STATUS_FAIL) {
            continue; /* not there, or "unwritten" says so */
        }
        for (uint32_t n = 0; n < m->f->node_count; n++) {
            struct chaos_span span = chaos_model_span(m, app, n);
            if (!span.present) {
                continue;
            }
            if (prior[n].present && span.min <= prior[n].max) {
                chaos_finding_add(out,
                    "p%" PRIu32 " stream %s node %" PRIu64
                    ": id %s (invoked at t=%" PRIu64 "us) at position %" PRIu64
                    " is not after id %s of an earlier acked append at "
                    "position %" PRIu64,
                    app->process, chaos_stream_name(m, app->stream),
                    chaos_node_id(m, n), chaos_id_name(m, span.min_id),
                    chaos_ops_at(m->ops, app->invoke)->t_us, span.min,
                    chaos_id_name(m, prior[n].max_id), prior[n].max);
            }
            if (app->status == CHAOS_STATUS_OK
                && (!prior[n].present || span.max > prior[n].max)) {
                prior[n].present = true;
                prior[n].max     = span.max;
                prior[n].max_id  = span.max_id;
            }
        }
    }
}

void
chaos_check_session_order(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    size_t start = 0;
    for (size_t i = 1; i <= m->app_count; i++) {
        if (i < m->app_count && m->apps[i].process == m->apps[start].process
            && m->apps[i].stream == m->apps[start].stream) {
            continue;
        }
        chaos_check_session_group(m, &m->apps[start], i - start, out);
        start = i;
    }
}

/* "1,3,4": the node ids of a mask of node indexes. */
static const char *
chaos_nodes_format(
    const struct chaos_model *m, uint64_t mask, char *buf, size_t size)
{
    size_t used = 0;
    buf[0]      = '\0';
    for (uint32_t n = 0; n < m->f->node_count && used < size; n++) {
        if ((mask >> n & 1) != 0) {
            int w = snprintf(buf + used, size - used, "%s%" PRIu64,
                used == 0 ? "" : ",", chaos_node_id(m, n));
            used += w > 0 ? (size_t) w : 0;
        }
    }
    return buf;
}

/* One (stream, dot) group of by_dot: on every replica, under one id. */
static void
chaos_check_dot_group(const struct chaos_model *m, const struct chaos_ev *evs,
    size_t count, struct chaos_finding *out)
{
    uint64_t               replicas = m->stream_nodes[evs[0].stream];
    uint64_t               seen     = 0;
    const struct chaos_ev *first    = NULL;
    char                   nodes[128];
    for (size_t i = 0; i < count; i++) {
        if ((replicas >> evs[i].node & 1) == 0) {
            continue; /* a copy outside the placement is not compared */
        }
        seen |= UINT64_C(1) << evs[i].node;
        if (first == NULL) {
            first = &evs[i];
        } else if (evs[i].id != first->id) {
            chaos_finding_add(out,
                "stream %s dot %" PRIu64 ":%" PRIu64
                " is id %s on node %" PRIu64 " but id %s on node %" PRIu64,
                chaos_stream_name(m, first->stream), first->e->dot.origin,
                first->e->dot.seq, chaos_id_name(m, first->id),
                chaos_node_id(m, first->node), chaos_id_name(m, evs[i].id),
                chaos_node_id(m, evs[i].node));
            return;
        }
    }
    if (first != NULL && seen != replicas) {
        chaos_finding_add(out,
            "stream %s dot %" PRIu64 ":%" PRIu64 " (id %s) is missing on "
            "node %s",
            chaos_stream_name(m, first->stream), first->e->dot.origin,
            first->e->dot.seq, chaos_id_name(m, first->id),
            chaos_nodes_format(m, replicas & ~seen, nodes, sizeof(nodes)));
    }
}

static bool
chaos_doc_equal(
    const struct chaos_stream_state *a, const struct chaos_stream_state *b)
{
    size_t a_size = a == NULL ? 0 : a->doc_size;
    size_t b_size = b == NULL ? 0 : b->doc_size;
    return a_size == b_size
        && (a_size == 0 || memcmp(a->doc, b->doc, a_size) == 0);
}

/* Every replica's state document byte-equal to the first replica's. */
static void
chaos_check_docs(const struct chaos_model *m, struct chaos_finding *out)
{
    for (uint32_t s = 0; s < m->stream_cap; s++) {
        uint64_t                         replicas = m->stream_nodes[s];
        const struct chaos_stream_state *ref      = NULL;
        uint32_t                         ref_node = CHAOS_IDX_NONE;
        for (uint32_t n = 0; n < m->f->node_count; n++) {
            if ((replicas >> n & 1) == 0) {
                continue;
            }
            const struct chaos_stream_state *st
                = m->state[(size_t) n * m->stream_cap + s];
            if (ref_node == CHAOS_IDX_NONE) {
                ref      = st;
                ref_node = n;
            } else if (!chaos_doc_equal(ref, st)) {
                chaos_finding_add(out,
                    "stream %s: state document on node %" PRIu64
                    " (%zu bytes) differs from node %" PRIu64 "'s (%zu bytes)",
                    chaos_stream_name(m, s), chaos_node_id(m, n),
                    st == NULL ? 0 : st->doc_size, chaos_node_id(m, ref_node),
                    ref == NULL ? 0 : ref->doc_size);
                break; /* one per stream */
            }
        }
    }
}

void
chaos_check_convergence(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    size_t start = 0;
    for (size_t i = 1; i <= m->ev_count; i++) {
        const struct chaos_ev *a = &m->by_dot[start], *b = &m->by_dot[i];
        if (i < m->ev_count && a->stream == b->stream
            && a->e->dot.origin == b->e->dot.origin
            && a->e->dot.seq == b->e->dot.seq) {
            continue;
        }
        chaos_check_dot_group(m, a, i - start, out);
        start = i;
    }
    chaos_check_docs(m, out);
}

/* The bounds one (stream, field) group of increments allows. */
struct chaos_bounds {
    int64_t ok; /* sum of acked increments */
    int64_t lo; /* ok + indeterminate decrements */
    int64_t hi; /* ok + indeterminate increments */
};

/* One (stream, field) group of cnts: increments first, then node values
 * (sorted so). Sums cannot overflow: see CHAOS_COUNTER_DELTA_MAX. */
static void
chaos_check_counter_group(const struct chaos_model *m,
    const struct chaos_cnt *cnts, size_t count, struct chaos_finding *out)
{
    struct chaos_bounds b                      = { 0, 0, 0 };
    int64_t             value[CHAOS_NODES_MAX] = { 0 };
    uint64_t            replicas = m->stream_nodes[cnts[0].stream];
    const char         *stream   = chaos_stream_name(m, cnts[0].stream);
    for (size_t i = 0; i < count; i++) {
        const struct chaos_cnt *c = &cnts[i];
        if (c->is_value) {
            value[c->node] = c->value;
        } else if (c->status == CHAOS_STATUS_OK) {
            b.ok += c->value;
        } else if (c->status == CHAOS_STATUS_INDET) {
            *(c->value < 0 ? &b.lo : &b.hi) += c->value;
        }
    }
    b.lo += b.ok;
    b.hi += b.ok;
    uint32_t first    = CHAOS_IDX_NONE;
    bool     diverged = false; /* reported once per field */
    for (uint32_t n = 0; n < m->f->node_count; n++) {
        if ((replicas >> n & 1) == 0) {
            continue;
        }
        if (value[n] < b.lo || value[n] > b.hi) {
            chaos_finding_add(out,
                "stream %s counter %s on node %" PRIu64 " is %" PRId64
                ", outside [%" PRId64 ", %" PRId64 "] (acked sum %" PRId64 ")",
                stream, cnts[0].field, chaos_node_id(m, n), value[n], b.lo,
                b.hi, b.ok);
        }
        if (first == CHAOS_IDX_NONE) {
            first = n;
        } else if (!diverged && value[n] != value[first]) {
            chaos_finding_add(out,
                "stream %s counter %s is %" PRId64 " on node %" PRIu64
                " but %" PRId64 " on node %" PRIu64,
                stream, cnts[0].field, value[first], chaos_node_id(m, first),
                value[n], chaos_node_id(m, n));
            diverged = true;
        }
    }
}

void
chaos_check_counter_bounds(struct chaos_model *m, struct chaos_finding *out)
{
    chaos_finding_reset(out);
    size_t start = 0;
    for (size_t i = 1; i <= m->cnt_count; i++) {
        const struct chaos_cnt *a = &m->cnts[start], *b = &m->cnts[i];
        if (i < m->cnt_count && a->stream == b->stream
            && strcmp(a->field, b->field) == 0) {
            continue;
        }
        chaos_check_counter_group(m, a, i - start, out);
        start = i;
    }
}

static int
chaos_u64_cmp(const void *pa, const void *pb)
{
    const uint64_t *a = pa, *b = pb;
    return CHAOS_CMP(*a, *b);
}

void
chaos_check_convergence_time(
    const struct chaos_final *f, struct chaos_convergence_time *out)
{
    uint64_t lag[CHAOS_NODES_MAX];
    memset(out, 0, sizeof(*out));
    for (size_t n = 0; n < f->node_count && n < CHAOS_NODES_MAX; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        if (!node->has_caught_up) {
            out->unknown_count++;
            continue;
        }
        lag[out->node_count++] = node->caught_up_us > f->heal_us
            ? node->caught_up_us - f->heal_us
            : 0;
    }
    if (out->node_count == 0) {
        return;
    }
    qsort(lag, out->node_count, sizeof(lag[0]), chaos_u64_cmp);
    out->p50_us = lag[(out->node_count - 1) / 2];
    out->max_us = lag[out->node_count - 1];
}

int
chaos_check_all(const struct chaos_ops *ops, const struct chaos_final *f,
    struct chaos_error *err, struct chaos_report *out)
{
    static void (*const checks[CHAOS_CHECK_COUNT])(
        struct chaos_model *, struct chaos_finding *)
        = {
              [CHAOS_CHECK_LOST]           = chaos_check_lost,
              [CHAOS_CHECK_UNWRITTEN]      = chaos_check_unwritten,
              [CHAOS_CHECK_DUPLICATE]      = chaos_check_duplicate,
              [CHAOS_CHECK_ORIGIN_ORDER]   = chaos_check_origin_order,
              [CHAOS_CHECK_SESSION_ORDER]  = chaos_check_session_order,
              [CHAOS_CHECK_CONVERGENCE]    = chaos_check_convergence,
              [CHAOS_CHECK_COUNTER_BOUNDS] = chaos_check_counter_bounds,
          };
    struct chaos_model *m = NULL;
    memset(out, 0, sizeof(*out));
    int rv = chaos_model_build(ops, f, err, &m);
    if (rv != MRD_OK) {
        return rv;
    }
    for (size_t k = 0; k < CHAOS_CHECK_COUNT; k++) {
        checks[k](m, &out->checks[k]);
    }
    chaos_check_convergence_time(f, &out->convergence_time);
    chaos_model_free(m);
    return MRD_OK;
}

bool
chaos_report_passed(const struct chaos_report *r)
{
    for (size_t k = 0; k < CHAOS_CHECK_COUNT; k++) {
        if (r->checks[k].count != 0) {
            return false;
        }
    }
    return true;
}

void
chaos_check_report(FILE *out, const struct chaos_report *r)
{
    size_t failed = 0;
    for (size_t k = 0; k < CHAOS_CHECK_COUNT; k++) {
        failed += r->checks[k].count != 0;
    }
    fprintf(out, "chaos check: %s (%zu of %u checks failed)\n",
        failed == 0 ? "PASS" : "FAIL", failed, (unsigned) CHAOS_CHECK_COUNT);
    for (size_t k = 0; k < CHAOS_CHECK_COUNT; k++) {
        const struct chaos_finding *c = &r->checks[k];
        fprintf(out, "%-16s %" PRIu64 "\n",
            chaos_check_name((enum chaos_check_kind) k), c->count);
        for (size_t e = 0; e < c->example_count; e++) {
            fprintf(out, "    %s\n", c->examples[e]);
        }
        if (c->count > c->example_count) {
            fprintf(out, "    ... and %" PRIu64 " more\n",
                c->count - c->example_count);
        }
    }
    const struct chaos_convergence_time *t = &r->convergence_time;
    fprintf(out,
        "%-16s p50 %" PRIu64 " us, max %" PRIu64 " us over %zu nodes"
        " (%zu never caught up)\n",
        "convergence time", t->p50_us, t->max_us, t->node_count,
        t->unknown_count);
}
