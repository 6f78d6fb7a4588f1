/*
 * final.c: a run's final state (struct chaos_final, check.h) as a JSON
 * file, so a failing run can be checked again offline, and a checker fix
 * re-run against old runs.
 *
 * Saving builds one jansson document; loading parses one, refuses unknown
 * keys (a typo must not read as "absent"), and copies every string and
 * array into one arena capped by limits->bytes_max, so the whole state is
 * freed at once. State documents are hex: JSON has no bytes.
 */
#include "check.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --------------------------------------------------------------- save -- */

static json_t *
chaos_final_event_json(const struct chaos_event *e)
{
    char dot[48];
    snprintf(
        dot, sizeof(dot), "%" PRIu64 ":%" PRIu64, e->dot.origin, e->dot.seq);
    json_t *obj = json_pack("{s:s, s:I, s:s, s:I, s:I}", "stream", e->stream,
        "pos", (json_int_t) e->position, "dot", dot, "shard",
        (json_int_t) e->shard, "log_seq", (json_int_t) e->log_seq);
    if (obj != NULL && e->id != NULL
        && json_object_set_new(obj, "id", json_string(e->id)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *
chaos_final_state_json(const struct chaos_stream_state *st)
{
    static const char hex[]    = "0123456789abcdef";
    char             *doc      = malloc(2 * st->doc_size + 1);
    json_t           *counters = json_object();
    if (doc == NULL || counters == NULL) {
        free(doc);
        json_decref(counters);
        return NULL;
    }
    for (size_t i = 0; i < st->doc_size; i++) {
        doc[2 * i]     = hex[st->doc[i] >> 4];
        doc[2 * i + 1] = hex[st->doc[i] & 15];
    }
    doc[2 * st->doc_size] = '\0';
    for (size_t c = 0; c < st->counter_count; c++) {
        json_object_set_new(counters, st->counters[c].field,
            json_integer(st->counters[c].value));
    }
    json_t *obj = json_pack("{s:s, s:s, s:o}", "stream", st->stream, "doc", doc,
        "counters", counters);
    free(doc);
    return obj;
}

/* Appends item (taking it); false when it is NULL or out of memory. */
static bool
chaos_final_array_add(json_t *array, json_t *item)
{
    return item != NULL && json_array_append_new(array, item) == 0;
}

static json_t *
chaos_final_node_json(const struct chaos_node_final *n)
{
    json_t *events  = json_array();
    json_t *streams = json_array();
    json_t *obj = json_pack("{s:I, s:o, s:o}", "node", (json_int_t) n->node_id,
        "events", events, "streams", streams);
    bool    ok  = obj != NULL;
    for (size_t i = 0; ok && i < n->event_count; i++) {
        ok = chaos_final_array_add(
            events, chaos_final_event_json(&n->events[i]));
    }
    for (size_t i = 0; ok && i < n->stream_count; i++) {
        ok = chaos_final_array_add(
            streams, chaos_final_state_json(&n->streams[i]));
    }
    if (ok && n->has_caught_up) {
        ok = json_object_set_new(
                 obj, "caught_up_t", json_integer((json_int_t) n->caught_up_us))
            == 0;
    }
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *
chaos_final_placement_json(const struct chaos_placement *p)
{
    json_t *nodes = json_array();
    json_t *obj = json_pack("{s:s, s:o}", "stream", p->stream, "nodes", nodes);
    for (size_t i = 0; obj != NULL && i < p->node_count; i++) {
        if (!chaos_final_array_add(
                nodes, json_integer((json_int_t) p->node_ids[i]))) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* JSON integers here are int64: larger numbers cannot be saved. */
static bool
chaos_final_fits(const struct chaos_final *f)
{
    bool fits = f->heal_us <= INT64_MAX;
    for (size_t n = 0; fits && n < f->node_count; n++) {
        const struct chaos_node_final *node = &f->nodes[n];
        fits = node->node_id <= INT64_MAX && node->caught_up_us <= INT64_MAX;
        for (size_t i = 0; fits && i < node->event_count; i++) {
            fits = node->events[i].position <= INT64_MAX
                && node->events[i].log_seq <= INT64_MAX;
        }
    }
    for (size_t i = 0; fits && i < f->placement_count; i++) {
        for (size_t k = 0; fits && k < f->placements[i].node_count; k++) {
            fits = f->placements[i].node_ids[k] <= INT64_MAX;
        }
    }
    return fits;
}

int
chaos_final_save(const char *path, const struct chaos_final *f)
{
    if (!chaos_final_fits(f)) {
        return MRD_EINVAL;
    }
    json_t *nodes      = json_array();
    json_t *placements = json_array();
    json_t *wipes      = json_array();
    json_t *root
        = json_pack("{s:I, s:o, s:o, s:o}", "heal_t", (json_int_t) f->heal_us,
            "placement", placements, "wipes", wipes, "nodes", nodes);
    bool ok = root != NULL;
    for (size_t i = 0; ok && i < f->wipe_count; i++) {
        ok = f->wipes[i].node_id <= INT64_MAX && f->wipes[i].t_us <= INT64_MAX
            && chaos_final_array_add(wipes,
                json_pack("{s:I, s:I}", "node",
                    (json_int_t) f->wipes[i].node_id, "t",
                    (json_int_t) f->wipes[i].t_us));
    }
    for (size_t i = 0; ok && i < f->node_count; i++) {
        ok = chaos_final_array_add(nodes, chaos_final_node_json(&f->nodes[i]));
    }
    for (size_t i = 0; ok && i < f->placement_count; i++) {
        ok = chaos_final_array_add(
            placements, chaos_final_placement_json(&f->placements[i]));
    }
    int rv = MRD_ENOMEM;
    if (ok) {
        rv = json_dump_file(root, path, JSON_COMPACT) == 0 ? MRD_OK : MRD_EIO;
    }
    json_decref(root);
    return rv;
}

/* --------------------------------------------------------------- load -- */

struct chaos_final_parse {
    struct chaos_arena *arena;
    struct chaos_error *err;
    const char         *where; /* "node 3 event 12", for the error */
};

/* Every key of obj is one of keys (NULL-terminated). */
static int
chaos_final_keys(
    struct chaos_final_parse *ps, json_t *obj, const char *const *keys)
{
    const char *key;
    json_t     *value;
    json_object_foreach(obj, key, value)
    {
        size_t k = 0;
        while (keys[k] != NULL && strcmp(keys[k], key) != 0) {
            k++;
        }
        if (keys[k] == NULL) {
            return chaos_error_set(ps->err, MRD_EPROTO, 0,
                "%s: unknown key \"%s\"", ps->where, key);
        }
    }
    (void) value;
    return MRD_OK;
}

static int
chaos_final_uint(struct chaos_final_parse *ps, json_t *obj, const char *key,
    bool required, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL && !required) {
        return MRD_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return chaos_error_set(ps->err, MRD_EPROTO, 0,
            "%s: \"%s\" is not an integer >= 0", ps->where, key);
    }
    *out = (uint64_t) json_integer_value(v);
    return MRD_OK;
}

/* A string copied into the arena; NULL when absent and !required. */
static int
chaos_final_string(struct chaos_final_parse *ps, json_t *obj, const char *key,
    bool required, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out      = NULL;
    if (v == NULL && !required) {
        return MRD_OK;
    }
    if (!json_is_string(v)
        || strlen(json_string_value(v)) != json_string_length(v)) {
        return chaos_error_set(ps->err, MRD_EPROTO, 0,
            "%s: \"%s\" is not a string without NUL", ps->where, key);
    }
    *out = chaos_arena_strndup(
        ps->arena, json_string_value(v), json_string_length(v));
    return *out == NULL ? MRD_EFULL : MRD_OK;
}

/* An array of at most count_max items, and room for them in the arena.
 * Does nothing when *rv is already an error; absent means empty (NULL and
 * *array_out NULL). On error *rv is set and *array_out is NULL. */
static void *
chaos_final_array(struct chaos_final_parse *ps, json_t *obj, const char *key,
    size_t item_size, size_t count_max, json_t **array_out, int *rv)
{
    *array_out = NULL;
    json_t *v  = *rv == MRD_OK ? json_object_get(obj, key) : NULL;
    if (v == NULL) {
        return NULL;
    }
    if (!json_is_array(v) || json_array_size(v) > count_max) {
        *rv = chaos_error_set(ps->err, MRD_EPROTO, 0,
            "%s: \"%s\" is not an array of at most %zu", ps->where, key,
            count_max);
        return NULL;
    }
    void *items = chaos_arena_alloc(ps->arena, json_array_size(v) * item_size);
    if (items == NULL) {
        *rv = MRD_EFULL;
        return NULL;
    }
    *array_out = v;
    return items;
}

static int
chaos_final_event(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_event *e)
{
    static const char *const keys[]
        = { "stream", "pos", "id", "dot", "shard", "log_seq", NULL };
    const char *dot   = NULL;
    uint64_t    shard = 0;
    if (!json_is_object(obj)) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, 0, "%s: not an object", ps->where);
    }
    int rv = chaos_final_keys(ps, obj, keys);
    rv     = rv != MRD_OK ? rv
                          : chaos_final_string(ps, obj, "stream", true, &e->stream);
    rv = rv != MRD_OK ? rv : chaos_final_string(ps, obj, "id", false, &e->id);
    rv = rv != MRD_OK ? rv : chaos_final_string(ps, obj, "dot", true, &dot);
    rv = rv != MRD_OK ? rv
                      : chaos_final_uint(ps, obj, "pos", true, &e->position);
    rv = rv != MRD_OK ? rv : chaos_final_uint(ps, obj, "shard", true, &shard);
    rv = rv != MRD_OK ? rv
                      : chaos_final_uint(ps, obj, "log_seq", true, &e->log_seq);
    if (rv != MRD_OK) {
        return rv;
    }
    if (!chaos_dot_parse(dot, &e->dot) || shard > UINT32_MAX) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, 0, "%s: bad \"dot\" or \"shard\"", ps->where);
    }
    e->shard = (uint32_t) shard;
    return MRD_OK;
}

static int
chaos_final_hex(struct chaos_final_parse *ps, const char *hex,
    struct chaos_stream_state *st)
{
    size_t size = strlen(hex);
    if (size % 2 != 0 || size / 2 > MRD_STATE_SIZE_MAX) {
        return chaos_error_set(ps->err, MRD_EPROTO, 0,
            "%s: \"doc\" is not hex of at most %u bytes", ps->where,
            MRD_STATE_SIZE_MAX);
    }
    uint8_t *doc = chaos_arena_alloc(ps->arena, size / 2);
    if (doc == NULL) {
        return MRD_EFULL;
    }
    for (size_t i = 0; i < size; i++) {
        const char *digits = "0123456789abcdef";
        const char *d      = strchr(digits, hex[i]);
        if (d == NULL) {
            return chaos_error_set(ps->err, MRD_EPROTO, 0,
                "%s: \"doc\" is not lowercase hex", ps->where);
        }
        doc[i / 2] = (uint8_t) (doc[i / 2] << 4 | (d - digits));
    }
    st->doc      = doc;
    st->doc_size = size / 2;
    return MRD_OK;
}

static int
chaos_final_counters(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_stream_state *st)
{
    json_t *v = json_object_get(obj, "counters");
    if (v == NULL) {
        return MRD_OK;
    }
    if (!json_is_object(v) || json_object_size(v) > CHAOS_STREAM_COUNTERS_MAX) {
        return chaos_error_set(ps->err, MRD_EPROTO, 0,
            "%s: \"counters\" is not an object of at most %u", ps->where,
            CHAOS_STREAM_COUNTERS_MAX);
    }
    struct chaos_counter *counters
        = chaos_arena_alloc(ps->arena, json_object_size(v) * sizeof(*counters));
    const char *field;
    json_t     *value;
    size_t      n = 0;
    if (counters == NULL) {
        return MRD_EFULL;
    }
    json_object_foreach(v, field, value)
    {
        counters[n].field
            = chaos_arena_strndup(ps->arena, field, strlen(field));
        counters[n].value = json_integer_value(value);
        if (!json_is_integer(value) || counters[n].field == NULL) {
            return counters[n].field == NULL
                ? MRD_EFULL
                : chaos_error_set(ps->err, MRD_EPROTO, 0,
                    "%s: counter \"%s\" is not an integer", ps->where, field);
        }
        n++;
    }
    st->counters      = counters;
    st->counter_count = n;
    return MRD_OK;
}

static int
chaos_final_state(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_stream_state *st)
{
    static const char *const keys[] = { "stream", "doc", "counters", NULL };
    const char              *hex    = NULL;
    if (!json_is_object(obj)) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, 0, "%s: not an object", ps->where);
    }
    int rv      = chaos_final_keys(ps, obj, keys);
    rv          = rv != MRD_OK
                 ? rv
                 : chaos_final_string(ps, obj, "stream", true, &st->stream);
    json_t *doc = json_object_get(obj, "doc"); /* hex, read in place */
    if (rv == MRD_OK && doc != NULL) {
        hex = json_string_value(doc);
        rv  = hex == NULL ? chaos_error_set(ps->err, MRD_EPROTO, 0,
                  "%s: \"doc\" is not a string", ps->where)
                          : chaos_final_hex(ps, hex, st);
    }
    return rv != MRD_OK ? rv : chaos_final_counters(ps, obj, st);
}

static int
chaos_final_node_lists(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_node_final *n)
{
    char                       where[96];
    json_t                    *events, *streams, *item;
    struct chaos_event        *ev = NULL;
    struct chaos_stream_state *st = NULL;
    size_t                     i;
    int                        rv = MRD_OK;
    ev                            = chaos_final_array(
                                   ps, obj, "events", sizeof(*ev), CHAOS_NODE_EVENTS_MAX, &events, &rv);
    st = chaos_final_array(
        ps, obj, "streams", sizeof(*st), CHAOS_STREAMS_MAX, &streams, &rv);
    if (rv != MRD_OK) {
        return rv;
    }
    ps->where = where;
    json_array_foreach(events, i, item)
    {
        snprintf(
            where, sizeof(where), "node %" PRIu64 " event %zu", n->node_id, i);
        rv = rv != MRD_OK ? rv : chaos_final_event(ps, item, &ev[i]);
    }
    json_array_foreach(streams, i, item)
    {
        snprintf(
            where, sizeof(where), "node %" PRIu64 " stream %zu", n->node_id, i);
        rv = rv != MRD_OK ? rv : chaos_final_state(ps, item, &st[i]);
    }
    n->events       = ev;
    n->event_count  = events == NULL ? 0 : json_array_size(events);
    n->streams      = st;
    n->stream_count = streams == NULL ? 0 : json_array_size(streams);
    return rv;
}

static int
chaos_final_node(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_node_final *n)
{
    static const char *const keys[]
        = { "node", "caught_up_t", "events", "streams", NULL };
    if (!json_is_object(obj)) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, 0, "%s: not an object", ps->where);
    }
    int rv           = chaos_final_keys(ps, obj, keys);
    rv               = rv != MRD_OK ? rv
                                    : chaos_final_uint(ps, obj, "node", true, &n->node_id);
    rv               = rv != MRD_OK
                      ? rv
                      : chaos_final_uint(ps, obj, "caught_up_t", false, &n->caught_up_us);
    n->has_caught_up = json_object_get(obj, "caught_up_t") != NULL;
    return rv != MRD_OK ? rv : chaos_final_node_lists(ps, obj, n);
}

static int
chaos_final_placement(
    struct chaos_final_parse *ps, json_t *obj, struct chaos_placement *p)
{
    static const char *const keys[] = { "stream", "nodes", NULL };
    uint64_t                *ids    = NULL;
    json_t                  *nodes, *item;
    size_t                   i;
    if (!json_is_object(obj)) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, 0, "%s: not an object", ps->where);
    }
    int rv = chaos_final_keys(ps, obj, keys);
    rv     = rv != MRD_OK ? rv
                          : chaos_final_string(ps, obj, "stream", true, &p->stream);
    ids    = chaos_final_array(
           ps, obj, "nodes", sizeof(*ids), CHAOS_NODES_MAX, &nodes, &rv);
    json_array_foreach(nodes, i, item)
    {
        if (rv == MRD_OK
            && (!json_is_integer(item) || json_integer_value(item) < 0)) {
            rv = chaos_error_set(ps->err, MRD_EPROTO, 0,
                "%s: a node id is not an integer >= 0", ps->where);
        }
        ids[i] = (uint64_t) json_integer_value(item);
    }
    p->node_ids   = ids;
    p->node_count = nodes == NULL ? 0 : json_array_size(nodes);
    return rv;
}

static int
chaos_final_root(
    struct chaos_final_parse *ps, json_t *root, struct chaos_final *out)
{
    static const char *const keys[]
        = { "heal_t", "placement", "wipes", "nodes", NULL };
    struct chaos_node_final *nodes  = NULL;
    struct chaos_placement  *places = NULL;
    struct chaos_wipe       *wipes  = NULL;
    json_t                  *jnodes, *jplaces, *jwipes, *item;
    char                     where[64];
    size_t                   i;
    ps->where = "top level";
    if (!json_is_object(root)) {
        return chaos_error_set(ps->err, MRD_EPROTO, 0, "not a JSON object");
    }
    int rv = chaos_final_keys(ps, root, keys);
    rv     = rv != MRD_OK
            ? rv
            : chaos_final_uint(ps, root, "heal_t", true, &out->heal_us);
    nodes  = chaos_final_array(
         ps, root, "nodes", sizeof(*nodes), CHAOS_NODES_MAX, &jnodes, &rv);
    places = chaos_final_array(ps, root, "placement", sizeof(*places),
        CHAOS_STREAMS_MAX, &jplaces, &rv);
    wipes  = chaos_final_array(
         ps, root, "wipes", sizeof(*wipes), CHAOS_WIPES_MAX, &jwipes, &rv);
    if (rv != MRD_OK) {
        return rv;
    }
    json_array_foreach(jwipes, i, item)
    {
        static const char *const wkeys[] = { "node", "t", NULL };
        snprintf(where, sizeof(where), "wipe #%zu", i);
        ps->where = where;
        if (rv == MRD_OK && !json_is_object(item)) {
            rv = chaos_error_set(
                ps->err, MRD_EPROTO, 0, "%s: not an object", ps->where);
        }
        rv = rv != MRD_OK ? rv : chaos_final_keys(ps, item, wkeys);
        rv = rv != MRD_OK
            ? rv
            : chaos_final_uint(ps, item, "node", true, &wipes[i].node_id);
        rv = rv != MRD_OK
            ? rv
            : chaos_final_uint(ps, item, "t", true, &wipes[i].t_us);
    }
    out->wipes      = wipes;
    out->wipe_count = jwipes == NULL ? 0 : json_array_size(jwipes);
    json_array_foreach(jnodes, i, item)
    {
        snprintf(where, sizeof(where), "node #%zu", i);
        ps->where = where;
        rv        = rv != MRD_OK ? rv : chaos_final_node(ps, item, &nodes[i]);
    }
    json_array_foreach(jplaces, i, item)
    {
        snprintf(where, sizeof(where), "placement #%zu", i);
        ps->where = where;
        rv = rv != MRD_OK ? rv : chaos_final_placement(ps, item, &places[i]);
    }
    out->nodes           = nodes;
    out->node_count      = jnodes == NULL ? 0 : json_array_size(jnodes);
    out->placements      = places;
    out->placement_count = jplaces == NULL ? 0 : json_array_size(jplaces);
    return rv;
}

int
chaos_final_load(const char *path, const struct chaos_limits *limits,
    struct chaos_error *err, struct chaos_final *out)
{
    struct chaos_limits defaults = chaos_limits_default();
    struct stat         sb;
    json_error_t        jerr;
    memset(out, 0, sizeof(*out));
    limits = limits == NULL ? &defaults : limits;
    if (stat(path, &sb) != 0) {
        return chaos_error_set(err, MRD_EIO, 0, "cannot stat %s", path);
    }
    if ((uint64_t) sb.st_size > CHAOS_FINAL_FILE_SIZE_MAX) {
        return chaos_error_set(err, MRD_EFULL, 0,
            "%s is larger than CHAOS_FINAL_FILE_SIZE_MAX", path);
    }
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return chaos_error_set(
            err, MRD_EPROTO, (uint64_t) jerr.line, "not JSON: %s", jerr.text);
    }
    struct chaos_final_parse ps = { .err = err };
    int                      rv = chaos_arena_new(limits->bytes_max, &ps.arena);
    if (rv == MRD_OK) {
        rv = chaos_final_root(&ps, root, out);
    }
    json_decref(root);
    if (rv == MRD_EFULL) {
        rv = chaos_error_set(
            err, rv, 0, "more than %zu bytes (bytes_max)", limits->bytes_max);
    }
    if (rv != MRD_OK) {
        chaos_arena_free(ps.arena);
        memset(out, 0, sizeof(*out));
        return rv;
    }
    out->arena = ps.arena;
    return MRD_OK;
}

void
chaos_final_free(struct chaos_final *f)
{
    if (f->arena == NULL) {
        return;
    }
    chaos_arena_free(f->arena);
    memset(f, 0, sizeof(*f));
}
