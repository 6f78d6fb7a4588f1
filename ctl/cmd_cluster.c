/*
 * cmd_cluster.c: `meridianctl cluster init`, which writes the configs of a
 * local multi-region cluster so that a user starts one in two commands.
 *
 * It makes one cluster id, gives every node an id, a region, a data dir and
 * a loopback port, and writes one meridiand JSON config per node (its id,
 * data dir and `topology`: the signed topology names its cluster, region,
 * peers, shards and listen address) and a cluster.json that says what it
 * made. It starts nothing: the printed commands do, and scripts/quickstart
 * runs them.
 *
 * It also makes the cluster's identity: an admin key (DIR/admin.key), one
 * key per node (DIR/node-N/node.key) and the first signed topology
 * (DIR/topology.signed, version 1). The node keys are for secure links
 * (issue 5); cluster.json lists them.
 * Everything is written before cluster.json, which marks a finished init;
 * keys are never overwritten, so an interrupted init is refused rather
 * than half redone.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "topo.h"

/* A local cluster: enough for drills, small enough for one machine. */
#define CTL_CLUSTER_REGIONS_MAX 8u
#define CTL_CLUSTER_NODES_MAX 16u
#define CTL_CLUSTER_PORT_DEFAULT 7401u

struct ctl_cluster_node {
    uint64_t    id;
    const char *region;
    uint32_t    region_index;
    char        url[64];
    char        name[32]; /* node-ID */
    char        pk_hex[CTL_PUBLIC_KEY_SIZE * 2 + 1];
};

_Static_assert(CTL_CLUSTER_REGIONS_MAX <= TOPO_REGIONS_MAX, "regions fit");
_Static_assert(CTL_CLUSTER_NODES_MAX <= TOPO_NODES_MAX, "nodes fit");

/* Splits --regions into names (modifies buf). */
static int
ctl_cluster_regions(char *buf, const char **names, uint32_t *count)
{
    *count = 0;
    for (char *save = NULL, *r = strtok_r(buf, ",", &save); r != NULL;
         r = strtok_r(NULL, ",", &save)) {
        if (*count == CTL_CLUSTER_REGIONS_MAX || strlen(r) >= 64) {
            return ctl_fail_usage("--regions: at most %u names of at most 63 "
                                  "characters",
                CTL_CLUSTER_REGIONS_MAX);
        }
        /* The topology's rule, so the name is the same everywhere. */
        if (!topo_name_valid(r, strlen(r))) {
            return ctl_fail_usage("--regions: '%s' is not a region name "
                                  "(a-z, 0-9 and '-', not first)",
                r);
        }
        for (uint32_t i = 0; i < *count; i++) {
            if (strcmp(names[i], r) == 0) {
                return ctl_fail_usage("--regions: '%s' twice", r);
            }
        }
        names[(*count)++] = r;
    }
    if (*count == 0) {
        return ctl_fail_usage("--regions: no region named");
    }
    return CTL_EXIT_OK;
}

/* Makes a key pair, writes the secret to path, returns the public key. */
static int
ctl_cluster_key(const char *path, uint8_t pk[CTL_PUBLIC_KEY_SIZE])
{
    uint8_t sk[CTL_SECRET_KEY_SIZE];

    crypto_sign_keypair(pk, sk);
    int rv = ctl_key_write(path, sk);
    sodium_memzero(sk, sizeof(sk));
    return rv;
}

/* Writes DIR/node-N/node.key for every node and adds the nodes to t. */
static int
ctl_cluster_node_keys(const char *dir, struct topo *t,
    struct ctl_cluster_node *nodes, uint32_t total)
{
    char        path[4096];
    uint8_t     pk[CTL_PUBLIC_KEY_SIZE];
    const char *why = NULL;
    uint32_t    id;

    for (uint32_t i = 0; i < total; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, nodes[i].name);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            return ctl_fail_sys("create %s", path);
        }
        snprintf(path, sizeof(path), "%s/%s/node.key", dir, nodes[i].name);
        int rv = ctl_cluster_key(path, pk);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
        sodium_bin2hex(
            nodes[i].pk_hex, sizeof(nodes[i].pk_hex), pk, sizeof(pk));
        rv = topo_node_add(t, nodes[i].name, nodes[i].region_index,
            nodes[i].url, pk, &id, &why);
        if (rv != MRD_OK) {
            return ctl_fail_why(
                rv, why, "add %s to the topology", nodes[i].name);
        }
        MRD_ASSERT(id == nodes[i].id); /* ids are handed out in order */
    }
    return CTL_EXIT_OK;
}

/* Writes DIR/admin.key, the node keys and DIR/topology.signed. */
static int
ctl_cluster_identity(const char *dir, const uint8_t cid[16], uint32_t shards,
    const char *const *regions, uint32_t region_count, uint32_t rf,
    struct ctl_cluster_node *nodes, uint32_t total)
{
    static struct topo t; /* ~95 KiB */
    struct proto_buf   buf;
    char               path[4096];
    uint8_t            admin_pk[CTL_PUBLIC_KEY_SIZE];
    uint8_t            admin_sk[CTL_SECRET_KEY_SIZE];
    const char        *why = NULL;

    crypto_sign_keypair(admin_pk, admin_sk);
    snprintf(path, sizeof(path), "%s/admin.key", dir);
    int rv = ctl_key_write(path, admin_sk);
    topo_init(&t, cid, shards, admin_pk);
    for (uint32_t r = 0; r < region_count && rv == CTL_EXIT_OK; r++) {
        int err = topo_region_add(&t, regions[r], rf, NULL, &why);
        if (err != MRD_OK) {
            rv = ctl_fail_why(err, why, "add region %s", regions[r]);
        }
    }
    if (rv == CTL_EXIT_OK) {
        rv = ctl_cluster_node_keys(dir, &t, nodes, total);
    }
    /* The first version is 1 however many steps built it: no one saw the
     * drafts. */
    t.version = 1;
    proto_buf_init(&buf, TOPO_SIGNED_SIZE_MAX);
    if (rv == CTL_EXIT_OK) {
        int err = topo_sign(&t, admin_sk, &buf, &why);
        rv      = err == MRD_OK ? CTL_EXIT_OK
                                : ctl_fail_why(err, why, "sign the topology");
    }
    if (rv == CTL_EXIT_OK) {
        snprintf(path, sizeof(path), "%s/topology.signed", dir);
        rv = ctl_file_create(path, buf.data, buf.len);
    }
    proto_buf_fini(&buf);
    sodium_memzero(admin_sk, sizeof(admin_sk));
    return rv;
}

static int
ctl_cluster_write(const char *path, json_t *value)
{
    int rv = value != NULL && json_dump_file(value, path, JSON_INDENT(2)) == 0
        ? CTL_EXIT_OK
        : ctl_fail_sys("write %s", path);
    json_decref(value);
    return rv;
}

/* Everything init decided before it writes anything. */
struct ctl_cluster_plan {
    const char             *dir;
    char                    regions_buf[CTL_CLUSTER_REGIONS_MAX * 64];
    const char             *regions[CTL_CLUSTER_REGIONS_MAX]; /* in buf */
    uint32_t                region_count;
    uint32_t                total; /* nodes */
    uint32_t                rf;
    uint32_t                shards;
    uint8_t                 cid[16];
    char                    cid_hex[33];
    struct ctl_cluster_node nodes[CTL_CLUSTER_NODES_MAX];
};

/* Checks the options and lays the cluster out; usage errors only. */
static int
ctl_cluster_plan(const struct ctl_args *args, struct ctl_cluster_plan *p)
{
    p->dir = args->cluster_dir != NULL ? args->cluster_dir : "meridian-cluster";
    snprintf(p->regions_buf, sizeof(p->regions_buf), "%s",
        args->regions != NULL ? args->regions : "eu-west,us-east,ap-south");
    int rv = ctl_cluster_regions(p->regions_buf, p->regions, &p->region_count);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    uint32_t per_region = args->nodes_per_region;
    p->total            = per_region * p->region_count;
    if (p->total > CTL_CLUSTER_NODES_MAX) {
        return ctl_fail_usage(
            "cluster init: at most %u nodes in all", CTL_CLUSTER_NODES_MAX);
    }
    if (args->base_port + p->total > 65536u) {
        return ctl_fail_usage("--base-port: the ports run past 65535");
    }
    /* Every node of a region holds every shard unless told otherwise. */
    p->rf = args->replicas_per_region;
    if (p->rf == 0) {
        p->rf = per_region < TOPO_RF_MAX ? per_region : TOPO_RF_MAX;
    }
    if (p->rf > per_region) {
        return ctl_fail_usage("--replicas-per-region %u is more than the %u "
                              "node%s per region",
            p->rf, per_region, per_region == 1 ? "" : "s");
    }
    p->shards = args->cluster_shards;
    randombytes_buf(p->cid, sizeof(p->cid));
    sodium_bin2hex(p->cid_hex, sizeof(p->cid_hex), p->cid, sizeof(p->cid));
    for (uint32_t i = 0; i < p->total; i++) {
        struct ctl_cluster_node *n = &p->nodes[i];
        n->id                      = i + 1;
        n->region                  = p->regions[i / per_region];
        n->region_index            = i / per_region;
        snprintf(
            n->url, sizeof(n->url), "tcp://127.0.0.1:%u", args->base_port + i);
        snprintf(n->name, sizeof(n->name), "node-%" PRIu64, n->id);
    }
    return CTL_EXIT_OK;
}

/* DIR/keyring: the cluster id and every node key, which is what a client
 * needs to trust the nodes (MERIDIAN_KEYRING); the nodes read it for client
 * keys (none yet: the admin key, trusted through the topology, is the first
 * client) and take their peers from the topology. */
static int
ctl_cluster_keyring(const struct ctl_cluster_plan *p, const char *path)
{
    char   text[CTL_CLUSTER_NODES_MAX * 96 + 512];
    size_t n = (size_t) snprintf(text, sizeof(text),
        "# Meridian keyring, written by `meridianctl cluster init`.\n"
        "# Clients: MERIDIAN_KEYRING=this file. Nodes: add client keys\n"
        "# here ('client NAME read|write|admin KEY [PREFIX...]'); they\n"
        "# re-read it when it changes.\n"
        "cluster %s\n",
        p->cid_hex);
    for (uint32_t i = 0; i < p->total && n < sizeof(text); i++) {
        n += (size_t) snprintf(text + n, sizeof(text) - n,
            "node %" PRIu64 " %s\n", p->nodes[i].id, p->nodes[i].pk_hex);
    }
    if (n >= sizeof(text)) {
        return ctl_fail_usage("cluster init: the keyring is too long");
    }
    return ctl_file_create(path, text, n);
}

/* One meridiand config per node, then cluster.json (last: it marks a
 * finished init). */
static int
ctl_cluster_configs(const struct ctl_cluster_plan *p, const char *cluster_file)
{
    const char *dir        = p->dir;
    json_t     *topo_nodes = json_array();
    int         rv         = CTL_EXIT_OK;
    char        topology[4096], keyring[4096];

    snprintf(topology, sizeof(topology), "%s/topology.signed", dir);
    snprintf(keyring, sizeof(keyring), "%s/keyring", dir);
    rv = ctl_cluster_keyring(p, keyring);
    for (uint32_t i = 0; i < p->total && rv == CTL_EXIT_OK; i++) {
        const struct ctl_cluster_node *n = &p->nodes[i];
        char                           data_dir[4096], path[4096], key[4096];
        snprintf(
            data_dir, sizeof(data_dir), "%s/node-%" PRIu64 "-data", dir, n->id);
        snprintf(path, sizeof(path), "%s/node-%" PRIu64 ".json", dir, n->id);
        /* The topology names the cluster, shards, region, peers and the
         * listen address: the node's config only says who it is, and where
         * its key and the cluster's client keyring are. */
        snprintf(key, sizeof(key), "%s/%s/node.key", dir, n->name);
        json_t *cfg = json_pack("{s:I, s:s, s:s, s:s, s:s}", "node_id",
            (json_int_t) n->id, "data_dir", data_dir, "topology", topology,
            "key", key, "keyring", keyring);
        rv          = ctl_cluster_write(path, cfg);
        json_array_append_new(topo_nodes,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "id",
                (json_int_t) n->id, "name", n->name, "region", n->region,
                "address", n->url, "config", path, "key", key, "public_key",
                n->pk_hex));
    }
    if (rv != CTL_EXIT_OK) {
        json_decref(topo_nodes);
        return rv;
    }
    char admin[4096];
    snprintf(admin, sizeof(admin), "%s/admin.key", dir);
    return ctl_cluster_write(cluster_file,
        json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:o}", "cluster_id",
            p->cid_hex, "shards", (json_int_t) p->shards, "replicas_per_region",
            (json_int_t) p->rf, "topology", topology, "admin_key", admin,
            "keyring", keyring, "nodes", topo_nodes));
}

static int
ctl_cluster_report(const struct ctl_cluster_plan *p, const char *cluster_file)
{
    printf("wrote %s and %u node configs (cluster %s, %u regions)\n"
           "wrote %s/topology.signed (version 1, %u replica%s of each shard "
           "per region), signed by %s/admin.key,\n"
           "and a key per node in %s/node-N/node.key; keep admin.key safe: "
           "it signs every topology change\n"
           "and is the first admin client (clients trust the nodes listed "
           "in %s/keyring)\n"
           "start the nodes:\n",
        cluster_file, p->total, p->cid_hex, p->region_count, p->dir, p->rf,
        p->rf == 1 ? "" : "s", p->dir, p->dir, p->dir);
    for (uint32_t i = 0; i < p->total; i++) {
        printf("  meridiand --config %s/node-%" PRIu64 ".json &   # %s, %s\n",
            p->dir, p->nodes[i].id, p->nodes[i].region, p->nodes[i].url);
    }
    printf("then, as the admin client:\n"
           "  export MERIDIAN_KEYRING=%s/keyring MERIDIAN_KEY=%s/admin.key\n",
        p->dir, p->dir);
    return ctl_stdout_flush();
}

int
ctl_cmd_cluster(const struct ctl_args *args, mrd_client *client)
{
    static struct ctl_cluster_plan plan;
    struct ctl_cluster_plan       *p = &plan;
    char                           cluster_file[4096];
    struct stat                    sb;

    (void) client;
    if (strcmp(args->positional[0], "init") != 0) {
        return ctl_fail_usage(
            "cluster: '%s' is not a subcommand (init)", args->positional[0]);
    }
    int rv = ctl_cluster_plan(args, p);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (mkdir(p->dir, 0755) != 0 && errno != EEXIST) {
        return ctl_fail_sys("create %s", p->dir);
    }
    snprintf(cluster_file, sizeof(cluster_file), "%s/cluster.json", p->dir);
    if (stat(cluster_file, &sb) == 0) {
        fprintf(stderr,
            "meridianctl: %s exists: a cluster was made here already; "
            "pick another --dir or remove it\n",
            cluster_file);
        return CTL_EXIT_FAIL;
    }
    rv = ctl_cluster_identity(p->dir, p->cid, p->shards, p->regions,
        p->region_count, p->rf, p->nodes, p->total);
    if (rv == CTL_EXIT_OK) {
        rv = ctl_cluster_configs(p, cluster_file);
    }
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (args->json) {
        return ctl_json_print(json_load_file(cluster_file, 0, NULL));
    }
    return ctl_cluster_report(p, cluster_file);
}
