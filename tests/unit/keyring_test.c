/*
 * keyring_test.c: the keyring's text format and key files (net/keyring.h).
 *
 * Parsing: a file with comments, blank lines, tabs and CRLF gives every
 * entry; clients come out sorted by key and keyring_client_find() finds
 * each of them; prefixes limit keyring_client_allows(); keyring_has_node()
 * knows the node keys. Every error is refused with its code and the line
 * number, and leaves the keyring empty (ASan checks nothing leaks from the
 * half-built one): unknown entries, bad hex, wrong lengths, duplicates,
 * a second cluster line, too many prefixes, words, nodes or clients, long
 * lines and files, NUL bytes, bad roles and names, node ids out of range.
 *
 * Files, in a temp dir under /tmp: keyring_load() of a missing file is
 * MRD_ENOTFOUND and names the path; a key written by keyring_key_write()
 * reads back the same with mode 0600; a key file group or others may read
 * is refused, and so is one whose second half is not the first half's
 * public key, and an overwrite.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "keyring.h"
#include "meridian.h"

/* ------------------------------------------------------------ fixtures -- */

/* A deterministic identity from a one-byte seed. */
struct test_key {
    uint8_t pk[KEYRING_KEY_SIZE];
    uint8_t sk[KEYRING_SECRET_KEY_SIZE];
    char    pk_hex[KEYRING_KEY_SIZE * 2 + 1];
};

static void
test_key_make(struct test_key *k, uint8_t n)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, n, sizeof(seed));
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_bin2hex(k->pk_hex, sizeof(k->pk_hex), k->pk, sizeof(k->pk));
}

/* 64 hex digits of a key made of the bytes of i: keys the parser takes
 * without caring whether they are points, for the many-entries tests. */
static void
test_hex_of(uint32_t i, char out[KEYRING_KEY_SIZE * 2 + 1])
{
    uint8_t pk[KEYRING_KEY_SIZE];
    memset(pk, 0x5a, sizeof(pk));
    pk[0] = (uint8_t) (i >> 24);
    pk[1] = (uint8_t) (i >> 16);
    pk[2] = (uint8_t) (i >> 8);
    pk[3] = (uint8_t) i;
    sodium_bin2hex(out, KEYRING_KEY_SIZE * 2 + 1, pk, sizeof(pk));
}

static const char test_cluster_hex[] = "0123456789abcdef0123456789ABCDEF";

static void
test_assert_empty(const struct keyring *kr)
{
    assert_false(kr->has_cluster);
    assert_int_equal(kr->node_count, 0);
    assert_int_equal(kr->client_count, 0);
    assert_null(kr->nodes);
    assert_null(kr->clients);
}

/* Parses text and expects code and, when code is an error, an empty
 * keyring and want in the error text. */
static void
test_parse_expect(const char *text, size_t len, int code, const char *want)
{
    struct keyring kr;
    char           err[256] = "";
    int            rv       = keyring_parse(text, len, &kr, err, sizeof(err));
    if (rv != code || (want != NULL && strstr(err, want) == NULL)) {
        fail_msg("parse gave %d '%s', want %d '%s'", rv, err, code,
            want != NULL ? want : "");
    }
    if (code != MRD_OK) {
        test_assert_empty(&kr);
    }
    keyring_free(&kr);
}

static void
test_parse_str(const char *text, int code, const char *want)
{
    test_parse_expect(text, strlen(text), code, want);
}

/* A growing text buffer for generated keyrings. */
struct test_buf {
    char  *p;
    size_t len, cap;
};

static void test_buf_add(struct test_buf *b, const char *fmt, ...)
    MRD_PRINTF(2, 3);

static void
test_buf_add(struct test_buf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->p == NULL) {
        b->cap = 4096;
        b->p   = malloc(b->cap);
        assert_non_null(b->p);
    }
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if (b->len + (size_t) n < b->cap) {
            b->len += (size_t) n;
            return;
        }
        b->cap *= 2;
        while (b->cap <= b->len + (size_t) n) {
            b->cap *= 2;
        }
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
}

/* A temp dir under /tmp, emptied and removed by the teardown. */
struct test_dir {
    char path[64];
};

static int
test_dir_setup(void **state)
{
    struct test_dir *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -1;
    }
    snprintf(d->path, sizeof(d->path), "/tmp/keyring_test.XXXXXX");
    if (mkdtemp(d->path) == NULL) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int
test_dir_teardown(void **state)
{
    struct test_dir *d   = *state;
    DIR             *dir = opendir(d->path);
    char             path[512];
    if (dir != NULL) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", d->path, e->d_name);
            unlink(path);
        }
        closedir(dir);
    }
    int rv = rmdir(d->path);
    free(d);
    return rv;
}

static void
test_path(const struct test_dir *d, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", d->path, name);
    assert_true(n > 0 && (size_t) n < cap);
}

/* Writes a file with exactly this mode (whatever the umask). */
static void
test_write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t) len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* ------------------------------------------------------------- parsing -- */

static void
test_parse_valid(void **state)
{
    struct test_key n3, n9, a, b, c;
    struct keyring  kr;
    char            text[2048];
    char            err[256] = "";
    (void) state;
    test_key_make(&n3, 3);
    test_key_make(&n9, 9);
    test_key_make(&a, 0xa1);
    test_key_make(&b, 0xb2);
    test_key_make(&c, 0xc3);
    int n = snprintf(text, sizeof(text),
        "# a cluster's keyring\r\n"
        "\r\n"
        "   \t \n"
        "cluster %s\r\n"
        "\tnode\t3  %s\t\r\n"
        "  # an indented comment: node 4 nothing\n"
        "node 9223372036854775808 %s\n"
        "client alice write %s orders- carts-\r\n"
        "client B.o_b-2 read %s\n"
        "client carol admin %s\n"
        "#  last line without a newline",
        test_cluster_hex, n3.pk_hex, n9.pk_hex, a.pk_hex, b.pk_hex, c.pk_hex);
    assert_true(n > 0 && (size_t) n < sizeof(text));

    assert_int_equal(
        keyring_parse(text, (size_t) n, &kr, err, sizeof(err)), MRD_OK);
    assert_true(kr.has_cluster);
    for (unsigned i = 0; i < KEYRING_CLUSTER_ID_SIZE; i++) {
        static const uint8_t want[KEYRING_CLUSTER_ID_SIZE]
            = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23,
                  0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
        assert_int_equal(kr.cluster_id[i], want[i]);
    }
    assert_int_equal(kr.node_count, 2);
    assert_int_equal(kr.nodes[0].id, 3);
    assert_memory_equal(kr.nodes[0].pk, n3.pk, KEYRING_KEY_SIZE);
    assert_true(kr.nodes[1].id == (UINT64_C(1) << 63));
    assert_memory_equal(kr.nodes[1].pk, n9.pk, KEYRING_KEY_SIZE);

    assert_int_equal(kr.client_count, 3);
    const struct keyring_client *ca = keyring_client_find(&kr, a.pk);
    const struct keyring_client *cb = keyring_client_find(&kr, b.pk);
    const struct keyring_client *cc = keyring_client_find(&kr, c.pk);
    assert_non_null(ca);
    assert_non_null(cb);
    assert_non_null(cc);
    assert_string_equal(ca->name, "alice");
    assert_int_equal(ca->role, KEYRING_ROLE_WRITE);
    assert_int_equal(ca->prefix_count, 2);
    assert_string_equal(ca->prefixes[0], "orders-");
    assert_string_equal(ca->prefixes[1], "carts-");
    assert_string_equal(cb->name, "B.o_b-2");
    assert_int_equal(cb->role, KEYRING_ROLE_READ);
    assert_int_equal(cb->prefix_count, 0);
    assert_string_equal(cc->name, "carol");
    assert_int_equal(cc->role, KEYRING_ROLE_ADMIN);
    /* Neither a node key nor an unknown key is a client. */
    assert_null(keyring_client_find(&kr, n3.pk));
    assert_true(keyring_has_node(&kr, n3.pk));
    assert_true(keyring_has_node(&kr, n9.pk));
    assert_false(keyring_has_node(&kr, a.pk));
    keyring_free(&kr);
    test_assert_empty(&kr);
    keyring_free(&kr); /* twice is harmless */
    keyring_free(NULL);
}

static void
test_parse_empty(void **state)
{
    struct keyring kr;
    uint8_t        pk[KEYRING_KEY_SIZE] = { 0 };
    (void) state;
    assert_int_equal(keyring_parse("", 0, &kr, NULL, 0), MRD_OK);
    test_assert_empty(&kr);
    assert_null(keyring_client_find(&kr, pk));
    assert_false(keyring_has_node(&kr, pk));
    keyring_free(&kr);
    test_parse_str("\n\n# nothing\n\r\n \t\r\n", MRD_OK, NULL);
    /* Hex is case-insensitive. */
    test_parse_str("cluster 0123456789ABCDEF0123456789abcdef\n", MRD_OK, NULL);
}

/* Many clients come out sorted by key, and each one is found. */
static void
test_parse_sorted_find(void **state)
{
    struct test_buf b = { 0 };
    struct keyring  kr;
    char            err[256] = "";
    enum { N = 300 };
    (void) state;
    /* Keys written in an order far from sorted. */
    for (uint32_t i = 0; i < N; i++) {
        char hex[KEYRING_KEY_SIZE * 2 + 1];
        test_hex_of((i * 7919u) % 1000u, hex);
        test_buf_add(&b, "client c%u read %s p%u\n", i, hex, i);
    }
    assert_int_equal(keyring_parse(b.p, b.len, &kr, err, sizeof(err)), MRD_OK);
    assert_int_equal(kr.client_count, N);
    for (size_t i = 1; i < kr.client_count; i++) {
        assert_true(
            memcmp(kr.clients[i - 1].pk, kr.clients[i].pk, KEYRING_KEY_SIZE)
            < 0);
    }
    for (uint32_t i = 0; i < N; i++) {
        uint8_t pk[KEYRING_KEY_SIZE];
        char    hex[KEYRING_KEY_SIZE * 2 + 1];
        char    name[16], prefix[16];
        test_hex_of((i * 7919u) % 1000u, hex);
        assert_int_equal(
            sodium_hex2bin(pk, sizeof(pk), hex, strlen(hex), NULL, NULL, NULL),
            0);
        const struct keyring_client *c = keyring_client_find(&kr, pk);
        assert_non_null(c);
        snprintf(name, sizeof(name), "c%u", i);
        snprintf(prefix, sizeof(prefix), "p%u", i);
        assert_string_equal(c->name, name);
        assert_int_equal(c->prefix_count, 1);
        assert_string_equal(c->prefixes[0], prefix);
    }
    /* Keys between, before and after the listed ones. */
    uint8_t pk[KEYRING_KEY_SIZE];
    memset(pk, 0x00, sizeof(pk));
    assert_null(keyring_client_find(&kr, pk));
    memset(pk, 0xff, sizeof(pk));
    assert_null(keyring_client_find(&kr, pk));
    memset(pk, 0x5a, sizeof(pk));
    pk[3]  = 1;
    pk[31] = 0x5b;
    assert_null(keyring_client_find(&kr, pk));
    keyring_free(&kr);
    free(b.p);
}

static void
test_client_allows(void **state)
{
    struct test_key a, b;
    struct keyring  kr;
    char            text[512];
    (void) state;
    test_key_make(&a, 1);
    test_key_make(&b, 2);
    snprintf(text, sizeof(text),
        "client a write %s orders- carts-\nclient b read %s\n", a.pk_hex,
        b.pk_hex);
    assert_int_equal(keyring_parse(text, strlen(text), &kr, NULL, 0), MRD_OK);
    const struct keyring_client *ca = keyring_client_find(&kr, a.pk);
    const struct keyring_client *cb = keyring_client_find(&kr, b.pk);
    assert_non_null(ca);
    assert_non_null(cb);

    assert_true(keyring_client_allows(ca, "orders-1", 8));
    assert_true(keyring_client_allows(ca, "orders-", 7));
    assert_true(keyring_client_allows(ca, "carts-eu-1", 10));
    assert_false(keyring_client_allows(ca, "orders", 6));
    assert_false(keyring_client_allows(ca, "order-1", 7));
    assert_false(keyring_client_allows(ca, "Orders-1", 8));
    assert_false(keyring_client_allows(ca, "x-orders-1", 10));
    assert_false(keyring_client_allows(ca, "", 0));
    /* Only name[0..len) counts: the bytes after it are not the name's. */
    assert_false(keyring_client_allows(ca, "orders-1", 6));
    assert_true(keyring_client_allows(ca, "carts-xyz", 6));

    /* No prefixes: every stream. */
    assert_true(keyring_client_allows(cb, "orders-1", 8));
    assert_true(keyring_client_allows(cb, "anything", 8));
    assert_true(keyring_client_allows(cb, "", 0));
    keyring_free(&kr);
}

static void
test_role_names(void **state)
{
    (void) state;
    assert_string_equal(keyring_role_name(KEYRING_ROLE_READ), "read");
    assert_string_equal(keyring_role_name(KEYRING_ROLE_WRITE), "write");
    assert_string_equal(keyring_role_name(KEYRING_ROLE_ADMIN), "admin");
    assert_string_equal(keyring_role_name(KEYRING_ROLE_NODE), "node");
    assert_string_equal(keyring_role_name(KEYRING_ROLE_NONE), "none");
    assert_string_equal(keyring_role_name((enum keyring_role) 99), "none");
}

/* ----------------------------------------------------- parsing errors -- */

static void
test_parse_error_entries(void **state)
{
    struct test_key k1, k2;
    char            t[1024];
    (void) state;
    test_key_make(&k1, 1);
    test_key_make(&k2, 2);

    test_parse_str("bogus 1 2\n", MRD_EPROTO, "line 1: unknown entry");
    test_parse_str("# c\n\nCluster 00\n", MRD_EPROTO, "line 3: unknown entry");
    test_parse_str("clients a read x\n", MRD_EPROTO, "line 1: unknown entry");
    /* A comment starts a line only: a word cannot start one. */
    test_parse_str("cluster#\n", MRD_EPROTO, "line 1: unknown entry");

    /* Cluster lines. */
    test_parse_str("cluster\n", MRD_EPROTO, "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcde\n", MRD_EPROTO,
        "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcdef0\n", MRD_EPROTO,
        "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcdef01\n", MRD_EPROTO,
        "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcdeg\n", MRD_EPROTO,
        "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef 0123456789abcdef\n", MRD_EPROTO,
        "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcdef extra\n",
        MRD_EPROTO, "line 1: want 'cluster'");
    test_parse_str("cluster 0123456789abcdef0123456789abcdef\n"
                   "# again\n"
                   "cluster 0123456789abcdef0123456789abcdef\n",
        MRD_EPROTO, "line 3: a second cluster line");

    /* Node lines: arity, key hex and length. */
    snprintf(t, sizeof(t), "node 3\n");
    test_parse_str(t, MRD_EPROTO, "line 1: want 'node'");
    snprintf(t, sizeof(t), "node %s\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: want 'node'");
    snprintf(t, sizeof(t), "node 3 %s extra\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: want 'node'");
    snprintf(t, sizeof(t), "node 3 %.62s\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");
    snprintf(t, sizeof(t), "node 3 %s00\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");
    snprintf(t, sizeof(t), "node 3 %.63sz\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");
    snprintf(t, sizeof(t), "node 3 %.31s:%.32s\n", k1.pk_hex, k1.pk_hex + 32);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");

    /* Duplicates. */
    snprintf(t, sizeof(t), "node 3 %s\nnode 4 %s\n\nnode 3 %s\n", k1.pk_hex,
        k2.pk_hex, k2.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 4: node id or key listed twice");
    snprintf(t, sizeof(t), "node 3 %s\nnode 3 %s\n", k1.pk_hex, k2.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 2: node id or key listed twice");
    snprintf(t, sizeof(t), "node 3 %s\nnode 4 %s\n", k1.pk_hex, k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 2: node id or key listed twice");
    /* A node's key may also be a client's: they are different lists. */
    snprintf(
        t, sizeof(t), "node 3 %s\nclient n3 admin %s\n", k1.pk_hex, k1.pk_hex);
    test_parse_str(t, MRD_OK, NULL);
    snprintf(t, sizeof(t),
        "client a read %s p-\nclient b write %s\nclient c admin %s q- r-\n",
        k1.pk_hex, k2.pk_hex, k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 3: the client key of line 1 again");

    /* A word starting with '#' starts a comment anywhere on a line, so a
     * trailing note is never taken for a prefix. */
    snprintf(t, sizeof(t), "client a read %s # the dashboard\n", k1.pk_hex);
    {
        struct keyring kr;
        char           err[128];
        assert_int_equal(
            keyring_parse(t, strlen(t), &kr, err, sizeof err), MRD_OK);
        assert_int_equal(kr.client_count, 1);
        assert_int_equal(kr.clients[0].prefix_count, 0);
        keyring_free(&kr);
    }

    /* Client lines: arity, name, role, key. */
    snprintf(t, sizeof(t), "client alice read\n");
    test_parse_str(t, MRD_EPROTO, "line 1: want 'client'");
    snprintf(t, sizeof(t), "client alice %s\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: want 'client'");
    snprintf(t, sizeof(t), "client alice %.63s\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: want 'client'");
    static const char *const bad_roles[]
        = { "Read", "READ", "writer", "rea", "node", "none", "admins", "r" };
    for (size_t i = 0; i < sizeof(bad_roles) / sizeof(bad_roles[0]); i++) {
        snprintf(t, sizeof(t), "client alice %s %s\n", bad_roles[i], k1.pk_hex);
        test_parse_str(t, MRD_EPROTO, "line 1: a role is read, write or admin");
    }
    static const char *const bad_names[] = { "-alice", "al/ice", "al:ice",
        "al\"ice", "al*ice", "\xc3\xa9t\xc3\xa9", "al+ice", "a,b" };
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        snprintf(t, sizeof(t), "client %s read %s\n", bad_names[i], k1.pk_hex);
        test_parse_str(t, MRD_EPROTO, "line 1: a client name is");
    }
    snprintf(t, sizeof(t), "client a read %s00\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");
    snprintf(t, sizeof(t), "client a read %.62sxx\n", k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a key is 64 hex digits");
    /* An error after earlier entries with prefixes frees them all. */
    snprintf(t, sizeof(t),
        "cluster %s\nnode 1 %s\nclient a read %s x- y- z-\nclient b read "
        "nothex\n",
        test_cluster_hex, k2.pk_hex, k1.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 4: a key is 64 hex digits");
    /* The error text goes nowhere without a buffer. */
    struct keyring kr;
    assert_int_equal(keyring_parse("bogus\n", 6, &kr, NULL, 0), MRD_EPROTO);
    test_assert_empty(&kr);
    char small[8];
    assert_int_equal(
        keyring_parse("bogus\n", 6, &kr, small, sizeof(small)), MRD_EPROTO);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void
test_parse_error_names(void **state)
{
    struct test_key k;
    char            name[KEYRING_NAME_SIZE_MAX + 2];
    char            t[512];
    (void) state;
    test_key_make(&k, 7);
    memset(name, 'n', sizeof(name));
    name[KEYRING_NAME_SIZE_MAX] = '\0'; /* 63: the longest */
    snprintf(t, sizeof(t), "client %s read %s\n", name, k.pk_hex);
    test_parse_str(t, MRD_OK, NULL);
    name[KEYRING_NAME_SIZE_MAX]     = 'n';
    name[KEYRING_NAME_SIZE_MAX + 1] = '\0'; /* 64 */
    snprintf(t, sizeof(t), "client %s read %s\n", name, k.pk_hex);
    test_parse_str(t, MRD_EPROTO, "line 1: a client name is");
    /* A '-' is fine inside, '.' and '_' anywhere. */
    snprintf(t, sizeof(t), "client a-b read %s\n", k.pk_hex);
    test_parse_str(t, MRD_OK, NULL);
    snprintf(t, sizeof(t), "client .a_ read %s\n", k.pk_hex);
    test_parse_str(t, MRD_OK, NULL);
    snprintf(t, sizeof(t), "client _ read %s\n", k.pk_hex);
    test_parse_str(t, MRD_OK, NULL);
}

static void
test_parse_error_node_ids(void **state)
{
    struct test_key k;
    char            t[512];
    (void) state;
    test_key_make(&k, 5);
    static const char *const bad[] = {
        "0", "00", "01", "-1", "+1", "1x", "x1", "0x10", "1.5",
        "9223372036854775809", /* 2^63 + 1 */
        "18446744073709551615", /* 2^64 - 1 */
        "18446744073709551616", /* 2^64: strtoull overflows */
        "99999999999999999999999", /* 23 digits */
        "999999999999999999999999999999", /* longer than the id buffer */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(t, sizeof(t), "# x\nnode %s %s\n", bad[i], k.pk_hex);
        test_parse_str(t, MRD_EPROTO, "line 2: ");
    }
    static const char *const good[] = { "1", "9", "10", "4294967296",
        "9223372036854775807", "9223372036854775808" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct keyring kr;
        snprintf(t, sizeof(t), "node %s %s\n", good[i], k.pk_hex);
        assert_int_equal(keyring_parse(t, strlen(t), &kr, NULL, 0), MRD_OK);
        assert_int_equal(kr.node_count, 1);
        assert_true(kr.nodes[0].id == strtoull(good[i], NULL, 10));
        keyring_free(&kr);
    }
}

static void
test_parse_error_prefixes(void **state)
{
    struct test_key k;
    struct test_buf b = { 0 };
    char            big[KEYRING_PREFIX_SIZE_MAX + 2];
    (void) state;
    test_key_make(&k, 9);

    /* KEYRING_PREFIXES_MAX prefixes: fine. */
    test_buf_add(&b, "client a read %s", k.pk_hex);
    for (unsigned i = 0; i < KEYRING_PREFIXES_MAX; i++) {
        test_buf_add(&b, " p%u-", i);
    }
    test_buf_add(&b, "\n");
    struct keyring kr;
    assert_int_equal(keyring_parse(b.p, b.len, &kr, NULL, 0), MRD_OK);
    assert_int_equal(kr.clients[0].prefix_count, KEYRING_PREFIXES_MAX);
    keyring_free(&kr);
    /* One more. */
    b.len--;
    test_buf_add(&b, " p8-\n");
    test_parse_expect(b.p, b.len, MRD_EFULL, "line 1: more than 8 prefixes");
    /* Two and many more: the tokenizer stops. */
    b.len--;
    test_buf_add(&b, " p9-\n");
    test_parse_expect(b.p, b.len, MRD_EFULL, "line 1: ");
    b.len--;
    for (unsigned i = 0; i < 100; i++) {
        test_buf_add(&b, " q%u", i);
    }
    test_buf_add(&b, "\n");
    test_parse_expect(b.p, b.len, MRD_EFULL, "line 1: ");
    /* Too many words on other lines too. */
    test_parse_str("node 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
        MRD_EFULL, "line 1: too many words");

    /* Prefix length: KEYRING_PREFIX_SIZE_MAX fits, one more does not. */
    char t[1024];
    memset(big, 'p', sizeof(big));
    big[KEYRING_PREFIX_SIZE_MAX] = '\0';
    snprintf(t, sizeof(t), "client a read %s x- %s\n", k.pk_hex, big);
    assert_int_equal(keyring_parse(t, strlen(t), &kr, NULL, 0), MRD_OK);
    assert_int_equal(
        strlen(kr.clients[0].prefixes[1]), KEYRING_PREFIX_SIZE_MAX);
    keyring_free(&kr);
    big[KEYRING_PREFIX_SIZE_MAX]     = 'p';
    big[KEYRING_PREFIX_SIZE_MAX + 1] = '\0';
    snprintf(t, sizeof(t), "client a read %s x- %s\n", k.pk_hex, big);
    test_parse_str(t, MRD_ETOOBIG, "line 1: a prefix is at most 255 bytes");
    free(b.p);
}

static void
test_parse_error_lines(void **state)
{
    char *t = malloc(KEYRING_LINE_MAX + 64);
    (void) state;
    assert_non_null(t);

    /* A comment line of exactly KEYRING_LINE_MAX bytes, then one longer. */
    t[0] = '#';
    memset(t + 1, 'x', KEYRING_LINE_MAX - 1);
    t[KEYRING_LINE_MAX] = '\n';
    test_parse_expect(t, KEYRING_LINE_MAX + 1, MRD_OK, NULL);
    test_parse_expect(t, KEYRING_LINE_MAX, MRD_OK, NULL); /* no newline */
    memcpy(t, "\n#", 2);
    memset(t + 2, 'x', KEYRING_LINE_MAX); /* line 2: 4097 bytes */
    t[KEYRING_LINE_MAX + 2] = '\n';
    test_parse_expect(
        t, KEYRING_LINE_MAX + 3, MRD_ETOOBIG, "line 2: longer than 4096 bytes");
    /* A CR counts: it is a byte of the line. */
    t[0] = '#';
    memset(t + 1, 'x', KEYRING_LINE_MAX - 1);
    memcpy(t + KEYRING_LINE_MAX, "\r\n", 2);
    test_parse_expect(t, KEYRING_LINE_MAX + 2, MRD_ETOOBIG, "line 1: ");
    free(t);

    /* NUL bytes. */
    static const char nul1[] = "cluster 0123\0"
                               "456789abcdef0123456789abcdef\n";
    test_parse_expect(nul1, sizeof(nul1) - 1, MRD_EPROTO, "line 1: a NUL byte");
    static const char nul2[] = "\n\n\0\n";
    test_parse_expect(nul2, sizeof(nul2) - 1, MRD_EPROTO, "line 3: a NUL byte");
    static const char nul3[] = "bogus\0";
    test_parse_expect(nul3, sizeof(nul3) - 1, MRD_EPROTO, "line 1: a NUL byte");
}

static void
test_parse_error_limits(void **state)
{
    struct test_buf b = { 0 };
    char            hex[KEYRING_KEY_SIZE * 2 + 1];
    struct keyring  kr;
    (void) state;

    /* KEYRING_NODES_MAX nodes, then one more. */
    for (uint32_t i = 0; i < KEYRING_NODES_MAX; i++) {
        test_hex_of(i, hex);
        test_buf_add(&b, "node %u %s\n", i + 1, hex);
    }
    assert_int_equal(keyring_parse(b.p, b.len, &kr, NULL, 0), MRD_OK);
    assert_int_equal(kr.node_count, KEYRING_NODES_MAX);
    keyring_free(&kr);
    test_hex_of(KEYRING_NODES_MAX, hex);
    test_buf_add(&b, "node %u %s\n", KEYRING_NODES_MAX + 1, hex);
    test_parse_expect(b.p, b.len, MRD_EFULL, "line 257: more than 256 nodes");

    /* KEYRING_CLIENTS_MAX clients, then one more. */
    b.len = 0;
    for (uint32_t i = 0; i < KEYRING_CLIENTS_MAX; i++) {
        test_hex_of(i, hex);
        test_buf_add(&b, "client c%u write %s s%u-\n", i, hex, i);
    }
    assert_int_equal(keyring_parse(b.p, b.len, &kr, NULL, 0), MRD_OK);
    assert_int_equal(kr.client_count, KEYRING_CLIENTS_MAX);
    keyring_free(&kr);
    test_hex_of(KEYRING_CLIENTS_MAX, hex);
    test_buf_add(&b, "client x read %s\n", hex);
    test_parse_expect(b.p, b.len, MRD_EFULL, "line 4097: more than 4096");
    free(b.p);

    /* A whole file over KEYRING_FILE_SIZE_MAX, even of comments. */
    char *big = malloc(KEYRING_FILE_SIZE_MAX + 1);
    assert_non_null(big);
    for (size_t i = 0; i < KEYRING_FILE_SIZE_MAX + 1; i++) {
        big[i] = i % 64 == 63 ? '\n' : '#';
    }
    test_parse_expect(big, KEYRING_FILE_SIZE_MAX, MRD_OK, NULL);
    test_parse_expect(
        big, KEYRING_FILE_SIZE_MAX + 1, MRD_ETOOBIG, "at most 4194304 bytes");
    free(big);
}

/* --------------------------------------------------------------- files -- */

static void
test_load(void **state)
{
    struct test_dir *d = *state;
    struct test_key  k;
    struct keyring   kr;
    char             path[256], text[512], err[512] = "";
    test_key_make(&k, 4);

    test_path(d, "missing", path, sizeof(path));
    assert_int_equal(keyring_load(path, &kr, err, sizeof(err)), MRD_ENOTFOUND);
    assert_non_null(strstr(err, path));
    test_assert_empty(&kr);

    test_path(d, "keyring", path, sizeof(path));
    int n = snprintf(text, sizeof(text), "cluster %s\nnode 2 %s\n",
        test_cluster_hex, k.pk_hex);
    test_write_file(path, text, (size_t) n, 0644);
    assert_int_equal(keyring_load(path, &kr, err, sizeof(err)), MRD_OK);
    assert_true(kr.has_cluster);
    assert_int_equal(kr.node_count, 1);
    assert_true(keyring_has_node(&kr, k.pk));
    keyring_free(&kr);

    /* A parse error names the file and the line. */
    n = snprintf(text, sizeof(text), "cluster %s\nnode 0 %s\n",
        test_cluster_hex, k.pk_hex);
    test_write_file(path, text, (size_t) n, 0644);
    assert_int_equal(keyring_load(path, &kr, err, sizeof(err)), MRD_EPROTO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 2"));
    test_assert_empty(&kr);

    /* A directory is not a keyring. */
    assert_int_equal(keyring_load(d->path, &kr, err, sizeof(err)), MRD_EINVAL);
    test_assert_empty(&kr);

    /* keyring_file_write: atomic, with the mode asked for. */
    struct stat st;
    test_path(d, "written", path, sizeof(path));
    n = snprintf(text, sizeof(text), "node 7 %s\n", k.pk_hex);
    assert_int_equal(
        keyring_file_write(path, text, (size_t) n, 0600, err, sizeof(err)),
        MRD_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(keyring_load(path, &kr, err, sizeof(err)), MRD_OK);
    assert_int_equal(kr.node_count, 1);
    assert_int_equal(kr.nodes[0].id, 7);
    keyring_free(&kr);
}

static void
test_key_roundtrip(void **state)
{
    struct test_dir *d = *state;
    uint8_t          pk[KEYRING_KEY_SIZE], sk[KEYRING_SECRET_KEY_SIZE];
    uint8_t          back[KEYRING_SECRET_KEY_SIZE];
    char             path[256], err[512] = "";
    struct stat      st;

    crypto_sign_keypair(pk, sk);
    test_path(d, "node.key", path, sizeof(path));
    assert_int_equal(keyring_key_write(path, sk, err, sizeof(err)), MRD_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, KEYRING_KEY_FILE_SIZE);
    assert_int_equal(keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
    assert_memory_equal(back, sk, sizeof(sk));
    assert_memory_equal(back + 32, pk, sizeof(pk));

    /* The text: 128 lowercase hex digits and a newline. */
    char  text[KEYRING_KEY_FILE_SIZE + 1];
    char  want[KEYRING_SECRET_KEY_SIZE * 2 + 1];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(text, 1, sizeof(text), f), KEYRING_KEY_FILE_SIZE);
    fclose(f);
    sodium_bin2hex(want, sizeof(want), sk, sizeof(sk));
    assert_memory_equal(text, want, KEYRING_SECRET_KEY_SIZE * 2);
    assert_int_equal(text[KEYRING_SECRET_KEY_SIZE * 2], '\n');

    /* No overwrite, and the key is unchanged. */
    uint8_t other_pk[KEYRING_KEY_SIZE], other_sk[KEYRING_SECRET_KEY_SIZE];
    crypto_sign_keypair(other_pk, other_sk);
    assert_int_equal(
        keyring_key_write(path, other_sk, err, sizeof(err)), MRD_EINVAL);
    assert_non_null(strstr(err, path));
    assert_int_equal(keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
    assert_memory_equal(back, sk, sizeof(sk));

    /* Written with CRLF or no newline by hand: still the key. */
    char crlf[KEYRING_SECRET_KEY_SIZE * 2 + 3];
    memcpy(crlf, want, KEYRING_SECRET_KEY_SIZE * 2);
    memcpy(crlf + KEYRING_SECRET_KEY_SIZE * 2, "\r\n", 2);
    test_path(d, "crlf.key", path, sizeof(path));
    test_write_file(path, crlf, KEYRING_SECRET_KEY_SIZE * 2 + 2, 0600);
    assert_int_equal(keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
    assert_memory_equal(back, sk, sizeof(sk));
    test_path(d, "bare.key", path, sizeof(path));
    test_write_file(path, want, KEYRING_SECRET_KEY_SIZE * 2, 0400);
    assert_int_equal(keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
    assert_memory_equal(back, sk, sizeof(sk));

    /* A directory that does not exist: an I/O error, not "exists". */
    snprintf(path, sizeof(path), "%s/nodir/x.key", d->path);
    assert_int_equal(keyring_key_write(path, sk, err, sizeof(err)), MRD_EIO);
    test_path(d, "missing.key", path, sizeof(path));
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_ENOTFOUND);
}

static void
test_key_modes(void **state)
{
    struct test_dir *d = *state;
    uint8_t          pk[KEYRING_KEY_SIZE], sk[KEYRING_SECRET_KEY_SIZE];
    uint8_t          back[KEYRING_SECRET_KEY_SIZE];
    char             path[256], err[512] = "";

    crypto_sign_keypair(pk, sk);
    test_path(d, "mode.key", path, sizeof(path));
    assert_int_equal(keyring_key_write(path, sk, err, sizeof(err)), MRD_OK);
    static const mode_t refused[]
        = { 0640, 0604, 0660, 0606, 0644, 0620, 0602, 0610, 0601, 0777 };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char mode[8];
        assert_int_equal(chmod(path, refused[i]), 0);
        memset(back, 0xee, sizeof(back));
        err[0] = '\0';
        assert_int_equal(
            keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
        snprintf(mode, sizeof(mode), "%04o", (unsigned) refused[i]);
        assert_non_null(strstr(err, mode));
        assert_non_null(strstr(err, "refused"));
        assert_non_null(strstr(err, path));
    }
    static const mode_t fine[] = { 0600, 0400, 0700 };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        assert_int_equal(chmod(path, fine[i]), 0);
        assert_int_equal(
            keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
        assert_memory_equal(back, sk, sizeof(sk));
    }
}

static void
test_key_not_a_key(void **state)
{
    struct test_dir *d = *state;
    struct test_key  a, b;
    uint8_t          back[KEYRING_SECRET_KEY_SIZE];
    char             path[256], err[512] = "";
    char             hex[KEYRING_SECRET_KEY_SIZE * 2 + 8];

    test_key_make(&a, 0x31);
    test_key_make(&b, 0x32);
    test_path(d, "bad.key", path, sizeof(path));

    /* a's seed with b's public key: refused, and nothing is left in sk. */
    uint8_t mixed[KEYRING_SECRET_KEY_SIZE];
    memcpy(mixed, a.sk, 32);
    memcpy(mixed + 32, b.pk, 32);
    sodium_bin2hex(hex, sizeof(hex), mixed, sizeof(mixed));
    strcat(hex, "\n");
    test_write_file(path, hex, strlen(hex), 0600);
    memset(back, 0xee, sizeof(back));
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    assert_non_null(strstr(err, "not a Meridian key file"));
    for (size_t i = 0; i < sizeof(back); i++) {
        assert_int_equal(back[i], 0);
    }
    /* The same file, fixed: fine. */
    sodium_bin2hex(hex, sizeof(hex), a.sk, sizeof(a.sk));
    strcat(hex, "\n");
    test_write_file(path, hex, strlen(hex), 0600);
    assert_int_equal(keyring_key_read(path, back, err, sizeof(err)), MRD_OK);
    assert_memory_equal(back, a.sk, sizeof(a.sk));

    /* Wrong lengths and bad hex. */
    static const size_t lens[] = { 0, 1, 64, 126, 127 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        test_write_file(path, hex, lens[i], 0600);
        assert_int_equal(
            keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    }
    sodium_bin2hex(hex, sizeof(hex), a.sk, sizeof(a.sk));
    strcat(hex, "00\n"); /* 130 digits */
    test_write_file(path, hex, strlen(hex), 0600);
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    sodium_bin2hex(hex, sizeof(hex), a.sk, sizeof(a.sk));
    strcat(hex, "\n\n\n\n"); /* too long a file */
    test_write_file(path, hex, strlen(hex), 0600);
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    sodium_bin2hex(hex, sizeof(hex), a.sk, sizeof(a.sk));
    hex[10] = 'g';
    test_write_file(path, hex, strlen(hex), 0600);
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    sodium_bin2hex(hex, sizeof(hex), a.sk, sizeof(a.sk));
    hex[0] = ' ';
    test_write_file(path, hex, strlen(hex), 0600);
    assert_int_equal(
        keyring_key_read(path, back, err, sizeof(err)), MRD_EINVAL);
    /* A directory is not a key file either. */
    assert_int_equal(
        keyring_key_read(d->path, back, err, sizeof(err)), MRD_EINVAL);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_sorted_find),
        cmocka_unit_test(test_client_allows),
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_parse_error_entries),
        cmocka_unit_test(test_parse_error_names),
        cmocka_unit_test(test_parse_error_node_ids),
        cmocka_unit_test(test_parse_error_prefixes),
        cmocka_unit_test(test_parse_error_lines),
        cmocka_unit_test(test_parse_error_limits),
        cmocka_unit_test_setup_teardown(
            test_load, test_dir_setup, test_dir_teardown),
        cmocka_unit_test_setup_teardown(
            test_key_roundtrip, test_dir_setup, test_dir_teardown),
        cmocka_unit_test_setup_teardown(
            test_key_modes, test_dir_setup, test_dir_teardown),
        cmocka_unit_test_setup_teardown(
            test_key_not_a_key, test_dir_setup, test_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
