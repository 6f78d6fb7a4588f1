/*
 * cmd_append.c: `meridianctl append STREAM --type TYPE ...`.
 *
 * Builds one mrd_event_in from the options and appends it, or --count copies
 * of it in one atomic append (for demos and quick load). Data comes from
 * --data, --data-file or stdin, read into one buffer capped at
 * MRD_EVENT_DATA_SIZE_MAX + 1 bytes so that too-big input is refused without
 * reading it all. Field limits are the library's to check: it refuses with
 * the precise code (MRD_ETOOBIG, MRD_EINVAL, MRD_ENAME) before anything is
 * sent, and we report that code.
 *
 * The result is printed only after mrd_append() returned MRD_OK: a timeout
 * is reported as what it is (MRD_ETIMEDOUT: the outcome is unknown), never
 * as a success.
 *
 * --op SPEC adds an op on the stream's state to the event (every copy of it
 * with --count). ctl_op_parse() turns SPEC into an mrd_op at parse time, so
 * a malformed SPEC is a usage error (exit 2) that quotes it; what only the
 * node knows (a field of another type: MRD_ETYPE) is the append's error.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The copies of --count point at the same strings and data: one array of
 * headers, sized by the protocol's limit, allocated once. */
static mrd_event_in   ctl_append_events[MRD_APPEND_EVENTS_MAX];
static mrd_meta_entry ctl_append_meta[MRD_META_ENTRIES_MAX];
static mrd_op         ctl_append_ops[MRD_STATE_OPS_MAX];

/* ------------------------------------------------------------------- ops -- */

/* Longest part of a SPEC quoted in an error: a VALUE may be 4 KiB. */
#define CTL_OP_QUOTE_MAX 80

static int
ctl_op_fail(const char *spec, const char *why)
{
    size_t len = strlen(spec);
    if (len > CTL_OP_QUOTE_MAX) {
        return ctl_fail_usage(
            "--op '%.*s...': %s", CTL_OP_QUOTE_MAX, spec, why);
    }
    return ctl_fail_usage("--op '%s': %s", spec, why);
}

/* Splits PATH, the first len bytes of spec, at its dots: each name is
 * copied, NUL-terminated, into op->names. */
static int
ctl_op_path(const char *spec, size_t len, struct ctl_op *op)
{
    char  *out   = op->names;
    size_t count = 0;
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && spec[i] != '.') {
            continue;
        }
        size_t name_len = i - start;
        if (name_len == 0) {
            return ctl_op_fail(spec, "empty name in PATH");
        }
        if (count == MRD_STATE_PATH_MAX) {
            return ctl_op_fail(spec, "PATH has more than 8 names");
        }
        if (name_len > MRD_STATE_NAME_SIZE_MAX) {
            return ctl_op_fail(spec, "a name in PATH is over 255 bytes");
        }
        if (!mrd_utf8_valid(spec + start, name_len)) {
            return ctl_op_fail(spec, "a name in PATH is not valid UTF-8");
        }
        memcpy(out, spec + start, name_len);
        out[name_len]     = '\0';
        op->path[count++] = out;
        out += name_len + 1;
        start = i + 1;
    }
    op->op.path     = op->path;
    op->op.path_len = count;
    return CTL_EXIT_OK;
}

/* A whole signed decimal number, sign optional. */
static bool
ctl_op_int(const char *s, int64_t *out)
{
    const char *digits = s + (s[0] == '+' || s[0] == '-');
    char       *end    = NULL;

    if (digits[0] < '0' || digits[0] > '9') {
        return false;
    }
    errno       = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = (int64_t) v;
    return true;
}

static int
ctl_op_type(const char *s, size_t len)
{
    static const int types[] = { MRD_STATE_COUNTER, MRD_STATE_LWW,
        MRD_STATE_MVREG, MRD_STATE_FLAG, MRD_STATE_SET };

    for (size_t i = 0; i < MRD_ARRAY_SIZE(types); i++) {
        const char *name = mrd_state_type_name(types[i]);
        if (strlen(name) == len && memcmp(name, s, len) == 0) {
            return types[i];
        }
    }
    return 0;
}

/* OP[:ARG] of a type: name is OP (len bytes), arg what follows its ':'
 * (NULL when none). */
static const char *
ctl_op_kind(struct ctl_op *op, const char *name, size_t len, const char *arg)
{
    mrd_op *o = &op->op;
#define CTL_OP_IS(s) (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
    switch (o->type) {
    case MRD_STATE_COUNTER:
        o->kind = MRD_OP_INC;
        if (arg == NULL && (name[0] == '+' || name[0] == '-')
            && ctl_op_int(name, &o->delta)) {
            return NULL;
        }
        if (arg != NULL && CTL_OP_IS("inc") && ctl_op_int(arg, &o->delta)) {
            return NULL;
        }
        return "a counter takes +N, -N or inc:N (N a 64-bit integer)";
    case MRD_STATE_LWW:
    case MRD_STATE_MVREG:
        o->kind = MRD_OP_SET;
        return arg != NULL && CTL_OP_IS("set") ? NULL
                                               : "a register takes set:VALUE";
    case MRD_STATE_FLAG:
        o->kind = CTL_OP_IS("enable") ? MRD_OP_ENABLE : MRD_OP_DISABLE;
        return arg == NULL && (CTL_OP_IS("enable") || CTL_OP_IS("disable"))
            ? NULL
            : "a flag takes enable or disable";
    default:
        MRD_ASSERT(o->type == MRD_STATE_SET);
        o->kind = CTL_OP_IS("add") ? MRD_OP_ADD : MRD_OP_REMOVE;
        return arg != NULL && (CTL_OP_IS("add") || CTL_OP_IS("remove"))
            ? NULL
            : "a set takes add:VALUE or remove:VALUE";
    }
#undef CTL_OP_IS
}

int
ctl_op_parse(const char *spec, struct ctl_op *op)
{
    const char *colon = strchr(spec, ':');

    memset(op, 0, sizeof *op);
    if (colon == NULL) {
        return ctl_op_fail(spec, "not PATH:TYPE:OP[:ARG] or PATH:delete");
    }
    int rv = ctl_op_path(spec, (size_t) (colon - spec), op);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    const char *type = colon + 1;
    if (strcmp(type, "delete") == 0) {
        op->op.type = 0;
        op->op.kind = MRD_OP_DELETE;
        return CTL_EXIT_OK;
    }
    const char *name = strchr(type, ':');
    if (name == NULL) {
        return ctl_op_fail(spec, "no OP after TYPE (or is it PATH:delete?)");
    }
    op->op.type = ctl_op_type(type, (size_t) (name - type));
    if (op->op.type == 0) {
        return ctl_op_fail(
            spec, "TYPE is not counter, lww, mvreg, flag or set");
    }
    name++;
    const char *arg = strchr(name, ':'); /* VALUE may hold more ':' */
    size_t      len = arg != NULL ? (size_t) (arg - name) : strlen(name);
    const char *why = ctl_op_kind(op, name, len, arg != NULL ? arg + 1 : NULL);
    if (why != NULL) {
        return ctl_op_fail(spec, why);
    }
    if (op->op.kind == MRD_OP_SET || op->op.kind == MRD_OP_ADD
        || op->op.kind == MRD_OP_REMOVE) {
        op->op.value      = arg + 1;
        op->op.value_size = strlen(arg + 1);
        if (op->op.value_size > MRD_STATE_VALUE_SIZE_MAX) {
            return ctl_op_fail(spec, "VALUE is over 4096 bytes");
        }
    }
    return CTL_EXIT_OK;
}

/* ---------------------------------------------------------------- append -- */

/* Reads all of f into a new buffer of at most MRD_EVENT_DATA_SIZE_MAX bytes.
 * On success *buf_out goes to free(). */
static int
ctl_data_slurp(FILE *f, const char *name, char **buf_out, size_t *size_out)
{
    size_t cap  = (size_t) MRD_EVENT_DATA_SIZE_MAX + 1; /* +1 sees "too big" */
    char  *buf  = malloc(cap);
    size_t size = 0;

    if (buf == NULL) {
        return ctl_fail_mrd(MRD_ENOMEM, "read %s", name);
    }
    while (size < cap) {
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int rv = ctl_fail_sys("read %s", name); /* before free() moves errno */
        free(buf);
        return rv;
    }
    if (size > MRD_EVENT_DATA_SIZE_MAX) {
        free(buf);
        return ctl_fail_mrd(MRD_ETOOBIG, "read %s: data over %u bytes", name,
            MRD_EVENT_DATA_SIZE_MAX);
    }
    *buf_out  = buf;
    *size_out = size;
    return CTL_EXIT_OK;
}

/* Points *data and *size at the event's data; *owned is a buffer to free. */
static int
ctl_data_load(
    const struct ctl_args *args, const void **data, size_t *size, char **owned)
{
    const char *path = args->data_file;

    *owned = NULL;
    if (args->data != NULL && args->data_file != NULL) {
        return ctl_fail_usage("give --data or --data-file, not both");
    }
    if (args->data != NULL && strcmp(args->data, "-") != 0) {
        *data = args->data;
        *size = strlen(args->data);
        return CTL_EXIT_OK;
    }
    if (args->data != NULL || (path != NULL && strcmp(path, "-") == 0)) {
        int rv = ctl_data_slurp(stdin, "stdin", owned, size);
        *data  = *owned;
        return rv;
    }
    if (path == NULL) {
        *data = NULL;
        *size = 0;
        return CTL_EXIT_OK;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return ctl_fail_sys("open %s", path);
    }
    int rv = ctl_data_slurp(f, path, owned, size);
    fclose(f);
    *data = *owned;
    return rv;
}

static const char *
ctl_ack_name(int level)
{
    return level == MRD_ACK_GLOBAL ? "global"
        : level == MRD_ACK_REGION  ? "region"
                                   : "local";
}

static void
ctl_append_print_human(
    const char *stream, const mrd_append_result *r, bool ack_asked)
{
    char when[CTL_TIME_SIZE];

    ctl_hlc_format(r->hlc, when, sizeof(when));
    printf("stream     %s\n", stream);
    printf(
        "appended   %" PRIu32 " event%s\n", r->count, r->count == 1 ? "" : "s");
    if (r->count > 1) {
        printf("dots       %" PRIu64 ":%" PRIu64 " .. %" PRIu64 ":%" PRIu64
               "\n",
            r->first_dot.origin, r->first_dot.seq, r->first_dot.origin,
            r->first_dot.seq + r->count - 1);
        printf("positions  %" PRIu64 " .. %" PRIu64 "\n", r->first_position,
            r->first_position + r->count - 1);
    } else {
        printf("dot        %" PRIu64 ":%" PRIu64 "\n", r->first_dot.origin,
            r->first_dot.seq);
        printf("position   %" PRIu64 "\n", r->first_position);
    }
    printf("version    %" PRIu64 "\n", r->version);
    printf("time       %s\n", when);
    printf("replayed   %s\n",
        r->replayed ? "yes (stored answer to a retry)" : "no");
    if (ack_asked) {
        printf("ack        %s (%" PRIu32 " replica%s of the region, %" PRIu32
               " region%s hold it)\n",
            ctl_ack_name(r->ack_reached), r->ack_replicas,
            r->ack_replicas == 1 ? "" : "s", r->ack_regions,
            r->ack_regions == 1 ? "" : "s");
    }
}

static int
ctl_append_print_json(
    const char *stream, const mrd_append_result *r, bool ack_asked)
{
    char    when[CTL_TIME_SIZE];
    json_t *obj = json_object();
    json_t *dot = json_object();
    int     rv  = 0;

    ctl_hlc_format(r->hlc, when, sizeof(when));
    rv |= json_object_set_new(dot, "origin", ctl_json_u64(r->first_dot.origin));
    rv |= json_object_set_new(dot, "seq", ctl_json_u64(r->first_dot.seq));
    rv |= json_object_set_new(obj, "stream", json_string(stream));
    rv |= json_object_set_new(obj, "count", ctl_json_u64(r->count));
    rv |= json_object_set_new(obj, "first_dot", dot);
    rv |= json_object_set_new(
        obj, "first_position", ctl_json_u64(r->first_position));
    rv |= json_object_set_new(obj, "version", ctl_json_u64(r->version));
    rv |= json_object_set_new(obj, "hlc", ctl_json_u64(r->hlc));
    rv |= json_object_set_new(obj, "time", json_string(when));
    rv |= json_object_set_new(obj, "replayed", json_boolean(r->replayed));
    if (ack_asked) {
        rv |= json_object_set_new(
            obj, "ack", json_string(ctl_ack_name(r->ack_reached)));
        rv |= json_object_set_new(
            obj, "ack_replicas", ctl_json_u64(r->ack_replicas));
        rv |= json_object_set_new(
            obj, "ack_regions", ctl_json_u64(r->ack_regions));
    }
    if (rv != 0) {
        json_decref(obj);
        obj = NULL;
    }
    return ctl_json_print(obj);
}

/* Fills ctl_append_events[0..count) from the options and the data. */
static void
ctl_append_build(const struct ctl_args *args, const void *data,
    size_t data_size, size_t count)
{
    mrd_event_in ev = {
        .type           = args->type,
        .data           = data,
        .data_size      = data_size,
        .content_type   = args->content_type != NULL ? args->content_type
                                                     : "application/octet-stream",
        .correlation_id = args->correlation_id,
        .causation_id   = args->causation_id,
        .meta           = args->meta_count > 0 ? ctl_append_meta : NULL,
        .meta_count     = args->meta_count,
        .ops            = args->op_count > 0 ? ctl_append_ops : NULL,
        .op_count       = args->op_count,
    };

    MRD_ASSERT(count >= 1 && count <= MRD_APPEND_EVENTS_MAX);
    MRD_ASSERT(args->meta_count <= MRD_META_ENTRIES_MAX);
    MRD_ASSERT(args->op_count <= MRD_STATE_OPS_MAX);
    for (size_t i = 0; i < args->op_count; i++) {
        ctl_append_ops[i] = args->ops[i].op;
    }
    for (size_t i = 0; i < args->meta_count; i++) {
        ctl_append_meta[i].key   = args->meta[i].key;
        ctl_append_meta[i].value = args->meta[i].value;
    }
    for (size_t i = 0; i < count; i++) {
        ctl_append_events[i] = ev;
    }
}

int
ctl_cmd_append(const struct ctl_args *args, mrd_client *client)
{
    const char       *stream = args->positional[0];
    uint64_t          count  = args->count_set ? args->count : 1;
    const void       *data   = NULL;
    size_t            size   = 0;
    char             *owned  = NULL;
    mrd_append_result result;

    if (args->type == NULL) {
        return ctl_fail_usage("append needs --type TYPE");
    }
    if (args->idempotency_key != NULL && args->idempotency_key[0] == '\0') {
        return ctl_fail_usage("--idempotency-key: empty key");
    }
    if (count > MRD_APPEND_EVENTS_MAX) {
        return ctl_fail_usage(
            "--count: at most %u events per append", MRD_APPEND_EVENTS_MAX);
    }
    int rv = ctl_data_load(args, &data, &size, &owned);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    ctl_append_build(args, data, size, (size_t) count);
    mrd_append_opts opts = { .expected_version = args->expected_version,
        .ack                                   = args->ack,
        .ack_count                             = args->ack_count,
        .ack_wait_ms                           = args->ack_wait_ms };
    if (args->idempotency_key != NULL) {
        opts.idempotency_key      = args->idempotency_key;
        opts.idempotency_key_size = strlen(args->idempotency_key);
    }
    memset(&result, 0, sizeof(result));
    int err = mrd_append(
        client, stream, ctl_append_events, (size_t) count, &opts, &result);
    free(owned);
    bool ack_asked = args->ack != MRD_ACK_LOCAL;
    if (err == MRD_EDURABILITY) {
        /* Written: say where, then fail on the level. */
        if (args->json) {
            ctl_append_print_json(stream, &result, true);
        } else {
            ctl_append_print_human(stream, &result, true);
        }
        return ctl_fail_mrd(
            err, "append to %s (%s ack)", stream, ctl_ack_name(args->ack));
    }
    if (err != MRD_OK) {
        return ctl_fail_mrd(err, "append to %s", stream);
    }
    if (args->json) {
        return ctl_append_print_json(stream, &result, ack_asked);
    }
    ctl_append_print_human(stream, &result, ack_asked);
    return CTL_EXIT_OK;
}
