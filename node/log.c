/*
 * log.c: JSON-lines logging on stderr. Each line is built whole with jansson
 * and written with one write(2), so lines from different threads never
 * interleave. Secrets and event payloads are never passed here.
 */
#include "node.h"

#include <jansson.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t    node_log_node_id;
static int         node_log_level_min = NODE_LOG_INFO;
static const char *node_log_level_names[]
    = { "debug", "info", "warn", "error" };

void
node_log_setup(uint64_t node_id, int level_min)
{
    node_log_node_id   = node_id;
    node_log_level_min = level_min;
}

static void
node_log_ts(char *out, size_t size)
{
    struct timespec ts;
    struct tm       tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

void
node_log(int level, const char *msg, const char *fields_fmt, ...)
{
    char    ts[40];
    json_t *line;

    if (level < node_log_level_min) {
        return;
    }
    line = json_object();
    if (line == NULL) {
        return;
    }
    node_log_ts(ts, sizeof(ts));
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(
        line, "level", json_string(node_log_level_names[level]));
    json_object_set_new(
        line, "node", json_integer((json_int_t) node_log_node_id));
    json_object_set_new(line, "msg", json_string(msg));
    if (fields_fmt != NULL) {
        va_list ap;
        va_start(ap, fields_fmt);
        json_t *fields = json_vpack_ex(NULL, 0, fields_fmt, ap);
        va_end(ap);
        if (fields == NULL) {
            /* A bad format is our bug; still say what we wanted to say. */
            json_object_set_new(line, "log_error", json_string("bad fields"));
        } else {
            json_object_update(line, fields);
            json_decref(fields);
        }
    }
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text == NULL) {
        return;
    }
    size_t len = strlen(text);
    text[len]  = '\n'; /* json_dumps leaves room: the NUL becomes the newline */
    ssize_t rv = write(STDERR_FILENO, text, len + 1);
    (void) rv; /* nowhere left to report a failed log write */
    free(text);
}
