/*
 * swim_fuzz.c: libFuzzer target for the SWIM decoder (swim_msg_decode) and
 * the state machine behind it (swim_recv), which read gossip from peers.
 *
 * Each input drives one node (id 1, members 1..4, a fixed seed, so its
 * probe and relay seqs are the same every run and the fuzzer can learn
 * them) that has just started its first probe. The first byte picks the
 * mode:
 *
 *   - bit 7 clear: the rest is one message, sent by the peer that the
 *     low 3 bits of byte 0 pick (2, 3, 4, self, a non-member, node 0, 2,
 *     3);
 *   - bit 7 set: the rest is a sequence of [step byte, length byte,
 *     message] steps: the step byte's low 3 bits pick the sender as above,
 *     its high 5 bits move time on by that many 50 ms before the node
 *     ticks and receives, so relays, forwarded acks and suspicion
 *     timeouts are reachable.
 *
 * Checked on every message: swim_recv accepts exactly what the decoder
 * accepts from a member or a non-member (never from self or node 0), with
 * a reason on every refusal; a second delivery of the same message changes
 * no record (merging is idempotent); every output decodes, fits its size
 * bound and goes to a member other than self; self stays ALIVE; and
 * anything the decoder accepts re-encodes to a canonical form no longer
 * than the input that decodes to the same message and encodes to the same
 * bytes again. Seeds: tests/fuzz/corpus/swim_fuzz (every message type,
 * refutations, updates about non-members, a relay round trip).
 */
#include <stdlib.h>
#include <string.h>

#include "swim.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MEMBERS 4u

static const uint64_t fuzz_ids[FUZZ_MEMBERS] = { 1, 2, 3, 4 };
static const uint64_t fuzz_senders[8]        = { 2, 3, 4, 1, 99, 0, 2, 3 };

static struct swim_out out; /* ~20 KiB: off the stack */

static bool
msg_equal(const struct swim_msg *a, const struct swim_msg *b)
{
    if (a->type != b->type || a->seq != b->seq || a->target != b->target
        || a->incarnation != b->incarnation
        || a->topo_version != b->topo_version
        || a->update_count != b->update_count) {
        return false;
    }
    for (uint32_t i = 0; i < a->update_count; i++) {
        if (a->update[i].id != b->update[i].id
            || a->update[i].state != b->update[i].state
            || a->update[i].incarnation != b->update[i].incarnation) {
            return false;
        }
    }
    return true;
}

static void
round_trip(const uint8_t *p, size_t len)
{
    struct swim_msg m;
    struct swim_msg again;
    uint8_t         buf[SWIM_MSG_SIZE_MAX];
    uint8_t         buf2[SWIM_MSG_SIZE_MAX];
    size_t          n   = 0;
    size_t          n2  = 0;
    const char     *why = NULL;

    int rv = swim_msg_decode(p, len, &m, &why);
    if (rv != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rv == MRD_EPROTO || rv == MRD_ETOOBIG || rv == MRD_EPROTOVERSION);
        return;
    }
    CHECK(len <= SWIM_MSG_SIZE_MAX && m.update_count <= SWIM_PIGGYBACK_MAX);
    CHECK(swim_msg_encode(&m, buf, sizeof buf, &n) == MRD_OK);
    CHECK(n <= len && n <= SWIM_MSG_SIZE_FOR(m.update_count));
    CHECK(swim_msg_decode(buf, n, &again, &why) == MRD_OK);
    CHECK(msg_equal(&m, &again));
    CHECK(swim_msg_encode(&again, buf2, sizeof buf2, &n2) == MRD_OK);
    CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
}

/* Outputs of the last call, and the node's invariants. */
static void
check_node(const struct swim *sw)
{
    struct swim_msg m;

    CHECK(out.msg_count <= SWIM_OUT_MSGS_MAX);
    CHECK(out.event_count <= SWIM_OUT_EVENTS_MAX);
    for (uint32_t k = 0; k < out.msg_count; k++) {
        CHECK(out.msg[k].to != 1 && swim_state(sw, out.msg[k].to) != 0);
        CHECK(out.msg[k].len <= SWIM_MSG_SIZE_FOR(SWIM_PIGGYBACK_DEFAULT));
        CHECK(swim_msg_decode(out.msg[k].bytes, out.msg[k].len, &m, NULL)
            == MRD_OK);
        CHECK(m.incarnation == swim_incarnation(sw));
    }
    CHECK(swim_state(sw, 1) == SWIM_ALIVE);
    CHECK(swim_incarnation(sw) <= SWIM_INCARNATION_MAX);
    for (uint32_t i = 0; i < FUZZ_MEMBERS; i++) {
        enum swim_state st = swim_state(sw, fuzz_ids[i]);
        CHECK(st == SWIM_ALIVE || st == SWIM_SUSPECT || st == SWIM_DEAD);
    }
}

static void
snapshot(const struct swim *sw, enum swim_state *st, uint64_t *inc)
{
    for (uint32_t i = 0; i < FUZZ_MEMBERS; i++) {
        CHECK(swim_member_get(sw, fuzz_ids[i], &st[i], &inc[i]) == MRD_OK);
    }
}

/* Delivers one message, twice; checks the answer and idempotence. */
static void
deliver(
    struct swim *sw, uint64_t now, uint64_t from, const uint8_t *p, size_t len)
{
    struct swim_msg m;
    enum swim_state st[2][FUZZ_MEMBERS];
    uint64_t        inc[2][FUZZ_MEMBERS];
    const char     *why = NULL;

    round_trip(p, len);
    int want = swim_msg_decode(p, len, &m, NULL);
    if (want == MRD_OK && (from == 0 || from == 1)) {
        want = MRD_EPROTO;
    }
    int rv = swim_recv(sw, now, from, p, len, &out, &why);
    CHECK(rv == want);
    CHECK(rv == MRD_OK || why != NULL);
    check_node(sw);
    snapshot(sw, st[0], inc[0]);
    CHECK(swim_recv(sw, now, from, p, len, &out, &why) == rv);
    check_node(sw);
    snapshot(sw, st[1], inc[1]);
    CHECK(memcmp(st[0], st[1], sizeof st[0]) == 0);
    CHECK(memcmp(inc[0], inc[1], sizeof inc[0]) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct swim_config cfg;
    struct swim       *sw = NULL;

    if (size == 0) {
        return 0;
    }
    swim_config_default(&cfg, 1, 5, 0x5eed);
    CHECK(swim_create(&cfg, 0, &sw) == MRD_OK);
    CHECK(swim_set_members(sw, fuzz_ids, FUZZ_MEMBERS) == MRD_OK);
    uint64_t now = swim_next_deadline(sw);
    swim_tick(sw, now, &out); /* the first probe is in flight */
    check_node(sw);

    if ((data[0] & 0x80) == 0) {
        deliver(sw, now, fuzz_senders[data[0] & 7], data + 1, size - 1);
    } else {
        size_t at = 1;
        while (at + 2 <= size) {
            uint8_t sel = data[at];
            size_t  len = data[at + 1];
            at += 2;
            len = len < size - at ? len : size - at;
            now += (uint64_t) (sel >> 3) * 50;
            swim_tick(sw, now, &out);
            check_node(sw);
            deliver(sw, now, fuzz_senders[sel & 7], data + at, len);
            at += len;
        }
    }
    /* Whatever came in, the timers still run sanely afterwards. */
    for (int k = 0; k < 8; k++) {
        now = swim_next_deadline(sw);
        swim_tick(sw, now, &out);
        check_node(sw);
    }
    swim_destroy(sw);
    return 0;
}
