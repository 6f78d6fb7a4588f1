/*
 * keyring.h: who a node or a client trusts, and key files.
 *
 * A keyring is a text file, one entry per line; a word that starts with
 * '#' starts a comment to the end of the line:
 *
 *   cluster 0123456789abcdef0123456789abcdef
 *   node 3 <64 hex digits: the node's Ed25519 public key>
 *   client alice write <64 hex digits> orders- carts-
 *
 * cluster   the cluster id; a client needs it for its handshakes, a node
 *           checks it against its own when present.
 * node      a node id and its public key. A client trusts these nodes (and
 *           those of a verified topology); a node without a topology
 *           (--peers, or alone) trusts these peers. A node run from a
 *           topology takes its peers from the topology and ignores these.
 * client    a client's name, role and public key, then optionally stream
 *           name prefixes it is limited to. Roles: read (reads, infos,
 *           state, node-info, topology), write (read, and appends),
 *           admin (write, and stats and topology pushes).
 *
 * meridiand writes DATA_DIR/identity in this syntax (its cluster line and
 * its node line), so a client keyring is the identity files of the nodes
 * put together. Unknown words, bad hex, duplicates and over-long lines are
 * errors with the line number: a trust file is never half read.
 *
 * Key files hold an Ed25519 secret key (seed and public key) as 128 hex
 * digits and a newline, mode 0600; one that group or others may read or
 * write is refused.
 *
 * Parsing is sans-I/O (keyring_parse, fuzzed); the file functions read and
 * write whole files.
 */
#ifndef MRD_KEYRING_H
#define MRD_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ------------------------------------------------------------- limits -- */

#define KEYRING_KEY_SIZE 32u
#define KEYRING_SECRET_KEY_SIZE 64u
#define KEYRING_CLUSTER_ID_SIZE 16u
/* Node entries: the topology's node limit. */
#define KEYRING_NODES_MAX 256u
/* Client entries: one per application instance or operator of a large
 * deployment; lookups are a binary search, so more costs only memory. */
#define KEYRING_CLIENTS_MAX 4096u
/* Client names: like topology names, plus '_' and '.'. */
#define KEYRING_NAME_SIZE_MAX 63u
/* Stream prefixes per client, and their length (a stream name's). */
#define KEYRING_PREFIXES_MAX 8u
#define KEYRING_PREFIX_SIZE_MAX 255u
/* A line: the longest client line with every prefix at its limit fits. */
#define KEYRING_LINE_MAX 4096u
/* A whole file: every entry at a typical length, with room. */
#define KEYRING_FILE_SIZE_MAX (4u * 1024u * 1024u)
/* A key file: 128 hex digits and a newline. */
#define KEYRING_KEY_FILE_SIZE (KEYRING_SECRET_KEY_SIZE * 2u + 1u)

enum keyring_role {
    KEYRING_ROLE_NONE  = 0,
    KEYRING_ROLE_READ  = 1,
    KEYRING_ROLE_WRITE = 2,
    KEYRING_ROLE_ADMIN = 3,
    KEYRING_ROLE_NODE  = 4, /* not in files: a peer node's rights */
};

struct keyring_node {
    uint64_t id;
    uint8_t  pk[KEYRING_KEY_SIZE];
};

struct keyring_client {
    char              name[KEYRING_NAME_SIZE_MAX + 1];
    enum keyring_role role;
    uint8_t           pk[KEYRING_KEY_SIZE];
    uint32_t          prefix_count; /* 0: every stream */
    unsigned          line; /* where it was, for words about it */
    char             *prefixes[KEYRING_PREFIXES_MAX]; /* owned */
};

struct keyring {
    bool                   has_cluster;
    uint8_t                cluster_id[KEYRING_CLUSTER_ID_SIZE];
    size_t                 node_count;
    struct keyring_node   *nodes; /* owned */
    size_t                 client_count;
    struct keyring_client *clients; /* owned, sorted by pk after parse */
};

/* Parses text[0..len). MRD_OK and *kr filled (keyring_free() it), or
 * MRD_EPROTO / MRD_ETOOBIG / MRD_EFULL / MRD_ENOMEM with "line N: ..." in
 * err. *kr is empty on error. */
MRD_MUST_USE int keyring_parse(const char *text, size_t len, struct keyring *kr,
    char *err, size_t err_cap);
/* Reads and parses a file; errors name the path. MRD_ENOTFOUND when it does
 * not exist. */
MRD_MUST_USE int keyring_load(
    const char *path, struct keyring *kr, char *err, size_t err_cap);
void keyring_free(struct keyring *kr);

/* The client entry with this key, or NULL. */
const struct keyring_client *keyring_client_find(
    const struct keyring *kr, const uint8_t pk[KEYRING_KEY_SIZE]);
/* True when pk is one of the node entries. */
bool keyring_has_node(
    const struct keyring *kr, const uint8_t pk[KEYRING_KEY_SIZE]);
/* True when the client may touch the stream name[0..len): no prefixes, or
 * one of them starts it. */
bool keyring_client_allows(
    const struct keyring_client *c, const char *name, size_t len);
/* "read", "write", "admin", "node"; "none" otherwise. */
const char *keyring_role_name(enum keyring_role r);

/* Key files. Read: MRD_OK; MRD_ENOTFOUND (no file); MRD_EINVAL (mode lets
 * others read or write it, or not a key: words in err). Write: creates the
 * file with mode 0600, refusing to overwrite (MRD_EINVAL if it exists,
 * MRD_EIO otherwise). The public key is the secret key's second half. */
MRD_MUST_USE int keyring_key_read(const char *path,
    uint8_t sk[KEYRING_SECRET_KEY_SIZE], char *err, size_t err_cap);
MRD_MUST_USE int keyring_key_write(const char *path,
    const uint8_t sk[KEYRING_SECRET_KEY_SIZE], char *err, size_t err_cap);

/* Writes text to path atomically (temp file and rename), with mode. */
MRD_MUST_USE int keyring_file_write(const char *path, const char *text,
    size_t len, unsigned mode, char *err, size_t err_cap);

#endif
