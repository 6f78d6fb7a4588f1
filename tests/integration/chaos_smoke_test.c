/*
 * chaos_smoke_test.c: the chaos runner end to end, short (docs/CHAOS.md).
 *
 * Runs `meridian-chaos --seed 42 --duration-s 15 --clients-per-region 12
 * --dir <tmp>` as a child:
 * six meridiand behind fault proxies, a recorded workload, a seeded nemesis
 * of link faults, the heal, and the checker. The run must exit 0, and its
 * report.txt must say PASS with at least CS_ACKED_MIN acknowledged appends,
 * so a runner that quietly did nothing cannot pass; it must leave its
 * history, faults, lag samples, final state, stats and timeline; and
 * `meridian-chaos --check DIR` must pass the saved run again (and exit 3
 * without its final.json). The wait is bounded
 * (CS_WAIT_MS, scaled by MRD_TEST_TIMEOUT_MULTIPLIER) and the runner is
 * killed when it runs over; it kills its own meridiand on the way out, and
 * they die with it (PR_SET_PDEATHSIG) if it is killed. The directory is
 * kept when the test fails or MRD_TEST_KEEP=1, so a failing run can be
 * read and replayed from its seed.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef MRD_CHAOS_PATH
#error "MRD_CHAOS_PATH names meridian-chaos (CMakeLists.txt)"
#endif

/* Setup (a few seconds of joining), 15 s of chaos, up to 60 s of
 * convergence and the checks, with room for a slow, shared machine. */
#define CS_WAIT_MS 240000u
#define CS_POLL_MS 100u
/* 36 clients make well over a thousand appends in 15 s on an idle
 * machine; 300 is far below that and far above "nothing happened". */
#define CS_ACKED_MIN 300u
#define CS_REPORT_SIZE (64u * 1024u)

static char cs_dir[HARNESS_PATH_SIZE];

/* Runs the runner; returns its wait status, or -1 when it ran over and
 * was killed. */
static int
cs_run(const char *const *argv)
{
    pid_t parent = getpid();
    pid_t pid    = fork();
    int   status = 0;

    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        execv(argv[0], (char *const *) (uintptr_t) argv);
        _exit(127);
    }
    uint32_t tries = harness_ms(CS_WAIT_MS) / CS_POLL_MS;
    for (uint32_t i = 0; i <= tries; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return status;
        }
        assert_true(r == 0 || errno == EINTR);
        harness_sleep_ms(CS_POLL_MS);
    }
    fprintf(stderr, "chaos_smoke_test: meridian-chaos ran over; killing\n");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* report.txt whole, NUL-terminated. */
static void
cs_report_read(const char *dir, char *out, size_t size)
{
    char path[HARNESS_PATH_SIZE + 32];
    snprintf(path, sizeof path, "%s/report.txt", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fail_msg("no %s", path);
    }
    size_t n = fread(out, 1, size - 1, f);
    out[n]   = '\0';
    fclose(f);
}

static void
test_chaos_smoke(void **state)
{
    static char report[CS_REPORT_SIZE];
    uint64_t    acked = 0;
    (void) state;

    assert_int_equal(
        harness_tmpdir_make("meridian-chaos-smoke-", cs_dir, sizeof cs_dir), 0);
    printf("chaos_smoke_test: %s --seed 42 --duration-s 15 "
           "--clients-per-region 12 --dir %s\n",
        MRD_CHAOS_PATH, cs_dir);
    fflush(stdout);
    /* 12 clients a region, not the runner's 32: this runs on ASan builds
     * beside other tests (ctest -j2), and must not starve them. */
    const char *run[]  = { MRD_CHAOS_PATH, "--seed", "42", "--duration-s", "15",
         "--clients-per-region", "12", "--dir", cs_dir, NULL };
    int         status = cs_run(run);
    if (status < 0) {
        fail_msg("meridian-chaos did not finish in %u ms (dir %s)",
            harness_ms(CS_WAIT_MS), cs_dir);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("meridian-chaos: %s %d (dir %s)",
            WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), cs_dir);
    }
    cs_report_read(cs_dir, report, sizeof report);
    if (strstr(report, "result: PASS\n") == NULL
        || strstr(report, "chaos check: PASS") == NULL) {
        fail_msg("report.txt does not say PASS:\n%s", report);
    }
    const char *line = strstr(report, "appends acked: ");
    assert_non_null(line);
    assert_int_equal(sscanf(line, "appends acked: %" SCNu64, &acked), 1);
    printf("chaos_smoke_test: %" PRIu64 " appends acknowledged\n", acked);
    if (acked < CS_ACKED_MIN) {
        fail_msg("only %" PRIu64 " acknowledged appends (want >= %u)", acked,
            CS_ACKED_MIN);
    }
    /* What a run leaves besides the report. */
    static const char *const files[] = { "history.jsonl", "faults.jsonl",
        "final.json", "lag.jsonl", "stats.json", "timeline.html", "n1/log" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char        path[HARNESS_PATH_SIZE + 32];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", cs_dir, files[i]);
        if (stat(path, &st) != 0 || st.st_size == 0) {
            fail_msg("no %s after the run", path);
        }
    }
    /* The saved run checks again offline: passes; without its final state
     * the checker cannot run (exit 3). */
    const char *check[] = { MRD_CHAOS_PATH, "--check", cs_dir, NULL };
    status              = cs_run(check);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char final[HARNESS_PATH_SIZE + 32], moved[HARNESS_PATH_SIZE + 32];
    snprintf(final, sizeof final, "%s/final.json", cs_dir);
    snprintf(moved, sizeof moved, "%s/final.json.away", cs_dir);
    assert_int_equal(rename(final, moved), 0);
    status = cs_run(check);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    /* Passed: the directory goes unless asked to stay. */
    const char *keep = getenv("MRD_TEST_KEEP");
    if (keep == NULL || strcmp(keep, "1") != 0) {
        harness_rmrf(cs_dir);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
