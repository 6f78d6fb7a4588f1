/*
 * cmd_info.c: `meridianctl info STREAM` and `meridianctl node-info`.
 *
 * Both are one call each and print what the serving node answered: a
 * key/value list for people, one JSON object with --json. Positions and
 * versions are the serving node's (see meridian.h): another node of the same
 * cluster may number the same stream differently.
 */
#include "ctl.h"

#include <inttypes.h>

static int
ctl_info_json(const char *stream, const mrd_stream_info *info)
{
    json_t *obj = json_object();
    int     rv  = 0;

    rv |= json_object_set_new(obj, "stream", json_string(stream));
    rv |= json_object_set_new(obj, "exists", json_boolean(info->exists));
    rv |= json_object_set_new(obj, "version", json_integer(info->version));
    rv |= json_object_set_new(obj, "count", ctl_json_u64(info->count));
    rv |= json_object_set_new(obj, "shard", ctl_json_u64(info->shard));
    if (rv != 0) {
        json_decref(obj);
        obj = NULL;
    }
    return ctl_json_print(obj);
}

int
ctl_cmd_info(const struct ctl_args *args, mrd_client *client)
{
    const char     *stream = args->positional[0];
    mrd_stream_info info;

    int err = mrd_stream_info_get(client, stream, &info);
    if (err != MRD_OK) {
        return ctl_fail_mrd(err, "info %s", stream);
    }
    if (args->json) {
        return ctl_info_json(stream, &info);
    }
    printf("stream   %s\n", stream);
    printf("exists   %s\n", info.exists ? "yes" : "no");
    printf("version  %" PRId64 "%s\n", info.version,
        info.version < 0 ? " (no events)" : "");
    printf("events   %" PRIu64 "\n", info.count);
    printf("shard    %" PRIu32 "\n", info.shard);
    return CTL_EXIT_OK;
}

static int
ctl_node_info_json(const mrd_node_info *info, const char *cluster_hex)
{
    json_t *obj = json_object();
    int     rv  = 0;

    rv |= json_object_set_new(obj, "node_id", ctl_json_u64(info->node_id));
    rv |= json_object_set_new(obj, "cluster_id", json_string(cluster_hex));
    rv |= json_object_set_new(obj, "shards", ctl_json_u64(info->shard_count));
    rv |= json_object_set_new(
        obj, "protocol_version", ctl_json_u64(info->protocol_version));
    rv |= json_object_set_new(
        obj, "frame_size_max", ctl_json_u64(info->frame_size_max));
    rv |= json_object_set_new(obj, "version", json_string(info->version));
    if (rv != 0) {
        json_decref(obj);
        obj = NULL;
    }
    return ctl_json_print(obj);
}

int
ctl_cmd_node_info(const struct ctl_args *args, mrd_client *client)
{
    mrd_node_info info;
    char          cluster_hex[2 * sizeof(info.cluster_id) + 1];

    int err = mrd_node_info_get(client, &info);
    if (err != MRD_OK) {
        return ctl_fail_mrd(err, "node-info from %s", args->nodes[0]);
    }
    /* The library fills a fixed char array: make sure it ends. */
    info.version[sizeof(info.version) - 1] = '\0';
    for (size_t i = 0; i < sizeof(info.cluster_id); i++) {
        snprintf(cluster_hex + 2 * i, 3, "%02x", info.cluster_id[i]);
    }
    if (args->json) {
        return ctl_node_info_json(&info, cluster_hex);
    }
    printf("node id         %" PRIu64 "\n", info.node_id);
    printf("cluster id      %s\n", cluster_hex);
    printf("shards          %" PRIu32 "\n", info.shard_count);
    printf("protocol        %" PRIu32 "\n", info.protocol_version);
    printf("frame size max  %" PRIu32 " bytes\n", info.frame_size_max);
    printf("version         %s\n", info.version);
    return CTL_EXIT_OK;
}
