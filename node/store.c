/*
 * store.c: the node's LMDB environment.
 *
 * Named databases:
 *   meta       node id, cluster id, shard count, format, and the writer's
 *              counters (origin seq, stream id, HLC), rewritten every commit
 *   streams    stream name -> {id, count, shard}
 *   index      stream id BE64 | position BE64 -> log seq BE64
 *   log.NNN    per shard: log seq BE64 -> position BE64 | record
 *   idem       idempotency key -> the first answer and a digest of the request
 *   idem_exp   created ms BE64 | key -> "", swept in commit order
 *
 * Log keys are big-endian and strictly increasing, so every log put is an
 * MDB_APPEND. Records carry their own checksum (LMDB has none), checked on
 * every read. The environment is opened without MDB_NOSYNC, MDB_NOMETASYNC or
 * MDB_WRITEMAP: a committed transaction is on disk when commit returns, and a
 * full disk is an error, never a SIGBUS.
 */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define NODE_META_FORMAT "format"
#define NODE_META_NODE_ID "node_id"
#define NODE_META_CLUSTER "cluster_id"
#define NODE_META_SHARDS "shards"
#define NODE_META_ORIGIN_SEQ "origin_seq"
/* The origin seq this life of the node started at (0: a store made
 * without peers, or before this key), for tools to count events. */
#define NODE_META_LIFE_SEQ "life_seq"
/* Present (1) from the creation of a store that has peers until the node
 * has read every live replica's log to the end (node_store_joined). A data
 * dir that was emptied (or lost) comes back under the same node id with no
 * record of the seqs it handed out; taking appends before its own earlier
 * events are back would reuse their dots, and replicas would then skip the
 * new events as held. Legacy stores have no key: not joining. */
#define NODE_META_JOINING "joining"
#define NODE_META_STREAM_ID "stream_id"
#define NODE_META_HLC "hlc"

#define NODE_STREAM_VALUE_SIZE 20u
#define NODE_IDEM_VALUE_SIZE 80u
/* Readers LMDB allows at once: reader threads, tools, and slack. */
#define NODE_MAX_READERS 256u

/* ------------------------------------------------------------- helpers -- */

static MDB_val
node_val(const void *p, size_t n)
{
    MDB_val v = { n, (void *) (uintptr_t) p };
    return v;
}

static int
node_meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *out)
{
    MDB_val k = node_val(key, strlen(key));
    MDB_val v;
    int     rc = mdb_get(txn, dbi, &k, &v);
    if (rc != 0) {
        return rc;
    }
    if (v.mv_size != 8) {
        return MDB_CORRUPTED;
    }
    *out = mrd_be64_get(v.mv_data);
    return 0;
}

static int
node_meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t value)
{
    uint8_t b[8];
    mrd_be64_put(b, value);
    MDB_val k = node_val(key, strlen(key));
    MDB_val v = node_val(b, 8);
    return mdb_put(txn, dbi, &k, &v, 0);
}

static void
node_stream_encode(const struct node_stream *s, uint8_t *b)
{
    mrd_be64_put(b, s->id);
    mrd_be64_put(b + 8, s->count);
    mrd_be32_put(b + 16, s->shard);
}

int
node_stream_lookup(MDB_txn *txn, const struct node_store *store,
    struct proto_str name, struct node_stream *out)
{
    MDB_val k = node_val(name.ptr, name.len);
    MDB_val v;
    int     rc = mdb_get(txn, store->dbi_streams, &k, &v);
    if (rc != 0) {
        return rc;
    }
    if (v.mv_size != NODE_STREAM_VALUE_SIZE) {
        return MDB_CORRUPTED;
    }
    const uint8_t *b = v.mv_data;
    out->id          = mrd_be64_get(b);
    out->count       = mrd_be64_get(b + 8);
    out->shard       = mrd_be32_get(b + 16);
    if (out->shard >= store->shard_count) {
        return MDB_CORRUPTED;
    }
    return 0;
}

int
node_stream_put(MDB_txn *txn, const struct node_store *store,
    struct proto_str name, const struct node_stream *st)
{
    uint8_t b[NODE_STREAM_VALUE_SIZE];
    node_stream_encode(st, b);
    MDB_val k = node_val(name.ptr, name.len);
    MDB_val v = node_val(b, sizeof(b));
    return mdb_put(txn, store->dbi_streams, &k, &v, 0);
}

/* Free bytes of the file system under the data dir, as this process may
 * use them (root may use the reserved blocks). UINT64_MAX when unknown. */
static uint64_t
node_store_free_bytes(const struct node_store *store)
{
    const char    *dir = NULL;
    struct statvfs st;
    if (mdb_env_get_path(store->env, &dir) != 0 || dir == NULL
        || statvfs(dir, &st) != 0) {
        return UINT64_MAX;
    }
    uint64_t blocks = geteuid() == 0 ? st.f_bfree : st.f_bavail;
    return blocks * (uint64_t) st.f_frsize;
}

int
node_store_commit_rc(const struct node_store *store, int rc)
{
    /* LMDB reports a write that came up short as EIO: that is how a full
     * disk ends a commit whose pwrite() ran out of room part way (tmpfs
     * does it; seen in the chaos harness's disk faults). Nothing reached
     * the page cache that LMDB still counts on (the transaction aborts and
     * its pages are written again later), unlike an fsync() that failed,
     * so it is no reason to stop: with the file system full, the EIO is
     * taken for what it is, no space. An EIO with room left stays fatal. */
    if (rc == EIO && node_store_free_bytes(store) < NODE_SHORT_WRITE_ROOM) {
        node_log(NODE_LOG_WARN, "a commit's write came up short on a full disk",
            "{s:s}", "taken_as", "no space");
        return ENOSPC;
    }
    return rc;
}

int
node_store_err(int rc)
{
    switch (rc) {
    case 0:
        return MRD_OK;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
        return MRD_ENOSPACE;
    default:
        return MRD_EIO;
    }
}

uint32_t
node_store_shard_of(
    const struct node_store *store, const char *stream, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    /* Keyed with the cluster id, so every node of a cluster agrees and a
     * client cannot aim many streams at one shard without knowing it. */
    crypto_shorthash(h, (const unsigned char *) stream, len, store->cluster_id);
    uint64_t v;
    memcpy(&v, h, 8);
    return (uint32_t) (v % store->shard_count);
}

/* ------------------------------------------------------ meta documents -- */

int
node_store_meta_get(
    struct node_store *store, const char *key, uint8_t **out, size_t *len_out)
{
    MDB_txn *txn;
    MDB_val  k = node_val(key, strlen(key)), v;

    *out     = NULL;
    *len_out = 0;
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&store->resize_lock);
        return MRD_EIO;
    }
    rc     = mdb_get(txn, store->dbi_meta, &k, &v);
    int rv = rc == MDB_NOTFOUND ? MRD_ENOTFOUND : rc != 0 ? MRD_EIO : MRD_OK;
    if (rv == MRD_OK) {
        *out = malloc(v.mv_size > 0 ? v.mv_size : 1);
        if (*out == NULL) {
            rv = MRD_ENOMEM;
        } else {
            memcpy(*out, v.mv_data, v.mv_size);
            *len_out = v.mv_size;
        }
    }
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&store->resize_lock);
    return rv;
}

int
node_store_meta_put(
    struct node_store *store, const char *key, const void *buf, size_t len)
{
    MDB_txn *txn;
    MDB_val  k = node_val(key, strlen(key)), v = node_val(buf, len);

    /* A small write of its own: the writer and the puller take write_mu
     * around theirs, and LMDB serialises the rest. */
    pthread_mutex_lock(&store->write_mu);
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_put(txn, store->dbi_meta, &k, &v, 0);
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    pthread_rwlock_unlock(&store->resize_lock);
    pthread_mutex_unlock(&store->write_mu);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "cannot write store metadata", "{s:s, s:s}",
            "key", key, "error", mdb_strerror(rc));
        return rc == MDB_MAP_FULL ? MRD_ENOSPACE : MRD_EIO;
    }
    return MRD_OK;
}

/* ---------------------------------------------------------------- open -- */

/* First start: write the node's identity. */
static int
node_store_init_meta(
    struct node_store *store, MDB_txn *txn, const struct node_config *cfg)
{
    int rc;

    if (cfg->has_cluster_id) {
        memcpy(store->cluster_id, cfg->cluster_id, sizeof(store->cluster_id));
    } else {
        randombytes_buf(store->cluster_id, sizeof(store->cluster_id));
    }
    MDB_val k = node_val(NODE_META_CLUSTER, strlen(NODE_META_CLUSTER));
    MDB_val v = node_val(store->cluster_id, sizeof(store->cluster_id));
    rc        = mdb_put(txn, store->dbi_meta, &k, &v, 0);
    if (rc == 0) {
        rc = node_meta_put_u64(
            txn, store->dbi_meta, NODE_META_FORMAT, NODE_STORE_FORMAT);
    }
    if (rc == 0) {
        rc = node_meta_put_u64(
            txn, store->dbi_meta, NODE_META_NODE_ID, cfg->node_id);
    }
    if (rc == 0) {
        rc = node_meta_put_u64(
            txn, store->dbi_meta, NODE_META_SHARDS, cfg->shard_count);
    }
    if (rc == 0 && (cfg->peer_count > 0 || cfg->topology_file[0] != '\0')) {
        rc = node_meta_put_u64(txn, store->dbi_meta, NODE_META_JOINING, 1);
    }
    /* A new life's dots start above every dot of the earlier lives of
     * this node id: at the creation time in ms times 2^20. An earlier life
     * that started before now wrote below that unless it made 2^20 events
     * a millisecond, so a node that comes back empty never reuses a dot,
     * even when joining ends before its old events are back (peers cut off
     * for NODE_JOIN_GRACE_MS: the chaos harness saw dots 6:1.. handed out
     * again after a wipe). Seqs stay far below 2^64 (2^61 in 2043). */
    if (rc == 0 && (cfg->peer_count > 0 || cfg->topology_file[0] != '\0')) {
        uint64_t life = mrd_now_real_ms() << NODE_LIFE_SEQ_SHIFT;
        rc            = node_meta_put_u64(
                       txn, store->dbi_meta, NODE_META_ORIGIN_SEQ, life);
        if (rc == 0) {
            rc = node_meta_put_u64(
                txn, store->dbi_meta, NODE_META_LIFE_SEQ, life);
        }
        store->life_seq = life;
    }
    store->shard_count = cfg->shard_count;
    node_log(NODE_LOG_INFO, "created a new store", "{s:s, s:i}", "dir",
        cfg->data_dir, "shards", (int) cfg->shard_count);
    return rc;
}

/* Later starts: the data dir must be this node's, in a format we read. */
static int
node_store_check_meta(
    struct node_store *store, MDB_txn *txn, const struct node_config *cfg)
{
    uint64_t format = 0, node_id = 0, shards = 0;
    MDB_val  k = node_val(NODE_META_CLUSTER, strlen(NODE_META_CLUSTER));
    MDB_val  v;

    if (node_meta_get_u64(txn, store->dbi_meta, NODE_META_FORMAT, &format) != 0
        || node_meta_get_u64(txn, store->dbi_meta, NODE_META_NODE_ID, &node_id)
            != 0
        || node_meta_get_u64(txn, store->dbi_meta, NODE_META_SHARDS, &shards)
            != 0
        || mdb_get(txn, store->dbi_meta, &k, &v) != 0 || v.mv_size != 16) {
        node_log(NODE_LOG_ERROR, "store metadata is missing or damaged",
            "{s:s}", "dir", cfg->data_dir);
        return MRD_ECORRUPT;
    }
    if (format != NODE_STORE_FORMAT && format != NODE_STORE_FORMAT_OLD) {
        node_log(NODE_LOG_ERROR, "unsupported store format", "{s:I, s:i}",
            "format", (json_int_t) format, "supported", NODE_STORE_FORMAT);
        return MRD_EINVAL;
    }
    if (node_id != cfg->node_id) {
        node_log(NODE_LOG_ERROR, "the data dir belongs to another node",
            "{s:I, s:I}", "stored_node_id", (json_int_t) node_id, "node_id",
            (json_int_t) cfg->node_id);
        return MRD_EINVAL;
    }
    if (shards == 0 || shards > NODE_SHARDS_MAX) {
        return MRD_ECORRUPT;
    }
    if (shards != cfg->shard_count) {
        node_log(NODE_LOG_WARN, "shard count is fixed at creation; using it",
            "{s:I, s:i}", "stored", (json_int_t) shards, "requested",
            (int) cfg->shard_count);
    }
    if (cfg->has_cluster_id && memcmp(v.mv_data, cfg->cluster_id, 16) != 0) {
        node_log(NODE_LOG_ERROR, "the data dir belongs to another cluster",
            "{s:s}", "dir", cfg->data_dir);
        return MRD_EINVAL;
    }
    memcpy(store->cluster_id, v.mv_data, 16);
    store->shard_count = (uint32_t) shards;
    return MRD_OK;
}

/* Format 1 to 2: this node's own entry per shard in "vv", found by one scan
 * of each shard's log for its own events. Once, at the first open by a
 * format-2 meridiand, in the opening transaction. */
static int
node_store_migrate_own_vv(struct node_store *store, MDB_txn *txn)
{
    int rc = 0;

    for (uint32_t s = 0; s < store->shard_count && rc == 0; s++) {
        MDB_cursor *cur;
        MDB_val     k, v;
        uint64_t    own = 0;
        rc              = mdb_cursor_open(txn, store->dbi_log[s], &cur);
        if (rc != 0) {
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == 0) {
            uint64_t origin, seq;
            if (v.mv_size > 8
                && proto_record_dot(
                    (const char *) v.mv_data + 8, v.mv_size - 8, &origin, &seq)
                && origin == store->node_id && seq > own) {
                own = seq;
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        if (rc == 0 && own > 0) {
            uint8_t key[12], val[8];
            mrd_be32_put(key, s);
            mrd_be64_put(key + 4, store->node_id);
            mrd_be64_put(val, own);
            MDB_val kk = { sizeof key, key }, vv = { sizeof val, val };
            rc = mdb_put(txn, store->dbi_vv, &kk, &vv, 0);
        }
    }
    if (rc == 0) {
        rc = node_meta_put_u64(
            txn, store->dbi_meta, NODE_META_FORMAT, NODE_STORE_FORMAT);
    }
    if (rc == 0) {
        node_log(NODE_LOG_INFO, "migrated the store's format", "{s:i, s:i}",
            "from", (int) NODE_STORE_FORMAT_OLD, "to", (int) NODE_STORE_FORMAT);
    }
    return rc;
}

/* Opens the shard logs and loads the writer's counters. */
static int
node_store_load(struct node_store *store, MDB_txn *txn)
{
    int rc = 0;

    for (uint32_t s = 0; s < store->shard_count && rc == 0; s++) {
        char name[16];
        snprintf(name, sizeof(name), "log.%03u", s);
        rc = mdb_dbi_open(txn, name, MDB_CREATE, &store->dbi_log[s]);
        if (rc != 0) {
            break;
        }
        MDB_cursor *cur;
        MDB_val     k, v;
        rc = mdb_cursor_open(txn, store->dbi_log[s], &cur);
        if (rc != 0) {
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        mdb_cursor_close(cur);
        store->log_seq_last[s] = 0;
        if (rc == 0 && k.mv_size == 8) {
            store->log_seq_last[s] = mrd_be64_get(k.mv_data);
        } else if (rc == 0) {
            rc = MDB_CORRUPTED;
        } else if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
    }
    uint64_t   *counters[] = { &store->origin_seq_last, &store->stream_id_last,
          &store->hlc.last, &store->life_seq };
    const char *keys[]     = { NODE_META_ORIGIN_SEQ, NODE_META_STREAM_ID,
            NODE_META_HLC, NODE_META_LIFE_SEQ };
    for (size_t i = 0; i < 4 && rc == 0; i++) {
        *counters[i] = 0;
        rc = node_meta_get_u64(txn, store->dbi_meta, keys[i], counters[i]);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
    }
    return rc;
}

/* One meridiand per data dir: LMDB would let two processes share the
 * environment, but the writer's counters (sequences, HLC) live in memory and
 * two writers would hand out the same log keys and dots. The lock dies with
 * the process, kill -9 included. */
static int
node_store_lock(struct node_store *store, const char *dir)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/meridiand.lock", dir);
    store->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (store->lock_fd < 0) {
        node_log(NODE_LOG_ERROR, "cannot open the data dir's lock file",
            "{s:s, s:s}", "path", path, "error", strerror(errno));
        return MRD_EIO;
    }
    struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(store->lock_fd, F_SETLK, &lk) != 0) {
        node_log(NODE_LOG_ERROR, "the data dir is in use by another meridiand",
            "{s:s}", "dir", dir);
        close(store->lock_fd);
        store->lock_fd = -1;
        return MRD_EBUSY;
    }
    return MRD_OK;
}

static int
node_store_env_open(struct node_store *store, const struct node_config *cfg)
{
    int rc;
    int rv;

    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        node_log(NODE_LOG_ERROR, "cannot create the data dir", "{s:s, s:s}",
            "dir", cfg->data_dir, "error", strerror(errno));
        return MRD_EIO;
    }
    rv = node_store_lock(store, cfg->data_dir);
    if (rv != MRD_OK) {
        return rv;
    }
    rc = mdb_env_create(&store->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(store->env, NODE_DBS_FIXED + NODE_SHARDS_MAX);
    }
    if (rc == 0) {
        rc = mdb_env_set_maxreaders(store->env, NODE_MAX_READERS);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(store->env, cfg->map_size);
    }
    if (rc == 0) {
        /* MDB_NOTLS: read transactions are not tied to threads, so reader
         * threads and NNG callbacks can share the reader table safely. */
        rc = mdb_env_open(store->env, cfg->data_dir, MDB_NOTLS, 0600);
    }
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "cannot open the LMDB environment",
            "{s:s, s:s}", "dir", cfg->data_dir, "error", mdb_strerror(rc));
        return rc == ENOSPC ? MRD_ENOSPACE : MRD_EIO;
    }
    int dead = 0;
    mdb_reader_check(store->env, &dead);
    if (dead > 0) {
        node_log(NODE_LOG_WARN, "cleared stale LMDB readers", "{s:i}", "count",
            dead);
    }
    MDB_envinfo info;
    mdb_env_info(store->env, &info);
    /* An existing environment keeps its larger map. */
    store->map_size     = info.me_mapsize;
    store->map_size_max = cfg->map_size_max > store->map_size
        ? cfg->map_size_max
        : store->map_size;
    return MRD_OK;
}

int
node_store_open(struct node_store *store, const struct node_config *cfg)
{
    MDB_txn *txn = NULL;
    int      rv;
    int      rc;

    memset(store, 0, sizeof(*store));
    store->lock_fd       = -1;
    store->node_id       = cfg->node_id;
    store->idem_window_s = cfg->idem_window_s;
    if (sodium_init() < 0) {
        return MRD_EINTERNAL;
    }
    pthread_rwlock_init(&store->resize_lock, NULL);
    pthread_mutex_init(&store->write_mu, NULL);
    store->clock_ahead_max_ms = cfg->clock_ahead_max_ms;
    store->peer_count         = cfg->peer_count;
    store->stable             = calloc(NODE_SHARDS_MAX, sizeof(*store->stable));
    if (store->stable == NULL) {
        rv = MRD_ENOMEM;
        goto fail;
    }
    store->state = malloc(sizeof(*store->state));
    if (store->state == NULL || node_state_txn_init(store->state) != MRD_OK) {
        rv = MRD_ENOMEM;
        goto fail;
    }
    rv = node_store_env_open(store, cfg);
    if (rv != MRD_OK) {
        goto fail;
    }
    rc                  = mdb_txn_begin(store->env, NULL, 0, &txn);
    const char *names[] = { "meta", "streams", "index", "idem", "idem_exp",
        "state", "vv", "progress" };
    MDB_dbi    *dbis[]  = { &store->dbi_meta, &store->dbi_streams,
            &store->dbi_index, &store->dbi_idem, &store->dbi_idem_exp,
            &store->dbi_state, &store->dbi_vv, &store->dbi_progress };
    _Static_assert(MRD_ARRAY_SIZE(names) <= NODE_DBS_FIXED, "room for dbs");
    for (size_t i = 0; i < MRD_ARRAY_SIZE(names) && rc == 0; i++) {
        rc = mdb_dbi_open(txn, names[i], MDB_CREATE, dbis[i]);
    }
    if (rc != 0) {
        rv = node_store_err(rc);
        goto fail;
    }
    uint64_t format = NODE_STORE_FORMAT;
    rc = node_meta_get_u64(txn, store->dbi_meta, NODE_META_FORMAT, &format);
    if (rc == MDB_NOTFOUND) {
        format = NODE_STORE_FORMAT;
        rc     = node_store_init_meta(store, txn, cfg);
        rv     = node_store_err(rc);
    } else {
        rv = node_store_check_meta(store, txn, cfg);
    }
    if (rv != MRD_OK) {
        goto fail;
    }
    rc = node_store_load(store, txn);
    if (rc == 0) {
        uint64_t joining = 0;
        rc               = node_meta_get_u64(
                          txn, store->dbi_meta, NODE_META_JOINING, &joining);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        atomic_store(&store->joining, joining != 0);
    }
    if (rc == 0 && format == NODE_STORE_FORMAT_OLD) {
        rc = node_store_migrate_own_vv(store, txn);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    txn = NULL;
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "cannot load the store", "{s:s}", "error",
            mdb_strerror(rc));
        rv = rc == MDB_CORRUPTED ? MRD_ECORRUPT : node_store_err(rc);
        goto fail;
    }
    node_log(NODE_LOG_INFO, "store open", "{s:s, s:I, s:I, s:i, s:I}", "dir",
        cfg->data_dir, "map_size", (json_int_t) store->map_size, "map_size_max",
        (json_int_t) store->map_size_max, "shards", (int) store->shard_count,
        "origin_seq", (json_int_t) store->origin_seq_last);
    return MRD_OK;
fail:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    node_store_close(store);
    return rv;
}

void
node_store_close(struct node_store *store)
{
    if (store->env != NULL) {
        mdb_env_close(store->env);
        store->env = NULL;
    }
    if (store->lock_fd >= 0) {
        close(store->lock_fd); /* releases the lock */
        store->lock_fd = -1;
    }
    pthread_rwlock_destroy(&store->resize_lock);
    pthread_mutex_destroy(&store->write_mu);
    for (uint32_t i = 0; store->stable != NULL && i < NODE_SHARDS_MAX; i++) {
        crdt_vv_free(&store->stable[i]);
    }
    free(store->stable);
    store->stable = NULL;
    if (store->state != NULL) {
        node_state_txn_fini(store->state);
        free(store->state);
        store->state = NULL;
    }
}

int
node_store_joined(struct node_store *store)
{
    MDB_txn *txn;
    MDB_val  k = node_val(NODE_META_JOINING, strlen(NODE_META_JOINING));

    pthread_mutex_lock(&store->write_mu);
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_del(txn, store->dbi_meta, &k, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    pthread_mutex_unlock(&store->write_mu);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "cannot record that the node caught up",
            "{s:s}", "error", mdb_strerror(rc));
        return MRD_EIO;
    }
    atomic_store(&store->joining, false);
    return MRD_OK;
}
