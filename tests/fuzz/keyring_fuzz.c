/*
 * keyring_fuzz.c: libFuzzer target for the keyring's text format
 * (net/keyring.h), which reads trust files an operator wrote by hand.
 *
 * The input is the whole file. Checked: nothing crashes or leaks; an
 * error leaves the keyring empty and says which line; a parsed keyring
 * keeps its limits (entries, prefixes and their lengths, names, roles,
 * node ids), has no duplicate node id or key and no duplicate client key,
 * its clients are sorted by key and keyring_client_find() finds each one;
 * keyring_client_allows() agrees with a plain prefix check on names made
 * of the input's own bytes; and parsing is deterministic (a second parse
 * gives the same keyring).
 */
#include <stdlib.h>
#include <string.h>

#include "keyring.h"
#include "meridian.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
fuzz_is_empty(const struct keyring *kr)
{
    return !kr->has_cluster && kr->node_count == 0 && kr->client_count == 0
        && kr->nodes == NULL && kr->clients == NULL;
}

static void
fuzz_check_client(const struct keyring_client *c)
{
    size_t nl = strnlen(c->name, sizeof(c->name));
    CHECK(nl >= 1 && nl <= KEYRING_NAME_SIZE_MAX && c->name[0] != '-');
    CHECK(c->role == KEYRING_ROLE_READ || c->role == KEYRING_ROLE_WRITE
        || c->role == KEYRING_ROLE_ADMIN);
    CHECK(c->prefix_count <= KEYRING_PREFIXES_MAX);
    for (uint32_t j = 0; j < c->prefix_count; j++) {
        size_t pl = strlen(c->prefixes[j]);
        CHECK(pl >= 1 && pl <= KEYRING_PREFIX_SIZE_MAX);
        /* A prefix allows itself and longer names, not shorter ones. */
        CHECK(keyring_client_allows(c, c->prefixes[j], pl));
    }
    CHECK(keyring_client_allows(c, "", 0) == (c->prefix_count == 0));
}

/* keyring_client_allows() against a plain check, on a name taken from
 * the input. */
static void
fuzz_check_allows(
    const struct keyring_client *c, const uint8_t *name, size_t len)
{
    bool want = c->prefix_count == 0;
    for (uint32_t j = 0; j < c->prefix_count && !want; j++) {
        size_t pl = strlen(c->prefixes[j]);
        want      = pl <= len && memcmp(c->prefixes[j], name, pl) == 0;
    }
    CHECK(keyring_client_allows(c, (const char *) name, len) == want);
}

static void
fuzz_check(const struct keyring *kr, const uint8_t *data, size_t size)
{
    CHECK(kr->node_count <= KEYRING_NODES_MAX);
    CHECK(kr->client_count <= KEYRING_CLIENTS_MAX);
    CHECK(kr->node_count == 0 || kr->nodes != NULL);
    CHECK(kr->client_count == 0 || kr->clients != NULL);
    for (size_t i = 0; i < kr->node_count; i++) {
        const struct keyring_node *n = &kr->nodes[i];
        CHECK(n->id >= 1 && n->id <= (UINT64_C(1) << 63));
        CHECK(keyring_has_node(kr, n->pk));
        for (size_t j = 0; j < i; j++) {
            CHECK(kr->nodes[j].id != n->id);
            CHECK(memcmp(kr->nodes[j].pk, n->pk, KEYRING_KEY_SIZE) != 0);
        }
    }
    for (size_t i = 0; i < kr->client_count; i++) {
        const struct keyring_client *c = &kr->clients[i];
        fuzz_check_client(c);
        if (i > 0) {
            CHECK(memcmp(kr->clients[i - 1].pk, c->pk, KEYRING_KEY_SIZE) < 0);
        }
        CHECK(keyring_client_find(kr, c->pk) == c);
        /* A few names from the input: its start and a window of it. */
        size_t len = size < 64 ? size : 64;
        fuzz_check_allows(c, data, len);
        if (size > 0) {
            size_t off = (i * 131u) % size;
            size_t wl  = size - off < 40 ? size - off : 40;
            fuzz_check_allows(c, data + off, wl);
        }
    }
    /* A key that is not a client's is not found. */
    uint8_t pk[KEYRING_KEY_SIZE];
    memset(pk, 0, sizeof(pk));
    if (size >= KEYRING_KEY_SIZE) {
        memcpy(pk, data, KEYRING_KEY_SIZE);
    }
    const struct keyring_client *f = keyring_client_find(kr, pk);
    CHECK(f == NULL || memcmp(f->pk, pk, KEYRING_KEY_SIZE) == 0);
    bool is_node = false;
    for (size_t i = 0; i < kr->node_count && !is_node; i++) {
        is_node = memcmp(kr->nodes[i].pk, pk, KEYRING_KEY_SIZE) == 0;
    }
    CHECK(keyring_has_node(kr, pk) == is_node);
}

static bool
fuzz_same(const struct keyring *a, const struct keyring *b)
{
    if (a->has_cluster != b->has_cluster || a->node_count != b->node_count
        || a->client_count != b->client_count) {
        return false;
    }
    if (a->has_cluster
        && memcmp(a->cluster_id, b->cluster_id, KEYRING_CLUSTER_ID_SIZE) != 0) {
        return false;
    }
    for (size_t i = 0; i < a->node_count; i++) {
        if (a->nodes[i].id != b->nodes[i].id
            || memcmp(a->nodes[i].pk, b->nodes[i].pk, KEYRING_KEY_SIZE) != 0) {
            return false;
        }
    }
    for (size_t i = 0; i < a->client_count; i++) {
        const struct keyring_client *x = &a->clients[i], *y = &b->clients[i];
        if (strcmp(x->name, y->name) != 0 || x->role != y->role
            || memcmp(x->pk, y->pk, KEYRING_KEY_SIZE) != 0
            || x->prefix_count != y->prefix_count) {
            return false;
        }
        for (uint32_t j = 0; j < x->prefix_count; j++) {
            if (strcmp(x->prefixes[j], y->prefixes[j]) != 0) {
                return false;
            }
        }
    }
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keyring kr, again;
    char           err[256];

    /* Keyrings are small; the size limit itself is a unit test. */
    if (size > KEYRING_LINE_MAX * 16u) {
        return 0;
    }
    memset(err, 0, sizeof(err));
    int rv = keyring_parse((const char *) data, size, &kr, err, sizeof(err));
    if (rv != MRD_OK) {
        CHECK(rv == MRD_EPROTO || rv == MRD_ETOOBIG || rv == MRD_EFULL);
        CHECK(fuzz_is_empty(&kr));
        CHECK(err[0] != '\0');
        /* Every error but a duplicate client key (found after the sort)
         * names its line. */
        CHECK(
            strncmp(err, "line ", 5) == 0 || strstr(err, "client key") != NULL);
        keyring_free(&kr);
        return 0;
    }
    fuzz_check(&kr, data, size);
    CHECK(keyring_parse((const char *) data, size, &again, NULL, 0) == MRD_OK);
    CHECK(fuzz_same(&kr, &again));
    keyring_free(&again);
    keyring_free(&kr);
    CHECK(fuzz_is_empty(&kr));
    return 0;
}
