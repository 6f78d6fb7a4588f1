/*
 * keyring.c: the keyring's text format, and key files (keyring.h).
 */
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meridian.h"

/* Tokens per line: "client NAME ROLE KEY" and the prefixes. */
#define KEYRING_TOKENS_MAX (4u + KEYRING_PREFIXES_MAX)

static int keyring_fail(char *err, size_t cap, int code, const char *fmt, ...)
    MRD_PRINTF(4, 5);

static int
keyring_fail(char *err, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && cap > 0) {
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool
keyring_hex(const char *tok, size_t tok_len, uint8_t *out, size_t out_len)
{
    size_t      bin_len = 0;
    const char *end     = NULL;
    return tok_len == out_len * 2
        && sodium_hex2bin(out, out_len, tok, tok_len, NULL, &bin_len, &end) == 0
        && bin_len == out_len && end == tok + tok_len;
}

static bool
keyring_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > KEYRING_NAME_SIZE_MAX || s[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                || (c >= '0' && c <= '9') || c == '-' || c == '_'
                || c == '.')) {
            return false;
        }
    }
    return true;
}

static enum keyring_role
keyring_role_parse(const char *s, size_t len)
{
    if (len == 4 && memcmp(s, "read", 4) == 0) {
        return KEYRING_ROLE_READ;
    }
    if (len == 5 && memcmp(s, "write", 5) == 0) {
        return KEYRING_ROLE_WRITE;
    }
    if (len == 5 && memcmp(s, "admin", 5) == 0) {
        return KEYRING_ROLE_ADMIN;
    }
    return KEYRING_ROLE_NONE;
}

const char *
keyring_role_name(enum keyring_role r)
{
    switch (r) {
    case KEYRING_ROLE_READ:
        return "read";
    case KEYRING_ROLE_WRITE:
        return "write";
    case KEYRING_ROLE_ADMIN:
        return "admin";
    case KEYRING_ROLE_NODE:
        return "node";
    case KEYRING_ROLE_NONE:
        break;
    }
    return "none";
}

static int
keyring_client_cmp(const void *a, const void *b)
{
    const struct keyring_client *x = a, *y = b;
    return memcmp(x->pk, y->pk, KEYRING_KEY_SIZE);
}

void
keyring_free(struct keyring *kr)
{
    if (kr == NULL) {
        return;
    }
    for (size_t i = 0; i < kr->client_count; i++) {
        for (uint32_t j = 0; j < kr->clients[i].prefix_count; j++) {
            free(kr->clients[i].prefixes[j]);
        }
    }
    free(kr->clients);
    free(kr->nodes);
    memset(kr, 0, sizeof(*kr));
}

struct keyring_tok {
    const char *s;
    size_t      len;
};

/* One line, already split. */
static int
keyring_line(struct keyring *kr, const struct keyring_tok *t, size_t n,
    unsigned line, char *err, size_t cap, size_t *nodes_cap,
    size_t *clients_cap)
{
    if (t[0].len == 7 && memcmp(t[0].s, "cluster", 7) == 0) {
        if (n != 2
            || !keyring_hex(
                t[1].s, t[1].len, kr->cluster_id, KEYRING_CLUSTER_ID_SIZE)) {
            return keyring_fail(err, cap, MRD_EPROTO,
                "line %u: want 'cluster' and 32 hex digits", line);
        }
        if (kr->has_cluster) {
            return keyring_fail(
                err, cap, MRD_EPROTO, "line %u: a second cluster line", line);
        }
        kr->has_cluster = true;
        return MRD_OK;
    }
    if (t[0].len == 4 && memcmp(t[0].s, "node", 4) == 0) {
        struct keyring_node nd;
        char                idbuf[24];
        char               *end = NULL;
        if (n != 3 || t[1].len == 0 || t[1].len >= sizeof(idbuf)
            || t[1].s[0] < '1' || t[1].s[0] > '9') {
            return keyring_fail(err, cap, MRD_EPROTO,
                "line %u: want 'node', an id (1..2^63) and a key", line);
        }
        memcpy(idbuf, t[1].s, t[1].len);
        idbuf[t[1].len]       = '\0';
        errno                 = 0;
        unsigned long long id = strtoull(idbuf, &end, 10);
        if (errno != 0 || *end != '\0' || id > (UINT64_C(1) << 63)) {
            return keyring_fail(
                err, cap, MRD_EPROTO, "line %u: bad node id", line);
        }
        nd.id = id;
        if (!keyring_hex(t[2].s, t[2].len, nd.pk, KEYRING_KEY_SIZE)) {
            return keyring_fail(
                err, cap, MRD_EPROTO, "line %u: a key is 64 hex digits", line);
        }
        for (size_t i = 0; i < kr->node_count; i++) {
            if (kr->nodes[i].id == nd.id
                || memcmp(kr->nodes[i].pk, nd.pk, KEYRING_KEY_SIZE) == 0) {
                return keyring_fail(err, cap, MRD_EPROTO,
                    "line %u: node id or key listed twice", line);
            }
        }
        if (kr->node_count >= KEYRING_NODES_MAX) {
            return keyring_fail(err, cap, MRD_EFULL,
                "line %u: more than %u nodes", line, KEYRING_NODES_MAX);
        }
        if (kr->node_count == *nodes_cap) {
            size_t nc = *nodes_cap == 0 ? 16 : *nodes_cap * 2;
            void  *p  = realloc(kr->nodes, nc * sizeof(*kr->nodes));
            if (p == NULL) {
                return keyring_fail(err, cap, MRD_ENOMEM, "out of memory");
            }
            kr->nodes  = p;
            *nodes_cap = nc;
        }
        kr->nodes[kr->node_count++] = nd;
        return MRD_OK;
    }
    if (t[0].len == 6 && memcmp(t[0].s, "client", 6) == 0) {
        if (n < 4) {
            return keyring_fail(err, cap, MRD_EPROTO,
                "line %u: want 'client', a name, a role, a key and "
                "optional stream prefixes",
                line);
        }
        if (n > KEYRING_TOKENS_MAX) {
            return keyring_fail(err, cap, MRD_EFULL,
                "line %u: more than %u prefixes", line, KEYRING_PREFIXES_MAX);
        }
        if (!keyring_name_ok(t[1].s, t[1].len)) {
            return keyring_fail(err, cap, MRD_EPROTO,
                "line %u: a client name is 1..63 of [A-Za-z0-9_.-], not "
                "starting with '-'",
                line);
        }
        enum keyring_role role = keyring_role_parse(t[2].s, t[2].len);
        if (role == KEYRING_ROLE_NONE) {
            return keyring_fail(err, cap, MRD_EPROTO,
                "line %u: a role is read, write or admin", line);
        }
        if (kr->client_count >= KEYRING_CLIENTS_MAX) {
            return keyring_fail(err, cap, MRD_EFULL,
                "line %u: more than %u clients", line, KEYRING_CLIENTS_MAX);
        }
        if (kr->client_count == *clients_cap) {
            size_t nc = *clients_cap == 0 ? 16 : *clients_cap * 2;
            void  *p  = realloc(kr->clients, nc * sizeof(*kr->clients));
            if (p == NULL) {
                return keyring_fail(err, cap, MRD_ENOMEM, "out of memory");
            }
            kr->clients  = p;
            *clients_cap = nc;
        }
        struct keyring_client *c = &kr->clients[kr->client_count];
        memset(c, 0, sizeof(*c));
        if (!keyring_hex(t[3].s, t[3].len, c->pk, KEYRING_KEY_SIZE)) {
            return keyring_fail(
                err, cap, MRD_EPROTO, "line %u: a key is 64 hex digits", line);
        }
        memcpy(c->name, t[1].s, t[1].len);
        c->role = role;
        c->line = line;
        kr->client_count++; /* from here keyring_free() owns its prefixes */
        for (size_t i = 4; i < n; i++) {
            if (t[i].len > KEYRING_PREFIX_SIZE_MAX) {
                return keyring_fail(err, cap, MRD_ETOOBIG,
                    "line %u: a prefix is at most %u bytes", line,
                    KEYRING_PREFIX_SIZE_MAX);
            }
            char *p = malloc(t[i].len + 1);
            if (p == NULL) {
                return keyring_fail(err, cap, MRD_ENOMEM, "out of memory");
            }
            memcpy(p, t[i].s, t[i].len);
            p[t[i].len]                    = '\0';
            c->prefixes[c->prefix_count++] = p;
        }
        return MRD_OK;
    }
    return keyring_fail(err, cap, MRD_EPROTO,
        "line %u: unknown entry (want cluster, node or client)", line);
}

int
keyring_parse(
    const char *text, size_t len, struct keyring *kr, char *err, size_t cap)
{
    size_t   nodes_cap = 0, clients_cap = 0;
    unsigned line = 0;
    size_t   pos  = 0;

    memset(kr, 0, sizeof(*kr));
    if (len > KEYRING_FILE_SIZE_MAX) {
        return keyring_fail(err, cap, MRD_ETOOBIG,
            "a keyring is at most %u bytes", KEYRING_FILE_SIZE_MAX);
    }
    while (pos < len) {
        size_t start = pos;
        while (pos < len && text[pos] != '\n') {
            pos++;
        }
        size_t end = pos;
        pos++; /* past the newline */
        line++;
        if (end - start > KEYRING_LINE_MAX) {
            keyring_free(kr);
            return keyring_fail(err, cap, MRD_ETOOBIG,
                "line %u: longer than %u bytes", line, KEYRING_LINE_MAX);
        }
        struct keyring_tok t[KEYRING_TOKENS_MAX + 1];
        size_t             n = 0;
        size_t             i = start;
        while (i < end) {
            while (i < end
                && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) {
                i++;
            }
            /* A word that starts with '#' starts a comment, anywhere. */
            if (i >= end || text[i] == '#') {
                break;
            }
            size_t s = i;
            while (i < end && text[i] != ' ' && text[i] != '\t'
                && text[i] != '\r') {
                if (text[i] == '\0') {
                    keyring_free(kr);
                    return keyring_fail(
                        err, cap, MRD_EPROTO, "line %u: a NUL byte", line);
                }
                i++;
            }
            if (n == KEYRING_TOKENS_MAX + 1) {
                keyring_free(kr);
                return keyring_fail(
                    err, cap, MRD_EFULL, "line %u: too many words", line);
            }
            t[n].s     = text + s;
            t[n++].len = i - s;
        }
        if (n == 0) {
            continue;
        }
        int rv
            = keyring_line(kr, t, n, line, err, cap, &nodes_cap, &clients_cap);
        if (rv != MRD_OK) {
            keyring_free(kr);
            return rv;
        }
    }
    if (kr->client_count > 1) {
        qsort(kr->clients, kr->client_count, sizeof(*kr->clients),
            keyring_client_cmp);
        for (size_t i = 1; i < kr->client_count; i++) {
            if (keyring_client_cmp(&kr->clients[i - 1], &kr->clients[i]) == 0) {
                unsigned a = kr->clients[i - 1].line, b = kr->clients[i].line;
                keyring_free(kr);
                return keyring_fail(err, cap, MRD_EPROTO,
                    "line %u: the client key of line %u again", a > b ? a : b,
                    a < b ? a : b);
            }
        }
    }
    return MRD_OK;
}

/* Reads a whole regular file of at most max bytes. */
static int
keyring_read_file(const char *path, size_t max, char **out, size_t *len_out,
    struct stat *st, char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *out   = NULL;
    if (fd < 0) {
        return keyring_fail(err, cap, errno == ENOENT ? MRD_ENOTFOUND : MRD_EIO,
            "%s: %s", path, strerror(errno));
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return keyring_fail(err, cap, MRD_EINVAL, "%s: not a file", path);
    }
    if ((size_t) st->st_size > max) {
        close(fd);
        return keyring_fail(
            err, cap, MRD_ETOOBIG, "%s: larger than %zu bytes", path, max);
    }
    char  *buf = malloc((size_t) st->st_size + 1);
    size_t got = 0;
    if (buf == NULL) {
        close(fd);
        return keyring_fail(err, cap, MRD_ENOMEM, "out of memory");
    }
    while (got < (size_t) st->st_size) {
        ssize_t r = read(fd, buf + got, (size_t) st->st_size - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t) r;
    }
    close(fd);
    buf[got] = '\0';
    *out     = buf;
    *len_out = got;
    return MRD_OK;
}

int
keyring_load(const char *path, struct keyring *kr, char *err, size_t cap)
{
    char       *text = NULL;
    size_t      len  = 0;
    struct stat st;
    char        why[200];

    memset(kr, 0, sizeof(*kr));
    int rv = keyring_read_file(
        path, KEYRING_FILE_SIZE_MAX, &text, &len, &st, err, cap);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = keyring_parse(text, len, kr, why, sizeof(why));
    free(text);
    if (rv != MRD_OK) {
        return keyring_fail(err, cap, rv, "%s: %s", path, why);
    }
    return MRD_OK;
}

const struct keyring_client *
keyring_client_find(
    const struct keyring *kr, const uint8_t pk[KEYRING_KEY_SIZE])
{
    struct keyring_client key;
    if (kr->client_count == 0) {
        return NULL;
    }
    memcpy(key.pk, pk, KEYRING_KEY_SIZE);
    return bsearch(&key, kr->clients, kr->client_count, sizeof(*kr->clients),
        keyring_client_cmp);
}

bool
keyring_has_node(const struct keyring *kr, const uint8_t pk[KEYRING_KEY_SIZE])
{
    for (size_t i = 0; i < kr->node_count; i++) {
        if (sodium_memcmp(kr->nodes[i].pk, pk, KEYRING_KEY_SIZE) == 0) {
            return true;
        }
    }
    return false;
}

bool
keyring_client_allows(
    const struct keyring_client *c, const char *name, size_t len)
{
    if (c->prefix_count == 0) {
        return true;
    }
    for (uint32_t i = 0; i < c->prefix_count; i++) {
        size_t pl = strlen(c->prefixes[i]);
        if (pl <= len && memcmp(c->prefixes[i], name, pl) == 0) {
            return true;
        }
    }
    return false;
}

int
keyring_key_read(const char *path, uint8_t sk[KEYRING_SECRET_KEY_SIZE],
    char *err, size_t cap)
{
    char       *text = NULL;
    size_t      len  = 0;
    struct stat st;

    int rv = keyring_read_file(
        path, KEYRING_KEY_FILE_SIZE + 1, &text, &len, &st, err, cap);
    if (rv != MRD_OK) {
        if (rv == MRD_ETOOBIG) {
            rv = keyring_fail(
                err, cap, MRD_EINVAL, "%s: not a Meridian key file", path);
        }
        return rv;
    }
    /* A secret key others can read is no longer secret: refused before a
     * byte of it is used, so the mistake is fixed, not lived with. */
    if ((st.st_mode & 077) != 0) {
        sodium_memzero(text, len);
        free(text);
        return keyring_fail(err, cap, MRD_EINVAL,
            "%s is readable or writable by others (mode %04o): refused; "
            "'chmod 600 %s' if it is still secret, else make a new key",
            path, (unsigned) (st.st_mode & 07777), path);
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) {
        len--;
    }
    uint8_t pk[KEYRING_KEY_SIZE];
    bool    ok = keyring_hex(text, len, sk, KEYRING_SECRET_KEY_SIZE)
        && crypto_sign_ed25519_sk_to_pk(pk, sk) == 0;
    sodium_memzero(text, len);
    free(text);
    /* The second half must be the first half's public key. */
    if (ok) {
        uint8_t seed[32], pk2[KEYRING_KEY_SIZE], sk2[KEYRING_SECRET_KEY_SIZE];
        memcpy(seed, sk, 32);
        crypto_sign_seed_keypair(pk2, sk2, seed);
        ok = sodium_memcmp(sk2, sk, KEYRING_SECRET_KEY_SIZE) == 0;
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(sk2, sizeof(sk2));
    }
    if (!ok) {
        sodium_memzero(sk, KEYRING_SECRET_KEY_SIZE);
        return keyring_fail(err, cap, MRD_EINVAL,
            "%s: not a Meridian key file (128 hex digits of an Ed25519 "
            "secret key)",
            path);
    }
    return MRD_OK;
}

int
keyring_key_write(const char *path, const uint8_t sk[KEYRING_SECRET_KEY_SIZE],
    char *err, size_t cap)
{
    char hex[KEYRING_SECRET_KEY_SIZE * 2 + 1];
    int  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return keyring_fail(err, cap, errno == EEXIST ? MRD_EINVAL : MRD_EIO,
            "%s: %s", path, strerror(errno));
    }
    sodium_bin2hex(hex, sizeof(hex), sk, KEYRING_SECRET_KEY_SIZE);
    hex[KEYRING_SECRET_KEY_SIZE * 2] = '\n';
    bool ok = write(fd, hex, sizeof(hex)) == (ssize_t) sizeof(hex)
        && fsync(fd) == 0;
    sodium_memzero(hex, sizeof(hex));
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return keyring_fail(err, cap, MRD_EIO, "%s: write failed", path);
    }
    return MRD_OK;
}

int
keyring_file_write(const char *path, const char *text, size_t len,
    unsigned mode, char *err, size_t cap)
{
    char tmp[4200];
    if ((size_t) snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        return keyring_fail(err, cap, MRD_EINVAL, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return keyring_fail(err, cap, MRD_EIO, "%s: %s", tmp, strerror(errno));
    }
    bool ok = write(fd, text, len) == (ssize_t) len && fsync(fd) == 0;
    if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return keyring_fail(err, cap, MRD_EIO, "%s: write failed", path);
    }
    return MRD_OK;
}
