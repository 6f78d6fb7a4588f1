/*
 * timeline.c: a chaos run's files drawn as one HTML page (timeline.h).
 *
 * Design: load everything first, then draw. The history comes through
 * chaos_ops_load(), so it is validated and paired exactly as the checker
 * sees it; faults, lag samples and final.json's "heal_t" come through
 * jansson, one line at a time into a fixed buffer, each bad line refused
 * with its file and number. Every input time must lie within
 * TIMELINE_SECONDS_MAX, which bounds the per-second tables; the other
 * tables are capped by the limits below, so memory is bounded by the
 * input limits and never by the input itself.
 *
 * Drawing is plain stdio into a temporary file, renamed over timeline.html
 * at the end: a crash or a full disk never leaves half a page behind. Every
 * string from a file goes through timeline_esc() (& < > " ' and control
 * bytes), so a fault detail cannot inject markup. Each chart is its own
 * <svg> with the same width and x scale, so the charts line up and share
 * one time axis; fault intervals and the final heal are shaded behind every
 * chart so effects can be matched to causes by eye.
 */
#include "timeline.h"

#include "check.h"
#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ----------------------------------------------------------- limits -- */

/* The time axis: one bucket a second. A chaos run lasts minutes; a day is
 * far beyond any, and keeps the per-second tables to a few MB. */
#define TIMELINE_SECONDS_MAX 86400u
#define TIMELINE_US_MAX ((uint64_t) TIMELINE_SECONDS_MAX * 1000000u)
/* One line of faults.jsonl or lag.jsonl: the runner's detail is under 256
 * bytes, a lag line under 80. */
#define TIMELINE_LINE_SIZE_MAX 4096u
/* Faults of one run: the nemesis starts one every few seconds, so a day at
 * one every 20 s; a run has tens. */
#define TIMELINE_FAULTS_MAX 4096u
/* Distinct fault kinds, i.e. rows of the fault chart: the runner has about
 * a dozen. */
#define TIMELINE_FAULT_KINDS_MAX 64u
/* A fault kind's name: "isolate-region" with room; it labels a row. */
#define TIMELINE_FAULT_KIND_SIZE_MAX 64u
/* Strings of every fault, kept in one arena. */
#define TIMELINE_FAULT_BYTES_MAX                                               \
    ((size_t) TIMELINE_FAULTS_MAX * TIMELINE_LINE_SIZE_MAX)
/* Lag samples: one per node per second, so 64 nodes for over four hours. */
#define TIMELINE_LAG_SAMPLES_MAX (1u << 20)
/* A node's last sample counts toward "the max at about that time" for this
 * long: nodes are sampled about once a second, and a node that stopped
 * answering (paused, killed) must not hold the max for ever. */
#define TIMELINE_LAG_WINDOW_US 2000000u
/* Paths: the run directory plus a file name. */
#define TIMELINE_PATH_SIZE 4096u
/* Lines of report.txt searched for the seed: it has about 30. */
#define TIMELINE_REPORT_LINES_MAX 4096u
/* Ack levels, indexed by enum chaos_ack. */
#define TIMELINE_ACKS 3u

_Static_assert(TIMELINE_FAULT_KIND_SIZE_MAX < TIMELINE_LINE_SIZE_MAX,
    "a kind fits a line");
_Static_assert(CHAOS_NODES_MAX <= 64u, "lag node ids index a 64-entry table");
_Static_assert(TIMELINE_US_MAX < (uint64_t) INT64_MAX, "times fit JSON ints");
_Static_assert(TIMELINE_ACKS == CHAOS_ACK_GLOBAL + 1u, "one row per level");

/* --------------------------------------------------------- geometry -- */

/* Every chart: the same width and plot area, so their x axes line up. */
#define TL_WIDTH 1100.0
#define TL_LEFT 130.0 /* room for a fault kind's label */
#define TL_RIGHT 20.0
#define TL_PLOT (TL_WIDTH - TL_LEFT - TL_RIGHT)
#define TL_AXIS 28.0 /* under a plot: ticks and seconds */
#define TL_TOP 24.0 /* above a plot: its legend */
#define TL_ROW 24.0 /* one fault kind */
#define TL_CHART 200.0 /* throughput, latency, lag */

/* ------------------------------------------------------------- state -- */

struct timeline_fault {
    const char *kind; /* in tl->arena */
    size_t      row; /* index into tl->kinds */
    uint64_t    start_us;
    uint64_t    end_us;
    const char *detail; /* "" when not given */
};

struct timeline_sample {
    uint64_t t_us;
    uint32_t node; /* 1..CHAOS_NODES_MAX */
    uint64_t events;
};

struct timeline_point {
    uint32_t node;
    uint64_t t_us;
    uint64_t lag; /* events */
};

struct timeline_bucket {
    uint32_t ok, info, fail; /* appends completed in this second */
    uint32_t read, state; /* reads and state reads completed */
};

struct timeline_latency {
    uint32_t count; /* ok appends invoked in this second */
    uint64_t p50_us; /* lower median */
    uint64_t max_us;
};

/* An ok append's latency, for sorting into per-second medians. */
struct timeline_lat_entry {
    uint32_t bucket;
    uint32_t ack;
    uint64_t latency_us;
};

struct timeline_totals {
    uint64_t ok, info, fail; /* appends; info counts pending ones too */
    uint64_t pending; /* appends never completed */
    uint64_t read, state;
};

struct timeline {
    const char              *dir;
    char                    *why;
    size_t                   why_size;
    struct chaos_ops        *ops;
    struct chaos_arena      *arena; /* fault strings */
    struct timeline_fault   *faults;
    size_t                   fault_count, fault_cap;
    const char              *kinds[TIMELINE_FAULT_KINDS_MAX];
    size_t                   kind_count;
    bool                     has_heal;
    uint64_t                 heal_us;
    bool                     has_seed;
    uint64_t                 seed;
    struct timeline_sample  *samples;
    size_t                   sample_count, sample_cap;
    struct timeline_point   *points; /* sorted by node, then time */
    size_t                   point_count;
    uint64_t                 lag_max;
    uint64_t                 span_s; /* buckets on the axis, >= 1 */
    struct timeline_bucket  *buckets; /* span_s */
    struct timeline_latency *latency[TIMELINE_ACKS]; /* span_s each */
    uint64_t                 latency_min_us, latency_max_us;
    struct timeline_totals   totals;
};

/* One sentence in why; returns code. */
static int timeline_fail(struct timeline *tl, int code, const char *fmt, ...)
    MRD_PRINTF(3, 4);

static int
timeline_fail(struct timeline *tl, int code, const char *fmt, ...)
{
    va_list ap;
    MRD_ASSERT(code != MRD_OK);
    if (tl->why != NULL && tl->why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(tl->why, tl->why_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int
timeline_path(struct timeline *tl, const char *name, char *path)
{
    int n = snprintf(path, TIMELINE_PATH_SIZE, "%s/%s", tl->dir, name);
    if (n < 0 || (size_t) n >= TIMELINE_PATH_SIZE) {
        return timeline_fail(tl, MRD_EINVAL,
            "the run directory's path is longer than %u bytes",
            TIMELINE_PATH_SIZE - 16u);
    }
    return MRD_OK;
}

/* Opens dir/name for reading. An optional file that does not exist gives
 * MRD_OK and *out NULL; any other failure names the file and errno. */
static int
timeline_open(struct timeline *tl, const char *name, bool required, FILE **out)
{
    char path[TIMELINE_PATH_SIZE];
    *out   = NULL;
    int rv = timeline_path(tl, name, path);
    if (rv != MRD_OK) {
        return rv;
    }
    *out = fopen(path, "r");
    if (*out == NULL && (required || errno != ENOENT)) {
        return timeline_fail(
            tl, MRD_EIO, "cannot open %s: %s", name, strerror(errno));
    }
    return MRD_OK;
}

/* ----------------------------------------------------- JSON lines in -- */

typedef int (*timeline_line_fn)(
    struct timeline *tl, const char *name, uint64_t line, json_t *obj);

/* An integer >= 0 and <= max under key. */
static bool
timeline_json_uint(json_t *obj, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0
        || (uint64_t) json_integer_value(v) > max) {
        return false;
    }
    *out = (uint64_t) json_integer_value(v);
    return true;
}

/* Splits f into lines of at most TIMELINE_LINE_SIZE_MAX bytes, parses each
 * as a JSON object and hands it to fn. Empty lines are skipped. */
static int
timeline_lines(
    struct timeline *tl, const char *name, FILE *f, timeline_line_fn fn)
{
    char     buf[TIMELINE_LINE_SIZE_MAX + 2];
    uint64_t line = 0;
    int      rv   = MRD_OK;
    while (rv == MRD_OK && fgets(buf, sizeof(buf), f) != NULL) {
        size_t size = strlen(buf);
        line++;
        if (size > 0 && buf[size - 1] == '\n') {
            buf[--size] = '\0';
        } else if (!feof(f)) {
            return timeline_fail(tl, MRD_EFULL,
                "%s line %" PRIu64 ": longer than %u bytes", name, line,
                TIMELINE_LINE_SIZE_MAX);
        }
        if (size > 0 && buf[size - 1] == '\r') {
            buf[--size] = '\0';
        }
        if (size == 0) {
            continue;
        }
        json_error_t jerr;
        json_t      *obj = json_loadb(buf, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(obj)) {
            rv = timeline_fail(tl, MRD_EPROTO,
                "%s line %" PRIu64 ": not a JSON object%s%s", name, line,
                obj == NULL ? ": " : "", obj == NULL ? jerr.text : "");
        } else {
            rv = fn(tl, name, line, obj);
        }
        json_decref(obj);
    }
    if (rv == MRD_OK && ferror(f)) {
        rv = timeline_fail(
            tl, MRD_EIO, "cannot read %s: %s", name, strerror(errno));
    }
    return rv;
}

/* Reads dir/name line by line if it exists. */
static int
timeline_read_jsonl(struct timeline *tl, const char *name, timeline_line_fn fn)
{
    FILE *f  = NULL;
    int   rv = timeline_open(tl, name, false, &f);
    if (rv != MRD_OK || f == NULL) {
        return rv;
    }
    rv = timeline_lines(tl, name, f, fn);
    fclose(f);
    return rv;
}

/* Grows *items (of item_size) to hold one more, doubling up to count_max;
 * false when full or out of memory. */
static bool
timeline_grow(
    void **items, size_t *cap, size_t count, size_t count_max, size_t item_size)
{
    if (count < *cap) {
        return true;
    }
    if (count >= count_max) {
        return false;
    }
    size_t next = *cap == 0 ? 64 : *cap * 2;
    next        = next > count_max ? count_max : next;
    void *grown = realloc(*items, next * item_size);
    if (grown == NULL) {
        return false;
    }
    *items = grown;
    *cap   = next;
    return true;
}

/* ---------------------------------------------------------- faults -- */

/* The row of kind, added when new. */
static int
timeline_fault_row(struct timeline *tl, const char *name, uint64_t line,
    struct timeline_fault *fault)
{
    for (size_t k = 0; k < tl->kind_count; k++) {
        if (strcmp(tl->kinds[k], fault->kind) == 0) {
            fault->row = k;
            return MRD_OK;
        }
    }
    if (tl->kind_count == TIMELINE_FAULT_KINDS_MAX) {
        return timeline_fail(tl, MRD_EFULL,
            "%s line %" PRIu64 ": more than %u fault kinds", name, line,
            TIMELINE_FAULT_KINDS_MAX);
    }
    fault->row                  = tl->kind_count;
    tl->kinds[tl->kind_count++] = fault->kind;
    return MRD_OK;
}

static int
timeline_fault_line(
    struct timeline *tl, const char *name, uint64_t line, json_t *obj)
{
    struct timeline_fault fault;
    json_t               *kind   = json_object_get(obj, "fault");
    json_t               *detail = json_object_get(obj, "detail");
    if (!json_is_string(kind) || json_string_length(kind) == 0
        || json_string_length(kind) > TIMELINE_FAULT_KIND_SIZE_MAX) {
        return timeline_fail(tl, MRD_EPROTO,
            "%s line %" PRIu64 ": \"fault\" is not a string of 1 to %u bytes",
            name, line, TIMELINE_FAULT_KIND_SIZE_MAX);
    }
    if (detail != NULL && !json_is_string(detail)) {
        return timeline_fail(tl, MRD_EPROTO,
            "%s line %" PRIu64 ": \"detail\" is not a string", name, line);
    }
    if (!timeline_json_uint(obj, "start_t", TIMELINE_US_MAX, &fault.start_us)
        || !timeline_json_uint(obj, "end_t", TIMELINE_US_MAX, &fault.end_us)) {
        return timeline_fail(tl, MRD_EPROTO,
            "%s line %" PRIu64 ": \"start_t\" or \"end_t\" is not an integer "
            "from 0 to %" PRIu64 " us",
            name, line, TIMELINE_US_MAX);
    }
    if (fault.end_us < fault.start_us) {
        return timeline_fail(tl, MRD_EPROTO,
            "%s line %" PRIu64 ": \"end_t\" is before \"start_t\"", name, line);
    }
    const char *d = detail == NULL ? "" : json_string_value(detail);
    fault.kind    = chaos_arena_strndup(
           tl->arena, json_string_value(kind), json_string_length(kind));
    fault.detail = chaos_arena_strndup(tl->arena, d, strlen(d));
    if (fault.kind == NULL || fault.detail == NULL
        || !timeline_grow((void **) &tl->faults, &tl->fault_cap,
            tl->fault_count, TIMELINE_FAULTS_MAX, sizeof(fault))) {
        return timeline_fail(tl, MRD_EFULL,
            "%s line %" PRIu64 ": more than %u faults or out of memory", name,
            line, TIMELINE_FAULTS_MAX);
    }
    int rv = timeline_fault_row(tl, name, line, &fault);
    if (rv == MRD_OK) {
        tl->faults[tl->fault_count++] = fault;
    }
    return rv;
}

/* ------------------------------------------------------------- lag -- */

static int
timeline_lag_line(
    struct timeline *tl, const char *name, uint64_t line, json_t *obj)
{
    struct timeline_sample s;
    uint64_t               node = 0;
    if (!timeline_json_uint(obj, "t", TIMELINE_US_MAX, &s.t_us)
        || !timeline_json_uint(obj, "node", CHAOS_NODES_MAX, &node) || node == 0
        || !timeline_json_uint(
            obj, "events", (uint64_t) INT64_MAX, &s.events)) {
        return timeline_fail(tl, MRD_EPROTO,
            "%s line %" PRIu64 ": needs \"t\" (0 to %" PRIu64
            " us), \"node\" (1 to %u) and \"events\" (>= 0) as integers",
            name, line, TIMELINE_US_MAX, CHAOS_NODES_MAX);
    }
    s.node = (uint32_t) node;
    if (!timeline_grow((void **) &tl->samples, &tl->sample_cap,
            tl->sample_count, TIMELINE_LAG_SAMPLES_MAX, sizeof(s))) {
        return timeline_fail(tl, MRD_EFULL,
            "%s line %" PRIu64 ": more than %u samples or out of memory", name,
            line, TIMELINE_LAG_SAMPLES_MAX);
    }
    tl->samples[tl->sample_count++] = s;
    return MRD_OK;
}

/* ---------------------------------------------- final.json, report -- */

/* Only "heal_t" is read; final.json holds every node's events too, so it
 * is capped as chaos_final_load() caps it. */
static int
timeline_read_final(struct timeline *tl)
{
    char         path[TIMELINE_PATH_SIZE];
    struct stat  sb;
    json_error_t jerr;
    int          rv = timeline_path(tl, "final.json", path);
    if (rv != MRD_OK) {
        return rv;
    }
    if (stat(path, &sb) != 0) {
        return errno == ENOENT
            ? MRD_OK
            : timeline_fail(
                tl, MRD_EIO, "cannot open final.json: %s", strerror(errno));
    }
    if ((uint64_t) sb.st_size > CHAOS_FINAL_FILE_SIZE_MAX) {
        return timeline_fail(tl, MRD_EFULL,
            "final.json is larger than %zu bytes", CHAOS_FINAL_FILE_SIZE_MAX);
    }
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        rv = timeline_fail(
            tl, MRD_EPROTO, "final.json line %d: %s", jerr.line, jerr.text);
    } else if (!json_is_object(root)) {
        rv = timeline_fail(tl, MRD_EPROTO, "final.json: not a JSON object");
    } else if (json_object_get(root, "heal_t") != NULL) {
        tl->has_heal
            = timeline_json_uint(root, "heal_t", TIMELINE_US_MAX, &tl->heal_us);
        rv = tl->has_heal ? MRD_OK
                          : timeline_fail(tl, MRD_EPROTO,
                              "final.json: \"heal_t\" is not an integer from 0 "
                              "to %" PRIu64 " us",
                              TIMELINE_US_MAX);
    }
    json_decref(root);
    return rv;
}

/* The seed is in none of the files above; the runner's report.txt has a
 * "seed: N" line. Decoration only: a missing or odd report is no error. */
static void
timeline_read_seed(struct timeline *tl)
{
    char  path[TIMELINE_PATH_SIZE];
    char  buf[256];
    bool  bol = true; /* buf starts a line */
    int   len = snprintf(path, sizeof(path), "%s/report.txt", tl->dir);
    FILE *f = len > 0 && (size_t) len < sizeof(path) ? fopen(path, "r") : NULL;
    if (f == NULL) {
        return;
    }
    for (size_t n = 0; n < TIMELINE_REPORT_LINES_MAX && !tl->has_seed
         && fgets(buf, sizeof(buf), f) != NULL;
         n++) {
        char              *end = NULL;
        unsigned long long v   = 0;
        if (bol && strncmp(buf, "seed: ", 6) == 0 && buf[6] >= '0'
            && buf[6] <= '9') {
            errno = 0;
            v     = strtoull(buf + 6, &end, 10);
            if (errno == 0 && (*end == '\n' || *end == '\0')) {
                tl->has_seed = true;
                tl->seed     = (uint64_t) v;
            }
        }
        bol = strchr(buf, '\n') != NULL;
    }
    fclose(f);
}

/* --------------------------------------------------------- history -- */

static int
timeline_read_history(struct timeline *tl)
{
    char               path[TIMELINE_PATH_SIZE];
    struct stat        sb;
    struct chaos_error err;
    memset(&err, 0, sizeof(err));
    int rv = timeline_path(tl, "history.jsonl", path);
    if (rv != MRD_OK) {
        return rv;
    }
    if (stat(path, &sb) != 0) {
        return timeline_fail(
            tl, MRD_EIO, "cannot open history.jsonl: %s", strerror(errno));
    }
    rv = chaos_ops_load(path, NULL, &err, &tl->ops);
    if (rv != MRD_OK) {
        /* err.text starts "line N: " when the problem is on a line. */
        return timeline_fail(
            tl, rv, "history.jsonl%s%s", err.line != 0 ? " " : ": ", err.text);
    }
    size_t count = chaos_ops_count(tl->ops);
    if (count > 0 && chaos_ops_at(tl->ops, count - 1)->t_us > TIMELINE_US_MAX) {
        return timeline_fail(tl, MRD_EFULL,
            "history.jsonl: the run is longer than %u s", TIMELINE_SECONDS_MAX);
    }
    return MRD_OK;
}

/* -------------------------------------------------------- analysis -- */

static int
timeline_cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static int
timeline_lat_cmp(const void *a, const void *b)
{
    const struct timeline_lat_entry *x = a;
    const struct timeline_lat_entry *y = b;
    int                              c = timeline_cmp_u64(x->ack, y->ack);
    c = c != 0 ? c : timeline_cmp_u64(x->bucket, y->bucket);
    return c != 0 ? c : timeline_cmp_u64(x->latency_us, y->latency_us);
}

static int
timeline_sample_cmp(const void *a, const void *b)
{
    const struct timeline_sample *x = a;
    const struct timeline_sample *y = b;
    int                           c = timeline_cmp_u64(x->t_us, y->t_us);
    return c != 0 ? c : timeline_cmp_u64(x->node, y->node);
}

static int
timeline_point_cmp(const void *a, const void *b)
{
    const struct timeline_point *x = a;
    const struct timeline_point *y = b;
    int                          c = timeline_cmp_u64(x->node, y->node);
    return c != 0 ? c : timeline_cmp_u64(x->t_us, y->t_us);
}

/* The axis: from 0 to the last time any file mentions, whole seconds. */
static void
timeline_span(struct timeline *tl)
{
    uint64_t last_us = 0;
    size_t   count   = chaos_ops_count(tl->ops);
    if (count > 0) {
        last_us = chaos_ops_at(tl->ops, count - 1)->t_us; /* in time order */
    }
    for (size_t i = 0; i < tl->fault_count; i++) {
        last_us
            = tl->faults[i].end_us > last_us ? tl->faults[i].end_us : last_us;
    }
    for (size_t i = 0; i < tl->sample_count; i++) {
        last_us = tl->samples[i].t_us > last_us ? tl->samples[i].t_us : last_us;
    }
    last_us    = tl->has_heal && tl->heal_us > last_us ? tl->heal_us : last_us;
    tl->span_s = last_us / 1000000u + 1u;
    MRD_ASSERT(tl->span_s <= TIMELINE_SECONDS_MAX + 1u);
}

/* Adds one completion to its second's bucket and the totals. */
static void
timeline_count_completion(struct timeline *tl, const struct chaos_op *op)
{
    struct timeline_bucket *b = &tl->buckets[op->t_us / 1000000u];
    struct timeline_totals *t = &tl->totals;
    switch (op->f) {
    case CHAOS_F_APPEND:
        b->ok += op->type == CHAOS_TYPE_OK;
        b->info += op->type == CHAOS_TYPE_INFO;
        b->fail += op->type == CHAOS_TYPE_FAIL;
        t->ok += op->type == CHAOS_TYPE_OK;
        t->info += op->type == CHAOS_TYPE_INFO;
        t->fail += op->type == CHAOS_TYPE_FAIL;
        break;
    case CHAOS_F_READ:
        b->read++;
        t->read++;
        break;
    case CHAOS_F_STATE:
        b->state++;
        t->state++;
        break;
    }
}

/* Throughput and totals; *ok_count_out gets the number of ok appends. */
static void
timeline_count(struct timeline *tl, size_t *ok_count_out)
{
    size_t count  = chaos_ops_count(tl->ops);
    *ok_count_out = 0;
    for (size_t i = 0; i < count; i++) {
        const struct chaos_op *op = chaos_ops_at(tl->ops, i);
        if (op->type != CHAOS_TYPE_INVOKE) {
            timeline_count_completion(tl, op);
            continue;
        }
        size_t c = chaos_ops_completion(tl->ops, i);
        if (op->f == CHAOS_F_APPEND && c == CHAOS_NONE) {
            tl->totals.pending++; /* "info" by history.h's rule */
            tl->totals.info++;
        } else if (op->f == CHAOS_F_APPEND
            && chaos_ops_at(tl->ops, c)->type == CHAOS_TYPE_OK) {
            (*ok_count_out)++;
        }
    }
}

/* Per second of invoke and per ack level: the lower median and the max of
 * ok appends' latencies. Sorting one array of every ok append (at most
 * half of CHAOS_RECORDS_HARD_MAX, 16 bytes each) keeps this exact. */
static int
timeline_latency(struct timeline *tl, size_t ok_count)
{
    struct timeline_lat_entry *e = calloc(ok_count + 1, sizeof(*e));
    size_t                     n = 0, count = chaos_ops_count(tl->ops);
    if (e == NULL) {
        return timeline_fail(tl, MRD_ENOMEM, "out of memory for latencies");
    }
    for (size_t i = 0; i < count; i++) {
        const struct chaos_op *op = chaos_ops_at(tl->ops, i);
        size_t                 c  = chaos_ops_completion(tl->ops, i);
        if (op->type != CHAOS_TYPE_INVOKE || op->f != CHAOS_F_APPEND
            || c == CHAOS_NONE
            || chaos_ops_at(tl->ops, c)->type != CHAOS_TYPE_OK) {
            continue;
        }
        MRD_ASSERT(n < ok_count && (unsigned) op->ack < TIMELINE_ACKS);
        e[n].bucket     = (uint32_t) (op->t_us / 1000000u);
        e[n].ack        = (uint32_t) op->ack;
        e[n].latency_us = chaos_ops_at(tl->ops, c)->t_us - op->t_us;
        n++;
    }
    MRD_ASSERT(n == ok_count);
    qsort(e, n, sizeof(*e), timeline_lat_cmp);
    tl->latency_min_us = UINT64_MAX;
    for (size_t g = 0, end = 0; g < n; g = end) {
        for (end = g;
             end < n && e[end].ack == e[g].ack && e[end].bucket == e[g].bucket;
             end++) { }
        struct timeline_latency *l = &tl->latency[e[g].ack][e[g].bucket];
        l->count                   = (uint32_t) (end - g);
        l->p50_us                  = e[g + (end - g - 1) / 2].latency_us;
        l->max_us                  = e[end - 1].latency_us;
        tl->latency_min_us
            = l->p50_us < tl->latency_min_us ? l->p50_us : tl->latency_min_us;
        tl->latency_max_us
            = l->max_us > tl->latency_max_us ? l->max_us : tl->latency_max_us;
    }
    free(e);
    return MRD_OK;
}

/* Lag points: per second, each node sampled in it lags the max "events"
 * over nodes sampled within TIMELINE_LAG_WINDOW_US of the second's end by
 * that max minus its own last sample. */
static int
timeline_lag(struct timeline *tl)
{
    struct {
        bool     seen, touched;
        uint64_t t_us, events;
    } last[CHAOS_NODES_MAX + 1];
    memset(last, 0, sizeof(last));
    if (tl->sample_count == 0) {
        return MRD_OK;
    }
    qsort(tl->samples, tl->sample_count, sizeof(*tl->samples),
        timeline_sample_cmp);
    tl->points = calloc(tl->sample_count, sizeof(*tl->points));
    if (tl->points == NULL) {
        return timeline_fail(tl, MRD_ENOMEM, "out of memory for lag samples");
    }
    for (size_t i = 0; i < tl->sample_count;) {
        uint64_t end_us = (tl->samples[i].t_us / 1000000u + 1u) * 1000000u;
        uint64_t ref    = 0;
        for (; i < tl->sample_count && tl->samples[i].t_us < end_us; i++) {
            const struct timeline_sample *s = &tl->samples[i];
            last[s->node].seen              = true;
            last[s->node].touched           = true;
            last[s->node].t_us              = s->t_us;
            last[s->node].events            = s->events;
        }
        for (uint32_t n = 1; n <= CHAOS_NODES_MAX; n++) {
            if (last[n].seen && last[n].t_us + TIMELINE_LAG_WINDOW_US >= end_us
                && last[n].events > ref) {
                ref = last[n].events;
            }
        }
        for (uint32_t n = 1; n <= CHAOS_NODES_MAX; n++) {
            if (!last[n].touched) {
                continue;
            }
            struct timeline_point *p = &tl->points[tl->point_count++];
            MRD_ASSERT(tl->point_count <= tl->sample_count);
            MRD_ASSERT(ref >= last[n].events); /* touched: in the window */
            p->node         = n;
            p->t_us         = last[n].t_us;
            p->lag          = ref - last[n].events;
            tl->lag_max     = p->lag > tl->lag_max ? p->lag : tl->lag_max;
            last[n].touched = false;
        }
    }
    qsort(tl->points, tl->point_count, sizeof(*tl->points), timeline_point_cmp);
    return MRD_OK;
}

static int
timeline_analyse(struct timeline *tl)
{
    size_t ok_count = 0;
    timeline_span(tl);
    tl->buckets = calloc(tl->span_s, sizeof(*tl->buckets));
    for (unsigned a = 0; a < TIMELINE_ACKS; a++) {
        tl->latency[a] = calloc(tl->span_s, sizeof(*tl->latency[a]));
    }
    if (tl->buckets == NULL || tl->latency[0] == NULL || tl->latency[1] == NULL
        || tl->latency[2] == NULL) {
        return timeline_fail(tl, MRD_ENOMEM,
            "out of memory for %" PRIu64 " seconds of buckets", tl->span_s);
    }
    timeline_count(tl, &ok_count);
    int rv = timeline_latency(tl, ok_count);
    return rv != MRD_OK ? rv : timeline_lag(tl);
}

/* ---------------------------------------------------------- output -- */

struct timeline_out {
    FILE *f;
    int   err; /* errno of the first failed write; 0 while all is well */
};

static void timeline_put(struct timeline_out *o, const char *fmt, ...)
    MRD_PRINTF(2, 3);

static void
timeline_put(struct timeline_out *o, const char *fmt, ...)
{
    va_list ap;
    if (o->err != 0) {
        return;
    }
    va_start(ap, fmt);
    if (vfprintf(o->f, fmt, ap) < 0) {
        o->err = errno != 0 ? errno : EIO;
    }
    va_end(ap);
}

/* s as HTML text or attribute: & < > " ' escaped, control bytes (which
 * HTML forbids) shown as '?'. Everything from a file goes through here. */
static void
timeline_esc(struct timeline_out *o, const char *s)
{
    for (; *s != '\0' && o->err == 0; s++) {
        unsigned char c = (unsigned char) *s;
        switch (c) {
        case '&':
            timeline_put(o, "&amp;");
            break;
        case '<':
            timeline_put(o, "&lt;");
            break;
        case '>':
            timeline_put(o, "&gt;");
            break;
        case '"':
            timeline_put(o, "&quot;");
            break;
        case '\'':
            timeline_put(o, "&#39;");
            break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
                c = '?';
            }
            if (putc(c, o->f) == EOF) {
                o->err = errno != 0 ? errno : EIO;
            }
            break;
        }
    }
}

static double
timeline_x(const struct timeline *tl, uint64_t t_us)
{
    return TL_LEFT + (double) t_us * TL_PLOT / ((double) tl->span_s * 1e6);
}

/* The smallest 1, 2 or 5 times a power of ten >= v (and >= 1). */
static uint64_t
timeline_nice(uint64_t v)
{
    for (uint64_t m = 1;; m *= 10u) {
        if (v <= m) {
            return m;
        }
        if (v <= 2u * m) {
            return 2u * m;
        }
        if (v <= 5u * m) {
            return 5u * m;
        }
    }
}

/* The top of a linear axis of four steps: each step 1, 2 or 5 times a
 * power of ten, so every tick is a whole number. */
static uint64_t
timeline_axis_max(uint64_t v)
{
    return 4u * timeline_nice(v / 4u + (v % 4u != 0));
}

/* log10 without libm (the chaos library links none): decimal exponent by
 * division, then ln of the mantissa in [1, 10) by the atanh series, whose
 * ratio z^2 <= (9/11)^2 makes 60 terms exact to well under a pixel. */
static double
timeline_log10(uint64_t v)
{
    double m = (double) (v == 0 ? 1 : v);
    int    k = 0;
    while (m >= 10.0) {
        m /= 10.0;
        k++;
    }
    double z = (m - 1.0) / (m + 1.0), z2 = z * z, term = z, sum = 0.0;
    for (int n = 1; n < 120; n += 2) {
        sum += term / n;
        term *= z2;
    }
    return k + 2.0 * sum / 2.302585092994046;
}

/* Opens a chart: a heading and an <svg> of the common width. */
static void
timeline_svg_open(
    struct timeline_out *o, const char *id, const char *title, double height)
{
    timeline_put(o,
        "<section id=\"%s\">\n<h2>%s</h2>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
        "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n"
        "<title>%s</title>\n",
        id, title, TL_WIDTH, height, TL_WIDTH, height, title);
}

/* Fault intervals shaded behind a plot, and the final heal as a line;
 * label puts "final heal" beside it. */
static void
timeline_backdrop(struct timeline_out *o, const struct timeline *tl, double top,
    double bottom, bool shade, bool label)
{
    for (size_t i = 0; shade && i < tl->fault_count; i++) {
        double x0 = timeline_x(tl, tl->faults[i].start_us);
        double x1 = timeline_x(tl, tl->faults[i].end_us);
        timeline_put(o,
            "<rect class=\"shade\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\"/>\n",
            x0, top, x1 - x0, bottom - top);
    }
    if (!tl->has_heal) {
        return;
    }
    double x = timeline_x(tl, tl->heal_us);
    timeline_put(o,
        "<line class=\"heal\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
        "y2=\"%.1f\"><title>final heal at %.3f s</title></line>\n",
        x, top - 6, x, bottom, (double) tl->heal_us / 1e6);
    if (label) {
        timeline_put(o,
            "<text class=\"heal-label\" x=\"%.1f\" y=\"%.1f\">final heal"
            "</text>\n",
            x + 3, top - 8);
    }
}

/* Ticks along the bottom of a plot, in whole seconds; at most about 12. */
static void
timeline_axis_x(struct timeline_out *o, const struct timeline *tl, double top,
    double bottom)
{
    static const uint64_t steps[] = { 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
        900, 1800, 3600, 7200, 10800, 21600, 43200, 86400 };
    uint64_t              step    = steps[MRD_ARRAY_SIZE(steps) - 1];
    for (size_t i = 0; i < MRD_ARRAY_SIZE(steps); i++) {
        if (tl->span_s / steps[i] <= 12u) {
            step = steps[i];
            break;
        }
    }
    for (uint64_t s = 0; s <= tl->span_s; s += step) {
        double x = timeline_x(tl, s * 1000000u);
        timeline_put(o,
            "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
            "y2=\"%.1f\"/><text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"middle\">%" PRIu64 "</text>\n",
            x, top, x, bottom + 4, x, bottom + 16, s);
    }
    timeline_put(o,
        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">"
        "seconds since start</text>\n",
        TL_WIDTH - TL_RIGHT, bottom + 27);
}

/* A linear y axis from 0 to vmax (timeline_axis_max()): five labelled
 * lines. */
static void
timeline_axis_y(
    struct timeline_out *o, double top, double bottom, uint64_t vmax)
{
    for (int i = 0; i <= 4; i++) {
        double y = bottom - (bottom - top) * i / 4.0;
        timeline_put(o,
            "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
            "y2=\"%.1f\"/><text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"end\">%" PRIu64 "</text>\n",
            TL_LEFT, y, TL_WIDTH - TL_RIGHT, y, TL_LEFT - 6, y + 4,
            vmax / 4u * (uint64_t) i);
    }
}

/* -------------------------------------------------------------- charts -- */

/* One row per fault kind, a bar per fault with its detail as tooltip. */
static void
timeline_draw_faults(struct timeline_out *o, const struct timeline *tl)
{
    size_t rows   = tl->kind_count > 0 ? tl->kind_count : 1;
    double top    = TL_TOP;
    double bottom = top + (double) rows * TL_ROW;
    timeline_svg_open(o, "faults", "Faults", bottom + TL_AXIS);
    timeline_axis_x(o, tl, top, bottom);
    for (size_t k = 0; k < tl->kind_count; k++) {
        timeline_put(o,
            "<text class=\"row\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"end\">",
            TL_LEFT - 6, top + (double) k * TL_ROW + TL_ROW * 0.65);
        timeline_esc(o, tl->kinds[k]);
        timeline_put(o, "</text>\n");
    }
    for (size_t i = 0; i < tl->fault_count; i++) {
        const struct timeline_fault *f  = &tl->faults[i];
        double                       x0 = timeline_x(tl, f->start_us);
        double                       x1 = timeline_x(tl, f->end_us);
        timeline_put(o,
            "<rect class=\"fault\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\"><title>",
            x0, top + (double) f->row * TL_ROW + 4,
            x1 - x0 < 1.5 ? 1.5 : x1 - x0, TL_ROW - 8);
        timeline_esc(o, f->kind);
        timeline_put(o, " %.3f s to %.3f s: ", (double) f->start_us / 1e6,
            (double) f->end_us / 1e6);
        timeline_esc(o, f->detail);
        timeline_put(o, "</title></rect>\n");
    }
    timeline_backdrop(o, tl, top, bottom, false, true);
    timeline_put(o, "</svg>\n");
    if (tl->fault_count == 0) {
        timeline_put(o,
            "<p class=\"note\">No faults: faults.jsonl is absent "
            "or empty.</p>\n");
    }
    timeline_put(o, "</section>\n");
}

/* One stacked segment of a throughput bar; returns its top. */
static double
timeline_bar(struct timeline_out *o, const char *cls, double x, double w,
    double base, uint32_t count, double per_unit)
{
    if (count == 0) {
        return base;
    }
    double h = count * per_unit;
    timeline_put(o,
        "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
        "height=\"%.2f\"/>",
        cls, x, base - h, w, h);
    return base - h;
}

/* A line through one count per second; buckets of zero count are drawn
 * (a quiet second is data), at the bucket's middle. */
static void
timeline_count_line(struct timeline_out *o, const struct timeline *tl,
    bool state, double bottom, double per_unit)
{
    const char *cls = state ? "state" : "reads";
    timeline_put(o, "<path class=\"%s\" d=\"", cls);
    for (uint64_t b = 0; b < tl->span_s; b++) {
        uint32_t v = state ? tl->buckets[b].state : tl->buckets[b].read;
        timeline_put(o, "%s%.1f %.1f", b == 0 ? "M" : " L",
            timeline_x(tl, b * 1000000u + 500000u), bottom - v * per_unit);
    }
    timeline_put(o, "\"><title>%s per second</title></path>\n", cls);
}

static void
timeline_draw_throughput(struct timeline_out *o, const struct timeline *tl)
{
    double   top = TL_TOP, bottom = TL_TOP + TL_CHART;
    uint64_t vmax = 0;
    for (uint64_t b = 0; b < tl->span_s; b++) {
        const struct timeline_bucket *k = &tl->buckets[b];
        uint64_t appends                = (uint64_t) k->ok + k->info + k->fail;
        vmax                            = appends > vmax ? appends : vmax;
        vmax                            = k->read > vmax ? k->read : vmax;
        vmax                            = k->state > vmax ? k->state : vmax;
    }
    vmax            = timeline_axis_max(vmax);
    double per_unit = (bottom - top) / (double) vmax;
    double w        = TL_PLOT / (double) tl->span_s;
    timeline_svg_open(
        o, "throughput", "Throughput (completed per second)", bottom + TL_AXIS);
    timeline_backdrop(o, tl, top, bottom, true, false);
    timeline_axis_x(o, tl, top, bottom);
    timeline_axis_y(o, top, bottom, vmax);
    for (uint64_t b = 0; b < tl->span_s; b++) {
        const struct timeline_bucket *k = &tl->buckets[b];
        if (k->ok + k->info + k->fail == 0) {
            continue;
        }
        double x = timeline_x(tl, b * 1000000u) + w * 0.1, base = bottom;
        timeline_put(o,
            "<g><title>%" PRIu64 " s: appends ok %" PRIu32 ", info %" PRIu32
            ", fail %" PRIu32 "; reads %" PRIu32 ", state %" PRIu32 "</title>",
            b, k->ok, k->info, k->fail, k->read, k->state);
        base = timeline_bar(o, "ok", x, w * 0.8, base, k->ok, per_unit);
        base = timeline_bar(o, "info", x, w * 0.8, base, k->info, per_unit);
        base = timeline_bar(o, "fail", x, w * 0.8, base, k->fail, per_unit);
        timeline_put(o, "</g>\n");
    }
    if (tl->totals.read > 0) {
        timeline_count_line(o, tl, false, bottom, per_unit);
    }
    if (tl->totals.state > 0) {
        timeline_count_line(o, tl, true, bottom, per_unit);
    }
    timeline_put(o,
        "<text class=\"legend\" x=\"%.1f\" y=\"14\"><tspan class=\"ok-t\">"
        "&#9632; append ok</tspan>  <tspan class=\"info-t\">&#9632; append "
        "info</tspan>  <tspan class=\"fail-t\">&#9632; append fail</tspan>"
        "%s%s</text>\n</svg>\n</section>\n",
        TL_LEFT,
        tl->totals.read > 0 ? "  <tspan class=\"reads-t\">&#9472; reads"
                              "</tspan>"
                            : "",
        tl->totals.state > 0 ? "  <tspan class=\"state-t\">&#9472; state "
                               "reads</tspan>"
                             : "");
}

/* "1 ms", "10 s": a decade of microseconds as a tick label. */
static void
timeline_decade_label(char *buf, size_t size, int decade)
{
    static const char *const units[] = { "us", "ms", "s" };
    int                      unit    = decade / 3 < 2 ? decade / 3 : 2;
    uint64_t                 v       = 1;
    for (int i = unit * 3; i < decade; i++) {
        v *= 10u;
    }
    snprintf(buf, size, "%" PRIu64 " %s", v, units[unit]);
}

/* One series of the latency chart (p50 or max of one ack level), broken
 * where a second has no ok append. */
static void
timeline_latency_line(struct timeline_out *o, const struct timeline *tl,
    enum chaos_ack ack, bool max, int lo, int hi, double top, double bottom)
{
    const struct timeline_latency *l   = tl->latency[ack];
    bool                           gap = true;
    timeline_put(o, "<path class=\"lat-%s%s\" d=\"", chaos_ack_name(ack),
        max ? " max" : "");
    for (uint64_t b = 0; b < tl->span_s; b++) {
        if (l[b].count == 0) {
            gap = true;
            continue;
        }
        double v = timeline_log10(max ? l[b].max_us : l[b].p50_us);
        double y = bottom - (v - lo) / (hi - lo) * (bottom - top);
        timeline_put(o, "%s%.1f %.1f ", gap ? "M" : "L",
            timeline_x(tl, b * 1000000u + 500000u), y);
        gap = false;
    }
    timeline_put(o, "\"><title>ack %s: %s latency</title></path>\n",
        chaos_ack_name(ack), max ? "max" : "p50");
}

static void
timeline_draw_latency(struct timeline_out *o, const struct timeline *tl)
{
    double top = TL_TOP, bottom = TL_TOP + TL_CHART;
    char   label[32];
    if (tl->totals.ok == 0) {
        timeline_put(o,
            "<section id=\"latency\">\n<h2>Append latency</h2>\n"
            "<p class=\"note\">No ok appends: no latency to "
            "show.</p>\n</section>\n");
        return;
    }
    /* Whole decades of microseconds around every p50 and max. */
    int lo = 0, hi = 1;
    for (uint64_t v = 10; v <= tl->latency_min_us && lo < 18; v *= 10u) {
        lo++;
    }
    for (uint64_t v = 10; v < tl->latency_max_us && hi < 19; v *= 10u) {
        hi++;
    }
    hi = hi > lo ? hi : lo + 1;
    timeline_svg_open(o, "latency",
        "Append latency, ok only (p50 solid, max dashed; by invoke second)",
        bottom + TL_AXIS);
    timeline_backdrop(o, tl, top, bottom, true, false);
    timeline_axis_x(o, tl, top, bottom);
    for (int d = lo; d <= hi; d++) {
        double y = bottom - (double) (d - lo) / (hi - lo) * (bottom - top);
        timeline_decade_label(label, sizeof(label), d);
        timeline_put(o,
            "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
            "y2=\"%.1f\"/><text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"end\">%s</text>\n",
            TL_LEFT, y, TL_WIDTH - TL_RIGHT, y, TL_LEFT - 6, y + 4, label);
    }
    bool seen[TIMELINE_ACKS] = { false, false, false };
    for (unsigned a = 0; a < TIMELINE_ACKS; a++) {
        for (uint64_t b = 0; b < tl->span_s && !seen[a]; b++) {
            seen[a] = tl->latency[a][b].count > 0;
        }
        for (int max = 0; seen[a] && max <= 1; max++) {
            timeline_latency_line(
                o, tl, (enum chaos_ack) a, max == 1, lo, hi, top, bottom);
        }
    }
    timeline_put(o, "<text class=\"legend\" x=\"%.1f\" y=\"14\">", TL_LEFT);
    for (unsigned a = 0; a < TIMELINE_ACKS; a++) {
        const char *name = chaos_ack_name((enum chaos_ack) a);
        if (seen[a]) {
            timeline_put(o,
                "<tspan class=\"lat-%s-t\">&#9472; ack %s</tspan>  ", name,
                name);
        }
    }
    timeline_put(o, "</text>\n</svg>\n</section>\n");
}

/* Ten colours, by node id; more nodes share them (the legend tells). */
static const char *const timeline_palette[]
    = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };

static void
timeline_draw_lag(struct timeline_out *o, const struct timeline *tl)
{
    double top = TL_TOP, bottom = TL_TOP + TL_CHART;
    if (tl->point_count == 0) {
        timeline_put(o,
            "<section id=\"lag\">\n<h2>Replication lag</h2>\n"
            "<p class=\"note\">No lag samples: lag.jsonl is "
            "absent or empty.</p>\n</section>\n");
        return;
    }
    uint64_t vmax     = timeline_axis_max(tl->lag_max);
    double   per_unit = (bottom - top) / (double) vmax;
    timeline_svg_open(o, "lag",
        "Replication lag (events behind the most up-to-date node)",
        bottom + TL_AXIS);
    timeline_backdrop(o, tl, top, bottom, true, false);
    timeline_axis_x(o, tl, top, bottom);
    timeline_axis_y(o, top, bottom, vmax);
    for (size_t i = 0; i < tl->point_count;) {
        uint32_t node = tl->points[i].node;
        timeline_put(o, "<path class=\"lag\" stroke=\"%s\" d=\"",
            timeline_palette[node % MRD_ARRAY_SIZE(timeline_palette)]);
        for (size_t first = i;
             i < tl->point_count && tl->points[i].node == node; i++) {
            timeline_put(o, "%s%.1f %.1f ", i == first ? "M" : "L",
                timeline_x(tl, tl->points[i].t_us),
                bottom - (double) tl->points[i].lag * per_unit);
        }
        timeline_put(o, "\"><title>node %" PRIu32 "</title></path>\n", node);
    }
    timeline_put(o, "</svg>\n<p class=\"legend\">");
    for (size_t i = 0; i < tl->point_count; i++) {
        uint32_t node = tl->points[i].node;
        if (i == 0 || tl->points[i - 1].node != node) {
            timeline_put(o,
                "<span style=\"color:%s\">&#9472; node %" PRIu32 "</span> ",
                timeline_palette[node % MRD_ARRAY_SIZE(timeline_palette)],
                node);
        }
    }
    timeline_put(o, "</p>\n</section>\n");
}

/* ---------------------------------------------------------- the page -- */

static const char timeline_css[]
    = "body{font:14px/1.4 sans-serif;margin:16px;color:#222}"
      "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 4px}"
      "table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;"
      "text-align:left}td{text-align:right;font-variant-numeric:"
      "tabular-nums}.note{color:#666;font-style:italic}"
      "svg{display:block}svg text{font:11px sans-serif;fill:#333}"
      ".grid{stroke:#ddd;stroke-width:1}.shade{fill:#d62728;opacity:.07}"
      ".heal{stroke:#000;stroke-width:1.5;stroke-dasharray:5 3}"
      ".heal-label{font-weight:bold}"
      ".fault{fill:#d62728;opacity:.8}.fault:hover{opacity:1}"
      ".ok{fill:#2ca02c}.info{fill:#ff7f0e}.fail{fill:#d62728}"
      ".ok-t{fill:#2ca02c}.info-t{fill:#ff7f0e}.fail-t{fill:#d62728}"
      ".reads,.state{fill:none;stroke-width:1.5}"
      ".reads{stroke:#1f77b4}.state{stroke:#9467bd}"
      ".reads-t{fill:#1f77b4}.state-t{fill:#9467bd}"
      "path{fill:none;stroke-width:1.5}.max{stroke-dasharray:4 3}"
      ".lat-local{stroke:#1f77b4}.lat-region{stroke:#2ca02c}"
      ".lat-global{stroke:#9467bd}.lat-local-t{fill:#1f77b4}"
      ".lat-region-t{fill:#2ca02c}.lat-global-t{fill:#9467bd}";

/* The run directory's last component, for the title. */
static void
timeline_dir_name(const char *dir, char *name, size_t size)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') {
        len--;
    }
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') {
        start--;
    }
    len = len - start < size - 1 ? len - start : size - 1;
    memcpy(name, dir + start, len);
    name[len] = '\0';
}

static void
timeline_draw_header(struct timeline_out *o, const struct timeline *tl)
{
    char name[TIMELINE_PATH_SIZE];
    timeline_dir_name(tl->dir, name, sizeof(name));
    timeline_put(o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        "<meta charset=\"utf-8\">\n<title>chaos timeline: ");
    timeline_esc(o, name);
    timeline_put(o,
        "</title>\n<style>%s</style>\n</head>\n<body>\n"
        "<h1>chaos timeline: ",
        timeline_css);
    timeline_esc(o, name);
    timeline_put(o, "</h1>\n<p>");
    if (tl->has_seed) {
        timeline_put(o, "seed %" PRIu64 "; ", tl->seed);
    }
    timeline_put(o, "%" PRIu64 " s on the axis", tl->span_s);
    if (tl->has_heal) {
        timeline_put(o, "; final heal at %.3f s", (double) tl->heal_us / 1e6);
    }
    const struct timeline_totals *t = &tl->totals;
    timeline_put(o,
        ".</p>\n<table>\n"
        "<tr><th>appends ok</th><td id=\"appends-ok\">%" PRIu64 "</td></tr>\n"
        "<tr><th>appends info</th><td id=\"appends-info\">%" PRIu64
        "</td><td>(%" PRIu64 " never completed)</td></tr>\n"
        "<tr><th>appends fail</th><td id=\"appends-fail\">%" PRIu64
        "</td></tr>\n"
        "<tr><th>reads</th><td id=\"reads\">%" PRIu64 "</td></tr>\n"
        "<tr><th>state reads</th><td id=\"state-reads\">%" PRIu64 "</td></tr>\n"
        "<tr><th>faults</th><td id=\"faults\">%zu</td></tr>\n</table>\n",
        t->ok, t->info, t->pending, t->fail, t->read, t->state,
        tl->fault_count);
}

static void
timeline_draw(struct timeline_out *o, const struct timeline *tl)
{
    timeline_draw_header(o, tl);
    timeline_draw_faults(o, tl);
    timeline_draw_throughput(o, tl);
    timeline_draw_latency(o, tl);
    timeline_draw_lag(o, tl);
    timeline_put(o,
        "<p class=\"note\">Times are seconds since the run "
        "started (the history's clock). Shaded: faults; dashed "
        "line: the final heal. Hover for details.</p>\n"
        "</body>\n</html>\n");
}

/* Writes a temporary file and renames it over timeline.html. */
static int
timeline_emit(struct timeline *tl)
{
    char tmp[TIMELINE_PATH_SIZE], path[TIMELINE_PATH_SIZE];
    int  rv = timeline_path(tl, "timeline.html.tmp", tmp);
    rv      = rv != MRD_OK ? rv : timeline_path(tl, "timeline.html", path);
    if (rv != MRD_OK) {
        return rv;
    }
    struct timeline_out o = { .f = fopen(tmp, "w"), .err = 0 };
    if (o.f == NULL) {
        return timeline_fail(
            tl, MRD_EIO, "cannot write timeline.html: %s", strerror(errno));
    }
    timeline_draw(&o, tl);
    if (fflush(o.f) != 0 && o.err == 0) {
        o.err = errno != 0 ? errno : EIO;
    }
    if (fclose(o.f) != 0 && o.err == 0) {
        o.err = errno != 0 ? errno : EIO;
    }
    if (o.err == 0 && rename(tmp, path) != 0) {
        o.err = errno != 0 ? errno : EIO;
    }
    if (o.err != 0) {
        remove(tmp);
        return timeline_fail(
            tl, MRD_EIO, "cannot write timeline.html: %s", strerror(o.err));
    }
    return MRD_OK;
}

int
chaos_timeline_write(const char *dir, char *why, size_t why_size)
{
    struct timeline tl;
    memset(&tl, 0, sizeof(tl));
    MRD_ASSERT(dir != NULL);
    MRD_ASSERT(why != NULL || why_size == 0);
    tl.dir      = dir;
    tl.why      = why;
    tl.why_size = why_size;
    if (why_size > 0) {
        why[0] = '\0';
    }
    int rv = chaos_arena_new(TIMELINE_FAULT_BYTES_MAX, &tl.arena);
    if (rv != MRD_OK) {
        rv = timeline_fail(&tl, rv, "out of memory");
        goto fail;
    }
    rv = timeline_read_history(&tl);
    rv = rv != MRD_OK
        ? rv
        : timeline_read_jsonl(&tl, "faults.jsonl", timeline_fault_line);
    rv = rv != MRD_OK ? rv : timeline_read_final(&tl);
    rv = rv != MRD_OK
        ? rv
        : timeline_read_jsonl(&tl, "lag.jsonl", timeline_lag_line);
    if (rv != MRD_OK) {
        goto fail;
    }
    timeline_read_seed(&tl);
    rv = timeline_analyse(&tl);
    rv = rv != MRD_OK ? rv : timeline_emit(&tl);
fail:
    for (unsigned a = TIMELINE_ACKS; a > 0; a--) {
        free(tl.latency[a - 1]);
    }
    free(tl.buckets);
    free(tl.points);
    free(tl.samples);
    free(tl.faults);
    chaos_arena_free(tl.arena);
    chaos_ops_free(tl.ops);
    return rv;
}
