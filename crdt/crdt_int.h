/*
 * crdt_int.h: what the crdt/ files share and nobody else sees.
 */
#ifndef MRD_CRDT_INT_H
#define MRD_CRDT_INT_H

#include "crdt.h"

int              crdt_dot_cmp(struct crdt_dot a, struct crdt_dot b);
int              crdt_bytes_cmp(struct crdt_bytes a, struct crdt_bytes b);
int              crdt_entry_cmp(struct crdt_bytes name_a, uint8_t type_a,
                 struct crdt_bytes name_b, uint8_t type_b);
bool             crdt_type_valid(unsigned type);
MRD_MUST_USE int crdt_bytes_dup(struct crdt_bytes *dst, struct crdt_bytes src);
void             crdt_bytes_free(struct crdt_bytes *b);

void             crdt_val_init(struct crdt_val *v, uint8_t type);
struct crdt_val *crdt_val_new(uint8_t type);
void             crdt_val_fini(struct crdt_val *v);
void             crdt_val_free(struct crdt_val *v);
bool             crdt_val_empty(const struct crdt_val *v);
MRD_MUST_USE int crdt_val_copy(
    struct crdt_val *dst, const struct crdt_val *src);
MRD_MUST_USE int crdt_val_reserve(struct crdt_val *v, uint32_t extra);
MRD_MUST_USE int crdt_val_insert_at(struct crdt_val *v, uint32_t i);
void             crdt_val_remove_at(struct crdt_val *v, uint32_t i);

/* Says whether a dot goes. */
typedef bool (*crdt_dot_pred)(struct crdt_dot dot, const void *arg);
/* Drops the member's dots `drop` picks; returns how many are left. */
uint32_t crdt_member_drop(
    struct crdt_member *m, crdt_dot_pred drop, const void *arg);
/* Drops from v, recursively, every dot `drop` picks, and counter bases
 * unless keep_base; set members and map entries left empty go too. The one
 * rule behind both an op's removes and a merge's filtering. */
void crdt_val_drop(
    struct crdt_val *v, crdt_dot_pred drop, const void *arg, bool keep_base);
/* Inserts entry (name copied, v owned) at i of map; frees v on failure (v
 * may be NULL: MRD_ENOMEM). */
MRD_MUST_USE int crdt_map_insert_at(struct crdt_val *map, uint32_t i,
    struct crdt_bytes name, struct crdt_val *v);

uint32_t crdt_find_dot(
    const struct crdt_val *v, struct crdt_dot dot, bool *found);
uint32_t crdt_find_member(
    const struct crdt_val *v, struct crdt_bytes m, bool *found);
uint32_t crdt_find_entry(const struct crdt_val *v, struct crdt_bytes name,
    uint8_t type, bool *found);

/* The type an op's path has at `level`: a map above the leaf. */
static inline uint8_t
crdt_op_type_at(const struct crdt_op *op, uint32_t level)
{
    return level + 1 < op->depth ? (uint8_t) MRD_STATE_MAP : op->type;
}

#endif /* MRD_CRDT_INT_H */
