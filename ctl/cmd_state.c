/*
 * cmd_state.c: `meridianctl state STREAM [FIELD]`.
 *
 * One mrd_state_read() and a walk over the tree it returns. For people: a
 * header line (stream, version, causal context), then one line per field
 * with its name, type and value, the entries of nested maps indented two
 * spaces per level under their map. Values are quoted strings when they are
 * printable UTF-8 and 0x-hex otherwise, so a line never holds a control
 * character. With --json: one object whose "fields" mirror the tree; two
 * entries of one name (created concurrently with different types) are keyed
 * NAME and NAME#TYPE, so no entry is lost to a JSON key clash. Nesting is
 * bounded by the state's path limit (MRD_STATE_PATH_MAX), so the recursion
 * here is too.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Name column: at least this wide, plus 2 spaces before the type. */
#define CTL_STATE_NAME_CHARS_MIN 8u
/* Type column: "counter" and 2 spaces. */
#define CTL_STATE_TYPE_CHARS 9
/* Indent per nested map level. */
#define CTL_STATE_INDENT 2u

/* Bytes shown as a string: UTF-8 without any control character (tabs and
 * newlines too: a line is one entry). */
static bool
ctl_state_is_text(const void *p, size_t size)
{
    const unsigned char *s = p;

    if (!mrd_utf8_valid(p, size)) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

/* --------------------------------------------------------------- people -- */

static void
ctl_state_print_bytes(const void *p, size_t size)
{
    const unsigned char *s = p;

    if (!ctl_state_is_text(p, size)) {
        fputs("0x", stdout);
        for (size_t i = 0; i < size; i++) {
            printf("%02x", s[i]);
        }
        return;
    }
    putchar('"');
    for (size_t i = 0; i < size; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            putchar('\\');
        }
        putchar(s[i]);
    }
    putchar('"');
}

/* The items of a register or set, between open and close. */
static void
ctl_state_print_items(const mrd_value *v, const char *open, const char *close)
{
    size_t size;

    fputs(open, stdout);
    for (size_t i = 0; i < mrd_value_count(v); i++) {
        const void *p = mrd_value_bytes(v, i, &size);
        if (i > 0) {
            fputs(", ", stdout);
        }
        ctl_state_print_bytes(p, size);
    }
    fputs(close, stdout);
}

static void
ctl_state_print_value(const mrd_value *v)
{
    size_t size;

    switch (mrd_value_type(v)) {
    case MRD_STATE_COUNTER:
        printf("%" PRId64, mrd_value_int(v));
        break;
    case MRD_STATE_FLAG:
        fputs(mrd_value_bool(v) ? "true" : "false", stdout);
        break;
    case MRD_STATE_LWW:
        if (mrd_value_count(v) == 0) {
            fputs("(none)", stdout);
        } else {
            const void *p = mrd_value_bytes(v, 0, &size);
            ctl_state_print_bytes(p, size);
        }
        break;
    case MRD_STATE_MVREG:
        ctl_state_print_items(v, "[", "]");
        break;
    case MRD_STATE_SET:
        ctl_state_print_items(v, "{", "}");
        break;
    default:
        break;
    }
}

/* Widest indent + name in the tree under map, at `level`. */
static size_t
ctl_state_name_width(const mrd_value *map, size_t level)
{
    size_t      width = 0;
    const char *name;

    for (size_t i = 0; i < mrd_value_count(map); i++) {
        const mrd_value *v = mrd_value_entry(map, i, &name);
        size_t           w = level * CTL_STATE_INDENT + strlen(name);
        if (w > width) {
            width = w;
        }
        if (mrd_value_type(v) == MRD_STATE_MAP) {
            w     = ctl_state_name_width(v, level + 1);
            width = w > width ? w : width;
        }
    }
    return width;
}

static void
ctl_state_print_map(const mrd_value *map, size_t level, size_t width)
{
    const char *name;
    int         indent = (int) (level * CTL_STATE_INDENT);

    for (size_t i = 0; i < mrd_value_count(map); i++) {
        const mrd_value *v    = mrd_value_entry(map, i, &name);
        const char      *type = mrd_state_type_name(mrd_value_type(v));
        printf("%*s%-*s", indent, "", (int) width - indent, name);
        if (mrd_value_type(v) == MRD_STATE_MAP) {
            printf("%s\n", type);
            ctl_state_print_map(v, level + 1, width);
            continue;
        }
        printf("%-*s", CTL_STATE_TYPE_CHARS, type);
        ctl_state_print_value(v);
        putchar('\n');
    }
}

static void
ctl_state_print_human(const char *stream, const mrd_state *st)
{
    const mrd_value *root  = mrd_state_root(st);
    size_t           width = ctl_state_name_width(root, 0);

    if (width < CTL_STATE_NAME_CHARS_MIN) {
        width = CTL_STATE_NAME_CHARS_MIN;
    }
    printf("stream %s  version %" PRId64 "  context ", stream,
        mrd_state_version(st));
    if (mrd_state_context_count(st) == 0) {
        putchar('-');
    }
    for (size_t i = 0; i < mrd_state_context_count(st); i++) {
        mrd_dot dot = mrd_state_context_at(st, i);
        printf("%s%" PRIu64 ":%" PRIu64, i > 0 ? "," : "", dot.origin, dot.seq);
    }
    putchar('\n');
    ctl_state_print_map(root, 0, width + 2);
}

/* ----------------------------------------------------------------- JSON -- */

static json_t *ctl_state_json_map(const mrd_value *map);

/* One item as a JSON string: the text itself, or its hex. */
static json_t *
ctl_state_json_bytes(const void *p, size_t size, bool hex)
{
    if (!hex) {
        return json_stringn(size > 0 ? p : "", size);
    }
    char *buf = malloc(2 * size + 1);
    if (buf == NULL) {
        return NULL;
    }
    sodium_bin2hex(buf, 2 * size + 1, p, size);
    json_t *j = json_string(buf);
    free(buf);
    return j;
}

/* Whether any item of v is not text: then all of v's items are hex. */
static bool
ctl_state_needs_hex(const mrd_value *v)
{
    size_t size;

    for (size_t i = 0; i < mrd_value_count(v); i++) {
        const void *p = mrd_value_bytes(v, i, &size);
        if (!ctl_state_is_text(p, size)) {
            return true;
        }
    }
    return false;
}

static json_t *
ctl_state_json_items(const mrd_value *v, bool hex)
{
    json_t *arr = json_array();
    size_t  size;

    for (size_t i = 0; arr != NULL && i < mrd_value_count(v); i++) {
        const void *p = mrd_value_bytes(v, i, &size);
        if (json_array_append_new(arr, ctl_state_json_bytes(p, size, hex))
            != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* {"type": ..., "value": ...} for one entry, or NULL when out of memory. */
static json_t *
ctl_state_json_value(const mrd_value *v)
{
    json_t *obj   = json_object();
    json_t *value = NULL;
    int     type  = mrd_value_type(v);
    bool    hex   = ctl_state_needs_hex(v);
    size_t  size;
    int     rv = 0;

    switch (type) {
    case MRD_STATE_COUNTER:
        value = json_integer(mrd_value_int(v));
        break;
    case MRD_STATE_FLAG:
        value = json_boolean(mrd_value_bool(v));
        break;
    case MRD_STATE_LWW:
        if (mrd_value_count(v) == 0) {
            value = json_null();
        } else {
            const void *p = mrd_value_bytes(v, 0, &size);
            value         = ctl_state_json_bytes(p, size, hex);
        }
        break;
    case MRD_STATE_MVREG:
    case MRD_STATE_SET:
        value = ctl_state_json_items(v, hex);
        break;
    case MRD_STATE_MAP:
        value = ctl_state_json_map(v);
        break;
    default:
        value = json_null();
        break;
    }
    rv |= json_object_set_new(
        obj, "type", json_string(mrd_state_type_name(type)));
    rv |= json_object_set_new(obj, "value", value);
    if (hex) {
        rv |= json_object_set_new(obj, "encoding", json_string("hex"));
    }
    if (rv != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* The key of a map entry: its name, or name#type for an entry whose name
 * the previous entry had (sibling), then #type again while obj already
 * holds the key: a field may itself be called "x#set", and must not
 * replace the sibling keyed so. NULL when out of memory. */
static char *
ctl_state_json_key(json_t *obj, const char *name, int type, bool sibling)
{
    const char *type_name = mrd_state_type_name(type);
    size_t      type_len  = strlen(type_name);
    size_t      size      = strlen(name) + 1;
    char       *key       = malloc(size);

    if (key == NULL) {
        return NULL;
    }
    memcpy(key, name, size);
    while (sibling || json_object_get(obj, key) != NULL) {
        char *longer = realloc(key, size + 1 + type_len);
        if (longer == NULL) {
            free(key);
            return NULL;
        }
        key           = longer;
        key[size - 1] = '#';
        memcpy(key + size, type_name, type_len + 1);
        size += 1 + type_len;
        sibling = false;
    }
    return key;
}

/* A map's entries as a JSON object. Entries are sorted by name then type,
 * so the entries sharing a name are next to each other: the first keeps
 * the name, the others get "#type" (ctl_state_json_key). */
static json_t *
ctl_state_json_map(const mrd_value *map)
{
    json_t     *obj  = json_object();
    const char *prev = NULL;
    const char *name;

    for (size_t i = 0; obj != NULL && i < mrd_value_count(map); i++) {
        const mrd_value *v   = mrd_value_entry(map, i, &name);
        json_t          *j   = ctl_state_json_value(v);
        char            *key = ctl_state_json_key(obj, name, mrd_value_type(v),
                       prev != NULL && strcmp(prev, name) == 0);
        int              rv  = -1;
        if (key != NULL) {
            rv = json_object_set_new(obj, key, j);
            free(key);
        } else {
            json_decref(j);
        }
        prev = name;
        if (rv != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}

static int
ctl_state_print_json(const char *stream, const mrd_state *st)
{
    json_t *obj = json_object();
    json_t *ctx = json_array();
    int     rv  = 0;

    for (size_t i = 0; i < mrd_state_context_count(st); i++) {
        mrd_dot dot = mrd_state_context_at(st, i);
        json_t *d   = json_object();
        rv |= json_object_set_new(d, "origin", ctl_json_u64(dot.origin));
        rv |= json_object_set_new(d, "seq", ctl_json_u64(dot.seq));
        rv |= json_array_append_new(ctx, d);
    }
    rv |= json_object_set_new(obj, "stream", json_string(stream));
    rv |= json_object_set_new(
        obj, "version", json_integer(mrd_state_version(st)));
    rv |= json_object_set_new(obj, "context", ctx);
    rv |= json_object_set_new(
        obj, "fields", ctl_state_json_map(mrd_state_root(st)));
    if (rv != 0) {
        json_decref(obj);
        obj = NULL;
    }
    return ctl_json_print(obj);
}

int
ctl_cmd_state(const struct ctl_args *args, mrd_client *client)
{
    const char *stream = args->positional[0];
    const char *field = args->positional_count > 1 ? args->positional[1] : NULL;
    mrd_state  *st    = NULL;

    int err = mrd_state_read(client, stream, field, &st);
    if (err != MRD_OK) {
        if (field != NULL) {
            return ctl_fail_mrd(err, "state of %s, field %s", stream, field);
        }
        return ctl_fail_mrd(err, "state of %s", stream);
    }
    int rv = CTL_EXIT_OK;
    if (args->json) {
        rv = ctl_state_print_json(stream, st);
    } else {
        ctl_state_print_human(stream, st);
    }
    mrd_state_free(st);
    return rv;
}
