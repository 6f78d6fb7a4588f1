/*
 * node_store_test.c: the LMDB store without the network: appends through
 * group commit, expected versions, idempotency, reads, restarts, a full map,
 * corruption detection. Every test runs on a fresh store in a temp dir.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char               dir[256];
    struct node_config cfg;
    struct node_store  store;
    struct node_stats  stats;
    struct proto_buf   scratch;
};

/* An append built the way the server builds it: encoded, then decoded from
 * the frame bytes, which must outlive it. */
struct test_append {
    struct proto_buf   frame;
    struct node_append a;
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/mrd-store-XXXXXX",
        getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.node_id        = 7;
    f->cfg.shard_count    = 4;
    f->cfg.map_size       = 64u << 20;
    f->cfg.map_size_max   = 1u << 30;
    f->cfg.frame_size_max = NODE_FRAME_SIZE_DEFAULT;
    f->cfg.idem_window_s  = 3600;
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s/data", f->dir);
    node_log_setup(7, NODE_LOG_ERROR);
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    proto_buf_init(&f->scratch, PROTO_RECORD_SIZE_MAX + 8);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    node_store_close(&f->store);
    proto_buf_fini(&f->scratch);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void
build_append(struct fixture *f, struct test_append *t, const char *stream,
    int64_t expected, const char *idem, const char *data, size_t n)
{
    mrd_event_in       ev[8];
    mrd_meta_entry     meta[1] = { { "k", "v" } };
    const char        *why     = NULL;
    struct proto_frame frame;

    assert_true(n <= 8);
    memset(ev, 0, sizeof(ev));
    for (size_t i = 0; i < n; i++) {
        ev[i].type         = "Tested";
        ev[i].data         = data;
        ev[i].data_size    = strlen(data);
        ev[i].content_type = "text/plain";
        ev[i].meta         = meta;
        ev[i].meta_count   = 1;
    }
    memset(t, 0, sizeof(*t));
    proto_buf_init(&t->frame, 1u << 20);
    assert_int_equal(
        proto_append_req_encode(&t->frame, stream, strlen(stream), expected,
            idem, idem != NULL ? strlen(idem) : 0, ev, NULL, n),
        MRD_OK);
    assert_int_equal(
        proto_request_open(t->frame.data, t->frame.len, &frame, &why), MRD_OK);
    assert_int_equal(
        proto_append_req_decode(&frame.body, &t->a.req, &why), MRD_OK);
    t->a.shard = node_store_shard_of(&f->store, stream, strlen(stream));
    /* The server digests the events; any stable function of them will do
     * for the store, which only compares digests. */
    t->a.digest = 0;
    for (uint32_t i = 0; i < t->a.req.events_raw.len; i++) {
        t->a.digest = t->a.digest * 31 + (uint8_t) t->a.req.events_raw.ptr[i];
    }
}

static int
commit_one(struct fixture *f, struct test_append *t)
{
    struct node_append *list[1] = { &t->a };
    int rv = node_store_commit(&f->store, list, 1, &f->scratch, &f->stats);
    assert_int_equal(rv, MRD_OK);
    return t->a.rv;
}

/* Reads a stream and returns the decoded events' count; checks each record
 * decodes and sits at the position it claims. */
static uint32_t
read_stream(struct fixture *f, const char *stream, uint64_t from, int dir,
    uint32_t count, uint64_t *positions, int64_t *version)
{
    struct proto_buf        buf;
    struct proto_read_req   req = { .stream = { stream, strlen(stream) },
          .from                             = from,
          .direction                        = (uint32_t) dir,
          .count                            = count };
    struct proto_frame      frame;
    struct proto_events_rep rep;
    struct proto_rd         rd;
    const char             *why = NULL;
    uint32_t                n;
    uint64_t                next;
    bool                    at_end;

    proto_buf_init(&buf, 4u << 20);
    assert_int_equal(node_store_read_stream(&f->store, &req, &buf, &n, &next,
                         &at_end, &f->stats, &why),
        MRD_OK);
    assert_int_equal(proto_reply_open(buf.data, buf.len, &frame, &why), MRD_OK);
    assert_int_equal(
        proto_events_rep_decode(&frame.body, PROTO_T_READ, &rep, &why), MRD_OK);
    assert_int_equal(rep.count, n);
    proto_events_rep_begin(&rep, &rd);
    uint64_t         pos, seq;
    struct proto_str rec;
    for (uint32_t i = 0; i < n; i++) {
        struct proto_record r;
        assert_int_equal(proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_OK);
        assert_int_equal(
            proto_record_decode(rec.ptr, rec.len, &r, &why), MRD_OK);
        assert_int_equal(r.stream.len, strlen(stream));
        assert_memory_equal(r.stream.ptr, stream, r.stream.len);
        assert_int_equal(r.origin, 7);
        if (positions != NULL) {
            positions[i] = pos;
        }
    }
    assert_int_equal(
        proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_ENOTFOUND);
    if (version != NULL) {
        *version = rep.version;
    }
    proto_buf_fini(&buf);
    return n;
}

static void
test_append_then_read(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;
    uint64_t           pos[16];
    int64_t            version;

    build_append(f, &t, "orders-1", MRD_EXPECT_ANY, NULL, "hello", 3);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    assert_int_equal(t.a.rep.first_pos, 0);
    assert_int_equal(t.a.rep.version, 2);
    assert_int_equal(t.a.rep.count, 3);
    assert_int_equal(t.a.rep.origin, 7);
    assert_int_equal(t.a.rep.seq, 1);
    assert_false(t.a.rep.replayed);
    proto_buf_fini(&t.frame);

    assert_int_equal(
        read_stream(f, "orders-1", 0, MRD_FORWARD, 10, pos, &version), 3);
    assert_int_equal(version, 2);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(pos[i], i);
    }
    assert_int_equal(
        read_stream(f, "orders-1", 1, MRD_FORWARD, 1, pos, NULL), 1);
    assert_int_equal(pos[0], 1);
    assert_int_equal(
        read_stream(f, "orders-1", 3, MRD_FORWARD, 10, pos, NULL), 0);
    assert_int_equal(read_stream(f, "orders-1", MRD_POSITION_END, MRD_BACKWARD,
                         2, pos, NULL),
        2);
    assert_int_equal(pos[0], 2);
    assert_int_equal(pos[1], 1);
    assert_int_equal(
        read_stream(f, "nope", 0, MRD_FORWARD, 10, pos, &version), 0);
    assert_int_equal(version, -1);

    mrd_stream_info  info;
    struct proto_str s = { "orders-1", 8 };
    assert_int_equal(node_store_stream_info(&f->store, s, &info), MRD_OK);
    assert_true(info.exists);
    assert_int_equal(info.count, 3);
    assert_int_equal(info.version, 2);
    assert_true(info.shard < 4);
}

static void
test_expected_version(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;

    build_append(f, &t, "s", MRD_EXPECT_EXISTS, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_EVERSION);
    assert_int_equal(t.a.current_version, -1);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", 0, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_EVERSION);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", MRD_EXPECT_NO_STREAM, NULL, "x", 2);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", MRD_EXPECT_NO_STREAM, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_EVERSION);
    assert_int_equal(t.a.current_version, 1);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", 0, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_EVERSION);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", 1, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    assert_int_equal(t.a.rep.version, 2);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "s", MRD_EXPECT_EXISTS, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    proto_buf_fini(&t.frame);
    /* Nothing refused left a trace. */
    assert_int_equal(read_stream(f, "s", 0, MRD_FORWARD, 100, NULL, NULL), 4);
}

static void
test_idempotency(void **state)
{
    struct fixture    *f = *state;
    struct test_append t1, t2, t3, t4;

    build_append(f, &t1, "idem", MRD_EXPECT_ANY, "key-1", "payload", 2);
    assert_int_equal(commit_one(f, &t1), MRD_OK);
    build_append(f, &t2, "idem", MRD_EXPECT_ANY, "key-1", "payload", 2);
    assert_int_equal(commit_one(f, &t2), MRD_OK);
    assert_true(t2.a.rep.replayed);
    assert_int_equal(t2.a.rep.seq, t1.a.rep.seq);
    assert_int_equal(t2.a.rep.first_pos, t1.a.rep.first_pos);
    assert_int_equal(t2.a.rep.hlc, t1.a.rep.hlc);
    assert_int_equal(t2.a.rep.count, 2);
    build_append(f, &t3, "idem", MRD_EXPECT_ANY, "key-1", "other", 2);
    assert_int_equal(commit_one(f, &t3), MRD_EIDEMPOTENCY);
    build_append(f, &t4, "idem-b", MRD_EXPECT_ANY, "key-1", "payload", 2);
    assert_int_equal(commit_one(f, &t4), MRD_EIDEMPOTENCY);
    assert_int_equal(
        read_stream(f, "idem", 0, MRD_FORWARD, 100, NULL, NULL), 2);
    assert_int_equal(
        read_stream(f, "idem-b", 0, MRD_FORWARD, 100, NULL, NULL), 0);
    proto_buf_fini(&t1.frame);
    proto_buf_fini(&t2.frame);
    proto_buf_fini(&t3.frame);
    proto_buf_fini(&t4.frame);
}

/* One batch, one transaction: a refused append in the middle disturbs no
 * other, and two appends with one key in one batch write once. */
static void
test_batch_mixed(void **state)
{
    struct fixture     *f = *state;
    struct test_append  t[4];
    struct node_append *list[4];

    build_append(f, &t[0], "b", MRD_EXPECT_NO_STREAM, NULL, "a", 1);
    build_append(f, &t[1], "b", MRD_EXPECT_NO_STREAM, NULL, "b", 1);
    build_append(f, &t[2], "b", 0, "k", "c", 1);
    build_append(f, &t[3], "b", 0, "k", "c", 1);
    for (int i = 0; i < 4; i++) {
        list[i] = &t[i].a;
    }
    assert_int_equal(
        node_store_commit(&f->store, list, 4, &f->scratch, &f->stats), MRD_OK);
    assert_int_equal(t[0].a.rv, MRD_OK);
    assert_int_equal(t[1].a.rv, MRD_EVERSION);
    assert_int_equal(t[2].a.rv, MRD_OK);
    assert_int_equal(t[3].a.rv, MRD_OK);
    assert_true(t[3].a.rep.replayed);
    assert_int_equal(read_stream(f, "b", 0, MRD_FORWARD, 100, NULL, NULL), 2);
    for (int i = 0; i < 4; i++) {
        proto_buf_fini(&t[i].frame);
    }
}

static void
test_reopen_keeps_everything(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;

    build_append(f, &t, "r", MRD_EXPECT_ANY, "rk", "x", 5);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    uint64_t seq_before = f->store.origin_seq_last;
    uint64_t hlc_before = f->store.hlc.last;
    proto_buf_fini(&t.frame);
    node_store_close(&f->store);
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    assert_int_equal(f->store.origin_seq_last, seq_before);
    assert_int_equal(f->store.hlc.last, hlc_before);
    assert_int_equal(read_stream(f, "r", 0, MRD_FORWARD, 100, NULL, NULL), 5);
    /* The idempotency record survived the restart too. */
    build_append(f, &t, "r", MRD_EXPECT_ANY, "rk", "x", 5);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    assert_true(t.a.rep.replayed);
    proto_buf_fini(&t.frame);
    build_append(f, &t, "r", MRD_EXPECT_ANY, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    assert_int_equal(t.a.rep.seq, seq_before + 1);
    assert_true(t.a.rep.hlc > hlc_before);
    proto_buf_fini(&t.frame);
}

static void
test_other_node_id_refused(void **state)
{
    struct fixture *f = *state;

    node_store_close(&f->store);
    f->cfg.node_id = 8;
    assert_int_not_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    f->cfg.node_id = 7;
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
}

/* A small map grows to its maximum, then appends are refused with
 * MRD_ENOSPACE; everything acknowledged before stays readable. */
static void
test_map_full(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;
    char               data[2001];
    uint64_t           acked = 0;
    int                rv    = MRD_OK;

    node_store_close(&f->store);
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s/small", f->dir);
    f->cfg.map_size     = 1u << 20;
    f->cfg.map_size_max = 2u << 20;
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    memset(data, 'z', sizeof(data) - 1);
    data[sizeof(data) - 1] = '\0';
    for (int i = 0; i < 10000 && rv == MRD_OK; i++) {
        struct node_append *list[1];
        build_append(f, &t, "full", MRD_EXPECT_ANY, NULL, data, 8);
        list[0] = &t.a;
        rv      = node_store_commit(&f->store, list, 1, &f->scratch, &f->stats);
        if (rv == MRD_OK) {
            assert_int_equal(t.a.rv, MRD_OK);
            acked += 8;
        }
        proto_buf_fini(&t.frame);
    }
    assert_int_equal(rv, MRD_ENOSPACE);
    assert_true(acked > 0);
    assert_true(atomic_load(&f->stats.map_resizes) >= 1);
    assert_int_equal(f->store.map_size, 2u << 20);
    uint64_t got = 0, n;
    do {
        n = read_stream(f, "full", got, MRD_FORWARD, 1000, NULL, NULL);
        got += n;
    } while (n > 0);
    assert_int_equal(got, acked);
}

/* A flipped byte in a stored record is caught on read and counted. */
static void
test_corrupt_record_detected(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;
    MDB_txn           *txn;
    MDB_cursor        *cur;
    MDB_val            k, v;

    build_append(f, &t, "c", MRD_EXPECT_ANY, NULL, "precious", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    uint32_t shard = t.a.shard;
    proto_buf_fini(&t.frame);
    assert_int_equal(mdb_txn_begin(f->store.env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, f->store.dbi_log[shard], &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_LAST), 0);
    uint8_t copy[4096];
    assert_true(v.mv_size <= sizeof(copy));
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x20;
    MDB_val nv = { v.mv_size, copy };
    assert_int_equal(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);

    struct proto_buf      buf;
    struct proto_read_req req = { .stream = { "c", 1 }, .count = 10 };
    const char           *why = NULL;
    uint32_t              n;
    uint64_t              next;
    bool                  at_end;
    proto_buf_init(&buf, 1u << 20);
    assert_int_equal(node_store_read_stream(&f->store, &req, &buf, &n, &next,
                         &at_end, &f->stats, &why),
        MRD_ECORRUPT);
    assert_int_equal(atomic_load(&f->stats.corrupt_records), 1);
    proto_buf_fini(&buf);
}

static void
test_read_log(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;
    const char        *why = NULL;

    build_append(f, &t, "l", MRD_EXPECT_ANY, NULL, "x", 5);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    struct proto_log_req req = { .shard = t.a.shard, .after = 2, .count = 10 };
    proto_buf_fini(&t.frame);

    struct proto_buf        buf;
    struct proto_frame      frame;
    struct proto_events_rep rep;
    struct proto_rd         rd;
    uint32_t                n;
    proto_buf_init(&buf, 1u << 20);
    assert_int_equal(
        node_store_read_log(&f->store, &req, &buf, &n, &f->stats, &why),
        MRD_OK);
    assert_int_equal(n, 3);
    assert_int_equal(proto_reply_open(buf.data, buf.len, &frame, &why), MRD_OK);
    assert_int_equal(
        proto_events_rep_decode(&frame.body, PROTO_T_READ_LOG, &rep, &why),
        MRD_OK);
    assert_int_equal(rep.next, 5); /* the shard's last seq */
    proto_events_rep_begin(&rep, &rd);
    uint64_t         pos, seq;
    struct proto_str rec;
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_OK);
        assert_int_equal(seq, 3 + i);
        assert_int_equal(pos, 2 + i);
    }
    req.shard = 99;
    proto_buf_reset(&buf);
    assert_int_equal(
        node_store_read_log(&f->store, &req, &buf, &n, &f->stats, &why),
        MRD_EINVAL);
    proto_buf_fini(&buf);
}

/* Keys older than the window are forgotten by a later commit. */
static void
test_idempotency_window(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;

    f->store.idem_window_s = 0;
    build_append(f, &t, "w", MRD_EXPECT_ANY, "old-key", "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    proto_buf_fini(&t.frame);
    uint64_t start = mrd_now_real_ms();
    while (mrd_now_real_ms() <= start + 1) {
        /* spin: the sweep compares whole milliseconds */
    }
    build_append(f, &t, "w2", MRD_EXPECT_ANY, NULL, "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    proto_buf_fini(&t.frame);
    assert_true(atomic_load(&f->stats.idem_expired) >= 1);
    /* The key is free again: a retry now appends anew. */
    build_append(f, &t, "w", MRD_EXPECT_ANY, "old-key", "x", 1);
    assert_int_equal(commit_one(f, &t), MRD_OK);
    assert_false(t.a.rep.replayed);
    proto_buf_fini(&t.frame);
}

/* This node's own entry in a shard's vector is the highest seq of its own
 * events in that shard (format 2), not its global origin seq; and a format-1
 * store, which kept only the global seq, gets the entries back by a scan at
 * its first open. */
static uint64_t
own_entry(struct fixture *f, uint32_t shard)
{
    uint8_t  vv[16u * CRDT_ORIGINS_MAX];
    uint32_t len = 0;
    assert_int_equal(node_store_shard_vv(&f->store, shard, vv, &len), MRD_OK);
    return proto_vv_get(
        (struct proto_str) { (const char *) vv, len }, f->cfg.node_id);
}

static void
test_own_vv_per_shard(void **state)
{
    struct fixture    *f = *state;
    struct test_append t;
    uint64_t           want[4] = { 0 };
    char               name[32];

    /* Streams of 1..3 events over four shards: six, and more until two
     * shards have some (the cluster id, so the hash, is random). */
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < 64 && (i < 6 || distinct < 2); i++) {
        snprintf(name, sizeof name, "own-%u", i);
        build_append(f, &t, name, -2, NULL, "x", 1 + i % 3);
        assert_int_equal(commit_one(f, &t), MRD_OK);
        distinct += want[t.a.shard] == 0;
        want[t.a.shard] = t.a.rep.seq + t.a.rep.count - 1;
        proto_buf_fini(&t.frame);
    }
    uint32_t used = 0;
    for (uint32_t s = 0; s < 4; s++) {
        assert_int_equal(own_entry(f, s), want[s]);
        used += want[s] != 0;
    }
    assert_true(used >= 2); /* 6 streams over 4 shards */
    assert_true(f->store.origin_seq_last > 0);

    /* Make it a format-1 store: no own entries, format 1. */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(f->store.env, NULL, 0, &txn), 0);
    for (uint32_t s = 0; s < 4; s++) {
        uint8_t key[12];
        mrd_be32_put(key, s);
        mrd_be64_put(key + 4, f->cfg.node_id);
        MDB_val k  = { sizeof key, key };
        int     rc = mdb_del(txn, f->store.dbi_vv, &k, NULL);
        assert_true(rc == 0 || rc == MDB_NOTFOUND);
    }
    uint8_t one[8];
    mrd_be64_put(one, 1);
    MDB_val fk = { 6, "format" }, fv = { 8, one };
    assert_int_equal(mdb_put(txn, f->store.dbi_meta, &fk, &fv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(
        own_entry(f, 0) + own_entry(f, 1) + own_entry(f, 2) + own_entry(f, 3),
        0);
    node_store_close(&f->store);
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    for (uint32_t s = 0; s < 4; s++) {
        assert_int_equal(own_entry(f, s), want[s]);
    }
    /* Migrated for good: format 2 on disk, and a later open is quick. */
    node_store_close(&f->store);
    assert_int_equal(node_store_open(&f->store, &f->cfg), MRD_OK);
    for (uint32_t s = 0; s < 4; s++) {
        assert_int_equal(own_entry(f, s), want[s]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_then_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_other_node_id_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_corrupt_record_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_log, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_idempotency_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_vv_per_shard, setup, teardown),
    };
    return cmocka_run_group_tests_name("node_store", tests, NULL, NULL);
}
