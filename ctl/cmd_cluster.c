/*
 * cmd_cluster.c: `meridianctl cluster init`, which writes the configs of a
 * local multi-region cluster so that a user starts one in two commands.
 *
 * It makes one cluster id, gives every node an id, a region, a data dir and
 * a loopback port, and writes one meridiand JSON config per node (every node
 * lists every other as a peer: the static full mesh replication has today)
 * and a cluster.json that says what it made. It starts nothing: the
 * printed commands do, and scripts/quickstart runs them.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A local cluster: enough for drills, small enough for one machine. */
#define CTL_CLUSTER_REGIONS_MAX 8u
#define CTL_CLUSTER_NODES_MAX 16u
#define CTL_CLUSTER_PORT_DEFAULT 7401u

struct ctl_cluster_node {
    uint64_t    id;
    const char *region;
    char        url[64];
};

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

static int
ctl_cluster_write(const char *path, json_t *value)
{
    int rv = value != NULL && json_dump_file(value, path, JSON_INDENT(2)) == 0
        ? CTL_EXIT_OK
        : ctl_fail_sys("write %s", path);
    json_decref(value);
    return rv;
}

int
ctl_cmd_cluster(const struct ctl_args *args, mrd_client *client)
{
    (void) client;
    const char *dir
        = args->cluster_dir != NULL ? args->cluster_dir : "meridian-cluster";
    char        regions_buf[CTL_CLUSTER_REGIONS_MAX * 64];
    const char *regions[CTL_CLUSTER_REGIONS_MAX];
    uint32_t    region_count;

    if (strcmp(args->positional[0], "init") != 0) {
        return ctl_fail_usage(
            "cluster: '%s' is not a subcommand (init)", args->positional[0]);
    }
    snprintf(regions_buf, sizeof(regions_buf), "%s",
        args->regions != NULL ? args->regions : "eu-west,us-east,ap-south");
    int rv = ctl_cluster_regions(regions_buf, regions, &region_count);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    uint32_t per_region = args->nodes_per_region;
    uint32_t total      = per_region * region_count;
    if (total > CTL_CLUSTER_NODES_MAX) {
        return ctl_fail_usage(
            "cluster init: at most %u nodes in all", CTL_CLUSTER_NODES_MAX);
    }
    if (args->base_port + total > 65536u) {
        return ctl_fail_usage("--base-port: the ports run past 65535");
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return ctl_fail_sys("create %s", dir);
    }
    char cluster_file[4096];
    snprintf(cluster_file, sizeof(cluster_file), "%s/cluster.json", dir);
    struct stat sb;
    if (stat(cluster_file, &sb) == 0) {
        fprintf(stderr,
            "meridianctl: %s exists: a cluster was made here already; "
            "pick another --dir or remove it\n",
            cluster_file);
        return CTL_EXIT_FAIL;
    }

    uint8_t cid[16];
    char    cid_hex[33];
    randombytes_buf(cid, sizeof(cid));
    sodium_bin2hex(cid_hex, sizeof(cid_hex), cid, sizeof(cid));
    struct ctl_cluster_node nodes[CTL_CLUSTER_NODES_MAX];
    for (uint32_t i = 0; i < total; i++) {
        nodes[i].id     = i + 1;
        nodes[i].region = regions[i / per_region];
        snprintf(nodes[i].url, sizeof(nodes[i].url), "tcp://127.0.0.1:%u",
            args->base_port + i);
    }

    json_t *topo_nodes = json_array();
    for (uint32_t i = 0; i < total && rv == CTL_EXIT_OK; i++) {
        char peers[CTL_CLUSTER_NODES_MAX * 80] = "";
        for (uint32_t j = 0; j < total; j++) {
            if (j != i) {
                size_t at = strlen(peers);
                snprintf(peers + at, sizeof(peers) - at, "%s%" PRIu64 "@%s",
                    at > 0 ? "," : "", nodes[j].id, nodes[j].url);
            }
        }
        char data_dir[4096], path[4096];
        snprintf(data_dir, sizeof(data_dir), "%s/node-%" PRIu64 "-data", dir,
            nodes[i].id);
        snprintf(
            path, sizeof(path), "%s/node-%" PRIu64 ".json", dir, nodes[i].id);
        json_t *cfg = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I}",
            "node_id", (json_int_t) nodes[i].id, "data_dir", data_dir, "listen",
            nodes[i].url, "region", nodes[i].region, "cluster_id", cid_hex,
            "peers", peers, "shards", (json_int_t) args->cluster_shards);
        rv          = ctl_cluster_write(path, cfg);
        json_array_append_new(topo_nodes,
            json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t) nodes[i].id,
                "region", nodes[i].region, "address", nodes[i].url, "config",
                path));
    }
    if (rv == CTL_EXIT_OK) {
        rv = ctl_cluster_write(cluster_file,
            json_pack("{s:s, s:I, s:o}", "cluster_id", cid_hex, "shards",
                (json_int_t) args->cluster_shards, "nodes", topo_nodes));
    } else {
        json_decref(topo_nodes);
    }
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (args->json) {
        return ctl_json_print(json_load_file(cluster_file, 0, NULL));
    }
    printf("wrote %s and %u node configs (cluster %s, %u regions)\n"
           "start the nodes:\n",
        cluster_file, total, cid_hex, region_count);
    for (uint32_t i = 0; i < total; i++) {
        printf("  meridiand --config %s/node-%" PRIu64 ".json &   # %s, %s\n",
            dir, nodes[i].id, nodes[i].region, nodes[i].url);
    }
    return ctl_stdout_flush();
}
