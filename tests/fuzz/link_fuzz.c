/*
 * link_fuzz.c: libFuzzer target for secure links (replication/link.h),
 * which read every byte a peer sends before anything else does.
 *
 * One fixed cluster, two fixed identities and fixed ephemeral seeds (the
 * same as tests/unit/link_test.c's pair, so its --corpus writer makes the
 * seeds), set up once; each input starts from copies of the states. Byte 0
 * picks the mode (mod 4), the rest is:
 *
 *   0: msg1 to a fresh responder;
 *   1: msg2 to the initiator that sent the real msg1;
 *   2: msg3 to the responder that took the real msg1 and sent the real
 *      msg2;
 *   3: a sequence of [length byte, frame] to the responder's established
 *      session, whose peer sealed LINK_FUZZ_FRAMES real frames.
 *
 * Checked: nothing crashes; every refusal has a reason and leaves the
 * state refused for good (a second, genuine message gets MRD_ECLOSED); no
 * forgery: msg2, msg3 or a frame is accepted only when it is byte for byte
 * the real one (an input cannot hold a signature or tag for anything
 * else), an accepted frame gives the real plaintext, and nothing after a
 * refused frame opens. msg1 is not authenticated by design: an accepted
 * msg1 must have the right header, cluster id and zero padding, and give
 * a msg2.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "link.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINK_FUZZ_FRAME_MAX 255u
#define LINK_FUZZ_FRAMES 4u

static const uint8_t fuzz_cid[LINK_CLUSTER_ID_SIZE]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct {
    bool                ready;
    uint8_t             ipk[LINK_KEY_SIZE], isk[LINK_SECRET_KEY_SIZE];
    uint8_t             rpk[LINK_KEY_SIZE], rsk[LINK_SECRET_KEY_SIZE];
    struct link_config  ic, rc;
    struct link_hs      i_sent1, r_wait1, r_sent2;
    uint8_t             m1[LINK_MSG1_SIZE], m2[LINK_MSG2_SIZE];
    uint8_t             m3[LINK_MSG3_SIZE];
    struct link_session rs;
    uint8_t             frame[LINK_FUZZ_FRAMES][LINK_FUZZ_FRAME_MAX];
    size_t              frame_len[LINK_FUZZ_FRAMES];
} fx;

static bool
fuzz_trust(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    return memcmp(arg, pk, LINK_KEY_SIZE) == 0;
}

/* The same plaintext as link_test.c's seal_pattern(tag i, 16 + i bytes). */
static size_t
fuzz_plain(unsigned i, uint8_t *out)
{
    size_t len = 16u + i;
    for (size_t j = 0; j < len; j++) {
        out[j] = (uint8_t) (i + j * 7u);
    }
    return len;
}

static void
fuzz_setup(void)
{
    uint8_t seed[32];
    uint8_t iseed[LINK_SEED_SIZE], rseed[LINK_SEED_SIZE];
    CHECK(sodium_init() >= 0);
    memset(seed, 0x11, sizeof(seed));
    crypto_sign_seed_keypair(fx.ipk, fx.isk, seed);
    memset(seed, 0x22, sizeof(seed));
    crypto_sign_seed_keypair(fx.rpk, fx.rsk, seed);
    fx.ic = (struct link_config) { .pk = fx.ipk,
        .sk                            = fx.isk,
        .trust                         = fuzz_trust,
        .trust_arg                     = fx.rpk,
        .frame_max                     = 4096 };
    fx.rc = (struct link_config) { .pk = fx.rpk,
        .sk                            = fx.rsk,
        .trust                         = fuzz_trust,
        .trust_arg                     = fx.ipk,
        .frame_max                     = 4096 };
    memcpy(fx.ic.cluster_id, fuzz_cid, sizeof(fuzz_cid));
    memcpy(fx.rc.cluster_id, fuzz_cid, sizeof(fuzz_cid));
    memset(iseed, 0xa1, sizeof(iseed));
    memset(rseed, 0xb2, sizeof(rseed));

    struct link_hs      ih, rh;
    struct link_session is;
    const char         *why = NULL;
    link_hs_initiate(&ih, &fx.ic, iseed, fx.m1);
    fx.i_sent1 = ih;
    link_hs_respond(&rh, &fx.rc, rseed);
    fx.r_wait1 = rh;
    CHECK(link_hs_recv_msg1(&rh, fx.m1, sizeof(fx.m1), fx.m2, &why) == MRD_OK);
    fx.r_sent2 = rh;
    CHECK(link_hs_recv_msg2(&ih, fx.m2, sizeof(fx.m2), fx.m3, &is, &why)
        == MRD_OK);
    CHECK(link_hs_recv_msg3(&rh, fx.m3, sizeof(fx.m3), &fx.rs, &why) == MRD_OK);
    for (unsigned i = 0; i < LINK_FUZZ_FRAMES; i++) {
        uint8_t plain[64];
        size_t  len = fuzz_plain(i, plain);
        CHECK(link_seal(&is, plain, len, fx.frame[i], LINK_FUZZ_FRAME_MAX,
                  &fx.frame_len[i], &why)
            == MRD_OK);
    }
    link_session_wipe(&is);
    fx.ready = true;
}

static void
fuzz_msg1(const uint8_t *p, size_t n)
{
    struct link_hs hs = fx.r_wait1;
    uint8_t        m2[LINK_MSG2_SIZE];
    const char    *why = NULL;
    int            rv  = link_hs_recv_msg1(&hs, p, n, m2, &why);
    CHECK(why != NULL || rv == MRD_OK);
    if (rv == MRD_OK) {
        CHECK(n == LINK_MSG1_SIZE);
        CHECK(memcmp(p, fx.m1, LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE) == 0);
        for (size_t i = LINK_MSG1_SIZE - LINK_MSG1_PAD_SIZE; i < n; i++) {
            CHECK(p[i] == 0);
        }
        CHECK(hs.state == LINK_HS_SENT2);
        return;
    }
    CHECK(hs.state == LINK_HS_FAILED);
    CHECK(
        link_hs_recv_msg1(&hs, fx.m1, sizeof(fx.m1), m2, &why) == MRD_ECLOSED);
}

static void
fuzz_msg2(const uint8_t *p, size_t n)
{
    struct link_hs      hs = fx.i_sent1;
    struct link_session s;
    uint8_t             m3[LINK_MSG3_SIZE];
    const char         *why = NULL;
    memset(&s, 0, sizeof(s));
    int rv = link_hs_recv_msg2(&hs, p, n, m3, &s, &why);
    if (rv == MRD_OK) {
        CHECK(n == sizeof(fx.m2) && memcmp(p, fx.m2, n) == 0);
        CHECK(memcmp(m3, fx.m3, sizeof(m3)) == 0);
        link_session_wipe(&s);
        return;
    }
    CHECK(why != NULL && !s.established && hs.state == LINK_HS_FAILED);
    CHECK(link_hs_recv_msg2(&hs, fx.m2, sizeof(fx.m2), m3, &s, &why)
        == MRD_ECLOSED);
}

static void
fuzz_msg3(const uint8_t *p, size_t n)
{
    struct link_hs      hs = fx.r_sent2;
    struct link_session s;
    const char         *why = NULL;
    memset(&s, 0, sizeof(s));
    int rv = link_hs_recv_msg3(&hs, p, n, &s, &why);
    if (rv == MRD_OK) {
        CHECK(n == sizeof(fx.m3) && memcmp(p, fx.m3, n) == 0);
        CHECK(memcmp(s.rx_key, fx.rs.rx_key, LINK_SYM_KEY_SIZE) == 0);
        link_session_wipe(&s);
        return;
    }
    CHECK(why != NULL && !s.established && hs.state == LINK_HS_FAILED);
    CHECK(
        link_hs_recv_msg3(&hs, fx.m3, sizeof(fx.m3), &s, &why) == MRD_ECLOSED);
}

static void
fuzz_frames(const uint8_t *p, size_t n)
{
    struct link_session s       = fx.rs;
    unsigned            opened  = 0;
    bool                refused = false;
    while (n > 0) {
        size_t len = p[0];
        p++;
        n--;
        if (len > n) {
            len = n;
        }
        uint8_t     out[LINK_FUZZ_FRAME_MAX];
        uint8_t     want[64];
        size_t      out_len = 0;
        const char *why     = NULL;
        int rv = link_open(&s, p, len, out, sizeof(out), &out_len, &why);
        if (rv == MRD_OK) {
            CHECK(!refused && opened < LINK_FUZZ_FRAMES);
            CHECK(len == fx.frame_len[opened]
                && memcmp(p, fx.frame[opened], len) == 0);
            size_t want_len = fuzz_plain(opened, want);
            CHECK(out_len == want_len && memcmp(out, want, want_len) == 0);
            opened++;
        } else {
            CHECK(why != NULL && s.poisoned);
            CHECK(!refused || rv == MRD_ECLOSED);
            refused = true;
        }
        p += len;
        n -= len;
    }
    link_session_wipe(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx.ready) {
        fuzz_setup();
    }
    if (size < 1) {
        return 0;
    }
    switch (data[0] % 4u) {
    case 0:
        fuzz_msg1(data + 1, size - 1);
        break;
    case 1:
        fuzz_msg2(data + 1, size - 1);
        break;
    case 2:
        fuzz_msg3(data + 1, size - 1);
        break;
    default:
        fuzz_frames(data + 1, size - 1);
        break;
    }
    return 0;
}
