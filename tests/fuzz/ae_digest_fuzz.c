/*
 * ae_digest_fuzz.c: libFuzzer target for ae_digest_absorb, the reader of the
 * knowledge digest every PULL request and reply carries from a peer
 * (replication/ae.h).
 *
 * The receiver starts from fixed knowledge (its own vector and a few rows)
 * so that the input can raise, repeat or contradict it. Whatever the input:
 * no crash; a refused digest teaches nothing (the knowledge encodes to the
 * same bytes before and after); an accepted one only ever raises what was
 * known (monotone), absorbing it twice changes nothing (idempotent), and the
 * knowledge still encodes within AE_DIGEST_SIZE_MAX and reads back exactly.
 */
#include <stdlib.h>
#include <string.h>

#include "ae.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Three regions of seven replicas: node ids 1..21. */
static uint64_t               ids[3][AE_RF_MAX];
static struct ae_region_place rp[3];
static const struct ae_place  place = { 0, 3, rp };

static void
fuzz_setup(void)
{
    for (uint32_t r = 0; r < 3; r++) {
        for (uint32_t i = 0; i < AE_RF_MAX; i++) {
            ids[r][i] = 1 + r * AE_RF_MAX + i;
        }
        rp[r] = (struct ae_region_place) { r, AE_RF_MAX, AE_RF_MAX, ids[r] };
    }
}

static void
fuzz_know(struct ae_know *k)
{
    struct crdt_vv vv;
    crdt_vv_init(&vv);
    ae_know_init(k, 1);
    CHECK(crdt_vv_raise(&vv, 1, 7) == MRD_OK);
    CHECK(crdt_vv_raise(&vv, 3, 5) == MRD_OK);
    CHECK(ae_know_own(k, &vv) == MRD_OK);
    CHECK(ae_know_report(k, &place, 3, &vv) == MRD_OK);
    CHECK(crdt_vv_raise(&vv, 9, 40) == MRD_OK);
    CHECK(ae_know_report(k, &place, 9, &vv) == MRD_OK);
    crdt_vv_free(&vv);
}

static void
fuzz_encode(const struct ae_know *k, struct proto_buf *buf)
{
    proto_buf_reset(buf);
    CHECK(ae_digest_encode(k, &place, 0, buf) == MRD_OK);
    CHECK(buf->len <= AE_DIGEST_SIZE_MAX);
}

static bool
fuzz_same(const struct proto_buf *a, const struct proto_buf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Every row of before is covered by the same row of after. */
static void
fuzz_monotone(const struct ae_know *before, const struct ae_know *after)
{
    for (uint32_t i = 0; i < before->row_count; i++) {
        bool found = false;
        for (uint32_t j = 0; j < after->row_count; j++) {
            if (after->row[j].node == before->row[i].node) {
                CHECK(crdt_vv_covers(
                    &after->row[j].latest, &before->row[i].latest));
                CHECK(crdt_vv_covers(
                    &after->row[j].witness, &before->row[i].witness));
                found = true;
            }
        }
        CHECK(found);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ae_know k, ref, back;
    struct proto_buf      b0, b1, b2;
    const char           *why = NULL;

    if (rp[0].cand == NULL) {
        fuzz_setup();
    }
    fuzz_know(&k);
    fuzz_know(&ref);
    proto_buf_init(&b0, 1u << 20);
    proto_buf_init(&b1, 1u << 20);
    proto_buf_init(&b2, 1u << 20);
    fuzz_encode(&k, &b0);
    int rc = ae_digest_absorb(&k, &place, data, size, &why);
    fuzz_encode(&k, &b1);
    if (rc != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rc == MRD_EPROTO || rc == MRD_ETOOBIG || rc == MRD_ENOMEM);
        CHECK(fuzz_same(&b0, &b1));
    } else {
        fuzz_monotone(&ref, &k);
        CHECK(ae_digest_absorb(&k, &place, data, size, &why) == MRD_OK);
        fuzz_encode(&k, &b2);
        CHECK(fuzz_same(&b1, &b2));
        /* What we know now reads back exactly on a peer that knew nothing:
         * our own row always, every other row that fitted. */
        ae_know_init(&back, 2);
        CHECK(ae_digest_absorb(&back, &place, b1.data, b1.len, &why) == MRD_OK);
        bool own = false;
        for (uint32_t i = 0; i < back.row_count; i++) {
            const struct ae_row *r = &back.row[i];
            if (r->node == 1) {
                CHECK(crdt_vv_equal(&r->latest, &k.own));
                own = true;
                continue;
            }
            bool found = false;
            for (uint32_t j = 0; j < k.row_count; j++) {
                if (k.row[j].node == r->node) {
                    CHECK(crdt_vv_equal(&r->latest, &k.row[j].latest));
                    found = true;
                }
            }
            CHECK(found);
        }
        CHECK(own);
        ae_know_fini(&back);
    }
    proto_buf_fini(&b0);
    proto_buf_fini(&b1);
    proto_buf_fini(&b2);
    ae_know_fini(&k);
    ae_know_fini(&ref);
    return 0;
}
