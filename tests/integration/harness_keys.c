/*
 * harness_keys.c: secure links in integration tests (harness.h, "Keys").
 *
 * Every node a test starts runs encrypted and authenticated like a real
 * one; the harness only makes the keys predictable so that tests need not
 * carry them around:
 *   - node N's key pair is derived from N (harness_node_keypair), written
 *     to KEYS/node-N.key and passed as --key;
 *   - KEYS/nodes.keyring trusts the node keys of ids 1..HARNESS_KEY_IDS
 *     and one admin client (harness_admin_keypair, KEYS/admin.key), and is
 *     passed as --keyring;
 *   - after a node is ready its DATA_DIR/identity (cluster and node line)
 *     is noted by URL, so that a client of that URL gets a keyring with the
 *     right cluster id and the node's real key (a node started from
 *     `meridianctl cluster init`'s config has its own key).
 * KEYS is one temp directory per test process, removed at exit.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyring.h"
#include "linkio.h"

/* Node ids with a harness key in the nodes keyring: every test uses small
 * ids. */
#define HARNESS_KEY_IDS 64u
/* Node URLs whose identity the harness remembers. */
#define HARNESS_IDENTITIES_MAX 256u

struct harness_identity {
    char            url[HARNESS_URL_SIZE];
    char            cluster[33];
    uint64_t        id;
    char            pk[65];
    struct lk_sock *stat; /* harness_node_stat's dialer, kept */
};

static pthread_mutex_t         harness_keys_mu = PTHREAD_MUTEX_INITIALIZER;
static char                    harness_keys_path[HARNESS_PATH_SIZE];
static char                    harness_admin_path[HARNESS_PATH_SIZE + 32];
static char                    harness_ring_path[HARNESS_PATH_SIZE + 32];
static struct harness_identity harness_ids[HARNESS_IDENTITIES_MAX];
static size_t                  harness_id_count;

static void
harness_seed(const char *label, uint64_t id, uint8_t seed[32])
{
    crypto_generichash_state st;
    uint8_t                  idb[8];
    for (int i = 0; i < 8; i++) {
        idb[i] = (uint8_t) (id >> (56 - 8 * i));
    }
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *) label, strlen(label));
    crypto_generichash_update(&st, idb, sizeof idb);
    crypto_generichash_final(&st, seed, 32);
}

void
harness_node_keypair(uint64_t id, uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    harness_seed("meridian-harness-node", id, seed);
    crypto_sign_seed_keypair(pk, sk, seed);
}

void
harness_admin_keypair(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    harness_seed("meridian-harness-admin", 0, seed);
    crypto_sign_seed_keypair(pk, sk, seed);
}

static void
harness_keys_cleanup(void)
{
    if (harness_keys_path[0] != '\0') {
        const char *keep = getenv("MRD_TEST_KEEP");
        if (keep == NULL || strcmp(keep, "1") != 0) {
            harness_rmrf(harness_keys_path);
        }
    }
}

/* Makes KEYS with admin.key and nodes.keyring once. Lock held. */
static int
harness_keys_make_locked(void)
{
    char    err[256], hex[129];
    uint8_t pk[32], sk[64];
    char   *text;
    size_t  n = 0, cap = 64u * 1024u;

    if (harness_keys_path[0] != '\0') {
        return 0;
    }
    if (sodium_init() < 0
        || harness_tmpdir_make(
               "meridian-keys-", harness_keys_path, sizeof harness_keys_path)
            != 0) {
        harness_keys_path[0] = '\0';
        return -1;
    }
    atexit(harness_keys_cleanup);
    snprintf(harness_admin_path, sizeof harness_admin_path, "%s/admin.key",
        harness_keys_path);
    snprintf(harness_ring_path, sizeof harness_ring_path, "%s/nodes.keyring",
        harness_keys_path);
    harness_admin_keypair(pk, sk);
    if (keyring_key_write(harness_admin_path, sk, err, sizeof err) != MRD_OK) {
        fprintf(stderr, "harness: %s\n", err);
        return -1;
    }
    if ((text = malloc(cap)) == NULL) {
        return -1;
    }
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    n += (size_t) snprintf(text + n, cap - n,
        "# the harness's keyring: every harness node key and its admin\n"
        "client harness-admin admin %s\n",
        hex);
    for (uint64_t id = 1; id <= HARNESS_KEY_IDS; id++) {
        harness_node_keypair(id, pk, sk);
        sodium_bin2hex(hex, sizeof hex, pk, 32);
        n += (size_t) snprintf(
            text + n, cap - n, "node %llu %s\n", (unsigned long long) id, hex);
    }
    int rv
        = keyring_file_write(harness_ring_path, text, n, 0644, err, sizeof err)
            == MRD_OK
        ? 0
        : -1;
    free(text);
    if (rv != 0) {
        fprintf(stderr, "harness: %s\n", err);
    }
    return rv;
}

const char *
harness_admin_key_file(void)
{
    pthread_mutex_lock(&harness_keys_mu);
    int rv = harness_keys_make_locked();
    pthread_mutex_unlock(&harness_keys_mu);
    return rv == 0 ? harness_admin_path : NULL;
}

const char *
harness_nodes_keyring(void)
{
    pthread_mutex_lock(&harness_keys_mu);
    int rv = harness_keys_make_locked();
    pthread_mutex_unlock(&harness_keys_mu);
    return rv == 0 ? harness_ring_path : NULL;
}

int
harness_node_key_file(uint64_t id, char *out, size_t size)
{
    char    err[256];
    uint8_t pk[32], sk[64];

    pthread_mutex_lock(&harness_keys_mu);
    int rv = harness_keys_make_locked();
    pthread_mutex_unlock(&harness_keys_mu);
    if (rv != 0) {
        return -1;
    }
    if ((size_t) snprintf(out, size, "%s/node-%llu.key", harness_keys_path,
            (unsigned long long) id)
        >= size) {
        return -1;
    }
    if (access(out, F_OK) == 0) {
        return 0;
    }
    harness_node_keypair(id, pk, sk);
    rv = keyring_key_write(out, sk, err, sizeof err);
    if (rv != MRD_OK && !(rv == MRD_EINVAL && access(out, F_OK) == 0)) {
        fprintf(stderr, "harness: %s\n", err);
        return -1;
    }
    return 0;
}

int
harness_identity_note(const struct harness_node *node)
{
    char               path[HARNESS_PATH_SIZE + 16];
    char               line[256];
    char               cluster[33] = "";
    char               pk[65]      = "";
    FILE              *f;
    unsigned long long id = 0;

    snprintf(path, sizeof path, "%s/identity", node->data_dir);
    if ((f = fopen(path, "r")) == NULL) {
        fprintf(stderr, "harness: no identity file %s\n", path);
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "cluster %32s", cluster) == 1) {
            continue;
        }
        sscanf(line, "node %llu %64s", &id, pk);
    }
    fclose(f);
    if (strlen(cluster) != 32 || strlen(pk) != 64 || id == 0) {
        fprintf(stderr, "harness: malformed identity file %s\n", path);
        return -1;
    }
    pthread_mutex_lock(&harness_keys_mu);
    struct harness_identity *e = NULL;
    for (size_t i = 0; i < harness_id_count && e == NULL; i++) {
        if (strcmp(harness_ids[i].url, node->url) == 0) {
            e = &harness_ids[i];
        }
    }
    if (e == NULL && harness_id_count < HARNESS_IDENTITIES_MAX) {
        e = &harness_ids[harness_id_count++];
        snprintf(e->url, sizeof e->url, "%s", node->url);
    }
    bool changed = e != NULL && strcmp(e->cluster, cluster) != 0;
    if (e != NULL) {
        /* A node restarted on the URL with another cluster (a new data
         * dir): the kept STATS dialer speaks the old one; it is left (NNG
         * 1.5.2's close can hang) and a new one made when needed. */
        if (e->stat != NULL && strcmp(e->cluster, cluster) != 0) {
            e->stat = NULL;
        }
        snprintf(e->cluster, sizeof e->cluster, "%s", cluster);
        snprintf(e->pk, sizeof e->pk, "%s", pk);
        e->id = id;
    }
    bool env_same = changed == false && getenv("MERIDIAN_KEYRING") != NULL;
    pthread_mutex_unlock(&harness_keys_mu);
    if (e == NULL) {
        return -1;
    }
    /* Clients a test opens itself (mrd_client_open with its own options)
     * and meridianctl runs without --node find the admin key and the
     * keyring of the cluster last started in the environment. */
    if (!env_same) {
        static char ring[HARNESS_PATH_SIZE + 64];
        if (harness_client_keyring(node->url, ring, sizeof ring) == 0) {
            setenv("MERIDIAN_KEY", harness_admin_key_file(), 1);
            setenv("MERIDIAN_KEYRING", ring, 1);
        }
    }
    return 0;
}

/* The noted identity of url, copied; false when unknown. Lock held. */
static struct harness_identity *
harness_identity_find_locked(const char *url)
{
    for (size_t i = 0; i < harness_id_count; i++) {
        if (strcmp(harness_ids[i].url, url) == 0) {
            return &harness_ids[i];
        }
    }
    return NULL;
}

bool
harness_identity_known(const char *url)
{
    pthread_mutex_lock(&harness_keys_mu);
    bool known = harness_identity_find_locked(url) != NULL;
    pthread_mutex_unlock(&harness_keys_mu);
    return known;
}

int
harness_client_keyring(const char *url, char *out, size_t size)
{
    char    err[256], hex[65];
    uint8_t pk[32], sk[64];
    char    cluster[33];
    size_t  n = 0, cap = 64u * 1024u;
    char   *text;

    pthread_mutex_lock(&harness_keys_mu);
    struct harness_identity *e = harness_identity_find_locked(url);
    if (harness_keys_make_locked() != 0) {
        pthread_mutex_unlock(&harness_keys_mu);
        return -1;
    }
    /* A URL no harness node ever served (a dead address): a keyring of no
     * cluster, so a client can still be opened and find nothing. */
    snprintf(cluster, sizeof cluster, "%s",
        e != NULL ? e->cluster : "00000000000000000000000000000000");
    if ((size_t) snprintf(
            out, size, "%s/client-%s.keyring", harness_keys_path, cluster)
            >= size
        || (text = malloc(cap)) == NULL) {
        pthread_mutex_unlock(&harness_keys_mu);
        return -1;
    }
    n += (size_t) snprintf(text + n, cap - n, "cluster %s\n", cluster);
    /* Each id once: the key a node of this cluster reported, else the
     * harness key of that id. */
    for (uint64_t id = 1; id <= HARNESS_KEY_IDS; id++) {
        const char *real = NULL;
        for (size_t i = 0; i < harness_id_count; i++) {
            if (harness_ids[i].id == id
                && strcmp(harness_ids[i].cluster, cluster) == 0) {
                real = harness_ids[i].pk;
            }
        }
        if (real == NULL) {
            harness_node_keypair(id, pk, sk);
            sodium_bin2hex(hex, sizeof hex, pk, 32);
            real = hex;
        }
        n += (size_t) snprintf(
            text + n, cap - n, "node %llu %s\n", (unsigned long long) id, real);
    }
    pthread_mutex_unlock(&harness_keys_mu);
    int rv = keyring_file_write(out, text, n, 0644, err, sizeof err) == MRD_OK
        ? 0
        : -1;
    free(text);
    if (rv != 0) {
        fprintf(stderr, "harness: %s\n", err);
    }
    return rv;
}

/* Test tooling trusts whatever node answers: what it checks is the
 * node's behaviour, not who it is. */
static bool
harness_trust_any(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    (void) arg;
    (void) pk;
    return true;
}

int
harness_lk_dial(const char *url, struct lk_sock **out)
{
    struct lk_config cfg = { .trust = harness_trust_any,
        .frame_max = MRD_FRAME_SIZE_MAX - LINK_FRAME_OVERHEAD };
    uint8_t          pk[32], sk[64];

    *out = NULL;
    pthread_mutex_lock(&harness_keys_mu);
    struct harness_identity *e  = harness_identity_find_locked(url);
    bool                     ok = e != NULL && harness_keys_make_locked() == 0;
    size_t                   bin_len = 0;
    if (ok) {
        ok = sodium_hex2bin(cfg.cluster_id, sizeof cfg.cluster_id, e->cluster,
                 32, NULL, &bin_len, NULL)
                == 0
            && bin_len == sizeof cfg.cluster_id;
    }
    pthread_mutex_unlock(&harness_keys_mu);
    if (!ok) {
        fprintf(stderr, "harness: no identity known for %s\n", url);
        return -1;
    }
    harness_admin_keypair(pk, sk);
    memcpy(cfg.pk, pk, 32);
    memcpy(cfg.sk, sk, 64);
    int rv = lk_open_dialer(&cfg, out);
    sodium_memzero(&cfg, sizeof cfg);
    if (rv != MRD_OK) {
        return -1;
    }
    nng_socket_set_ms(lk_nng(*out), NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(lk_nng(*out), NNG_OPT_RECONNMAXT, 200);
    if (nng_dial(lk_nng(*out), url, NULL, NNG_FLAG_NONBLOCK) != 0) {
        return -1; /* left open: NNG 1.5.2's close can hang */
    }
    return 0;
}

int
harness_lk_call(struct lk_sock *s, const void *req, size_t len,
    nng_msg **rep_out, uint32_t timeout_ms)
{
    struct lk_ctx *ctx = NULL;
    nng_aio       *aio = NULL;
    nng_msg       *msg = NULL;
    int            rv  = -1;

    *rep_out = NULL;
    if (lk_ctx_open(s, &ctx) != MRD_OK || nng_aio_alloc(&aio, NULL, NULL) != 0
        || nng_msg_alloc(&msg, len) != 0) {
        goto done;
    }
    memcpy(nng_msg_body(msg), req, len);
    nng_aio_set_msg(aio, msg);
    nng_aio_set_timeout(aio, (nng_duration) timeout_ms);
    lk_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if (nng_aio_result(aio) != 0) {
        nng_msg_free(nng_aio_get_msg(aio)); /* a failed send keeps it */
        goto done;
    }
    nng_aio_set_timeout(aio, (nng_duration) timeout_ms);
    lk_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    if (nng_aio_result(aio) == 0) {
        *rep_out = nng_aio_get_msg(aio);
        rv       = 0;
    }
done:
    if (aio != NULL) {
        nng_aio_free(aio);
    }
    lk_ctx_close(ctx);
    return rv;
}

struct lk_sock *
harness_stat_sock(const char *url)
{
    struct lk_sock *s = NULL;
    pthread_mutex_lock(&harness_keys_mu);
    struct harness_identity *e = harness_identity_find_locked(url);
    if (e != NULL) {
        s = e->stat;
    }
    pthread_mutex_unlock(&harness_keys_mu);
    if (s != NULL || e == NULL) {
        return s;
    }
    if (harness_lk_dial(url, &s) != 0) {
        return NULL;
    }
    pthread_mutex_lock(&harness_keys_mu);
    e->stat = s; /* a racing thread's socket is left, like every other */
    pthread_mutex_unlock(&harness_keys_mu);
    return s;
}
