/*
 * topology_cli_test.c: `meridianctl keygen`, the identity `cluster init`
 * writes (keys and the first signed topology) and `meridianctl topology`,
 * through the real binary.
 *
 * Outcomes are checked in the files, not only in what the CLI prints: each
 * topology the CLI writes is opened here with topo_open_signed and compared
 * field by field, and taken with topo_accept after the version before it,
 * exactly as a node will. Refusals are checked by exit code (1 failed, 2
 * usage), by their words on stderr, and by the file being left as it was:
 * a key never overwritten, a change refused by the rules, the wrong admin
 * key, a tampered or truncated file. No meridiand runs here.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"
#include "keyring.h"
#include "topo.h"

#define TC_OUT_SIZE 16384u
#define TC_PATH_SIZE (HARNESS_PATH_SIZE + 64u)

static char tc_dir[HARNESS_PATH_SIZE];
static char tc_out[TC_OUT_SIZE], tc_err[TC_OUT_SIZE];

/* Runs meridianctl; stdout to tc_out, stderr to tc_err (and echoed to
 * ours for the log). Returns its exit code. */
static int
tc_run(const char *const *args)
{
    char path[TC_PATH_SIZE];

    snprintf(path, sizeof(path), "%s/stderr", tc_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    fflush(stderr);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    int rc = harness_run_ctl(args, tc_out, sizeof(tc_out));
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    ssize_t n             = pread(fd, tc_err, sizeof(tc_err) - 1, 0);
    tc_err[n > 0 ? n : 0] = '\0';
    close(fd);
    fputs(tc_err, stderr);
    return rc;
}

#define RUN(...) tc_run((const char *const[]) { __VA_ARGS__, NULL })

static void
tc_path(char *out, const char *name)
{
    snprintf(out, TC_PATH_SIZE, "%s/%s", tc_dir, name);
}

static int
tc_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int) (st.st_mode & 07777);
}

/* Reads a whole (small) file into buf; returns its size. */
static size_t
tc_read(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    assert_true(n < cap);
    fclose(f);
    return n;
}

static void
tc_write(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The public key of a key file (libsodium: seed, then public key). */
static void
tc_key_pk(const char *path, uint8_t pk[TOPO_KEY_SIZE])
{
    uint8_t buf[256], sk[TOPO_SECRET_KEY_SIZE];
    size_t  n = tc_read(path, buf, sizeof(buf));
    assert_int_equal(n, 129);
    assert_int_equal(buf[128], '\n');
    assert_int_equal(sodium_hex2bin(sk, sizeof(sk), (const char *) buf, 128,
                         NULL, NULL, NULL),
        0);
    memcpy(pk, sk + 32, TOPO_KEY_SIZE);
}

/* Opens a signed topology file as a node would its bootstrap file. */
static void
tc_load(const char *path, struct topo *t)
{
    static uint8_t buf[TOPO_SIGNED_SIZE_MAX + 1];
    const char    *why = NULL;
    size_t         n   = tc_read(path, buf, sizeof(buf));
    if (topo_open_signed(buf, n, t, &why) != MRD_OK) {
        fail_msg("%s: %s", path, why);
    }
}

/* A node holding prev takes the file at path. */
static void
tc_accepts(const struct topo *prev, const char *path, struct topo *out)
{
    static uint8_t buf[TOPO_SIGNED_SIZE_MAX + 1];
    const char    *why = NULL;
    size_t         n   = tc_read(path, buf, sizeof(buf));
    if (topo_accept(prev, buf, n, out, &why) != MRD_OK) {
        fail_msg("%s refused after version %llu: %s", path,
            (unsigned long long) prev->version, why);
    }
}

static struct topo *
tc_topo(void)
{
    struct topo *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    return t;
}

static int
tc_setup(void **state)
{
    (void) state;
    if (sodium_init() < 0) {
        return -1;
    }
    return harness_tmpdir_make("meridian-topo-", tc_dir, sizeof(tc_dir));
}

static int
tc_teardown(void **state)
{
    harness_teardown(state);
    harness_rmrf(tc_dir);
    return 0;
}

/* --------------------------------------------------------------- keygen -- */

static void
test_keygen(void **state)
{
    (void) state;
    char    key[TC_PATH_SIZE];
    uint8_t pk[TOPO_KEY_SIZE], before[256], after[256];
    char    hex[TOPO_KEY_SIZE * 2 + 2];

    tc_path(key, "a.key");
    assert_int_equal(RUN("keygen", "--out", key), 0);
    assert_int_equal(strlen(tc_out), 65);
    assert_int_equal(tc_mode(key), 0600);
    tc_key_pk(key, pk);
    sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
    strcat(hex, "\n");
    assert_string_equal(tc_out, hex);

    /* Never overwritten. */
    size_t n = tc_read(key, before, sizeof(before));
    assert_int_equal(RUN("keygen", "--out", key), 1);
    assert_non_null(strstr(tc_err, "never overwritten"));
    assert_int_equal(tc_read(key, after, sizeof(after)), n);
    assert_memory_equal(before, after, n);

    assert_int_equal(RUN("keygen"), 2);
    assert_non_null(strstr(tc_err, "--out FILE is required"));
    assert_int_equal(RUN("keygen", "--help"), 0);
    assert_non_null(strstr(tc_out, "keygen --out FILE"));
    char json_key[TC_PATH_SIZE];
    tc_path(json_key, "b.key");
    assert_int_equal(RUN("keygen", "--out", json_key, "--json"), 0);
    assert_non_null(strstr(tc_out, "\"public_key\":\""));
}

/* ------------------------------------------------------------- cluster -- */

static void
test_cluster_init_identity(void **state)
{
    (void) state;
    char         cdir[TC_PATH_SIZE], path[TC_PATH_SIZE + 32];
    uint8_t      pk[TOPO_KEY_SIZE], text[8192];
    struct topo *t = tc_topo();

    tc_path(cdir, "c");
    assert_int_equal(RUN("cluster", "init", "--dir", cdir, "--regions", "eu,us",
                         "--nodes-per-region", "2", "--replicas-per-region",
                         "1", "--shards", "8", "--base-port", "23000"),
        0);
    assert_non_null(strstr(tc_out, "4 node configs"));
    assert_non_null(strstr(tc_out, "topology.signed (version 1"));

    snprintf(path, sizeof(path), "%s/topology.signed", cdir);
    tc_load(path, t);
    assert_int_equal(t->version, 1);
    assert_int_equal(t->shard_count, 8);
    assert_int_equal(t->next_node_id, 5);
    assert_int_equal(t->region_count, 2);
    assert_string_equal(t->regions[0].name, "eu");
    assert_string_equal(t->regions[1].name, "us");
    assert_int_equal(t->regions[0].rf, 1);
    assert_int_equal(t->regions[1].rf, 1);
    assert_int_equal(t->node_count, 4);
    snprintf(path, sizeof(path), "%s/admin.key", cdir);
    assert_int_equal(tc_mode(path), 0600);
    tc_key_pk(path, pk);
    assert_memory_equal(t->admin_key, pk, TOPO_KEY_SIZE);
    for (uint32_t i = 0; i < 4; i++) {
        const struct topo_node *n = &t->nodes[i];
        char                    want[64];
        assert_int_equal(n->id, i + 1);
        snprintf(want, sizeof(want), "node-%u", i + 1);
        assert_string_equal(n->name, want);
        snprintf(want, sizeof(want), "tcp://127.0.0.1:%u", 23000 + i);
        assert_string_equal(n->address, want);
        assert_int_equal(n->region, i / 2);
        assert_int_equal(n->state, TOPO_NODE_ACTIVE);
        snprintf(path, sizeof(path), "%s/node-%u/node.key", cdir, i + 1);
        assert_int_equal(tc_mode(path), 0600);
        tc_key_pk(path, pk);
        assert_memory_equal(n->public_key, pk, TOPO_KEY_SIZE);
    }
    /* cluster.json names the files and the cluster id; each meridiand
     * config names its node, data dir, the topology file, its key file
     * and the cluster's keyring: the topology says the rest (no cluster
     * id or peers of its own). */
    char cid[TOPO_CLUSTER_ID_SIZE * 2 + 1];
    sodium_bin2hex(cid, sizeof(cid), t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    snprintf(path, sizeof(path), "%s/cluster.json", cdir);
    text[tc_read(path, text, sizeof(text))] = '\0';
    assert_non_null(strstr((char *) text, cid));
    assert_non_null(strstr((char *) text, "topology.signed"));
    assert_non_null(strstr((char *) text, "admin.key"));
    snprintf(path, sizeof(path), "%s/node-1.json", cdir);
    text[tc_read(path, text, sizeof(text))] = '\0';
    assert_null(strstr((char *) text, cid));
    assert_null(strstr((char *) text, "peers"));
    assert_non_null(strstr((char *) text, "topology.signed"));
    char want_path[TC_PATH_SIZE + 64];
    assert_non_null(strstr((char *) text, "\"key\""));
    snprintf(want_path, sizeof(want_path), "\"%s/node-1/node.key\"", cdir);
    assert_non_null(strstr((char *) text, want_path));
    assert_non_null(strstr((char *) text, "\"keyring\""));
    snprintf(want_path, sizeof(want_path), "\"%s/keyring\"", cdir);
    assert_non_null(strstr((char *) text, want_path));

    /* DIR/keyring: what a client of the cluster trusts, read as a node or
     * a client reads it: the cluster id and each node's key, exactly the
     * topology's, and no client yet (the admin key is trusted through the
     * topology). */
    struct keyring kr;
    char           err[256];
    snprintf(path, sizeof(path), "%s/keyring", cdir);
    if (keyring_load(path, &kr, err, sizeof(err)) != MRD_OK) {
        fail_msg("%s", err);
    }
    assert_true(kr.has_cluster);
    assert_memory_equal(kr.cluster_id, t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    assert_int_equal(kr.node_count, t->node_count);
    assert_int_equal(kr.client_count, 0);
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n     = &t->nodes[i];
        bool                    found = false;
        for (size_t j = 0; j < kr.node_count && !found; j++) {
            found = kr.nodes[j].id == n->id
                && memcmp(kr.nodes[j].pk, n->public_key, TOPO_KEY_SIZE) == 0;
        }
        if (!found) {
            fail_msg("%s has no line for node %u with its topology key", path,
                n->id);
        }
    }
    keyring_free(&kr);

    /* The default rf is the nodes per region; more is a usage error, and
     * so is a region name the topology would refuse. */
    tc_path(cdir, "d");
    assert_int_equal(
        RUN("cluster", "init", "--dir", cdir, "--regions", "eu,us",
            "--nodes-per-region", "2", "--replicas-per-region", "3"),
        2);
    assert_non_null(strstr(tc_err, "more than the 2 nodes per region"));
    assert_int_equal(
        RUN("cluster", "init", "--dir", cdir, "--regions", "EU,us"), 2);
    assert_non_null(strstr(tc_err, "'EU' is not a region name"));
    assert_int_equal(RUN("cluster", "init", "--dir", cdir, "--regions", "eu,us",
                         "--nodes-per-region", "2"),
        0);
    snprintf(path, sizeof(path), "%s/topology.signed", cdir);
    tc_load(path, t);
    assert_int_equal(t->regions[0].rf, 2);
    assert_int_equal(t->regions[1].rf, 2);
    free(t);
}

/* ------------------------------------------------------------ topology -- */

/* The paths the topology tests share. */
struct tc_files {
    char cdir[TC_PATH_SIZE];
    char topo[TC_PATH_SIZE + 32];
    char admin[TC_PATH_SIZE + 32];
    char node_key[TC_PATH_SIZE + 32]; /* node-1's: not the admin's */
    char new_key[TC_PATH_SIZE];
    char other[TC_PATH_SIZE];
    char bad[TC_PATH_SIZE];
};

/* A fresh cluster dir per test: init refuses one that holds a cluster. */
static void
tc_files_make(struct tc_files *f)
{
    static unsigned made;
    char            name[32];
    snprintf(name, sizeof(name), "t%u", made++);
    tc_path(f->cdir, name);
    snprintf(f->topo, sizeof(f->topo), "%s/topology.signed", f->cdir);
    snprintf(f->admin, sizeof(f->admin), "%s/admin.key", f->cdir);
    snprintf(f->node_key, sizeof(f->node_key), "%s/node-1/node.key", f->cdir);
    tc_path(f->new_key, "node-5.key");
    tc_path(f->other, "other.signed");
    tc_path(f->bad, "bad.signed");
    assert_int_equal(
        RUN("cluster", "init", "--dir", f->cdir, "--regions", "eu,us",
            "--nodes-per-region", "2", "--replicas-per-region", "1", "--shards",
            "8", "--base-port", "23100"),
        0);
}

/* One change through the CLI: exit 0, the next version, and a node that
 * holds the previous version takes it. *prev becomes the new version. */
static void
tc_changed(const struct tc_files *f, struct topo *prev, struct topo *next)
{
    tc_accepts(prev, f->topo, next);
    assert_int_equal(next->version, prev->version + 1);
    memcpy(prev, next, sizeof(*prev));
}

static void
test_topology_show(void **state)
{
    (void) state;
    struct tc_files f;

    tc_files_make(&f);
    assert_int_equal(RUN("topology", "show", "--file", f.topo), 0);
    assert_non_null(strstr(tc_out, "version 1"));
    assert_non_null(strstr(tc_out, "node-4"));
    assert_non_null(strstr(tc_out, "tcp://127.0.0.1:23103"));
    assert_non_null(strstr(tc_out, "SHARDS"));
    assert_int_equal(RUN("topology", "show", "--file", f.topo, "--json"), 0);
    assert_non_null(strstr(tc_out, "\"version\":1,"));
    assert_non_null(strstr(tc_out, "\"shards\":8,"));
    assert_non_null(strstr(tc_out, "\"name\":\"node-3\""));
    /* Per region, each shard once (rf 1): the node counts add up to 8. */
    uint32_t    sum = 0;
    const char *p   = tc_out;
    while ((p = strstr(p, "\"shards\":")) != NULL) {
        p += strlen("\"shards\":");
        sum += (uint32_t) strtoul(p, NULL, 10);
    }
    assert_int_equal(sum, 8 + 2 * 8); /* the cluster's 8, then 8 per region */
    assert_int_equal(RUN("topology", "--help"), 0);
    assert_non_null(strstr(tc_out, "add-node NAME"));
    assert_non_null(strstr(tc_out, "remove-node NAME"));
}

static void
test_topology_changes(void **state)
{
    (void) state;
    struct tc_files f;
    struct topo    *cur = tc_topo(), *next = tc_topo();
    char            pk_hex[TOPO_KEY_SIZE * 2 + 2];

    tc_files_make(&f);
    tc_load(f.topo, cur);
    assert_int_equal(RUN("keygen", "--out", f.new_key), 0);
    snprintf(pk_hex, sizeof(pk_hex), "%.64s", tc_out);

    assert_int_equal(RUN("topology", "add-node", "node-5", "--region", "us",
                         "--address", "tcp://127.0.0.1:23110", "--public-key",
                         pk_hex, "--file", f.topo, "--admin-key", f.admin),
        0);
    assert_non_null(strstr(tc_out, "version 2"));
    tc_changed(&f, cur, next);
    const struct topo_node *n = topo_node_by_name(cur, "node-5");
    assert_non_null(n);
    assert_int_equal(n->id, 5);
    assert_int_equal(n->region, 1);
    assert_int_equal(n->state, TOPO_NODE_ACTIVE);
    assert_string_equal(n->address, "tcp://127.0.0.1:23110");
    uint8_t pk[TOPO_KEY_SIZE];
    tc_key_pk(f.new_key, pk);
    assert_memory_equal(n->public_key, pk, TOPO_KEY_SIZE);
    assert_int_equal(RUN("topology", "show", "--file", f.topo), 0);
    assert_non_null(strstr(tc_out, "node-5"));

    /* A secret key others may read is refused, and nothing is signed. */
    assert_int_equal(chmod(f.admin, 0640), 0);
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.topo,
                         "--admin-key", f.admin),
        1);
    assert_non_null(strstr(tc_err, "readable or writable by others"));
    assert_int_equal(chmod(f.admin, 0600), 0);
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    assert_int_equal(topo_node_by_id(cur, 1)->state, TOPO_NODE_DRAINING);
    assert_int_equal(RUN("topology", "show", "--file", f.topo, "--json"), 0);
    assert_non_null(strstr(tc_out, "\"state\":\"draining\""));
    assert_int_equal(RUN("topology", "undrain-node", "node-1", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    assert_int_equal(topo_node_by_id(cur, 1)->state, TOPO_NODE_ACTIVE);

    assert_int_equal(RUN("topology", "drain-region", "eu", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    assert_true(cur->regions[0].draining);
    assert_int_equal(RUN("topology", "undrain-region", "eu", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    assert_false(cur->regions[0].draining);

    assert_int_equal(RUN("topology", "set-rf", "us", "2", "--file", f.topo,
                         "--admin-key", f.admin, "--json"),
        0);
    assert_non_null(strstr(tc_out, "\"version\":7"));
    tc_changed(&f, cur, next);
    assert_int_equal(cur->regions[1].rf, 2);

    assert_int_equal(RUN("topology", "add-region", "ap", "1", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    assert_non_null(strstr(tc_err, "warning: region ap has 0 active nodes"));
    tc_changed(&f, cur, next);
    assert_int_equal(cur->region_count, 3);

    assert_int_equal(RUN("topology", "remove-node", "node-5", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    assert_int_equal(topo_node_by_id(cur, 5)->state, TOPO_NODE_REMOVED);
    assert_int_equal(cur->version, 9);
    free(cur);
    free(next);
}

/* Asserts the topology file is still at version v. */
static void
tc_still(const char *path, uint64_t v)
{
    struct topo *t = tc_topo();
    tc_load(path, t);
    assert_int_equal(t->version, v);
    free(t);
}

static void
test_topology_refusals(void **state)
{
    (void) state;
    struct tc_files f;
    struct topo    *cur = tc_topo(), *next = tc_topo();
    char            other_key[TC_PATH_SIZE], pk_hex[TOPO_KEY_SIZE * 2 + 2];

    tc_files_make(&f);
    tc_load(f.topo, cur);
    tc_path(other_key, "other.key");
    assert_int_equal(RUN("keygen", "--out", other_key), 0);
    snprintf(pk_hex, sizeof(pk_hex), "%.64s", tc_out);

    /* Changes the rules refuse: exit 1, words, file untouched. */
    assert_int_equal(RUN("topology", "remove-node", "node-4", "--file", f.topo,
                         "--admin-key", f.admin),
        0);
    tc_changed(&f, cur, next);
    struct {
        const char *args[12];
        const char *words;
    } refusals[] = {
        { { "remove-node", "node-4" }, "removed already" },
        { { "undrain-node", "node-4" }, "never come back" },
        { { "drain-node", "nope" }, "no node has this name" },
        { { "drain-region", "mars" }, "no region has this name" },
        { { "undrain-node", "node-1" }, "not draining" },
        { { "set-rf", "eu", "1" }, "this many replicas already" },
        { { "add-node", "node-1", "--region", "eu", "--address",
              "tcp://127.0.0.1:23199", "--public-key", pk_hex },
            "has this name already" },
        { { "add-node", "node-9", "--region", "eu", "--address",
              "tcp://127.0.0.1:23100", "--public-key", pk_hex },
            "has this address already" },
        { { "add-node", "node-9", "--region", "eu", "--address", "udp://x:1",
              "--public-key", pk_hex },
            "does not start with tcp://" },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(refusals); i++) {
        const char *argv[24] = { "topology" };
        size_t      n        = 1;
        for (size_t j = 0; refusals[i].args[j] != NULL; j++) {
            argv[n++] = refusals[i].args[j];
        }
        argv[n++] = "--file";
        argv[n++] = f.topo;
        argv[n++] = "--admin-key";
        argv[n++] = f.admin;
        argv[n]   = NULL;
        assert_int_equal(tc_run(argv), 1);
        if (strstr(tc_err, refusals[i].words) == NULL) {
            fail_msg("%s: want '%s' in: %s", refusals[i].args[0],
                refusals[i].words, tc_err);
        }
        tc_still(f.topo, 2);
    }

    /* Keys that are not the admin's: a stranger's and a node's. */
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.topo,
                         "--admin-key", other_key),
        1);
    assert_non_null(strstr(tc_err, "not this topology's admin key"));
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.topo,
                         "--admin-key", f.node_key),
        1);
    assert_non_null(strstr(tc_err, "not this topology's admin key"));
    /* A file that is not a key at all. */
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.topo,
                         "--admin-key", f.topo),
        1);
    tc_still(f.topo, 2);

    /* --out leaves the file alone; a node takes either. */
    assert_int_equal(RUN("topology", "drain-node", "node-2", "--file", f.topo,
                         "--admin-key", f.admin, "--out", f.other),
        0);
    tc_still(f.topo, 2);
    tc_accepts(cur, f.other, next);
    assert_int_equal(next->version, 3);
    assert_int_equal(topo_node_by_id(next, 2)->state, TOPO_NODE_DRAINING);
    free(cur);
    free(next);
}

static void
test_topology_tampered(void **state)
{
    (void) state;
    struct tc_files f;
    static uint8_t  buf[TOPO_SIGNED_SIZE_MAX + 1];

    tc_files_make(&f);
    size_t n = tc_read(f.topo, buf, sizeof(buf));
    /* Point node-2 at another host: the kind of edit an attacker wants. */
    uint8_t *at = NULL;
    for (size_t i = 0; i + 15 <= n && at == NULL; i++) {
        if (memcmp(buf + i, "127.0.0.1:23101", 15) == 0) {
            at = buf + i;
        }
    }
    assert_non_null(at);
    at[2] = '8';
    tc_write(f.bad, buf, n);
    assert_int_equal(RUN("topology", "show", "--file", f.bad), 1);
    assert_non_null(strstr(tc_err, "signature does not verify"));
    assert_non_null(strstr(tc_err, "MRD_ECORRUPT"));
    assert_string_equal(tc_out, "");
    assert_int_equal(RUN("topology", "drain-node", "node-1", "--file", f.bad,
                         "--admin-key", f.admin),
        1);
    assert_non_null(strstr(tc_err, "signature does not verify"));
    uint8_t again[sizeof(buf)];
    assert_int_equal(tc_read(f.bad, again, sizeof(again)), n);
    assert_memory_equal(again, buf, n);

    /* Truncated, and not a topology at all. */
    at[2] = '7';
    tc_write(f.bad, buf, n / 2);
    assert_int_equal(RUN("topology", "show", "--file", f.bad), 1);
    assert_non_null(strstr(tc_err, "MRD_EPROTO"));
    assert_int_equal(RUN("topology", "show", "--file", f.admin), 1);
    tc_path(f.bad, "missing.signed");
    assert_int_equal(RUN("topology", "show", "--file", f.bad), 1);
}

static void
test_topology_usage(void **state)
{
    (void) state;
    struct tc_files f;

    tc_files_make(&f);
    const char *const usage[][16] = {
        { "topology" },
        { "topology", "frob", "--file", f.topo },
        { "topology", "show" },
        { "topology", "show", "extra", "--file", f.topo },
        { "topology", "show", "--file", f.topo, "--admin-key", f.admin },
        { "topology", "drain-node", "node-1", "--file", f.topo },
        { "topology", "drain-node", "--file", f.topo, "--admin-key", f.admin },
        { "topology", "add-node", "n9", "--file", f.topo, "--admin-key",
            f.admin, "--region", "eu" },
        { "topology", "add-node", "n9", "--file", f.topo, "--admin-key",
            f.admin, "--region", "eu", "--address", "tcp://h:1", "--public-key",
            "abc" },
        { "topology", "drain-node", "node-1", "--file", f.topo, "--admin-key",
            f.admin, "--region", "eu" },
        { "topology", "set-rf", "eu", "9", "--file", f.topo, "--admin-key",
            f.admin },
        { "topology", "set-rf", "eu", "0", "--file", f.topo, "--admin-key",
            f.admin },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(usage); i++) {
        if (tc_run(usage[i]) != 2) {
            fail_msg("usage case %zu (%s %s) did not exit 2", i, usage[i][0],
                usage[i][1] != NULL ? usage[i][1] : "");
        }
        assert_non_null(strstr(tc_err, "Try 'meridianctl --help'"));
    }
    /* Options of other commands are refused here and vice versa. */
    assert_int_equal(
        RUN("topology", "show", "--file", f.topo, "--shards", "4"), 2);
    assert_int_equal(RUN("append", "s", "--type", "T", "--file", f.topo), 2);
    tc_still(f.topo, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen),
        cmocka_unit_test(test_cluster_init_identity),
        cmocka_unit_test(test_topology_show),
        cmocka_unit_test(test_topology_changes),
        cmocka_unit_test(test_topology_refusals),
        cmocka_unit_test(test_topology_tampered),
        cmocka_unit_test(test_topology_usage),
    };
    return cmocka_run_group_tests(tests, tc_setup, tc_teardown);
}
