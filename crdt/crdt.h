/*
 * crdt.h: Meridian's CRDT state documents (docs/CRDT.md is the
 * specification; this header must match it).
 *
 * Every stream has one state document: an OR-map of named fields, each a
 * counter, LWW register, multi-value register, enable-wins flag, add-wins
 * set or a nested OR-map of these. Events carry operations on their own
 * stream's document. The design is operation-based over causal delivery:
 *
 *   - An event's dot (origin node, origin seq) is the CRDT dot of its ops.
 *   - At the origin, crdt_doc_prepare() checks the ops against the document
 *     and the event records the document's context (a version vector over
 *     the dots of this stream's state events) as its `deps`: everything the
 *     ops observed.
 *   - Every replica applies the event with crdt_doc_apply(), in causal order:
 *     an event whose deps are not yet covered is refused with CRDT_HOLD and
 *     applied later; an event already covered is CRDT_DUPLICATE and changes
 *     nothing. A remove drops exactly the dots its deps cover, so removes
 *     leave no tombstones and concurrent adds win.
 *   - crdt_doc_merge() joins two whole states (snapshots, bootstrap); merge
 *     and op application agree: merging the states of two replicas gives the
 *     state of a replica that applied the union of their events.
 *   - crdt_doc_compact() folds counter increments that every replica has
 *     seen (causally stable) into one base value.
 *
 * Pure C, no I/O: depends on libc, msgpack-c (the packer) and common/
 * (assertions, UTF-8). Decoders never trust a length: they walk the bytes
 * with explicit bounds and are fuzzed.
 *
 * Thread safety: none inside; a document is used by one thread at a time.
 * Errors: MRD_* codes from meridian.h with a static reason in *why where a
 * `why` argument exists.
 */
#ifndef MRD_CRDT_H
#define MRD_CRDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "common.h"

/* ------------------------------------------------------------- limits -- */

/* Format of the encoded document and of the encoded ops; decoders refuse
 * any other. */
#define CRDT_FORMAT 1u
/* Nesting: path[0] is a field of the document, path[1..] keys of nested
 * maps. Deep enough for "cart.<sku>.qty"-like shapes, shallow enough that
 * recursion is bounded. */
#define CRDT_PATH_MAX MRD_STATE_PATH_MAX
/* A field or map key: the same bound as a stream name. */
#define CRDT_NAME_SIZE_MAX MRD_STATE_NAME_SIZE_MAX
/* A register value or a set member. */
#define CRDT_VALUE_SIZE_MAX MRD_STATE_VALUE_SIZE_MAX
/* Ops carried by one event. */
#define CRDT_OPS_MAX MRD_STATE_OPS_MAX
/* Origins in one version vector: node ids are never reused, so this bounds
 * the nodes that ever wrote to one stream's state. */
#define CRDT_ORIGINS_MAX 1024u
/* Entries in one set, map, register or counter, as decoded. */
#define CRDT_ENTRIES_MAX 1000000u
/* Dots on one set member or flag: one per concurrent add. */
#define CRDT_DOTS_MAX 4096u
/* Largest encoded document the origin lets an append produce (MRD_ETOOBIG
 * beyond it). A document is rewritten whole on every append that carries
 * ops, so this bounds the write amplification. Replicated ops are applied
 * whatever the size: convergence comes first. */
#define CRDT_DOC_SIZE_MAX MRD_STATE_SIZE_MAX
/* Largest document a decoder accepts: room for replicated growth. */
#define CRDT_DOC_DECODE_MAX (16u * CRDT_DOC_SIZE_MAX)
/* Largest encoded op list of one event: every op at every limit, and a
 * full deps vector. */
#define CRDT_OPS_SIZE_MAX                                                      \
    (CRDT_OPS_MAX                                                              \
            * (CRDT_PATH_MAX * (CRDT_NAME_SIZE_MAX + 5) + CRDT_VALUE_SIZE_MAX  \
                + 32)                                                          \
        + CRDT_ORIGINS_MAX * 18 + 64)

/* -------------------------------------------------------------- types -- */

/* Type and op kind numbers are mrd_state_type and mrd_op_kind from
 * meridian.h: they are on the wire and on disk, never renumbered. */

struct crdt_dot {
    uint64_t origin; /* node id, >= 1 */
    uint64_t seq; /* origin's sequence number, >= 1 */
};

/* A version vector: for each origin, the highest seq covered. Sorted by
 * origin, no zero seq. Owns e. */
struct crdt_vv {
    uint32_t         n;
    uint32_t         cap;
    struct crdt_dot *e;
};

/* Bytes: a name, register value or set member. Owned (copied) inside a
 * document, borrowed in an op. */
struct crdt_bytes {
    const uint8_t *ptr;
    uint32_t       len;
};

/* One operation. Borrowed: every pointer points into the caller's memory or
 * the decoded buffer, for as long as the caller keeps it. */
struct crdt_op {
    uint8_t           type; /* mrd_state_type; 0 for MRD_OP_DELETE */
    uint8_t           kind; /* mrd_op_kind */
    uint8_t           depth; /* path elements, 1..CRDT_PATH_MAX */
    struct crdt_bytes path[CRDT_PATH_MAX];
    int64_t           delta; /* MRD_OP_INC */
    struct crdt_bytes value; /* MRD_OP_SET, MRD_OP_ADD, MRD_OP_REMOVE */
};

/* The ops of one event as carried in its record: what they observed and the
 * ops. deps.e points at dep (cap 0: never freed); ~28 KiB, so callers keep
 * it off small stacks. */
struct crdt_ops {
    struct crdt_vv  deps;
    uint32_t        count;
    struct crdt_op  op[CRDT_OPS_MAX];
    struct crdt_dot dep[CRDT_ORIGINS_MAX];
};

/* Values. A document owns all of these; callers read them, only crdt/
 * changes them. */
struct crdt_val;

/* A counter increment not yet folded into the base. */
struct crdt_inc {
    struct crdt_dot dot;
    int64_t         delta;
};
/* A register write (LWW or multi-value). */
struct crdt_write {
    struct crdt_dot   dot;
    uint64_t          hlc;
    struct crdt_bytes value; /* owned */
};
/* A set member and the dots of the adds that are live for it. */
struct crdt_member {
    struct crdt_bytes member; /* owned */
    uint32_t          ndots;
    struct crdt_dot  *dots; /* sorted, owned */
};
/* A map entry: keys are (name, type), so concurrent creation of one name
 * with two types keeps both. */
struct crdt_entry {
    struct crdt_bytes name; /* owned */
    struct crdt_val  *val; /* owned; never empty */
};

struct crdt_val {
    uint8_t  type; /* mrd_state_type */
    uint32_t n; /* entries in the array below */
    uint32_t cap;
    union {
        struct crdt_inc    *incs; /* MRD_STATE_COUNTER, sorted by dot */
        struct crdt_write  *writes; /* LWW, MVREG: sorted by dot */
        struct crdt_dot    *dots; /* MRD_STATE_FLAG: enable dots, sorted */
        struct crdt_member *members; /* MRD_STATE_SET: sorted by member */
        struct crdt_entry  *entries; /* MRD_STATE_MAP: by (name, type) */
    } u;
    /* MRD_STATE_COUNTER: stable increments folded together. */
    bool    has_base;
    int64_t base;
};

struct crdt_doc {
    struct crdt_vv  ctx; /* the dots of this stream's state events applied */
    struct crdt_vv  stable; /* the point counters were folded at */
    struct crdt_val root; /* MRD_STATE_MAP */
};

/* ------------------------------------------------------ version vectors -- */

void     crdt_vv_init(struct crdt_vv *vv);
void     crdt_vv_free(struct crdt_vv *vv);
uint64_t crdt_vv_get(const struct crdt_vv *vv, uint64_t origin);
/* Raises vv[origin] to seq if lower. MRD_ENOMEM, MRD_EFULL (too many
 * origins) or MRD_OK. */
MRD_MUST_USE int crdt_vv_raise(
    struct crdt_vv *vv, uint64_t origin, uint64_t seq);
MRD_MUST_USE int crdt_vv_copy(struct crdt_vv *dst, const struct crdt_vv *src);
/* Pointwise max into dst. */
MRD_MUST_USE int crdt_vv_join(struct crdt_vv *dst, const struct crdt_vv *src);
/* True when every entry of b is <= the same entry of a. */
bool crdt_vv_covers(const struct crdt_vv *a, const struct crdt_vv *b);
bool crdt_vv_covers_dot(const struct crdt_vv *vv, struct crdt_dot dot);
bool crdt_vv_equal(const struct crdt_vv *a, const struct crdt_vv *b);
/* Pointwise min of a and b into dst (entries missing from either drop). */
MRD_MUST_USE int crdt_vv_meet(
    struct crdt_vv *dst, const struct crdt_vv *a, const struct crdt_vv *b);

/* ------------------------------------------------------------ documents -- */

void crdt_doc_init(struct crdt_doc *doc);
void crdt_doc_free(struct crdt_doc *doc);
/* An independent deep copy; dst must be freed (or never initialised). */
MRD_MUST_USE int crdt_doc_copy(
    struct crdt_doc *dst, const struct crdt_doc *src);
bool crdt_doc_empty(const struct crdt_doc *doc);

/* Checks ops at the origin, before anything is written: every op well
 * formed, every path through maps, no op on a field of another type (unless
 * that name already has a field of the op's type), no counter overflow.
 * MRD_OK, MRD_EINVAL or MRD_ETYPE with a reason. Changes nothing. */
MRD_MUST_USE int crdt_doc_prepare(const struct crdt_doc *doc,
    const struct crdt_op *ops, uint32_t count, const char **why);

/* Whether an event can be applied now. */
enum crdt_delivery {
    CRDT_APPLY     = 0, /* deps covered, dot new */
    CRDT_DUPLICATE = 1, /* dot already covered: applying changes nothing */
    CRDT_HOLD      = 2, /* some dep not yet applied: hold it back */
};
enum crdt_delivery crdt_doc_delivery(const struct crdt_doc *doc,
    struct crdt_dot dot, const struct crdt_vv *deps);

/* Applies one event's ops: dot and hlc are the event's, deps what its ops
 * observed (crdt_ops.deps). Returns MRD_OK with *delivery CRDT_APPLY when
 * applied, MRD_OK with CRDT_DUPLICATE or CRDT_HOLD when nothing changed, or
 * MRD_ENOMEM / MRD_EFULL (the document is left unchanged only for HOLD and
 * DUPLICATE; after an error it must be discarded). Ops are not re-checked
 * for type: a replicated op on a name held by another type creates a
 * sibling entry, as concurrent creation does. */
MRD_MUST_USE int crdt_doc_apply(struct crdt_doc *doc, struct crdt_dot dot,
    uint64_t hlc, const struct crdt_vv *deps, const struct crdt_op *ops,
    uint32_t count, enum crdt_delivery *delivery);

/* Folds every counter increment whose dot is covered by `stable` into its
 * counter's base. `stable` must be causally stable at this replica: every
 * event this replica will apply from now on has it in its deps. */
MRD_MUST_USE int crdt_doc_compact(
    struct crdt_doc *doc, const struct crdt_vv *stable);

/* Joins `from` into `into`. Both must be states of replicas of one stream;
 * their stable points must be ordered (one covers the other), which is
 * always true when either was never compacted. MRD_EINVAL when they are
 * not, MRD_ENOMEM. On error `into` must be discarded. */
MRD_MUST_USE int crdt_doc_merge(
    struct crdt_doc *into, const struct crdt_doc *from);

/* Canonical encoding: equal states give equal bytes. */
MRD_MUST_USE int crdt_doc_encode(
    const struct crdt_doc *doc, msgpack_packer *pk);
/* Decodes into an initialised, empty doc. MRD_EPROTO / MRD_ETOOBIG with a
 * reason, MRD_ENOMEM. On error doc is left empty. */
MRD_MUST_USE int crdt_doc_decode(
    struct crdt_doc *doc, const void *buf, size_t len, const char **why);

/* ------------------------------------------------------ reading values -- */

/* Drops every field but those called name (any type): a one-field read. */
void crdt_doc_keep_field(
    struct crdt_doc *doc, const uint8_t *name, uint32_t name_len);

/* The entry (name, type) of a map, or NULL; type 0 finds the first entry
 * of that name. */
const struct crdt_val *crdt_map_find(const struct crdt_val *map,
    const uint8_t *name, uint32_t name_len, uint8_t type);
/* A counter's value (wraps modulo 2^64 past INT64_MAX: see CRDT.md). */
int64_t crdt_counter_value(const struct crdt_val *counter);
/* The LWW register's winning write: highest (hlc, origin). */
const struct crdt_write *crdt_lww_winner(const struct crdt_val *reg);
/* A flag is enabled while any enable dot is live. */
bool crdt_flag_value(const struct crdt_val *flag);
/* Metadata kept, for docs/CRDT.md figures and the bench: dots, incs and
 * version vector entries in the whole document. */
size_t crdt_doc_meta_count(const struct crdt_doc *doc);

/* ------------------------------------------------------------------ ops -- */

/* Encodes an event's ops with their deps (deps may be NULL: empty, as in a
 * client's request). Checks every op's shape first: MRD_EINVAL with a
 * reason, and nothing written. */
MRD_MUST_USE int crdt_ops_encode(msgpack_packer *pk, const struct crdt_vv *deps,
    const struct crdt_op *ops, uint32_t count, const char **why);
/* Decodes ops; every view points into buf. MRD_EPROTO / MRD_ETOOBIG with a
 * reason. */
MRD_MUST_USE int crdt_ops_decode(
    struct crdt_ops *out, const void *buf, size_t len, const char **why);
/* Checks one op's shape (kind fits type, sizes, names). */
MRD_MUST_USE int crdt_op_check(const struct crdt_op *op, const char **why);

#endif /* MRD_CRDT_H */
