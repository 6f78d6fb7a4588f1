/*
 * security.c: the node's identity and whom it trusts (node.h, "security").
 *
 * Trust, for the node's listener: a node key (the topology's nodes that are
 * not removed, or without a topology the keyring's node lines), a client
 * key of the keyring, or the topology's admin key (an admin client: whoever
 * may sign the topology may also use the cluster). For its dialers to
 * peers: node keys only. Roles are looked up per request, so a key whose
 * role changed is judged by the new one at once; a key that is gone loses
 * its connections when the tables are rebuilt (lk_revalidate).
 *
 * Files, all in the data dir unless given: node.key (0600, made at first
 * start when the default path is missing), keyring (made at first start
 * with this node and a new admin client, admin.key), and identity, which
 * the node rewrites at every start with its cluster and node lines, so a
 * client keyring is the nodes' identity files put together.
 */
#include "node.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keyring.h"
#include "linkio.h"
#include "topo.h"

/* How often the keyring file and the topology version are looked at: the
 * longest a removed key keeps its connections. */
#define NODE_SEC_POLL_MS 100u
/* Sockets re-checked on a trust change: the listener, and per peer a
 * puller, a hint and a gossip socket. */
#define NODE_SEC_SOCKS_MAX 1024u

struct node_security {
    const struct node_config *cfg;
    struct node_topology     *nt; /* NULL: static mode */
    uint8_t                   pk[KEYRING_KEY_SIZE];
    uint8_t                   sk[KEYRING_SECRET_KEY_SIZE];
    uint8_t                   cluster_id[KEYRING_CLUSTER_ID_SIZE];
    char                      keyring_path[4200];
    struct stat               keyring_st;
    struct lk_stats           stats;
    /* The tables (lock). */
    pthread_rwlock_t lock;
    struct keyring   kr;
    uint8_t (*topo_keys)[KEYRING_KEY_SIZE]; /* topology mode: node keys */
    size_t   topo_key_count;
    bool     has_admin;
    uint8_t  admin_pk[KEYRING_KEY_SIZE];
    uint64_t topo_version;
    /* Registered sockets (socks_mu). */
    pthread_mutex_t socks_mu;
    struct lk_sock *socks[NODE_SEC_SOCKS_MAX];
    size_t          sock_count;
    /* The poll thread. */
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            stop;
    bool            thread_started;
};

/* ------------------------------------------------------------- tables -- */

struct node_sec_topo_copy {
    struct node_security *sec;
    uint8_t (*keys)[KEYRING_KEY_SIZE];
    size_t  count;
    uint8_t admin[KEYRING_KEY_SIZE];
};

static void
node_sec_topo_fn(const struct topo *t, uint64_t self, void *arg)
{
    struct node_sec_topo_copy *c = arg;
    (void) self;
    memcpy(c->admin, t->admin_key, KEYRING_KEY_SIZE);
    c->count = 0;
    for (uint32_t i = 0; i < t->node_count && c->keys != NULL; i++) {
        if (t->nodes[i].state != TOPO_NODE_REMOVED) {
            memcpy(
                c->keys[c->count++], t->nodes[i].public_key, KEYRING_KEY_SIZE);
        }
    }
}

/* Takes the topology's keys into the tables (lock held for writing). */
static void
node_sec_topo_load(struct node_security *sec)
{
    struct node_sec_topo_copy c = { .sec = sec };
    c.keys                      = calloc(TOPO_NODES_MAX, KEYRING_KEY_SIZE);
    if (c.keys == NULL) {
        return; /* keep the old tables: out of memory */
    }
    uint64_t v = node_topology_with(sec->nt, node_sec_topo_fn, &c);
    free(sec->topo_keys);
    sec->topo_keys      = c.keys;
    sec->topo_key_count = c.count;
    sec->has_admin      = true;
    memcpy(sec->admin_pk, c.admin, KEYRING_KEY_SIZE);
    sec->topo_version = v;
}

static bool
node_sec_is_node(const struct node_security *sec, const uint8_t *pk)
{
    if (sec->nt == NULL) {
        return keyring_has_node(&sec->kr, pk);
    }
    for (size_t i = 0; i < sec->topo_key_count; i++) {
        if (sodium_memcmp(sec->topo_keys[i], pk, KEYRING_KEY_SIZE) == 0) {
            return true;
        }
    }
    return false;
}

/* The role of pk and, for a keyring client, its entry. Lock held. */
static enum keyring_role
node_sec_role(const struct node_security *sec, const uint8_t *pk,
    const struct keyring_client **client_out)
{
    *client_out = NULL;
    if (node_sec_is_node(sec, pk)) {
        return KEYRING_ROLE_NODE;
    }
    if (sec->has_admin
        && sodium_memcmp(sec->admin_pk, pk, KEYRING_KEY_SIZE) == 0) {
        return KEYRING_ROLE_ADMIN;
    }
    const struct keyring_client *c = keyring_client_find(&sec->kr, pk);
    if (c != NULL) {
        *client_out = c;
        return c->role;
    }
    return KEYRING_ROLE_NONE;
}

static bool
node_sec_trust_listener(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    struct node_security        *sec = arg;
    const struct keyring_client *c;
    pthread_rwlock_rdlock(&sec->lock);
    bool ok = node_sec_role(sec, pk, &c) != KEYRING_ROLE_NONE;
    pthread_rwlock_unlock(&sec->lock);
    return ok;
}

static bool
node_sec_trust_dialer(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    struct node_security *sec = arg;
    pthread_rwlock_rdlock(&sec->lock);
    bool ok = node_sec_is_node(sec, pk);
    pthread_rwlock_unlock(&sec->lock);
    return ok;
}

/* The role a request type needs. */
static enum keyring_role
node_sec_needs(uint32_t type)
{
    switch (type) {
    case PROTO_T_PULL:
    case PROTO_T_HINT:
    case PROTO_T_SWIM:
        return KEYRING_ROLE_NODE;
    case PROTO_T_TOPOLOGY_PUSH:
    case PROTO_T_STATS:
    case PROTO_T_STATUS:
    case PROTO_T_FENCE:
    case PROTO_T_DIGEST:
        return KEYRING_ROLE_ADMIN;
    case PROTO_T_APPEND:
        return KEYRING_ROLE_WRITE;
    default:
        return KEYRING_ROLE_READ;
    }
}

int
node_security_check(struct node_security *sec, const uint8_t *pk, uint32_t type,
    const char *stream, size_t stream_len, const char **why)
{
    const struct keyring_client *c;
    int                          rv = MRD_OK;

    pthread_rwlock_rdlock(&sec->lock);
    enum keyring_role role  = node_sec_role(sec, pk, &c);
    enum keyring_role needs = node_sec_needs(type);
    if (role == KEYRING_ROLE_NONE) {
        rv   = MRD_EAUTH;
        *why = "this client's key is no longer trusted by the node";
    } else if (role == KEYRING_ROLE_NODE) {
        rv = MRD_OK; /* a peer may do anything a node does */
    } else if (needs == KEYRING_ROLE_NODE) {
        rv   = MRD_EPERM;
        *why = "only nodes may make this request";
    } else if (role < needs) {
        rv   = MRD_EPERM;
        *why = needs == KEYRING_ROLE_ADMIN
            ? "this request needs the admin role"
            : "appends need the write role; this client may only read";
    } else if (c != NULL && c->prefix_count > 0 && type == PROTO_T_READ_LOG) {
        rv   = MRD_EPERM;
        *why = "a client limited to stream prefixes cannot read whole "
               "shard logs";
    } else if (c != NULL && stream != NULL
        && !keyring_client_allows(c, stream, stream_len)) {
        rv   = MRD_EPERM;
        *why = "the stream is outside this client's stream prefixes";
    }
    pthread_rwlock_unlock(&sec->lock);
    return rv;
}

struct node_sec_id_find {
    const uint8_t *pk;
    uint64_t       id;
    bool           found;
};

static void
node_sec_id_fn(const struct topo *t, uint64_t self, void *arg)
{
    struct node_sec_id_find *f = arg;
    (void) self;
    for (uint32_t i = 0; i < t->node_count; i++) {
        if (t->nodes[i].id == f->id && t->nodes[i].state != TOPO_NODE_REMOVED
            && sodium_memcmp(t->nodes[i].public_key, f->pk, KEYRING_KEY_SIZE)
                == 0) {
            f->found = true;
        }
    }
}

bool
node_security_is_node(struct node_security *sec, const uint8_t *pk, uint64_t id)
{
    if (sec->nt != NULL) {
        struct node_sec_id_find f = { .pk = pk, .id = id };
        node_topology_with(sec->nt, node_sec_id_fn, &f);
        return f.found;
    }
    bool found = false;
    pthread_rwlock_rdlock(&sec->lock);
    for (size_t i = 0; i < sec->kr.node_count && !found; i++) {
        found = sec->kr.nodes[i].id == id
            && sodium_memcmp(sec->kr.nodes[i].pk, pk, KEYRING_KEY_SIZE) == 0;
    }
    pthread_rwlock_unlock(&sec->lock);
    return found;
}

/* ------------------------------------------------------------- files -- */

static int
node_sec_key(struct node_security *sec, const struct node_config *cfg)
{
    char path[4200];
    char err[512];
    bool given = cfg->key_file[0] != '\0';

    if (given) {
        snprintf(path, sizeof(path), "%s", cfg->key_file);
    } else {
        snprintf(path, sizeof(path), "%s/node.key", cfg->data_dir);
    }
    int rv = keyring_key_read(path, sec->sk, err, sizeof(err));
    if (rv == MRD_ENOTFOUND && !given) {
        crypto_sign_keypair(sec->pk, sec->sk);
        rv = keyring_key_write(path, sec->sk, err, sizeof(err));
        if (rv == MRD_OK) {
            node_log(
                NODE_LOG_INFO, "made this node's key", "{s:s}", "path", path);
        }
    }
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot use the node key", "{s:s, s:s}",
            "error", mrd_errname(rv), "why", err);
        return rv;
    }
    memcpy(sec->pk, sec->sk + 32, KEYRING_KEY_SIZE);
    return MRD_OK;
}

static void
node_sec_hex(char *out, const uint8_t *b, size_t n)
{
    sodium_bin2hex(out, n * 2 + 1, b, n);
}

/* Writes DATA_DIR/keyring trusting this node and a new admin client whose
 * key goes to DATA_DIR/admin.key (or the key already there). */
static int
node_sec_keyring_make(struct node_security *sec, const char *path)
{
    char    admin_path[4200], err[512], text[1024];
    char    cid[33], npk[65], apk[65];
    uint8_t a_pk[32], a_sk[64];

    snprintf(
        admin_path, sizeof(admin_path), "%s/admin.key", sec->cfg->data_dir);
    int rv = keyring_key_read(admin_path, a_sk, err, sizeof(err));
    if (rv == MRD_ENOTFOUND) {
        crypto_sign_keypair(a_pk, a_sk);
        rv = keyring_key_write(admin_path, a_sk, err, sizeof(err));
    }
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot make the admin client key",
            "{s:s, s:s}", "error", mrd_errname(rv), "why", err);
        return rv;
    }
    memcpy(a_pk, a_sk + 32, 32);
    sodium_memzero(a_sk, sizeof(a_sk));
    node_sec_hex(cid, sec->cluster_id, 16);
    node_sec_hex(npk, sec->pk, 32);
    node_sec_hex(apk, a_pk, 32);
    int n = snprintf(text, sizeof(text),
        "# Meridian keyring, made by node %" PRIu64 " at its first start.\n"
        "# Add the other nodes' identity lines (DATA_DIR/identity) and\n"
        "# client keys ('meridianctl keygen'); the node re-reads this file\n"
        "# when it changes.\n"
        "cluster %s\n"
        "node %" PRIu64 " %s\n"
        "client admin admin %s\n",
        sec->cfg->node_id, cid, sec->cfg->node_id, npk, apk);
    rv    = keyring_file_write(path, text, (size_t) n, 0644, err, sizeof(err));
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot write the keyring", "{s:s, s:s}",
            "error", mrd_errname(rv), "why", err);
        return rv;
    }
    node_log(NODE_LOG_INFO, "made a keyring and an admin client key",
        "{s:s, s:s}", "keyring", path, "admin_key", admin_path);
    return MRD_OK;
}

/* Loads the keyring into *kr (checking its cluster line). */
static int
node_sec_keyring_read(struct node_security *sec, struct keyring *kr)
{
    char err[600];
    int  rv = keyring_load(sec->keyring_path, kr, err, sizeof(err));
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot use the keyring", "{s:s, s:s}",
            "error", mrd_errname(rv), "why", err);
        return rv;
    }
    if (kr->has_cluster
        && memcmp(kr->cluster_id, sec->cluster_id, KEYRING_CLUSTER_ID_SIZE)
            != 0) {
        node_log(NODE_LOG_ERROR, "the keyring is another cluster's", "{s:s}",
            "path", sec->keyring_path);
        keyring_free(kr);
        return MRD_EINVAL;
    }
    return MRD_OK;
}

static int
node_sec_identity_write(struct node_security *sec)
{
    char path[4200], text[256], err[512], cid[33], npk[65];
    node_sec_hex(cid, sec->cluster_id, 16);
    node_sec_hex(npk, sec->pk, 32);
    snprintf(path, sizeof(path), "%s/identity", sec->cfg->data_dir);
    int n  = snprintf(text, sizeof(text), "cluster %s\nnode %" PRIu64 " %s\n",
         cid, sec->cfg->node_id, npk);
    int rv = keyring_file_write(path, text, (size_t) n, 0644, err, sizeof(err));
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot write the identity file", "{s:s, s:s}",
            "error", mrd_errname(rv), "why", err);
    }
    return rv;
}

/* --------------------------------------------------------- the thread -- */

static void
node_sec_revalidate(struct node_security *sec)
{
    pthread_mutex_lock(&sec->socks_mu);
    for (size_t i = 0; i < sec->sock_count; i++) {
        lk_revalidate(sec->socks[i]);
    }
    pthread_mutex_unlock(&sec->socks_mu);
}

/* Whether the keyring file changed since it was read (stat fields). */
static bool
node_sec_keyring_changed(struct node_security *sec, struct stat *now)
{
    if (stat(sec->keyring_path, now) != 0) {
        return false; /* gone or unreadable: keep what we have */
    }
    return now->st_mtim.tv_sec != sec->keyring_st.st_mtim.tv_sec
        || now->st_mtim.tv_nsec != sec->keyring_st.st_mtim.tv_nsec
        || now->st_size != sec->keyring_st.st_size
        || now->st_ino != sec->keyring_st.st_ino;
}

static void
node_sec_poll(struct node_security *sec)
{
    struct stat st;
    bool        changed = false;

    if (node_sec_keyring_changed(sec, &st)) {
        struct keyring kr;
        sec->keyring_st = st; /* a bad file is reported once, not twice a
                               * second */
        if (node_sec_keyring_read(sec, &kr) == MRD_OK) {
            pthread_rwlock_wrlock(&sec->lock);
            keyring_free(&sec->kr);
            sec->kr = kr;
            pthread_rwlock_unlock(&sec->lock);
            changed = true;
            node_log(NODE_LOG_INFO, "keyring reloaded", "{s:s, s:i, s:i}",
                "path", sec->keyring_path, "clients", (int) kr.client_count,
                "nodes", (int) kr.node_count);
        } else {
            node_log(NODE_LOG_WARN,
                "keyring not reloaded: keeping the old "
                "one",
                NULL);
        }
    }
    if (sec->nt != NULL
        && node_topology_version(sec->nt) != sec->topo_version) {
        pthread_rwlock_wrlock(&sec->lock);
        node_sec_topo_load(sec);
        pthread_rwlock_unlock(&sec->lock);
        changed = true;
    }
    if (changed) {
        node_sec_revalidate(sec);
    }
}

static void *
node_sec_main(void *arg)
{
    struct node_security *sec = arg;
    pthread_mutex_lock(&sec->mu);
    while (!sec->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long) NODE_SEC_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&sec->cv, &sec->mu, &ts);
        if (sec->stop) {
            break;
        }
        pthread_mutex_unlock(&sec->mu);
        node_sec_poll(sec);
        pthread_mutex_lock(&sec->mu);
    }
    pthread_mutex_unlock(&sec->mu);
    return NULL;
}

/* --------------------------------------------------------------- API -- */

int
node_security_open(const struct node_config *cfg,
    const struct node_store *store, struct node_topology *nt,
    struct node_security **out)
{
    struct node_security *sec = calloc(1, sizeof(*sec));
    int                   rv;

    *out = NULL;
    if (sec == NULL) {
        return MRD_ENOMEM;
    }
    sec->cfg = cfg;
    sec->nt  = nt;
    memcpy(sec->cluster_id, store->cluster_id, KEYRING_CLUSTER_ID_SIZE);
    pthread_rwlock_init(&sec->lock, NULL);
    pthread_mutex_init(&sec->socks_mu, NULL);
    pthread_mutex_init(&sec->mu, NULL);
    pthread_cond_init(&sec->cv, NULL);
    rv = node_sec_key(sec, cfg);
    if (rv == MRD_OK && nt != NULL) {
        node_sec_topo_load(sec);
        bool mine = false;
        for (size_t i = 0; i < sec->topo_key_count; i++) {
            mine = mine
                || sodium_memcmp(sec->topo_keys[i], sec->pk, KEYRING_KEY_SIZE)
                    == 0;
        }
        if (!mine) {
            node_log(NODE_LOG_ERROR,
                "this node's key is not its key in the topology: give "
                "--key the node.key that `meridianctl cluster init` or "
                "`keygen` made for it",
                NULL);
            rv = MRD_EINVAL;
        }
    }
    if (rv == MRD_OK) {
        if (cfg->keyring_file[0] != '\0') {
            snprintf(sec->keyring_path, sizeof(sec->keyring_path), "%s",
                cfg->keyring_file);
        } else {
            snprintf(sec->keyring_path, sizeof(sec->keyring_path), "%s/keyring",
                cfg->data_dir);
            struct stat st;
            if (stat(sec->keyring_path, &st) != 0 && errno == ENOENT) {
                rv = node_sec_keyring_make(sec, sec->keyring_path);
            }
        }
    }
    if (rv == MRD_OK) {
        stat(sec->keyring_path, &sec->keyring_st);
        rv = node_sec_keyring_read(sec, &sec->kr);
    }
    if (rv == MRD_OK) {
        rv = node_sec_identity_write(sec);
    }
    if (rv == MRD_OK) {
        if (pthread_create(&sec->thread, NULL, node_sec_main, sec) != 0) {
            rv = MRD_ENOMEM;
        } else {
            sec->thread_started = true;
        }
    }
    if (rv != MRD_OK) {
        node_security_close(sec);
        return rv;
    }
    char pkhex[65];
    node_sec_hex(pkhex, sec->pk, 32);
    node_log(NODE_LOG_INFO, "identity", "{s:s, s:s, s:i, s:i}", "public_key",
        pkhex, "keyring", sec->keyring_path, "clients",
        (int) sec->kr.client_count, "keyring_nodes", (int) sec->kr.node_count);
    *out = sec;
    return MRD_OK;
}

void
node_security_close(struct node_security *sec)
{
    if (sec == NULL) {
        return;
    }
    if (sec->thread_started) {
        pthread_mutex_lock(&sec->mu);
        sec->stop = true;
        pthread_cond_signal(&sec->cv);
        pthread_mutex_unlock(&sec->mu);
        pthread_join(sec->thread, NULL);
    }
    keyring_free(&sec->kr);
    free(sec->topo_keys);
    pthread_rwlock_destroy(&sec->lock);
    pthread_mutex_destroy(&sec->socks_mu);
    pthread_mutex_destroy(&sec->mu);
    pthread_cond_destroy(&sec->cv);
    sodium_memzero(sec->sk, sizeof(sec->sk));
    free(sec);
}

void
node_security_lk_config(struct node_security *sec, bool listener,
    size_t frame_max, struct lk_config *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->cluster_id, sec->cluster_id, KEYRING_CLUSTER_ID_SIZE);
    memcpy(out->pk, sec->pk, KEYRING_KEY_SIZE);
    memcpy(out->sk, sec->sk, KEYRING_SECRET_KEY_SIZE);
    out->trust     = listener ? node_sec_trust_listener : node_sec_trust_dialer;
    out->trust_arg = sec;
    out->stats     = &sec->stats;
    out->frame_max
        = frame_max < LINK_FRAME_PLAIN_MAX ? frame_max : LINK_FRAME_PLAIN_MAX;
}

void
node_security_register(struct node_security *sec, struct lk_sock *s)
{
    pthread_mutex_lock(&sec->socks_mu);
    if (sec->sock_count < NODE_SEC_SOCKS_MAX) {
        sec->socks[sec->sock_count++] = s;
    }
    pthread_mutex_unlock(&sec->socks_mu);
}

struct lk_stats *
node_security_stats(struct node_security *sec)
{
    return &sec->stats;
}
