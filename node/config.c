/*
 * config.c: meridiand's settings. Defaults first, then a JSON config file
 * (--config), then flags, which win. Every setting has a flag and a config
 * key of the same name (dashes become underscores in JSON), so a file and a
 * command line say the same things. Unknown keys and flags are errors: a
 * typo in a config must never silently fall back to a default.
 */
#include "node.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum node_opt {
    NODE_OPT_CONFIG = 256,
    NODE_OPT_NODE_ID,
    NODE_OPT_DATA_DIR,
    NODE_OPT_LISTEN,
    NODE_OPT_READY_FILE,
    NODE_OPT_METRICS_LISTEN,
    NODE_OPT_SHARDS,
    NODE_OPT_MAP_SIZE,
    NODE_OPT_MAP_SIZE_MAX,
    NODE_OPT_FRAME_SIZE_MAX,
    NODE_OPT_IDEM_WINDOW,
    NODE_OPT_REPL_MEMORY,
    NODE_OPT_CLOCK_AHEAD_MAX,
    NODE_OPT_REGION,
    NODE_OPT_CLUSTER_ID,
    NODE_OPT_PEERS,
    NODE_OPT_PEER_ADDRESS,
    NODE_OPT_TOPOLOGY,
    NODE_OPT_KEY,
    NODE_OPT_KEYRING,
    NODE_OPT_WORKERS,
    NODE_OPT_READERS,
    NODE_OPT_LOG_LEVEL,
    NODE_OPT_HELP,
    NODE_OPT_VERSION,
};

static const struct option node_options[] = {
    { "config", required_argument, NULL, NODE_OPT_CONFIG },
    { "node-id", required_argument, NULL, NODE_OPT_NODE_ID },
    { "data-dir", required_argument, NULL, NODE_OPT_DATA_DIR },
    { "listen", required_argument, NULL, NODE_OPT_LISTEN },
    { "ready-file", required_argument, NULL, NODE_OPT_READY_FILE },
    { "metrics-listen", required_argument, NULL, NODE_OPT_METRICS_LISTEN },
    { "shards", required_argument, NULL, NODE_OPT_SHARDS },
    { "map-size", required_argument, NULL, NODE_OPT_MAP_SIZE },
    { "map-size-max", required_argument, NULL, NODE_OPT_MAP_SIZE_MAX },
    { "frame-size-max", required_argument, NULL, NODE_OPT_FRAME_SIZE_MAX },
    { "idempotency-window", required_argument, NULL, NODE_OPT_IDEM_WINDOW },
    { "repl-memory", required_argument, NULL, NODE_OPT_REPL_MEMORY },
    { "clock-ahead-max", required_argument, NULL, NODE_OPT_CLOCK_AHEAD_MAX },
    { "region", required_argument, NULL, NODE_OPT_REGION },
    { "cluster-id", required_argument, NULL, NODE_OPT_CLUSTER_ID },
    { "peers", required_argument, NULL, NODE_OPT_PEERS },
    { "peer-address", required_argument, NULL, NODE_OPT_PEER_ADDRESS },
    { "topology", required_argument, NULL, NODE_OPT_TOPOLOGY },
    { "key", required_argument, NULL, NODE_OPT_KEY },
    { "keyring", required_argument, NULL, NODE_OPT_KEYRING },
    { "workers", required_argument, NULL, NODE_OPT_WORKERS },
    { "readers", required_argument, NULL, NODE_OPT_READERS },
    { "log-level", required_argument, NULL, NODE_OPT_LOG_LEVEL },
    { "help", no_argument, NULL, NODE_OPT_HELP },
    { "version", no_argument, NULL, NODE_OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

void
node_config_usage(FILE *out)
{
    fprintf(out,
        "Usage: meridiand [--config FILE] [OPTIONS]\n"
        "\n"
        "Runs one Meridian node: an LMDB-backed event store served over NNG\n"
        "(req/rep on TCP). Logs are JSON lines on stderr. SIGTERM or SIGINT\n"
        "stops it gracefully: queued appends are committed and answered.\n"
        "\n"
        "Options (each is also a key of the JSON config file, with '_' for\n"
        "'-'; flags override the file):\n"
        "  --config FILE            JSON object with any of the keys below\n"
        "  --node-id N              this node's id, 1..2^63 (required; kept\n"
        "                           in the data dir and checked on restart)\n"
        "  --data-dir DIR           where the LMDB environment lives\n"
        "                           (required; created if missing)\n"
        "  --listen URL             address to serve (default "
        "tcp://127.0.0.1:7400;\n"
        "                           port 0 picks a free port)\n"
        "  --ready-file PATH        once serving, write the bound URL here\n"
        "  --metrics-listen URL     serve Prometheus metrics at URL/metrics,\n"
        "                           e.g. http://127.0.0.1:9401 (port 0 picks\n"
        "                           a free port: `meridianctl status` shows\n"
        "                           it). Plain HTTP, no secrets and no event\n"
        "                           data: bind it where only your scraper\n"
        "                           reaches. Default: none\n"
        "  --shards N               shard count, fixed when the data dir is\n"
        "                           created (default %u, max %u)\n"
        "  --map-size SIZE          initial LMDB map size (default 1G)\n"
        "  --map-size-max SIZE      the map doubles up to this when full\n"
        "                           (default 64G); then appends get\n"
        "                           MRD_ENOSPACE\n"
        "  --frame-size-max SIZE    largest request accepted (default 16M,\n"
        "                           min %u, max %u)\n"
        "  --idempotency-window S   seconds an idempotency key is remembered\n"
        "                           (default %u)\n"
        "  --repl-memory SIZE       pulled events held at once before they\n"
        "                           are committed in one transaction; also\n"
        "                           bounds how long a replicated commit holds\n"
        "                           up local appends (default 16M, min 5M)\n"
        "  --clock-ahead-max MS     a replicated timestamp further ahead of\n"
        "                           this node's clock than this is clamped\n"
        "                           when it advances the clock, counted and\n"
        "                           logged (default %u, max %u)\n"
        "  --region NAME            this node's region (default \"local\")\n"
        "  --cluster-id HEX         32 hex digits shared by every node of a\n"
        "                           cluster (required with --peers; random\n"
        "                           for a lone node); fixed at creation\n"
        "  --peers LIST             the other nodes this node replicates\n"
        "                           with: ID@URL,ID@URL,... (every node holds\n"
        "                           every shard; at most %u peers)\n"
        "  --topology FILE          a signed topology (meridianctl cluster\n"
        "                           init writes one): the cluster id,\n"
        "                           shards, region, peers and the listen\n"
        "                           address (unless --listen) come from it,\n"
        "                           and this node holds only the shards\n"
        "                           placed on it. Newer versions arrive by\n"
        "                           gossip and `meridianctl topology push`\n",
        NODE_SHARDS_DEFAULT, NODE_SHARDS_MAX, (unsigned) PROTO_FRAME_SIZE_MIN,
        (unsigned) MRD_FRAME_SIZE_MAX, NODE_IDEM_WINDOW_S_DEFAULT,
        NODE_CLOCK_AHEAD_MS_DEFAULT, NODE_CLOCK_AHEAD_MS_MAX, NODE_PEERS_MAX);
    fprintf(out,
        "  --peer-address ID=URL    how this node reaches node ID: it dials\n"
        "                           URL instead of the address --peers or\n"
        "                           the topology gives (NAT, a local proxy,\n"
        "                           another interface). Only this node's\n"
        "                           dialing changes; the topology and what\n"
        "                           others dial do not. Repeatable, or\n"
        "                           ID=URL,ID=URL,...; in the config file a\n"
        "                           list of \"ID=URL\" strings or one such\n"
        "                           string, replaced whole by the flags. At\n"
        "                           most %u; never this node's id, each id\n"
        "                           once. An id that is no peer yet is kept\n"
        "                           (logged at start) for when the topology\n"
        "                           adds that node\n",
        NODE_PEERS_MAX);
    fprintf(out,
        "  --key FILE               this node's secret key (default\n"
        "                           DATA_DIR/node.key, made at first start;\n"
        "                           a file others may read is refused).\n"
        "                           With --topology its public key must be\n"
        "                           this node's in the topology\n"
        "  --keyring FILE           whom this node trusts: client keys and\n"
        "                           roles, and without a topology the peer\n"
        "                           node keys (docs/OPERATIONS.md, \"Keys\n"
        "                           and roles\"). Default DATA_DIR/keyring;\n"
        "                           when it is missing the node writes one\n"
        "                           trusting itself and a new admin client\n"
        "                           key, DATA_DIR/admin.key. Re-read when\n"
        "                           it changes; removed keys lose their\n"
        "                           connections. Every connection is\n"
        "                           encrypted and authenticated: there is\n"
        "                           no plaintext mode\n"
        "  --workers N              requests held at once (default %u, max "
        "%u)\n"
        "  --readers N              reader threads (default %u, max %u)\n"
        "  --log-level LEVEL        debug, info, warn or error (default "
        "info)\n"
        "  --help                   print this and exit\n"
        "  --version                print the version and exit\n"
        "\n"
        "SIZE takes a K, M or G suffix (powers of 1024).\n",
        NODE_WORKERS_DEFAULT, NODE_WORKERS_MAX, NODE_READERS_DEFAULT,
        NODE_READERS_MAX);
}

/* Parses an unsigned number with an optional K/M/G suffix. */
static int
node_config_number(const char *text, bool suffix_ok, uint64_t *out)
{
    char              *end;
    unsigned long long v;

    if (text[0] < '0' || text[0] > '9') {
        return -1;
    }
    errno = 0;
    v     = strtoull(text, &end, 10);
    if (errno != 0) {
        return -1;
    }
    if (suffix_ok && *end != '\0' && end[1] == '\0') {
        unsigned shift = 0;
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return -1;
        }
        if (v > (UINT64_MAX >> shift)) {
            return -1;
        }
        v <<= shift;
        end++;
    }
    if (*end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int
node_config_level(const char *text)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static int
node_config_string(char *dst, size_t size, const char *name, const char *v)
{
    if (strlen(v) >= size || v[0] == '\0') {
        fprintf(stderr, "meridiand: --%s: empty or too long\n", name);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

/* Range-checked number setting. */
static int
node_config_range(const char *name, const char *v, bool suffix, uint64_t lo,
    uint64_t hi, uint64_t *out)
{
    if (node_config_number(v, suffix, out) != 0 || *out < lo || *out > hi) {
        fprintf(stderr,
            "meridiand: --%s: '%s' is not a number in %" PRIu64 "..%" PRIu64
            "\n",
            name, v, lo, hi);
        return -1;
    }
    return 0;
}

/* --peers ID@URL,ID@URL,... */
static int
node_config_peers(struct node_config *cfg, const char *name, const char *v)
{
    cfg->peer_count = 0;
    while (*v != '\0') {
        const char *end = strchr(v, ',');
        size_t      len = end != NULL ? (size_t) (end - v) : strlen(v);
        const char *at  = memchr(v, '@', len);
        char        idtext[24];
        uint64_t    id;
        if (cfg->peer_count == NODE_PEERS_MAX || at == NULL || at == v
            || (size_t) (at - v) >= sizeof(idtext)
            || len - (size_t) (at - v) - 1 == 0
            || len - (size_t) (at - v) - 1 >= sizeof(cfg->peers[0].url)) {
            fprintf(stderr,
                "meridiand: --%s: '%.*s' is not ID@URL (at most %u peers)\n",
                name, (int) len, v, NODE_PEERS_MAX);
            return -1;
        }
        memcpy(idtext, v, (size_t) (at - v));
        idtext[at - v] = '\0';
        if (node_config_range(name, idtext, false, 1, INT64_MAX, &id) != 0) {
            return -1;
        }
        struct node_peer *p = &cfg->peers[cfg->peer_count++];
        p->id               = id;
        snprintf(p->url, sizeof(p->url), "%.*s",
            (int) (len - (size_t) (at - v) - 1), at + 1);
        v += len;
        if (*v == ',') {
            v++;
        }
    }
    return 0;
}

/* One ID=URL of --peer-address, appended: NODE_PEERS_MAX at most, a URL
 * with a scheme ("tcp://...") and no blanks that fits a node_peer. Ids are
 * checked against this node's and each other in node_config_check, once
 * every source is read. */
static int
node_config_peer_address_one(
    struct node_config *cfg, const char *name, const char *v, size_t len)
{
    const char *eq  = memchr(v, '=', len);
    size_t      idn = eq != NULL ? (size_t) (eq - v) : 0;
    size_t      n   = eq != NULL ? len - idn - 1 : 0;
    char        idtext[24];
    uint64_t    id;

    if (cfg->peer_address_count == NODE_PEERS_MAX) {
        fprintf(stderr, "meridiand: --%s: more than %u peer addresses\n", name,
            NODE_PEERS_MAX);
        return -1;
    }
    struct node_peer *p = &cfg->peer_addresses[cfg->peer_address_count];
    bool ok             = eq != NULL && idn > 0 && idn < sizeof(idtext) && n > 0
        && n < sizeof(p->url);
    for (size_t i = 0; ok && i < n; i++) {
        ok = (unsigned char) eq[1 + i] > ' ';
    }
    if (ok) {
        memcpy(p->url, eq + 1, n);
        p->url[n] = '\0';
        ok        = strstr(p->url, "://") != NULL;
    }
    if (!ok) {
        fprintf(stderr,
            "meridiand: --%s: '%.*s' is not ID=URL (a node id, '=', and a "
            "URL such as tcp://10.0.0.7:7400 of at most %zu characters)\n",
            name, (int) len, v, sizeof(p->url) - 1);
        return -1;
    }
    memcpy(idtext, v, idn);
    idtext[idn] = '\0';
    if (node_config_number(idtext, false, &id) != 0 || id < 1
        || id > INT64_MAX) {
        fprintf(stderr,
            "meridiand: --%s: '%.*s': '%s' is not a node id (1..2^63-1)\n",
            name, (int) len, v, idtext);
        return -1;
    }
    p->id = id;
    cfg->peer_address_count++;
    return 0;
}

/* --peer-address ID=URL[,ID=URL...]: appended to what is there; an empty
 * entry (",,", a trailing ',') is malformed. */
static int
node_config_peer_address(
    struct node_config *cfg, const char *name, const char *v)
{
    for (;;) {
        const char *end = strchr(v, ',');
        size_t      len = end != NULL ? (size_t) (end - v) : strlen(v);
        if (node_config_peer_address_one(cfg, name, v, len) != 0) {
            return -1;
        }
        if (end == NULL) {
            return 0;
        }
        v = end + 1;
    }
}

const char *
node_peer_url(const struct node_peer *overrides, uint32_t count, uint64_t id,
    const char *url)
{
    MRD_ASSERT(count <= NODE_PEERS_MAX);
    for (uint32_t i = 0; i < count; i++) {
        if (overrides[i].id == id) {
            return overrides[i].url;
        }
    }
    return url;
}

void
node_config_log_peer_addresses(const struct node_config *cfg)
{
    for (uint32_t i = 0; i < cfg->peer_address_count; i++) {
        const struct node_peer *o    = &cfg->peer_addresses[i];
        bool                    peer = false;
        for (uint32_t j = 0; j < cfg->peer_count && !peer; j++) {
            peer = cfg->peers[j].id == o->id;
        }
        if (peer) {
            node_log(NODE_LOG_INFO, "a peer is dialed at its --peer-address",
                "{s:I, s:s}", "peer", (json_int_t) o->id, "url", o->url);
        } else {
            node_log(NODE_LOG_WARN,
                cfg->topology_file[0] != '\0'
                    ? "--peer-address names no current peer of the topology: "
                      "kept for when a newer version adds it"
                    : "--peer-address names none of --peers: unused",
                "{s:I, s:s}", "peer", (json_int_t) o->id, "url", o->url);
        }
    }
}

/* Applies one setting by option id; used by flags and the config file. */
static int
node_config_set(
    struct node_config *cfg, int opt, const char *name, const char *v)
{
    uint64_t n;
    int      rv = 0;

    switch (opt) {
    case NODE_OPT_NODE_ID:
        rv           = node_config_range(name, v, false, 1, INT64_MAX, &n);
        cfg->node_id = n;
        break;
    case NODE_OPT_DATA_DIR:
        return node_config_string(
            cfg->data_dir, sizeof(cfg->data_dir), name, v);
    case NODE_OPT_LISTEN:
        cfg->listen_given = true;
        return node_config_string(cfg->listen, sizeof(cfg->listen), name, v);
    case NODE_OPT_TOPOLOGY:
        return node_config_string(
            cfg->topology_file, sizeof(cfg->topology_file), name, v);
    case NODE_OPT_KEY:
        return node_config_string(
            cfg->key_file, sizeof(cfg->key_file), name, v);
    case NODE_OPT_KEYRING:
        return node_config_string(
            cfg->keyring_file, sizeof(cfg->keyring_file), name, v);
    case NODE_OPT_READY_FILE:
        return node_config_string(
            cfg->ready_file, sizeof(cfg->ready_file), name, v);
    case NODE_OPT_METRICS_LISTEN:
        if (strncmp(v, "http://", 7) != 0) {
            fprintf(stderr,
                "meridiand: --%s must be an http:// URL, e.g. "
                "http://127.0.0.1:9401\n",
                name);
            return -1;
        }
        return node_config_string(
            cfg->metrics_listen, sizeof(cfg->metrics_listen), name, v);
    case NODE_OPT_SHARDS:
        rv = node_config_range(name, v, false, 1, NODE_SHARDS_MAX, &n);
        cfg->shard_count = (uint32_t) n;
        break;
    case NODE_OPT_MAP_SIZE:
        rv = node_config_range(
            name, v, true, NODE_MAP_SIZE_MIN, UINT64_MAX >> 1, &n);
        cfg->map_size = n;
        break;
    case NODE_OPT_MAP_SIZE_MAX:
        rv = node_config_range(
            name, v, true, NODE_MAP_SIZE_MIN, UINT64_MAX >> 1, &n);
        cfg->map_size_max = n;
        break;
    case NODE_OPT_FRAME_SIZE_MAX:
        rv = node_config_range(
            name, v, true, PROTO_FRAME_SIZE_MIN, MRD_FRAME_SIZE_MAX, &n);
        cfg->frame_size_max = (uint32_t) n;
        break;
    case NODE_OPT_REPL_MEMORY:
        rv = node_config_range(
            name, v, true, NODE_REPL_MEMORY_MIN, NODE_REPL_MEMORY_MAX, &n);
        cfg->repl_memory = n;
        break;
    case NODE_OPT_IDEM_WINDOW:
        rv = node_config_range(name, v, false, 1, 365u * 86400u, &n);
        cfg->idem_window_s = (uint32_t) n;
        break;
    case NODE_OPT_CLOCK_AHEAD_MAX:
        rv = node_config_range(name, v, false, 1, NODE_CLOCK_AHEAD_MS_MAX, &n);
        cfg->clock_ahead_max_ms = (uint32_t) n;
        break;
    case NODE_OPT_REGION:
        return node_config_string(cfg->region, sizeof(cfg->region), name, v);
    case NODE_OPT_PEERS:
        return node_config_peers(cfg, name, v);
    case NODE_OPT_PEER_ADDRESS:
        return node_config_peer_address(cfg, name, v);
    case NODE_OPT_CLUSTER_ID:
        if (strlen(v) != 32
            || sodium_hex2bin(cfg->cluster_id, sizeof(cfg->cluster_id), v, 32,
                   NULL, NULL, NULL)
                != 0) {
            fprintf(stderr, "meridiand: --%s: '%s' is not 32 hex digits\n",
                name, v);
            return -1;
        }
        cfg->has_cluster_id = true;
        return 0;
    case NODE_OPT_WORKERS:
        rv = node_config_range(name, v, false, 4, NODE_WORKERS_MAX, &n);
        cfg->workers = (uint32_t) n;
        break;
    case NODE_OPT_READERS:
        rv = node_config_range(name, v, false, 1, NODE_READERS_MAX, &n);
        cfg->readers = (uint32_t) n;
        break;
    case NODE_OPT_LOG_LEVEL:
        cfg->log_level = node_config_level(v);
        if (cfg->log_level < 0) {
            fprintf(stderr,
                "meridiand: --log-level: '%s' is not one of "
                "debug, info, warn, error\n",
                v);
            return -1;
        }
        break;
    default:
        MRD_ASSERT(!"unhandled option");
    }
    return rv;
}

/* "peer_address": a list of "ID=URL" strings, or one string of them
 * joined by ','. The key's value replaces whatever came before it. */
static int
node_config_file_peer_address(
    struct node_config *cfg, const char *path, const char *key, json_t *value)
{
    size_t  i;
    json_t *item;

    cfg->peer_address_count = 0;
    if (json_is_string(value)) {
        return node_config_peer_address(
            cfg, "peer-address", json_string_value(value));
    }
    if (!json_is_array(value)) {
        fprintf(stderr,
            "meridiand: %s: '%s' must be a list of \"ID=URL\" strings or "
            "one string\n",
            path, key);
        return -1;
    }
    json_array_foreach(value, i, item)
    {
        if (!json_is_string(item)) {
            fprintf(stderr,
                "meridiand: %s: '%s' item %zu is not an \"ID=URL\" string\n",
                path, key, i);
            return -1;
        }
        if (node_config_peer_address(
                cfg, "peer-address", json_string_value(item))
            != 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads a JSON config: an object whose keys are flag names with '_'. */
static int
node_config_file(struct node_config *cfg, const char *path)
{
    json_error_t err;
    json_t      *root = json_load_file(path, 0, &err);
    const char  *key;
    json_t      *value;
    int          rv = -1;

    if (root == NULL || !json_is_object(root)) {
        fprintf(stderr, "meridiand: %s:%d: %s\n", path, err.line,
            root == NULL ? err.text : "the config must be a JSON object");
        goto fail;
    }
    json_object_foreach(root, key, value)
    {
        char flag[64] = "";
        int  opt      = -1;
        if (strlen(key) >= sizeof(flag)) {
            fprintf(stderr, "meridiand: %s: unknown key '%s'\n", path, key);
            goto fail;
        }
        for (size_t i = 0; key[i] != '\0' && i < sizeof(flag); i++) {
            flag[i]     = key[i] == '_' ? '-' : key[i];
            flag[i + 1] = '\0';
        }
        for (const struct option *o = node_options; o->name != NULL; o++) {
            if (strcmp(o->name, flag) == 0 && o->has_arg == required_argument
                && o->val != NODE_OPT_CONFIG) {
                opt = o->val;
            }
        }
        if (opt < 0) {
            fprintf(stderr, "meridiand: %s: unknown key '%s'\n", path, key);
            goto fail;
        }
        if (opt == NODE_OPT_PEER_ADDRESS) {
            if (node_config_file_peer_address(cfg, path, key, value) != 0) {
                goto fail;
            }
            continue;
        }
        char        num[32];
        const char *text = num;
        if (json_is_string(value)) {
            text = json_string_value(value);
        } else if (json_is_integer(value) && json_integer_value(value) >= 0) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                json_integer_value(value));
        } else {
            fprintf(stderr,
                "meridiand: %s: '%s' must be a string or a "
                "non-negative integer\n",
                path, key);
            goto fail;
        }
        if (node_config_set(cfg, opt, flag, text) != 0) {
            goto fail;
        }
    }
    rv = 0;
fail:
    json_decref(root);
    return rv;
}

static void
node_config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen, sizeof(cfg->listen), "tcp://127.0.0.1:7400");
    cfg->shard_count        = NODE_SHARDS_DEFAULT;
    cfg->map_size           = NODE_MAP_SIZE_DEFAULT;
    cfg->map_size_max       = NODE_MAP_SIZE_MAX_DEFAULT;
    cfg->frame_size_max     = NODE_FRAME_SIZE_DEFAULT;
    cfg->idem_window_s      = NODE_IDEM_WINDOW_S_DEFAULT;
    cfg->repl_memory        = NODE_REPL_MEMORY_DEFAULT;
    cfg->clock_ahead_max_ms = NODE_CLOCK_AHEAD_MS_DEFAULT;
    snprintf(cfg->region, sizeof(cfg->region), "local");
    cfg->workers   = NODE_WORKERS_DEFAULT;
    cfg->readers   = NODE_READERS_DEFAULT;
    cfg->log_level = NODE_LOG_INFO;
}

/* --peer-address: never this node, each id once. In static mode the
 * overrides take the place of the --peers URLs here; in topology mode
 * node_topology_peers() applies them to every version. */
static int
node_config_check_peer_addresses(struct node_config *cfg)
{
    for (uint32_t i = 0; i < cfg->peer_address_count; i++) {
        const struct node_peer *o = &cfg->peer_addresses[i];
        if (o->id == cfg->node_id) {
            fprintf(stderr,
                "meridiand: --peer-address: %" PRIu64 " is this node; "
                "it names how this node reaches a peer\n",
                o->id);
            return -1;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (cfg->peer_addresses[j].id == o->id) {
                fprintf(stderr,
                    "meridiand: --peer-address: node %" PRIu64
                    " is given twice\n",
                    o->id);
                return -1;
            }
        }
    }
    for (uint32_t i = 0; i < cfg->peer_count; i++) {
        struct node_peer *p   = &cfg->peers[i];
        const char       *url = node_peer_url(
                  cfg->peer_addresses, cfg->peer_address_count, p->id, p->url);
        if (url != p->url) {
            snprintf(p->url, sizeof(p->url), "%s", url);
        }
    }
    return 0;
}

/* Cross-setting checks, after everything is read. */
static int
node_config_check(struct node_config *cfg)
{
    if (cfg->node_id == 0) {
        fprintf(stderr, "meridiand: --node-id is required\n");
        return -1;
    }
    if (cfg->data_dir[0] == '\0') {
        fprintf(stderr, "meridiand: --data-dir is required\n");
        return -1;
    }
    if (cfg->map_size > cfg->map_size_max) {
        cfg->map_size_max = cfg->map_size;
    }
    if (cfg->topology_file[0] != '\0' && cfg->peer_count > 0) {
        fprintf(stderr,
            "meridiand: --peers and --topology exclude each "
            "other: the topology names the peers\n");
        return -1;
    }
    if (cfg->peer_count > 0 && !cfg->has_cluster_id) {
        fprintf(stderr,
            "meridiand: --peers needs --cluster-id: every node of "
            "a cluster must hash streams to the same shards\n");
        return -1;
    }
    if (node_config_check_peer_addresses(cfg) != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < cfg->peer_count; i++) {
        if (cfg->peers[i].id == cfg->node_id) {
            fprintf(stderr, "meridiand: --peers: %" PRIu64 " is this node\n",
                cfg->node_id);
            return -1;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (cfg->peers[j].id == cfg->peers[i].id) {
                fprintf(stderr, "meridiand: --peers: %" PRIu64 " twice\n",
                    cfg->peers[i].id);
                return -1;
            }
        }
    }
    return 0;
}

int
node_config_parse(struct node_config *cfg, int argc, char **argv)
{
    int  opt;
    bool peer_address_flag = false;

    node_config_defaults(cfg);
    /* The config file goes first whatever its place on the command line. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path != NULL && node_config_file(cfg, path) != 0) {
            return -1;
        }
    }
    optind = 1;
    opterr = 0;
    for (;;) {
        int idx = 0;
        opt     = getopt_long(argc, argv, "", node_options, &idx);
        if (opt == -1) {
            break;
        }
        if (opt == NODE_OPT_HELP) {
            node_config_usage(stdout);
            return 1;
        }
        if (opt == NODE_OPT_VERSION) {
            printf("meridiand %s (protocol %u)\n", MRD_VERSION_STRING,
                PROTO_VERSION);
            return 1;
        }
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "meridiand: unknown option or missing value: %s\n",
                argv[optind - 1]);
            fprintf(stderr, "Try 'meridiand --help'.\n");
            return -1;
        }
        if (opt == NODE_OPT_CONFIG) {
            continue;
        }
        if (opt == NODE_OPT_PEER_ADDRESS && !peer_address_flag) {
            /* Flags win over the file: the first replaces its list, the
             * others add to it. */
            cfg->peer_address_count = 0;
            peer_address_flag       = true;
        }
        if (node_config_set(cfg, opt, node_options[idx].name, optarg) != 0) {
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meridiand: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return node_config_check(cfg);
}
