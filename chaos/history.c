/*
 * history.c: the chaos history's writer, its reader and the arena both
 * loaders of chaos/ share.
 *
 * The writer formats with jansson, so names with quotes or control bytes
 * come out as valid JSON, and writes each line under one mutex, stamping
 * the time there: lines never interleave and the file is in time order.
 *
 * The reader never trusts the file. A line is read by hand (bounded, NUL
 * refused), parsed by jansson with duplicate keys refused, mapped onto a
 * struct chaos_op that points into the JSON, and then goes through the same
 * chaos_ops_add() as a record built in memory: context-free validation,
 * time order and Jepsen's pairing (one outstanding operation per process).
 * Only then is it copied into the arena. Every error names its line.
 */
#include "history.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------- limits, errors -- */

struct chaos_limits
chaos_limits_default(void)
{
    struct chaos_limits limits = {
        .records_max   = CHAOS_RECORDS_HARD_MAX,
        .processes_max = CHAOS_PROCESSES_HARD_MAX,
        .line_size_max = CHAOS_LINE_SIZE_HARD_MAX,
        .bytes_max     = CHAOS_BYTES_HARD_MAX,
    };
    return limits;
}

int
chaos_limits_check(const struct chaos_limits *limits)
{
    if (limits->records_max == 0 || limits->records_max > CHAOS_RECORDS_HARD_MAX
        || limits->processes_max == 0
        || limits->processes_max > CHAOS_PROCESSES_HARD_MAX
        || limits->line_size_max == 0
        || limits->line_size_max > CHAOS_LINE_SIZE_HARD_MAX
        || limits->bytes_max == 0 || limits->bytes_max > CHAOS_BYTES_HARD_MAX) {
        return MRD_EINVAL;
    }
    return MRD_OK;
}

int
chaos_error_set(
    struct chaos_error *err, int code, uint64_t line, const char *fmt, ...)
{
    if (err == NULL) {
        return code;
    }
    err->line      = line;
    int     prefix = 0;
    va_list ap;
    if (line != 0) {
        prefix = snprintf(
            err->text, sizeof(err->text), "line %" PRIu64 ": ", line);
    }
    va_start(ap, fmt);
    vsnprintf(err->text + prefix, sizeof(err->text) - (size_t) prefix, fmt, ap);
    va_end(ap);
    return code;
}

/* -------------------------------------------------------------- names -- */

static const char *const chaos_type_names[] = {
    [CHAOS_TYPE_INVOKE] = "invoke",
    [CHAOS_TYPE_OK]     = "ok",
    [CHAOS_TYPE_FAIL]   = "fail",
    [CHAOS_TYPE_INFO]   = "info",
};
static const char *const chaos_f_names[] = {
    [CHAOS_F_APPEND] = "append",
    [CHAOS_F_READ]   = "read",
    [CHAOS_F_STATE]  = "state",
};
static const char *const chaos_ack_names[] = {
    [CHAOS_ACK_LOCAL]  = "local",
    [CHAOS_ACK_REGION] = "region",
    [CHAOS_ACK_GLOBAL] = "global",
};

static const char *
chaos_name_of(const char *const *names, size_t count, int value)
{
    if (value < 0 || (size_t) value >= count || names[value] == NULL) {
        return "?";
    }
    return names[value];
}

/* The enum value whose name is s, or -1. */
static int
chaos_name_find(const char *const *names, size_t count, const char *s)
{
    for (size_t i = 0; i < count; i++) {
        if (names[i] != NULL && strcmp(names[i], s) == 0) {
            return (int) i;
        }
    }
    return -1;
}

const char *
chaos_type_name(enum chaos_type type)
{
    return chaos_name_of(
        chaos_type_names, MRD_ARRAY_SIZE(chaos_type_names), (int) type);
}

const char *
chaos_f_name(enum chaos_f f)
{
    return chaos_name_of(chaos_f_names, MRD_ARRAY_SIZE(chaos_f_names), (int) f);
}

const char *
chaos_ack_name(enum chaos_ack ack)
{
    return chaos_name_of(
        chaos_ack_names, MRD_ARRAY_SIZE(chaos_ack_names), (int) ack);
}

bool
chaos_id_valid(const char *id)
{
    size_t size = strnlen(id, CHAOS_ID_SIZE_MAX + 1);
    if (size == 0 || size > CHAOS_ID_SIZE_MAX) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        if (id[i] < 0x21 || id[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* Strict decimal: digits only, no sign, no overflow. Returns the end. */
static const char *
chaos_u64_parse(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t   i = 0;
    for (; i < 20 && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t digit = (uint64_t) (s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return NULL;
        }
        v = v * 10 + digit;
    }
    if (i == 0) {
        return NULL;
    }
    *out = v;
    return s + i;
}

bool
chaos_dot_parse(const char *s, mrd_dot *dot_out)
{
    mrd_dot     dot;
    const char *p = chaos_u64_parse(s, &dot.origin);
    if (p == NULL || *p != ':') {
        return false;
    }
    p = chaos_u64_parse(p + 1, &dot.seq);
    if (p == NULL || *p != '\0') {
        return false;
    }
    *dot_out = dot;
    return true;
}

/* -------------------------------------------------------------- arena -- */

/* Chunks of this size serve small allocations; a larger one gets a chunk of
 * its own. 1 MiB keeps malloc calls rare and waste small. */
#define CHAOS_ARENA_CHUNK_SIZE (1024u * 1024u)

struct chaos_arena_chunk {
    struct chaos_arena_chunk *next;
    size_t                    size;
    size_t                    used;
    max_align_t               data[];
};

struct chaos_arena {
    struct chaos_arena_chunk *head;
    size_t                    bytes; /* chunk bytes allocated so far */
    size_t                    bytes_max;
    bool                      full; /* the last failure was the cap */
};

int
chaos_arena_new(size_t bytes_max, struct chaos_arena **out)
{
    *out                      = NULL;
    struct chaos_arena *arena = calloc(1, sizeof(*arena));
    if (arena == NULL) {
        return MRD_ENOMEM;
    }
    arena->bytes_max = bytes_max;
    *out             = arena;
    return MRD_OK;
}

void
chaos_arena_free(struct chaos_arena *arena)
{
    if (arena == NULL) {
        return;
    }
    struct chaos_arena_chunk *chunk = arena->head;
    while (chunk != NULL) {
        struct chaos_arena_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(arena);
}

bool
chaos_arena_full(const struct chaos_arena *arena)
{
    return arena->full;
}

void *
chaos_arena_alloc(struct chaos_arena *arena, size_t size)
{
    const size_t align   = sizeof(max_align_t);
    size_t       rounded = (size + align - 1) / align * align;
    if (rounded < size || rounded > arena->bytes_max) {
        arena->full = true;
        return NULL;
    }
    struct chaos_arena_chunk *chunk = arena->head;
    if (chunk == NULL || chunk->size - chunk->used < rounded) {
        size_t data_size = rounded > CHAOS_ARENA_CHUNK_SIZE
            ? rounded
            : CHAOS_ARENA_CHUNK_SIZE;
        if (data_size > arena->bytes_max - arena->bytes) {
            data_size = rounded; /* the cap may still fit this one */
        }
        if (arena->bytes + data_size > arena->bytes_max) {
            arena->full = true;
            return NULL;
        }
        chunk = calloc(1, sizeof(*chunk) + data_size);
        if (chunk == NULL) {
            return NULL;
        }
        chunk->size = data_size;
        chunk->next = arena->head;
        arena->head = chunk;
        arena->bytes += data_size;
    }
    void *p = (char *) chunk->data + chunk->used;
    chunk->used += rounded;
    MRD_ASSERT(chunk->used <= chunk->size);
    return p;
}

char *
chaos_arena_strndup(struct chaos_arena *arena, const char *s, size_t size)
{
    char *copy = chaos_arena_alloc(arena, size + 1);
    if (copy != NULL) {
        memcpy(copy, s, size);
        copy[size] = '\0';
    }
    return copy;
}

/* --------------------------------------------------------- validation -- */

static bool
chaos_name_valid(const char *s, size_t size_max)
{
    size_t size = strnlen(s, size_max + 1);
    return size > 0 && size <= size_max && mrd_utf8_valid(s, size);
}

/* The ids of a record: valid, and unique within an append (two events of
 * one append with one id would make the final state ambiguous). */
static int
chaos_op_validate_ids(const struct chaos_op *op, struct chaos_error *err)
{
    if (op->id_count > CHAOS_OP_IDS_MAX) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "%zu ids, more than CHAOS_OP_IDS_MAX (%u)", op->id_count,
            CHAOS_OP_IDS_MAX);
    }
    for (size_t i = 0; i < op->id_count; i++) {
        if (op->ids[i] == NULL || !chaos_id_valid(op->ids[i])) {
            return chaos_error_set(err, MRD_EINVAL, 0,
                "id %zu is not 1..%u bytes of printable ASCII", i,
                CHAOS_ID_SIZE_MAX);
        }
    }
    if (op->f != CHAOS_F_APPEND) {
        return MRD_OK;
    }
    if (op->id_count > MRD_APPEND_EVENTS_MAX
        || (op->type == CHAOS_TYPE_INVOKE && op->id_count == 0)) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "an append names 1..%u ids, not %zu", MRD_APPEND_EVENTS_MAX,
            op->id_count);
    }
    /* Quadratic, but an append has at most MRD_APPEND_EVENTS_MAX ids. */
    for (size_t i = 1; i < op->id_count; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(op->ids[i], op->ids[j]) == 0) {
                return chaos_error_set(err, MRD_EINVAL, 0,
                    "id \"%s\" twice in one append", op->ids[i]);
            }
        }
    }
    return MRD_OK;
}

static int
chaos_op_validate_counters(const struct chaos_op *op, struct chaos_error *err)
{
    bool is_ops    = op->f == CHAOS_F_APPEND && op->type == CHAOS_TYPE_INVOKE;
    bool is_values = op->f == CHAOS_F_STATE && op->type == CHAOS_TYPE_OK;
    if (op->counter_count > 0 && !is_ops && !is_values) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "counters only on an append's invoke or a state read's ok");
    }
    if (op->counter_count > CHAOS_OP_COUNTERS_MAX) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "%zu counters, more than CHAOS_OP_COUNTERS_MAX (%u)",
            op->counter_count, CHAOS_OP_COUNTERS_MAX);
    }
    for (size_t i = 0; i < op->counter_count; i++) {
        const struct chaos_counter *c = &op->counters[i];
        if (c->field == NULL
            || !chaos_name_valid(c->field, MRD_STATE_NAME_SIZE_MAX)) {
            return chaos_error_set(err, MRD_EINVAL, 0,
                "counter %zu: field name is not 1..%u bytes of UTF-8", i,
                MRD_STATE_NAME_SIZE_MAX);
        }
        if (is_ops
            && (c->value > CHAOS_COUNTER_DELTA_MAX
                || c->value < -CHAOS_COUNTER_DELTA_MAX)) {
            return chaos_error_set(err, MRD_EINVAL, 0,
                "counter \"%s\": |%" PRId64 "| > CHAOS_COUNTER_DELTA_MAX",
                c->field, c->value);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->field, op->counters[j].field) == 0) {
                return chaos_error_set(
                    err, MRD_EINVAL, 0, "counter \"%s\" twice", c->field);
            }
        }
    }
    return MRD_OK;
}

/* Which optional parts each kind of record may carry. */
static int
chaos_op_validate_shape(const struct chaos_op *op, struct chaos_error *err)
{
    bool invoke = op->type == CHAOS_TYPE_INVOKE;
    bool ok     = op->type == CHAOS_TYPE_OK;
    if (invoke && op->stream == NULL) {
        return chaos_error_set(err, MRD_EINVAL, 0, "an invoke needs a stream");
    }
    if (op->f == CHAOS_F_READ && op->id_count > 0 && !ok) {
        return chaos_error_set(
            err, MRD_EINVAL, 0, "a read carries ids only on its ok");
    }
    if (op->f == CHAOS_F_STATE && op->id_count > 0) {
        return chaos_error_set(err, MRD_EINVAL, 0, "a state read has no ids");
    }
    if ((op->has_dot || op->has_pos) && !(ok && op->f == CHAOS_F_APPEND)) {
        return chaos_error_set(
            err, MRD_EINVAL, 0, "\"dot\" and \"pos\" only on an append's ok");
    }
    if (op->err != NULL && op->type != CHAOS_TYPE_FAIL
        && op->type != CHAOS_TYPE_INFO) {
        return chaos_error_set(
            err, MRD_EINVAL, 0, "\"err\" only on fail or info");
    }
    return MRD_OK;
}

int
chaos_op_validate(const struct chaos_op *op, struct chaos_error *err)
{
    /* Through int: an enum's type may be unsigned, and the record may come
     * from a caller's uninitialised memory. */
    int type = (int) op->type, f = (int) op->f, ack = (int) op->ack;
    if (type < CHAOS_TYPE_INVOKE || type > CHAOS_TYPE_INFO || f < CHAOS_F_APPEND
        || f > CHAOS_F_STATE || ack < CHAOS_ACK_LOCAL
        || ack > CHAOS_ACK_GLOBAL) {
        return chaos_error_set(err, MRD_EINVAL, 0, "type, f or ack unknown");
    }
    if (op->stream != NULL
        && !chaos_name_valid(op->stream, MRD_STREAM_NAME_SIZE_MAX)) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "stream name is not 1..%u bytes of UTF-8",
            MRD_STREAM_NAME_SIZE_MAX);
    }
    if (op->err != NULL && !chaos_name_valid(op->err, CHAOS_ERR_SIZE_MAX)) {
        return chaos_error_set(err, MRD_EINVAL, 0,
            "\"err\" is not 1..%u bytes of UTF-8", CHAOS_ERR_SIZE_MAX);
    }
    int rv = chaos_op_validate_shape(op, err);
    if (rv == MRD_OK) {
        rv = chaos_op_validate_ids(op, err);
    }
    if (rv == MRD_OK) {
        rv = chaos_op_validate_counters(op, err);
    }
    return rv;
}

/* ------------------------------------------------------------- writer -- */

/* Sets key to value and takes the reference; false when out of memory. */
static bool
chaos_json_put(json_t *obj, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(obj, key, value) == 0;
}

static bool
chaos_op_json_ids(json_t *obj, const struct chaos_op *op)
{
    if (op->id_count == 0) {
        return true;
    }
    if (op->f == CHAOS_F_APPEND && op->id_count == 1) {
        return chaos_json_put(obj, "id", json_string(op->ids[0]));
    }
    json_t *ids = json_array();
    if (!chaos_json_put(obj, "ids", ids)) {
        return false;
    }
    for (size_t i = 0; i < op->id_count; i++) {
        if (json_array_append_new(ids, json_string(op->ids[i])) != 0) {
            return false;
        }
    }
    return true;
}

static bool
chaos_op_json_optional(json_t *obj, const struct chaos_op *op)
{
    char dot[48];
    if (op->f == CHAOS_F_APPEND && op->type == CHAOS_TYPE_INVOKE
        && !chaos_json_put(obj, "ack", json_string(chaos_ack_name(op->ack)))) {
        return false;
    }
    if (op->has_dot) {
        snprintf(dot, sizeof(dot), "%" PRIu64 ":%" PRIu64, op->dot.origin,
            op->dot.seq);
        if (!chaos_json_put(obj, "dot", json_string(dot))) {
            return false;
        }
    }
    if (op->has_pos
        && !chaos_json_put(obj, "pos", json_integer((json_int_t) op->pos))) {
        return false;
    }
    if (op->counter_count > 0) {
        json_t *counters = json_object();
        if (!chaos_json_put(
                obj, op->f == CHAOS_F_STATE ? "values" : "ops", counters)) {
            return false;
        }
        for (size_t i = 0; i < op->counter_count; i++) {
            if (!chaos_json_put(counters, op->counters[i].field,
                    json_integer(op->counters[i].value))) {
                return false;
            }
        }
    }
    return op->err == NULL || chaos_json_put(obj, "err", json_string(op->err));
}

int
chaos_op_format(const struct chaos_op *op, char **line_out)
{
    *line_out = NULL;
    int rv    = chaos_op_validate(op, NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    /* "t", "pos" and seqs beyond INT64_MAX cannot be JSON integers here. */
    if (op->t_us > INT64_MAX || op->pos > INT64_MAX) {
        return MRD_EINVAL;
    }
    json_t *obj = json_object();
    bool    ok  = obj != NULL
        && chaos_json_put(obj, "t", json_integer((json_int_t) op->t_us))
        && chaos_json_put(obj, "p", json_integer(op->process))
        && chaos_json_put(obj, "type", json_string(chaos_type_name(op->type)))
        && chaos_json_put(obj, "f", json_string(chaos_f_name(op->f)))
        && (op->stream == NULL
            || chaos_json_put(obj, "stream", json_string(op->stream)))
        && chaos_op_json_ids(obj, op) && chaos_op_json_optional(obj, op);
    if (ok) {
        *line_out = json_dumps(obj, JSON_COMPACT);
    }
    json_decref(obj);
    if (*line_out == NULL) {
        return MRD_ENOMEM;
    }
    MRD_ASSERT(strlen(*line_out) <= CHAOS_LINE_SIZE_HARD_MAX); /* see limits */
    return MRD_OK;
}

struct chaos_history {
    pthread_mutex_t lock;
    FILE           *file;
    uint64_t        start_us; /* "t" = now - start_us */
    bool            broken; /* a write failed: the file has a torn line */
};

int
chaos_history_open(const char *path, struct chaos_history **out)
{
    *out                    = NULL;
    struct chaos_history *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return MRD_ENOMEM;
    }
    h->file = fopen(path, "w");
    if (h->file == NULL) {
        free(h);
        return MRD_EIO;
    }
    int rv = pthread_mutex_init(&h->lock, NULL);
    MRD_ASSERT(rv == 0); /* only fails for lack of resources at startup */
    h->start_us = mrd_now_mono_us();
    *out        = h;
    return MRD_OK;
}

int
chaos_history_append(
    struct chaos_history *h, const struct chaos_op *op, uint64_t *t_us_out)
{
    struct chaos_op stamped = *op;
    char           *line    = NULL;
    int             rv      = MRD_OK;
    pthread_mutex_lock(&h->lock);
    stamped.t_us = mrd_now_mono_us() - h->start_us;
    if (h->broken) {
        rv = MRD_EIO;
        goto done;
    }
    rv = chaos_op_format(&stamped, &line);
    if (rv != MRD_OK) {
        goto done;
    }
    if (fputs(line, h->file) == EOF || fputc('\n', h->file) == EOF
        || fflush(h->file) != 0) {
        h->broken = true;
        rv        = MRD_EIO;
        goto done;
    }
    if (t_us_out != NULL) {
        *t_us_out = stamped.t_us;
    }
done:
    pthread_mutex_unlock(&h->lock);
    free(line);
    return rv;
}

int
chaos_history_close(struct chaos_history *h)
{
    if (h == NULL) {
        return MRD_OK;
    }
    int rv = fclose(h->file) == 0 && !h->broken ? MRD_OK : MRD_EIO;
    pthread_mutex_destroy(&h->lock);
    free(h);
    return rv;
}

/* -------------------------------------------------- history in memory -- */

/* The records array starts here and doubles up to records_max. */
#define CHAOS_OPS_INITIAL 1024u

struct chaos_ops {
    struct chaos_limits limits;
    struct chaos_arena *arena; /* every string and array of every record */
    struct chaos_op    *ops;
    size_t             *completion; /* per record, see chaos_ops_completion */
    size_t              count;
    size_t              capacity;
    size_t             *pending; /* per process: its open invoke or NONE */
    /* Scratch for chaos_ops_add_line: one record's pointers into its JSON. */
    const char          **scratch_ids; /* CHAOS_OP_IDS_MAX */
    struct chaos_counter *scratch_counters; /* CHAOS_OP_COUNTERS_MAX */
};

int
chaos_ops_new(const struct chaos_limits *limits, struct chaos_ops **out)
{
    *out                         = NULL;
    struct chaos_limits defaults = chaos_limits_default();
    if (limits == NULL) {
        limits = &defaults;
    }
    if (chaos_limits_check(limits) != MRD_OK) {
        return MRD_EINVAL;
    }
    struct chaos_ops *ops = calloc(1, sizeof(*ops));
    if (ops == NULL) {
        return MRD_ENOMEM;
    }
    ops->limits      = *limits;
    ops->pending     = malloc(limits->processes_max * sizeof(size_t));
    ops->scratch_ids = calloc(CHAOS_OP_IDS_MAX, sizeof(char *));
    ops->scratch_counters
        = calloc(CHAOS_OP_COUNTERS_MAX, sizeof(struct chaos_counter));
    if (ops->pending == NULL || ops->scratch_ids == NULL
        || ops->scratch_counters == NULL
        || chaos_arena_new(limits->bytes_max, &ops->arena) != MRD_OK) {
        chaos_ops_free(ops);
        return MRD_ENOMEM;
    }
    for (size_t p = 0; p < limits->processes_max; p++) {
        ops->pending[p] = CHAOS_NONE;
    }
    *out = ops;
    return MRD_OK;
}

void
chaos_ops_free(struct chaos_ops *ops)
{
    if (ops == NULL) {
        return;
    }
    chaos_arena_free(ops->arena);
    free(ops->ops);
    free(ops->completion);
    free(ops->pending);
    free(ops->scratch_ids);
    free(ops->scratch_counters);
    free(ops);
}

size_t
chaos_ops_count(const struct chaos_ops *ops)
{
    return ops->count;
}

const struct chaos_op *
chaos_ops_at(const struct chaos_ops *ops, size_t index)
{
    return index < ops->count ? &ops->ops[index] : NULL;
}

size_t
chaos_ops_completion(const struct chaos_ops *ops, size_t index)
{
    return index < ops->count ? ops->completion[index] : CHAOS_NONE;
}

/* Room for one more record: doubles, capped at records_max. */
static int
chaos_ops_reserve(struct chaos_ops *ops, struct chaos_error *err)
{
    if (ops->count >= ops->limits.records_max) {
        return chaos_error_set(err, MRD_EFULL, ops->count + 1,
            "more than %zu records (records_max)", ops->limits.records_max);
    }
    if (ops->count < ops->capacity) {
        return MRD_OK;
    }
    size_t capacity
        = ops->capacity == 0 ? CHAOS_OPS_INITIAL : ops->capacity * 2;
    if (capacity > ops->limits.records_max) {
        capacity = ops->limits.records_max;
    }
    struct chaos_op *grown = realloc(ops->ops, capacity * sizeof(*grown));
    if (grown == NULL) {
        return MRD_ENOMEM;
    }
    ops->ops = grown;
    size_t *completion
        = realloc(ops->completion, capacity * sizeof(*completion));
    if (completion == NULL) {
        return MRD_ENOMEM;
    }
    ops->completion = completion;
    ops->capacity   = capacity;
    return MRD_OK;
}

/* A completion must answer the process's open invoke, and what it repeats
 * (stream, ids) must be what the invoke said. */
static int
chaos_ops_check_pairing(const struct chaos_ops *ops, const struct chaos_op *op,
    struct chaos_error *err)
{
    uint64_t line = ops->count + 1;
    size_t   open = ops->pending[op->process];
    if (op->type == CHAOS_TYPE_INVOKE) {
        if (open != CHAOS_NONE) {
            return chaos_error_set(err, MRD_EINVAL, line,
                "process %" PRIu32 " invokes while record %zu is open",
                op->process, open + 1);
        }
        return MRD_OK;
    }
    if (open == CHAOS_NONE) {
        return chaos_error_set(err, MRD_EINVAL, line,
            "%s of process %" PRIu32 ", which has nothing open",
            chaos_type_name(op->type), op->process);
    }
    const struct chaos_op *inv = &ops->ops[open];
    if (inv->f != op->f
        || (op->stream != NULL && strcmp(op->stream, inv->stream) != 0)) {
        return chaos_error_set(err, MRD_EINVAL, line,
            "completes record %zu with another \"f\" or \"stream\"", open + 1);
    }
    if (op->f != CHAOS_F_APPEND || op->id_count == 0) {
        return MRD_OK;
    }
    bool same = op->id_count == inv->id_count;
    for (size_t i = 0; same && i < op->id_count; i++) {
        same = strcmp(op->ids[i], inv->ids[i]) == 0;
    }
    if (!same) {
        return chaos_error_set(err, MRD_EINVAL, line,
            "ids differ from those of record %zu", open + 1);
    }
    return MRD_OK;
}

static const char *
chaos_ops_strdup(struct chaos_ops *ops, const char *s)
{
    return s == NULL ? NULL : chaos_arena_strndup(ops->arena, s, strlen(s));
}

/* Copies op's strings and arrays into the arena; false when full. */
static bool
chaos_ops_copy(
    struct chaos_ops *ops, const struct chaos_op *op, struct chaos_op *copy)
{
    *copy        = *op;
    copy->stream = chaos_ops_strdup(ops, op->stream);
    copy->err    = chaos_ops_strdup(ops, op->err);
    const char **ids
        = chaos_arena_alloc(ops->arena, op->id_count * sizeof(char *));
    struct chaos_counter *counters
        = chaos_arena_alloc(ops->arena, op->counter_count * sizeof(*counters));
    if ((op->stream != NULL && copy->stream == NULL)
        || (op->err != NULL && copy->err == NULL) || ids == NULL
        || counters == NULL) {
        return false;
    }
    for (size_t i = 0; i < op->id_count; i++) {
        ids[i] = chaos_ops_strdup(ops, op->ids[i]);
        if (ids[i] == NULL) {
            return false;
        }
    }
    for (size_t i = 0; i < op->counter_count; i++) {
        counters[i].value = op->counters[i].value;
        counters[i].field = chaos_ops_strdup(ops, op->counters[i].field);
        if (counters[i].field == NULL) {
            return false;
        }
    }
    copy->ids      = ids;
    copy->counters = counters;
    return true;
}

int
chaos_ops_add(
    struct chaos_ops *ops, const struct chaos_op *op, struct chaos_error *err)
{
    uint64_t           line = ops->count + 1;
    struct chaos_error why;
    int                rv = chaos_op_validate(op, &why);
    if (rv != MRD_OK) {
        return chaos_error_set(err, rv, line, "%s", why.text);
    }
    if (op->process >= ops->limits.processes_max) {
        return chaos_error_set(err, MRD_EFULL, line,
            "process %" PRIu32 " >= %zu (processes_max)", op->process,
            ops->limits.processes_max);
    }
    if (ops->count > 0 && op->t_us < ops->ops[ops->count - 1].t_us) {
        return chaos_error_set(err, MRD_EINVAL, line, "\"t\" goes backwards");
    }
    rv = chaos_ops_check_pairing(ops, op, err);
    if (rv == MRD_OK) {
        rv = chaos_ops_reserve(ops, err);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    if (!chaos_ops_copy(ops, op, &ops->ops[ops->count])) {
        if (!chaos_arena_full(ops->arena)) {
            return MRD_ENOMEM;
        }
        return chaos_error_set(err, MRD_EFULL, line,
            "more than %zu bytes of records (bytes_max)",
            ops->limits.bytes_max);
    }
    ops->completion[ops->count] = CHAOS_NONE;
    size_t *open                = &ops->pending[op->process];
    if (op->type == CHAOS_TYPE_INVOKE) {
        *open = ops->count;
    } else {
        ops->completion[*open] = ops->count;
        *open                  = CHAOS_NONE;
    }
    ops->count++;
    return MRD_OK;
}

/* ---------------------------------------------------------- the reader -- */

/* One line being mapped onto a record: which keys came, for the checks
 * that a struct chaos_op cannot express ("ack" given, "ops" vs "values"). */
struct chaos_parse {
    struct chaos_ops   *ops;
    struct chaos_error *err;
    struct chaos_op     op;
    uint64_t            line;
    bool                has_t, has_p, has_type, has_f, has_ack;
    const char         *counters_key; /* "ops", "values" or NULL */
};

static int
chaos_parse_uint(
    struct chaos_parse *ps, const char *key, json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"%s\" is not an integer >= 0", key);
    }
    *out = (uint64_t) json_integer_value(v);
    return MRD_OK;
}

/* A string without NUL; *out points into v. */
static int
chaos_parse_string(
    struct chaos_parse *ps, const char *key, json_t *v, const char **out)
{
    if (!json_is_string(v)
        || strlen(json_string_value(v)) != json_string_length(v)) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"%s\" is not a string without NUL", key);
    }
    *out = json_string_value(v);
    return MRD_OK;
}

/* "type", "f" and "ack": one of the enum's names. */
static int
chaos_parse_enum(struct chaos_parse *ps, const char *key, json_t *v,
    const char *const *names, size_t count, int *out)
{
    const char *s  = NULL;
    int         rv = chaos_parse_string(ps, key, v, &s);
    if (rv != MRD_OK) {
        return rv;
    }
    *out = chaos_name_find(names, count, s);
    if (*out < 0) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, ps->line, "\"%s\" has an unknown value", key);
    }
    return MRD_OK;
}

static int
chaos_parse_ids(struct chaos_parse *ps, const char *key, json_t *v)
{
    if (ps->op.id_count > 0) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, ps->line, "both \"id\" and \"ids\"");
    }
    if (strcmp(key, "id") == 0) {
        ps->op.id_count = 1;
        return chaos_parse_string(ps, key, v, &ps->ops->scratch_ids[0]);
    }
    if (!json_is_array(v) || json_array_size(v) > CHAOS_OP_IDS_MAX) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"ids\" is not an array of at most %u ids", CHAOS_OP_IDS_MAX);
    }
    size_t  i;
    json_t *id;
    json_array_foreach(v, i, id)
    {
        int rv = chaos_parse_string(ps, key, id, &ps->ops->scratch_ids[i]);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    ps->op.id_count = json_array_size(v);
    return MRD_OK;
}

static int
chaos_parse_counters(struct chaos_parse *ps, const char *key, json_t *v)
{
    if (ps->counters_key != NULL) {
        return chaos_error_set(
            ps->err, MRD_EPROTO, ps->line, "both \"ops\" and \"values\"");
    }
    if (!json_is_object(v) || json_object_size(v) > CHAOS_OP_COUNTERS_MAX) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"%s\" is not an object of at most %u counters", key,
            CHAOS_OP_COUNTERS_MAX);
    }
    const char *field;
    json_t     *value;
    size_t      n = 0;
    json_object_foreach(v, field, value)
    {
        if (!json_is_integer(value)) {
            return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
                "\"%s\": counter \"%s\" is not an integer", key, field);
        }
        ps->ops->scratch_counters[n].field = field;
        ps->ops->scratch_counters[n].value = json_integer_value(value);
        n++;
    }
    ps->counters_key     = key;
    ps->op.counter_count = n;
    return MRD_OK;
}

static int
chaos_parse_dot(struct chaos_parse *ps, const char *key, json_t *v)
{
    const char *s  = NULL;
    int         rv = chaos_parse_string(ps, key, v, &s);
    if (rv == MRD_OK && !chaos_dot_parse(s, &ps->op.dot)) {
        rv = chaos_error_set(
            ps->err, MRD_EPROTO, ps->line, "\"dot\" is not \"origin:seq\"");
    }
    ps->op.has_dot = rv == MRD_OK;
    return rv;
}

static int
chaos_parse_key(struct chaos_parse *ps, const char *key, json_t *v)
{
    struct chaos_op *op = &ps->op;
    uint64_t         u  = 0;
    int              rv = MRD_OK, e = 0;
    if (strcmp(key, "t") == 0) {
        rv        = chaos_parse_uint(ps, key, v, &op->t_us);
        ps->has_t = true;
    } else if (strcmp(key, "p") == 0) {
        rv = chaos_parse_uint(ps, key, v, &u);
        if (rv == MRD_OK && u >= ps->ops->limits.processes_max) {
            rv = chaos_error_set(ps->err, MRD_EFULL, ps->line,
                "\"p\" >= %zu (processes_max)", ps->ops->limits.processes_max);
        }
        op->process = (uint32_t) u;
        ps->has_p   = true;
    } else if (strcmp(key, "type") == 0) {
        rv = chaos_parse_enum(
            ps, key, v, chaos_type_names, MRD_ARRAY_SIZE(chaos_type_names), &e);
        op->type     = (enum chaos_type) e;
        ps->has_type = true;
    } else if (strcmp(key, "f") == 0) {
        rv = chaos_parse_enum(
            ps, key, v, chaos_f_names, MRD_ARRAY_SIZE(chaos_f_names), &e);
        op->f     = (enum chaos_f) e;
        ps->has_f = true;
    } else if (strcmp(key, "ack") == 0) {
        rv = chaos_parse_enum(
            ps, key, v, chaos_ack_names, MRD_ARRAY_SIZE(chaos_ack_names), &e);
        op->ack     = (enum chaos_ack) e;
        ps->has_ack = true;
    } else if (strcmp(key, "stream") == 0) {
        rv = chaos_parse_string(ps, key, v, &op->stream);
    } else if (strcmp(key, "err") == 0) {
        rv = chaos_parse_string(ps, key, v, &op->err);
    } else if (strcmp(key, "id") == 0 || strcmp(key, "ids") == 0) {
        rv = chaos_parse_ids(ps, key, v);
    } else if (strcmp(key, "ops") == 0 || strcmp(key, "values") == 0) {
        rv = chaos_parse_counters(ps, key, v);
    } else if (strcmp(key, "dot") == 0) {
        rv = chaos_parse_dot(ps, key, v);
    } else if (strcmp(key, "pos") == 0) {
        rv          = chaos_parse_uint(ps, key, v, &op->pos);
        op->has_pos = true;
    } else {
        rv = chaos_error_set(
            ps->err, MRD_EPROTO, ps->line, "unknown key \"%s\"", key);
    }
    return rv;
}

/* The checks that need to know which keys came. */
static int
chaos_parse_finish(struct chaos_parse *ps)
{
    const struct chaos_op *op = &ps->op;
    if (!ps->has_t || !ps->has_p || !ps->has_type || !ps->has_f) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"t\", \"p\", \"type\" and \"f\" are required");
    }
    bool append_invoke
        = op->f == CHAOS_F_APPEND && op->type == CHAOS_TYPE_INVOKE;
    if (ps->has_ack && !append_invoke) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"ack\" only on an append's invoke");
    }
    const char *want = op->f == CHAOS_F_STATE ? "values" : "ops";
    if (ps->counters_key != NULL && strcmp(ps->counters_key, want) != 0) {
        return chaos_error_set(ps->err, MRD_EPROTO, ps->line,
            "\"%s\" on a %s record", ps->counters_key, chaos_f_name(op->f));
    }
    return MRD_OK;
}

int
chaos_ops_add_line(struct chaos_ops *ops, const char *line, size_t line_size,
    struct chaos_error *err)
{
    struct chaos_parse ps = {
        .ops  = ops,
        .err  = err,
        .line = ops->count + 1,
        .op   = { .ids = ops->scratch_ids, .counters = ops->scratch_counters },
    };
    json_error_t jerr;
    json_t *obj = json_loadb(line, line_size, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        json_decref(obj);
        return chaos_error_set(err, MRD_EPROTO, ps.line,
            "not a JSON object: %s", obj == NULL ? jerr.text : "");
    }
    const char *key;
    json_t     *value;
    int         rv = MRD_OK;
    json_object_foreach(obj, key, value)
    {
        rv = chaos_parse_key(&ps, key, value);
        if (rv != MRD_OK) {
            break;
        }
    }
    if (rv == MRD_OK) {
        rv = chaos_parse_finish(&ps);
    }
    if (rv == MRD_OK) {
        rv = chaos_ops_add(ops, &ps.op, err);
    }
    json_decref(obj);
    return rv;
}

/* Reads one line into buf (without its newline). Returns 1 for a line, 0 at
 * the end of the file, or an error: MRD_EFULL when longer than size_max,
 * MRD_EPROTO for a NUL byte, MRD_EIO. Bounded by size_max + 1 bytes. */
static int
chaos_line_read(FILE *file, char *buf, size_t size_max, size_t *size_out)
{
    size_t size = 0;
    int    c    = EOF;
    for (size_t i = 0; i <= size_max; i++) {
        c = getc_unlocked(file);
        if (c == EOF || c == '\n') {
            break;
        }
        if (c == '\0') {
            return MRD_EPROTO;
        }
        buf[size++] = (char) c;
    }
    if (c != EOF && c != '\n') {
        return MRD_EFULL;
    }
    if (c == EOF && ferror(file)) {
        return MRD_EIO;
    }
    *size_out = size;
    return c == EOF && size == 0 ? 0 : 1;
}

static int
chaos_ops_read_file(
    FILE *file, struct chaos_ops *ops, char *buf, struct chaos_error *err)
{
    const size_t size_max = ops->limits.line_size_max;
    /* One pass per line; the loop ends at EOF or at records_max + 1 lines,
     * where chaos_ops_add refuses. */
    for (size_t n = 0; n <= ops->limits.records_max; n++) {
        uint64_t line = ops->count + 1;
        size_t   size = 0;
        int      rv   = chaos_line_read(file, buf, size_max, &size);
        if (rv == 0) {
            return MRD_OK;
        }
        if (rv == MRD_EFULL) {
            return chaos_error_set(err, rv, line,
                "longer than %zu bytes (line_size_max)", size_max);
        }
        if (rv == MRD_EPROTO || rv == MRD_EIO) {
            return chaos_error_set(
                err, rv, line, "%s", rv == MRD_EIO ? "read error" : "NUL byte");
        }
        if (size == 0) {
            return chaos_error_set(err, MRD_EPROTO, line, "empty line");
        }
        rv = chaos_ops_add_line(ops, buf, size, err);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    return chaos_error_set(err, MRD_EFULL, ops->count + 1,
        "more than %zu records (records_max)", ops->limits.records_max);
}

int
chaos_ops_load(const char *path, const struct chaos_limits *limits,
    struct chaos_error *err, struct chaos_ops **out)
{
    *out                   = NULL;
    struct chaos_ops *ops  = NULL;
    char             *buf  = NULL;
    FILE             *file = NULL;
    int               rv   = chaos_ops_new(limits, &ops);
    if (rv != MRD_OK) {
        return chaos_error_set(err, rv, 0, "bad limits or out of memory");
    }
    buf  = malloc(ops->limits.line_size_max + 1);
    file = fopen(path, "r");
    if (buf == NULL || file == NULL) {
        rv = chaos_error_set(
            err, buf == NULL ? MRD_ENOMEM : MRD_EIO, 0, "cannot open %s", path);
        goto fail;
    }
    flockfile(file); /* for getc_unlocked: one thread reads this FILE */
    rv = chaos_ops_read_file(file, ops, buf, err);
    funlockfile(file);
    if (rv != MRD_OK) {
        goto fail;
    }
    fclose(file);
    free(buf);
    *out = ops;
    return MRD_OK;
fail:
    if (file != NULL) {
        fclose(file);
    }
    free(buf);
    chaos_ops_free(ops);
    return rv;
}
