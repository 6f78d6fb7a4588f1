/*
 * print.c: everything meridianctl shows, in one place.
 *
 * Errors go to stderr in one shape, "meridianctl: <what>: <why> (<name>)", so
 * scripts can grep the MRD_ name. Human output is a fixed-width table whose
 * cells never hold a control character or a newline (the data column shows
 * text cut at CTL_DATA_CHARS_MAX characters, else hex and size). --json output
 * is one compact object per line; event data is a JSON string when it is
 * printable UTF-8 and base64 (libsodium) with "data_encoding":"base64"
 * otherwise, so binary data survives the trip unchanged.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

/* ---------------------------------------------------------------- errors -- */

int
ctl_fail_mrd(int err, const char *what_fmt, ...)
{
    va_list ap;

    fflush(stdout); /* keep what was printed before the error in order */
    fputs("meridianctl: ", stderr);
    va_start(ap, what_fmt);
    vfprintf(stderr, what_fmt, ap);
    va_end(ap);
    const char *detail = mrd_errdetail();
    if (detail[0] != '\0') {
        fprintf(stderr, ": %s (%s)\n", detail, mrd_errname(err));
    } else {
        fprintf(stderr, ": %s (%s)\n", mrd_strerror(err), mrd_errname(err));
    }
    return CTL_EXIT_FAIL;
}

int
ctl_fail_sys(const char *what_fmt, ...)
{
    va_list ap;
    int     saved = errno;

    fflush(stdout);
    fputs("meridianctl: ", stderr);
    va_start(ap, what_fmt);
    vfprintf(stderr, what_fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(saved));
    return CTL_EXIT_FAIL;
}

int
ctl_fail_usage(const char *what_fmt, ...)
{
    va_list ap;

    fputs("meridianctl: ", stderr);
    va_start(ap, what_fmt);
    vfprintf(stderr, what_fmt, ap);
    va_end(ap);
    fputs("\nTry 'meridianctl --help'.\n", stderr);
    return CTL_EXIT_USAGE;
}

int
ctl_stdout_flush(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        return ctl_fail_sys("write to stdout");
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------ formatting -- */

void
ctl_hlc_format(uint64_t hlc, char *buf, size_t buf_size)
{
    uint64_t  ms   = hlc >> 16;
    time_t    secs = (time_t) (ms / 1000u);
    struct tm tm;

    MRD_ASSERT(buf_size >= CTL_TIME_SIZE);
    if (gmtime_r(&secs, &tm) == NULL) { /* a year past INT_MAX */
        snprintf(buf, buf_size, "@%" PRIu64 "ms", ms);
        return;
    }
    size_t n = strftime(buf, buf_size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, buf_size - n, ".%03uZ", (unsigned) (ms % 1000u));
}

bool
ctl_data_is_text(const void *data, size_t size)
{
    const unsigned char *p = data;

    if (size == 0) {
        return true;
    }
    if (!mrd_utf8_valid(data, size)) {
        return false;
    }
    for (size_t i = 0; i < size; i++) {
        bool ctl = p[i] < 0x20 || p[i] == 0x7f;
        if (ctl && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') {
            return false;
        }
    }
    return true;
}

/* Characters (not bytes) in UTF-8 text: every byte that is not a
 * continuation byte starts one. */
static size_t
ctl_utf8_chars(const char *s, size_t size)
{
    size_t chars = 0;

    for (size_t i = 0; i < size; i++) {
        chars += ((unsigned char) s[i] & 0xC0) != 0x80;
    }
    return chars;
}

/* Copies text s[0..size) into buf as one table cell: whitespace controls
 * become spaces, other controls '?', and text of more than chars_max
 * characters is cut to chars_max - 3 characters and "...", on a character
 * boundary. buf_size must hold 4 * chars_max + 4 bytes. */
static void
ctl_cell_text(
    char *buf, size_t buf_size, const char *s, size_t size, size_t chars_max)
{
    size_t out = 0, chars = 0;
    bool   cut  = ctl_utf8_chars(s, size) > chars_max;
    size_t keep = cut ? chars_max - 3 : chars_max;

    MRD_ASSERT(chars_max >= 3 && buf_size >= 4 * chars_max + 4);
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) s[i];
        if ((c & 0xC0) != 0x80) { /* a character starts here */
            if (chars == keep) {
                break; /* the first one that does not fit */
            }
            chars++;
        }
        if (c == '\t' || c == '\n' || c == '\r') {
            c = ' ';
        } else if (c < 0x20 || c == 0x7f) {
            c = '?';
        }
        buf[out++] = (char) c;
    }
    if (cut) {
        memcpy(buf + out, "...", 3);
        out += 3;
    }
    buf[out] = '\0';
}

/* Binary data as "hex:0a1b... (N bytes)". */
static void
ctl_cell_hex(char *buf, size_t buf_size, const void *data, size_t size)
{
    size_t n = size < CTL_DATA_HEX_BYTES_MAX ? size : CTL_DATA_HEX_BYTES_MAX;
    char   hex[2 * CTL_DATA_HEX_BYTES_MAX + 1];

    sodium_bin2hex(hex, sizeof(hex), data, n);
    snprintf(buf, buf_size, "hex:%s%s (%zu bytes)", hex, n < size ? "..." : "",
        size);
}

/* ----------------------------------------------------------------- table -- */

#define CTL_COL_TYPE_CHARS 24u
#define CTL_COL_CT_CHARS 24u

void
ctl_event_table_header(void)
{
    printf("%8s  %-12s  %-24s  %-24s  %-24s  %s\n", "POSITION", "DOT", "TIME",
        "TYPE", "CONTENT-TYPE", "DATA");
}

void
ctl_event_table_row(const mrd_event *ev)
{
    char        dot[48], when[CTL_TIME_SIZE];
    char        type[4 * CTL_COL_TYPE_CHARS + 4], ct[4 * CTL_COL_CT_CHARS + 4];
    char        data[4 * CTL_DATA_CHARS_MAX + 4];
    const char *type_s = ev->type != NULL ? ev->type : "";
    const char *ct_s   = ev->content_type != NULL ? ev->content_type : "";

    snprintf(
        dot, sizeof(dot), "%" PRIu64 ":%" PRIu64, ev->dot.origin, ev->dot.seq);
    ctl_hlc_format(ev->hlc, when, sizeof(when));
    ctl_cell_text(
        type, sizeof(type), type_s, strlen(type_s), CTL_COL_TYPE_CHARS);
    ctl_cell_text(ct, sizeof(ct), ct_s, strlen(ct_s), CTL_COL_CT_CHARS);
    if (ev->data_size == 0) {
        snprintf(data, sizeof(data), "(empty)");
    } else if (ctl_data_is_text(ev->data, ev->data_size)) {
        ctl_cell_text(
            data, sizeof(data), ev->data, ev->data_size, CTL_DATA_CHARS_MAX);
    } else {
        ctl_cell_hex(data, sizeof(data), ev->data, ev->data_size);
    }
    printf("%8" PRIu64 "  %-12s  %-24s  %-24s  %-24s  %s\n", ev->position, dot,
        when, type, ct, data);
}

/* ------------------------------------------------------------------ JSON -- */

json_t *
ctl_json_u64(uint64_t v)
{
    char buf[24];

    if (v <= (uint64_t) INT64_MAX) {
        return json_integer((json_int_t) v);
    }
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return json_string(buf);
}

/* The node checks that strings are UTF-8; should one not be, say so rather
 * than drop the field or the event (json_string refuses invalid UTF-8). */
static json_t *
ctl_json_text(const char *s)
{
    json_t *j = json_string(s != NULL ? s : "");
    return j != NULL ? j : json_string("(invalid UTF-8)");
}

json_t *
ctl_json_str_or_null(const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return json_null();
    }
    return ctl_json_text(s);
}

int
ctl_json_print(json_t *value)
{
    /* 10 significant digits: seconds and ratios, without 2.6880000000000002. */
    char *text = value != NULL
        ? json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(10))
        : NULL;

    json_decref(value);
    if (text == NULL) {
        return ctl_fail_mrd(MRD_ENOMEM, "format JSON");
    }
    puts(text);
    free(text);
    return CTL_EXIT_OK;
}

/* Sets "data" as a string when it is text, else base64 plus
 * "data_encoding":"base64". Returns 0, or -1 when out of memory. */
static int
ctl_json_set_data(json_t *obj, const void *data, size_t size)
{
    if (ctl_data_is_text(data, size)) {
        return json_object_set_new(
            obj, "data", json_stringn(size > 0 ? data : "", size));
    }
    size_t b64_size
        = sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64_size);
    if (b64 == NULL) {
        return -1;
    }
    sodium_bin2base64(
        b64, b64_size, data, size, sodium_base64_VARIANT_ORIGINAL);
    int rv = json_object_set_new(obj, "data", json_string(b64));
    free(b64);
    if (rv != 0) {
        return -1;
    }
    return json_object_set_new(obj, "data_encoding", json_string("base64"));
}

static json_t *
ctl_meta_json(const mrd_event *ev)
{
    json_t *meta = json_object();

    for (size_t i = 0; meta != NULL && i < ev->meta_count; i++) {
        const mrd_meta_entry *m = &ev->meta[i];
        if (m->key == NULL) {
            continue;
        }
        json_t *v = ctl_json_text(m->value);
        if (json_object_set_new(meta, m->key, v) != 0) {
            json_decref(meta);
            meta = NULL;
        }
    }
    return meta;
}

json_t *
ctl_event_json(const mrd_event *ev)
{
    char    when[CTL_TIME_SIZE];
    json_t *dot = json_object();
    int     rv  = 0;

    ctl_hlc_format(ev->hlc, when, sizeof(when));
    rv |= json_object_set_new(dot, "origin", ctl_json_u64(ev->dot.origin));
    rv |= json_object_set_new(dot, "seq", ctl_json_u64(ev->dot.seq));
    json_t *obj = json_object();
    rv |= json_object_set_new(obj, "stream", ctl_json_str_or_null(ev->stream));
    rv |= json_object_set_new(obj, "position", ctl_json_u64(ev->position));
    rv |= json_object_set_new(obj, "log_seq", ctl_json_u64(ev->log_seq));
    rv |= json_object_set_new(obj, "dot", dot);
    rv |= json_object_set_new(obj, "hlc", ctl_json_u64(ev->hlc));
    rv |= json_object_set_new(obj, "time", json_string(when));
    rv |= json_object_set_new(obj, "type", ctl_json_str_or_null(ev->type));
    rv |= json_object_set_new(
        obj, "content_type", ctl_json_str_or_null(ev->content_type));
    rv |= json_object_set_new(obj, "data_size", ctl_json_u64(ev->data_size));
    rv |= ctl_json_set_data(obj, ev->data, ev->data_size);
    rv |= json_object_set_new(
        obj, "correlation_id", ctl_json_str_or_null(ev->correlation_id));
    rv |= json_object_set_new(
        obj, "causation_id", ctl_json_str_or_null(ev->causation_id));
    rv |= json_object_set_new(obj, "meta", ctl_meta_json(ev));
    if (rv != 0) { /* only allocation failures get here */
        json_decref(obj);
        return NULL;
    }
    return obj;
}
