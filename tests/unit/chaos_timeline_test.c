/*
 * chaos_timeline_test.c: chaos_timeline_write() on small run directories
 * in temp dirs. A full run (history, faults, final.json, lag) gives one
 * self-contained page with a bar per fault, the final-heal marker, escaped
 * details, the totals and one lag line per node; the optional files may be
 * missing (their sections say so); a missing or bad history, a bad faults
 * or lag line, and an unwritable page fail with a sentence naming the file
 * and line. Pure: temp files only, no sockets, no sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "timeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers -- */

/* Every name a test may create in its run directory, for the cleanup. */
static const char *const run_files[] = { "history.jsonl", "faults.jsonl",
    "final.json", "lag.jsonl", "report.txt", "timeline.html",
    "timeline.html.tmp", "timeline.html/keep" };

static void
run_dir_new(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/chaos_timeline_XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void
run_dir_free(const char *dir)
{
    char path[512];
    for (size_t i = MRD_ARRAY_SIZE(run_files); i > 0; i--) {
        snprintf(path, sizeof(path), "%s/%s", dir, run_files[i - 1]);
        remove(path); /* a file or an empty directory; absent is fine */
    }
    assert_int_equal(rmdir(dir), 0);
}

static void
put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* The whole page, NUL-terminated; the caller frees it. */
static char *
get_page(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/timeline.html", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    char *page = malloc((size_t) size + 1);
    assert_non_null(page);
    assert_int_equal(fread(page, 1, (size_t) size, f), (size_t) size);
    page[size] = '\0';
    fclose(f);
    return page;
}

static size_t
count_of(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(haystack, needle); p != NULL;
         p             = strstr(p + strlen(needle), needle)) {
        n++;
    }
    return n;
}

static bool
page_exists(const char *dir)
{
    char        path[512];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/timeline.html", dir);
    return stat(path, &sb) == 0;
}

/* Two seconds of work: p1 appends ok twice at ack local (200, 400 ms),
 * p2 an ok at ack global, a fail and an info; p3 a read; p4 an append
 * with no completion (info by history.h's rule). */
static const char history[]
    = "{\"t\":100000,\"p\":1,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s1\",\"id\":\"a1\",\"ack\":\"local\"}\n"
      "{\"t\":150000,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s2\",\"id\":\"b1\",\"ack\":\"global\"}\n"
      "{\"t\":300000,\"p\":1,\"type\":\"ok\",\"f\":\"append\"}\n"
      "{\"t\":400000,\"p\":1,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s1\",\"id\":\"a2\",\"ack\":\"local\"}\n"
      "{\"t\":500000,\"p\":3,\"type\":\"invoke\",\"f\":\"read\","
      "\"stream\":\"s1\"}\n"
      "{\"t\":600000,\"p\":3,\"type\":\"ok\",\"f\":\"read\","
      "\"ids\":[\"a1\"]}\n"
      "{\"t\":800000,\"p\":1,\"type\":\"ok\",\"f\":\"append\"}\n"
      "{\"t\":1150000,\"p\":2,\"type\":\"ok\",\"f\":\"append\"}\n"
      "{\"t\":1200000,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s2\",\"id\":\"b2\"}\n"
      "{\"t\":1300000,\"p\":2,\"type\":\"fail\",\"f\":\"append\","
      "\"err\":\"MRD_EVERSION\"}\n"
      "{\"t\":1400000,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s2\",\"id\":\"b3\"}\n"
      "{\"t\":1500000,\"p\":2,\"type\":\"info\",\"f\":\"append\","
      "\"err\":\"MRD_ETIMEDOUT\"}\n"
      "{\"t\":1600000,\"p\":4,\"type\":\"invoke\",\"f\":\"append\","
      "\"stream\":\"s3\",\"id\":\"d1\"}\n";

/* Three faults of two kinds; the details hold markup and quotes. */
static const char faults[]
    = "{\"fault\":\"pause\",\"start_t\":200000,\"end_t\":900000,"
      "\"detail\":\"node 1 <b>paused</b> & \\\"held\\\" 'x'\"}\n"
      "{\"fault\":\"halves\",\"start_t\":1000000,\"end_t\":1400000,"
      "\"detail\":\"nodes 1 2\"}\n"
      "{\"fault\":\"pause\",\"start_t\":1500000,\"end_t\":1500000,"
      "\"detail\":\"node 2\"}\n";

static const char final[]
    = "{\"heal_t\":1700000,\"placement\":[],\"nodes\":[{\"node\":1}]}\n";

/* Nodes 1 and 2, a second apart; node 2 falls 5 events behind. */
static const char lag[] = "{\"t\":100000,\"node\":1,\"events\":10}\n"
                          "{\"t\":200000,\"node\":2,\"events\":10}\n"
                          "{\"t\":1100000,\"node\":1,\"events\":20}\n"
                          "{\"t\":1200000,\"node\":2,\"events\":15}\n";

/* -------------------------------------------------------------- tests -- */

static void
test_full(void **state)
{
    char dir[256], why[256];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    put_file(dir, "faults.jsonl", faults);
    put_file(dir, "final.json", final);
    put_file(dir, "lag.jsonl", lag);
    put_file(dir, "report.txt", "chaos check: PASS\nseed: 4242\n");
    assert_int_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_string_equal(why, "");
    char *page = get_page(dir);
    /* One self-contained page. */
    assert_non_null(strstr(page, "<!DOCTYPE html>"));
    assert_non_null(strstr(page, "<svg"));
    assert_null(strstr(page, "<script"));
    assert_null(strstr(page, "src="));
    assert_null(strstr(page, "href="));
    assert_non_null(strstr(page, "</html>\n"));
    /* A bar per fault, a row per kind, the detail escaped. */
    assert_int_equal(count_of(page, "class=\"fault\""), 3);
    assert_int_equal(count_of(page, "class=\"row\""), 2);
    assert_non_null(strstr(page,
        "node 1 &lt;b&gt;paused&lt;/b&gt; &amp; &quot;held&quot; &#39;x&#39;"));
    assert_null(strstr(page, "<b>"));
    /* The final heal: a line in every chart, labelled once. */
    assert_int_equal(count_of(page, "class=\"heal\""), 4);
    assert_int_equal(count_of(page, ">final heal</text>"), 1);
    /* Header: the dir name, the seed from report.txt and the totals. */
    assert_non_null(strstr(page, strrchr(dir, '/') + 1));
    assert_non_null(strstr(page, "seed 4242"));
    assert_non_null(strstr(page, "id=\"appends-ok\">3<"));
    assert_non_null(strstr(page, "id=\"appends-info\">2<"));
    assert_non_null(strstr(page, "(1 never completed)"));
    assert_non_null(strstr(page, "id=\"appends-fail\">1<"));
    assert_non_null(strstr(page, "id=\"reads\">1<"));
    assert_non_null(strstr(page, "id=\"faults\">3<"));
    /* Throughput: two seconds with appends, and a reads line. */
    assert_int_equal(count_of(page, "<rect class=\"ok\""), 2);
    assert_int_equal(count_of(page, "<rect class=\"fail\""), 1);
    assert_int_equal(count_of(page, "<path class=\"reads\""), 1);
    /* Latency: p50 and max for local and global, none for region. */
    assert_int_equal(count_of(page, "<path class=\"lat-local"), 2);
    assert_int_equal(count_of(page, "<path class=\"lat-global"), 2);
    assert_null(strstr(page, "<path class=\"lat-region"));
    /* Lag: a line per node, and no note. */
    assert_int_equal(count_of(page, "class=\"lag\""), 2);
    assert_non_null(strstr(page, "node 2</title>"));
    assert_null(strstr(page, "No lag samples"));
    free(page);
    run_dir_free(dir);
}

/* Only the history: the optional sections say they are empty. */
static void
test_history_only(void **state)
{
    char dir[256], why[256];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    assert_int_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    char *page = get_page(dir);
    assert_non_null(strstr(page, "No lag samples"));
    assert_non_null(strstr(page, "No faults"));
    assert_null(strstr(page, "class=\"fault\""));
    assert_null(strstr(page, "class=\"heal\""));
    assert_null(strstr(page, "seed "));
    assert_non_null(strstr(page, "id=\"faults\">0<"));
    free(page);
    /* An empty lag.jsonl is no lag either. */
    put_file(dir, "lag.jsonl", "");
    assert_int_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    page = get_page(dir);
    assert_non_null(strstr(page, "No lag samples"));
    free(page);
    run_dir_free(dir);
}

static void
test_missing_history(void **state)
{
    char dir[256], why[256];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "faults.jsonl", faults);
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_string_equal(
        why, "cannot open history.jsonl: No such file or directory");
    assert_false(page_exists(dir));
    run_dir_free(dir);
}

static void
test_bad_history(void **state)
{
    char dir[256], why[256];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl",
        "{\"t\":10,\"p\":1,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s1\",\"id\":\"a1\"}\n"
        "{\"t\":5,\"p\":1,\"type\":\"ok\",\"f\":\"append\"}\n");
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_memory_equal(why, "history.jsonl line 2: ", 22);
    assert_false(page_exists(dir));
    run_dir_free(dir);
}

static void
test_bad_faults(void **state)
{
    static const char *const bad[] = {
        "{\"fault\":\"pause\",\"start_t\":5,\"end_t\":4,\"detail\":\"x\"}\n",
        "{\"fault\":\"pause\",\"start_t\":5}\n",
        "{\"fault\":\"\",\"start_t\":5,\"end_t\":6}\n",
        "{\"fault\":\"pause\",\"start_t\":-1,\"end_t\":6}\n",
        "{\"fault\":\"pause\",\"start_t\":1,\"end_t\":6,\"detail\":7}\n",
        "[1,2]\n",
        "{\"fault\":\"pause\",\"start_t\":1,\n",
    };
    char dir[256], why[256], text[512];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        /* A good line first, so the bad one is line 2. */
        snprintf(text, sizeof(text),
            "{\"fault\":\"term\",\"start_t\":1,\"end_t\":2}\n%s", bad[i]);
        put_file(dir, "faults.jsonl", text);
        assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
        assert_memory_equal(why, "faults.jsonl line 2: ", 21);
        assert_false(page_exists(dir));
    }
    run_dir_free(dir);
}

static void
test_bad_lag(void **state)
{
    static const char *const bad[] = {
        "{\"t\":1,\"node\":0,\"events\":1}\n",
        "{\"t\":1,\"node\":65,\"events\":1}\n",
        "{\"t\":1,\"node\":1}\n",
        "{\"t\":1,\"node\":1,\"events\":-3}\n",
        "not json\n",
    };
    char dir[256], why[256], text[512];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        snprintf(text, sizeof(text), "\n{\"t\":1,\"node\":1,\"events\":1}\n%s",
            bad[i]);
        put_file(dir, "lag.jsonl", text);
        assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
        assert_memory_equal(why, "lag.jsonl line 3: ", 18);
    }
    run_dir_free(dir);
}

static void
test_bad_final(void **state)
{
    char dir[256], why[256];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    put_file(dir, "final.json", "{\"heal_t\":\"soon\"}");
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_memory_equal(why, "final.json: ", 12);
    put_file(dir, "final.json", "{\"heal_t\":");
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_memory_equal(why, "final.json line 1: ", 19);
    /* No heal_t: no marker, no error. */
    put_file(dir, "final.json", "{\"nodes\":[]}");
    assert_int_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    char *page = get_page(dir);
    assert_null(strstr(page, "class=\"heal\""));
    free(page);
    run_dir_free(dir);
}

/* A directory where the page goes: the rename fails, and no temp file is
 * left behind. */
static void
test_cannot_write(void **state)
{
    char dir[256], why[256], path[512];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    put_file(dir, "history.jsonl", history);
    snprintf(path, sizeof(path), "%s/timeline.html", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    put_file(dir, "timeline.html/keep", "x");
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_memory_equal(why, "cannot write timeline.html: ", 28);
    snprintf(path, sizeof(path), "%s/timeline.html.tmp", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    run_dir_free(dir);
}

/* why is cut to fit and NUL-terminated, and may be absent. */
static void
test_why_size(void **state)
{
    char dir[256], why[8];
    (void) state;
    run_dir_new(dir, sizeof(dir));
    memset(why, 'x', sizeof(why));
    assert_int_not_equal(chaos_timeline_write(dir, why, sizeof(why)), 0);
    assert_string_equal(why, "cannot ");
    assert_int_not_equal(chaos_timeline_write(dir, NULL, 0), 0);
    run_dir_free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_history_only),
        cmocka_unit_test(test_missing_history),
        cmocka_unit_test(test_bad_history),
        cmocka_unit_test(test_bad_faults),
        cmocka_unit_test(test_bad_lag),
        cmocka_unit_test(test_bad_final),
        cmocka_unit_test(test_cannot_write),
        cmocka_unit_test(test_why_size),
    };
    return cmocka_run_group_tests_name("chaos_timeline", tests, NULL, NULL);
}
