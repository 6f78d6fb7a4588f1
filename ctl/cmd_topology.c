/*
 * cmd_topology.c: `meridianctl topology SUBCOMMAND --file F ...`, which
 * shows a signed topology file or writes its next version.
 *
 * Every subcommand first opens F with topo_open_signed(): a file that does
 * not verify (tampered, damaged, truncated) is refused before anything is
 * shown or changed. A change is one builder of replication/topo.h on the
 * current version, signed with --admin-key, then checked the way a node
 * will check it (topo_accept() against the version it replaces) before it
 * is written, so the CLI never writes a file a node would refuse. The new
 * version goes to --out, or replaces F atomically. Nodes and regions are
 * named on the command line by their names; ids are shown, never typed.
 *
 * With --push a change (and `push` always) is handed to --node, which
 * spreads it by gossip, and then every node the new version names is asked
 * for its version until all run it or --wait runs out; the nodes that do
 * not are named. Otherwise nothing here talks to a node.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "topo.h"

_Static_assert(CTL_PUBLIC_KEY_SIZE == TOPO_KEY_SIZE, "one key size");
_Static_assert(CTL_SECRET_KEY_SIZE == TOPO_SECRET_KEY_SIZE, "one key size");

/* The current version and the next: ~95 KiB each, off the stack. */
static struct topo ctl_topo_cur, ctl_topo_next;

/* A change: applies itself to t and says what it did in what[]. */
typedef int (*ctl_topo_apply_fn)(struct topo *t, const struct ctl_args *args,
    char *what, size_t what_size, const char **why);

struct ctl_topo_sub {
    const char       *name;
    size_t            argc; /* positional arguments after the name */
    ctl_topo_apply_fn apply; /* NULL: show */
};

/* ------------------------------------------------------------- changes -- */

static int
ctl_topo_node(
    const struct topo *t, const char *name, uint32_t *id_out, const char **why)
{
    const struct topo_node *n = topo_node_by_name(t, name);
    if (n == NULL) {
        *why = "no node has this name";
        return MRD_ENOTFOUND;
    }
    *id_out = n->id;
    return MRD_OK;
}

static int
ctl_topo_region(const struct topo *t, const char *name, uint32_t *index_out,
    const char **why)
{
    if (topo_region_by_name(t, name, index_out) != MRD_OK) {
        *why = "no region has this name";
        return MRD_ENOTFOUND;
    }
    return MRD_OK;
}

static int
ctl_topo_add_node(struct topo *t, const struct ctl_args *args, char *what,
    size_t what_size, const char **why)
{
    uint8_t  pk[TOPO_KEY_SIZE];
    uint32_t region, id;

    /* The hex was checked with the command line. */
    int hex = sodium_hex2bin(pk, sizeof(pk), args->public_key,
        strlen(args->public_key), NULL, NULL, NULL);
    MRD_ASSERT(hex == 0);
    int rv = ctl_topo_region(t, args->region, &region, why);
    if (rv == MRD_OK) {
        rv = topo_node_add(
            t, args->positional[1], region, args->address, pk, &id, why);
    }
    if (rv == MRD_OK) {
        snprintf(what, what_size, "added node %s (id %" PRIu32 ") to %s",
            args->positional[1], id, args->region);
    }
    return rv;
}

/* remove-node, drain-node, undrain-node. */
static int
ctl_topo_node_change(struct topo *t, const struct ctl_args *args, char *what,
    size_t what_size, const char **why)
{
    const char *sub = args->positional[0];
    uint32_t    id;

    int rv = ctl_topo_node(t, args->positional[1], &id, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (strcmp(sub, "remove-node") == 0) {
        rv = topo_node_remove(t, id, why);
    } else if (strcmp(sub, "drain-node") == 0) {
        rv = topo_node_drain(t, id, why);
    } else {
        MRD_ASSERT(strcmp(sub, "undrain-node") == 0);
        rv = topo_node_undrain(t, id, why);
    }
    if (rv == MRD_OK) {
        snprintf(what, what_size, "node %s (id %" PRIu32 ") is now %s",
            args->positional[1], id,
            topo_node_state_name(topo_node_by_id(t, id)->state));
    }
    return rv;
}

/* drain-region, undrain-region. */
static int
ctl_topo_region_change(struct topo *t, const struct ctl_args *args, char *what,
    size_t what_size, const char **why)
{
    bool     drain = strcmp(args->positional[0], "drain-region") == 0;
    uint32_t region;

    int rv = ctl_topo_region(t, args->positional[1], &region, why);
    if (rv == MRD_OK) {
        rv = drain ? topo_region_drain(t, region, why)
                   : topo_region_undrain(t, region, why);
    }
    if (rv == MRD_OK) {
        snprintf(what, what_size, "region %s is now %s", args->positional[1],
            drain ? "draining" : "active");
    }
    return rv;
}

/* drain NAME, undrain NAME: a node of that name, else a region. */
static int
ctl_topo_drain_any(struct topo *t, const struct ctl_args *args, char *what,
    size_t what_size, const char **why)
{
    bool        drain = strcmp(args->positional[0], "drain") == 0;
    const char *name  = args->positional[1];
    uint32_t    region;

    if (topo_node_by_name(t, name) != NULL) {
        uint32_t id = topo_node_by_name(t, name)->id;
        int      rv = drain ? topo_node_drain(t, id, why)
                            : topo_node_undrain(t, id, why);
        if (rv == MRD_OK) {
            snprintf(what, what_size, "node %s (id %" PRIu32 ") is now %s",
                name, id, topo_node_state_name(topo_node_by_id(t, id)->state));
        }
        return rv;
    }
    if (topo_region_by_name(t, name, &region) != MRD_OK) {
        *why = "no node or region has this name";
        return MRD_ENOTFOUND;
    }
    int rv = drain ? topo_region_drain(t, region, why)
                   : topo_region_undrain(t, region, why);
    if (rv == MRD_OK) {
        snprintf(what, what_size, "region %s is now %s", name,
            drain ? "draining" : "active");
    }
    return rv;
}

/* set-rf REGION N, add-region NAME N: N was checked with the command line
 * (1..TOPO_RF_MAX). */
static int
ctl_topo_rf_change(struct topo *t, const struct ctl_args *args, char *what,
    size_t what_size, const char **why)
{
    bool     add = strcmp(args->positional[0], "add-region") == 0;
    uint64_t rf;
    uint32_t region;

    bool parsed = ctl_parse_u64(args->positional[2], 1, TOPO_RF_MAX, &rf);
    MRD_ASSERT(parsed);
    int rv = add
        ? topo_region_add(t, args->positional[1], (uint32_t) rf, &region, why)
        : ctl_topo_region(t, args->positional[1], &region, why);
    if (rv == MRD_OK && !add) {
        rv = topo_region_set_rf(t, region, (uint32_t) rf, why);
    }
    if (rv == MRD_OK) {
        snprintf(what, what_size,
            "%s region %s with %" PRIu64 " replica%s per shard",
            add ? "added" : "set", args->positional[1], rf, rf == 1 ? "" : "s");
    }
    return rv;
}

static const struct ctl_topo_sub ctl_topo_subs[] = {
    { "show", 0, NULL },
    { "push", 0, NULL }, /* special-cased: sends FILE to --node */
    { "fetch", 0, NULL }, /* special-cased: writes --node's to FILE */
    { "add-node", 1, ctl_topo_add_node },
    { "remove-node", 1, ctl_topo_node_change },
    { "drain-node", 1, ctl_topo_node_change },
    { "undrain-node", 1, ctl_topo_node_change },
    { "add-region", 2, ctl_topo_rf_change },
    { "drain-region", 1, ctl_topo_region_change },
    { "undrain-region", 1, ctl_topo_region_change },
    { "drain", 1, ctl_topo_drain_any },
    { "undrain", 1, ctl_topo_drain_any },
    { "set-rf", 2, ctl_topo_rf_change },
};

/* ---------------------------------------------------------------- show -- */

/* shards[i]: how many shards node i (by index) holds in its region. */
static void
ctl_topo_count(const struct topo *t, uint32_t *shards)
{
    uint32_t ids[TOPO_RF_MAX];

    memset(shards, 0, sizeof(uint32_t) * TOPO_NODES_MAX);
    for (uint32_t r = 0; r < t->region_count; r++) {
        for (uint32_t s = 0; s < t->shard_count; s++) {
            uint32_t n = topo_replicas(t, s, r, ids, TOPO_RF_MAX);
            for (uint32_t i = 0; i < n; i++) {
                shards[topo_node_by_id(t, ids[i]) - t->nodes]++;
            }
        }
    }
}

static uint32_t
ctl_topo_active(const struct topo *t, uint32_t region)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->node_count; i++) {
        n += t->nodes[i].region == region
            && t->nodes[i].state == TOPO_NODE_ACTIVE;
    }
    return n;
}

/* On stderr: regions that cannot hold rf copies of every shard. */
static void
ctl_topo_warn(const struct topo *t)
{
    for (uint32_t r = 0; r < t->region_count; r++) {
        uint32_t active = ctl_topo_active(t, r);
        if (active < t->regions[r].rf) {
            fprintf(stderr,
                "meridianctl: warning: region %s has %" PRIu32
                " active node%s for %" PRIu32
                " replica%s per shard: its shards have %" PRIu32
                " replica%s there\n",
                t->regions[r].name, active, active == 1 ? "" : "s",
                t->regions[r].rf, t->regions[r].rf == 1 ? "" : "s", active,
                active == 1 ? "" : "s");
        }
    }
}

static json_t *
ctl_topo_json(const struct topo *t, const uint32_t *shards)
{
    char    hex[TOPO_KEY_SIZE * 2 + 1], cid[TOPO_CLUSTER_ID_SIZE * 2 + 1];
    json_t *regions = json_array(), *nodes = json_array();

    for (uint32_t r = 0; r < t->region_count; r++) {
        json_array_append_new(regions,
            json_pack("{s:s, s:I, s:b, s:I}", "name", t->regions[r].name,
                "replicas_per_region", (json_int_t) t->regions[r].rf,
                "draining", t->regions[r].draining, "active_nodes",
                (json_int_t) ctl_topo_active(t, r)));
    }
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        sodium_bin2hex(hex, sizeof(hex), n->public_key, TOPO_KEY_SIZE);
        json_array_append_new(nodes,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I}", "id",
                (json_int_t) n->id, "name", n->name, "region",
                t->regions[n->region].name, "state",
                topo_node_state_name(n->state), "address", n->address,
                "public_key", hex, "shards", (json_int_t) shards[i]));
    }
    sodium_bin2hex(hex, sizeof(hex), t->admin_key, TOPO_KEY_SIZE);
    sodium_bin2hex(cid, sizeof(cid), t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    return json_pack("{s:s, s:o, s:I, s:s, s:I, s:o, s:o}", "cluster_id", cid,
        "version", ctl_json_u64(t->version), "shards",
        (json_int_t) t->shard_count, "admin_key", hex, "next_node_id",
        (json_int_t) t->next_node_id, "regions", regions, "nodes", nodes);
}

/* Column widths of the node table: the longest cell or header. */
struct ctl_topo_widths {
    int name, region, address;
};

static void
ctl_topo_nodes_print(const struct topo *t, const uint32_t *shards)
{
    struct ctl_topo_widths w = { 4, 6, 7 };
    char                   hex[TOPO_KEY_SIZE * 2 + 1];

    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        int                     a = (int) strlen(n->address);
        int                     r = (int) strlen(t->regions[n->region].name);
        w.name
            = (int) strlen(n->name) > w.name ? (int) strlen(n->name) : w.name;
        w.region  = r > w.region ? r : w.region;
        w.address = a > w.address ? a : w.address;
    }
    printf("%5s  %-*s  %-*s  %-8s  %6s  %-*s  %s\n", "ID", w.name, "NAME",
        w.region, "REGION", "STATE", "SHARDS", w.address, "ADDRESS",
        "PUBLIC KEY");
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        sodium_bin2hex(hex, sizeof(hex), n->public_key, TOPO_KEY_SIZE);
        printf("%5" PRIu32 "  %-*s  %-*s  %-8s  %6" PRIu32 "  %-*s  %s\n",
            n->id, w.name, n->name, w.region, t->regions[n->region].name,
            topo_node_state_name(n->state), shards[i], w.address, n->address,
            hex);
    }
}

static int
ctl_topo_show(const struct topo *t, const char *file, bool json)
{
    static uint32_t shards[TOPO_NODES_MAX];
    char            hex[TOPO_KEY_SIZE * 2 + 1];

    ctl_topo_count(t, shards);
    ctl_topo_warn(t);
    if (json) {
        return ctl_json_print(ctl_topo_json(t, shards));
    }
    sodium_bin2hex(hex, sizeof(hex), t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    printf("topology %s: version %" PRIu64 ", cluster %s\n", file, t->version,
        hex);
    sodium_bin2hex(hex, sizeof(hex), t->admin_key, TOPO_KEY_SIZE);
    printf("%" PRIu32 " shards, next node id %" PRIu32 ", admin key %s\n\n",
        t->shard_count, t->next_node_id, hex);
    int width = 6; /* "REGION" */
    for (uint32_t r = 0; r < t->region_count; r++) {
        int len = (int) strlen(t->regions[r].name);
        width   = len > width ? len : width;
    }
    printf("%-*s  %8s  %-8s  %6s\n", width, "REGION", "REPLICAS", "STATE",
        "ACTIVE");
    for (uint32_t r = 0; r < t->region_count; r++) {
        printf("%-*s  %8" PRIu32 "  %-8s  %6" PRIu32 "\n", width,
            t->regions[r].name, t->regions[r].rf,
            t->regions[r].draining ? "draining" : "active",
            ctl_topo_active(t, r));
    }
    printf("\n");
    ctl_topo_nodes_print(t, shards);
    return ctl_stdout_flush();
}

/* ------------------------------------------------------------- command -- */

/* The checks that need only the command line. */
static int
ctl_topo_usage(const struct ctl_args *args, const struct ctl_topo_sub *sub)
{
    bool add_opts = args->region != NULL || args->address != NULL
        || args->public_key != NULL;

    if (args->positional_count - 1 != sub->argc) {
        return ctl_fail_usage("topology %s takes %zu argument%s", sub->name,
            sub->argc, sub->argc == 1 ? "" : "s");
    }
    if (args->topo_file == NULL) {
        return ctl_fail_usage(
            "topology %s: --file FILE is required", sub->name);
    }
    if (sub->apply == NULL
        && (args->admin_key_file != NULL || args->out_path != NULL)) {
        return ctl_fail_usage(
            "topology %s takes no --admin-key or --out", sub->name);
    }
    bool push_sub = strcmp(sub->name, "push") == 0;
    if (args->push && sub->apply == NULL) {
        return ctl_fail_usage("topology %s takes no --push%s", sub->name,
            push_sub ? " (it pushes already)" : "");
    }
    if (args->wait_ms != 0 && !args->push && !push_sub) {
        return ctl_fail_usage(
            "topology %s: --wait goes with --push", sub->name);
    }
    if (sub->apply != NULL && args->admin_key_file == NULL) {
        return ctl_fail_usage(
            "topology %s: --admin-key FILE is required", sub->name);
    }
    if (sub->apply == ctl_topo_add_node) {
        uint8_t pk[TOPO_KEY_SIZE];
        size_t  len = 0;
        if (args->region == NULL || args->address == NULL
            || args->public_key == NULL) {
            return ctl_fail_usage("topology add-node needs --region, "
                                  "--address and --public-key");
        }
        if (strlen(args->public_key) != TOPO_KEY_SIZE * 2
            || sodium_hex2bin(pk, sizeof(pk), args->public_key,
                   strlen(args->public_key), NULL, &len, NULL)
                != 0
            || len != TOPO_KEY_SIZE) {
            return ctl_fail_usage(
                "--public-key: '%s' is not 64 hex digits", args->public_key);
        }
    } else if (add_opts) {
        return ctl_fail_usage("only 'topology add-node' takes --region, "
                              "--address and --public-key");
    }
    uint64_t rf;
    if (sub->apply == ctl_topo_rf_change
        && !ctl_parse_u64(args->positional[2], 1, TOPO_RF_MAX, &rf)) {
        return ctl_fail_usage("topology %s: '%s' is not a number of "
                              "replicas from 1 to %u",
            sub->name, args->positional[2], TOPO_RF_MAX);
    }
    return CTL_EXIT_OK;
}

/* Signs next, checks that a node holding cur would take it, writes it;
 * the signed bytes stay in buf (the caller's, initialised). */
static int
ctl_topo_write(
    const struct ctl_args *args, const uint8_t *sk, struct proto_buf *buf)
{
    const char *why = NULL;
    const char *path
        = args->out_path != NULL ? args->out_path : args->topo_file;

    int rv = topo_sign(&ctl_topo_next, sk, buf, &why);
    if (rv != MRD_OK) {
        return ctl_fail_why(rv, why, "sign with %s", args->admin_key_file);
    }
    /* What a node will do with it. A refusal here is our bug, not the
     * user's; say so rather than write a file every node would refuse. */
    static struct topo check;
    rv = topo_accept(&ctl_topo_cur, buf->data, buf->len, &check, &why);
    if (rv != MRD_OK) {
        return ctl_fail_why(MRD_EINTERNAL, why,
            "the new version would be refused (a bug in meridianctl)");
    }
    return ctl_file_replace(path, buf->data, buf->len);
}

/* How often topology --push asks the nodes for their version. */
#define CTL_TOPO_POLL_MS 250u

/* Hands the signed topology t to --node, then waits (--wait) until every
 * node of t that is not removed runs t's version or a newer one. *report:
 * {"node_version", "reached":[names], "missing":[{name, address,
 * version|error}], "ms"}. A ctl_exit code: CTL_EXIT_FAIL when the push was
 * refused or some node did not take it in time. */
static int
ctl_topo_spread(const struct ctl_args *args, mrd_client *client,
    const uint8_t *data, size_t len, const struct topo *t, json_t **report)
{
    static mrd_client *nodes[TOPO_NODES_MAX];
    static uint64_t    have[TOPO_NODES_MAX];
    static int         err[TOPO_NODES_MAX];
    uint64_t           node_version = 0;
    uint64_t wait_ms = args->wait_ms != 0 ? args->wait_ms : CTL_WAIT_MS_DEFAULT;
    uint64_t start   = mrd_now_mono_ms();

    *report = NULL;
    int e   = mrd_topology_push(client, data, len, &node_version);
    if (e == MRD_EVERSION) {
        /* Not newer than what the node runs: a push again (a retry, or
         * gossip got there first) is no error; the wait below still says
         * whether every node has it. */
        void  *blob = NULL;
        size_t blen = 0;
        char   detail[256];
        snprintf(detail, sizeof detail, "%s", mrd_errdetail());
        if (mrd_topology_get(client, t->version, &node_version, &blob, &blen)
                == MRD_OK
            && node_version >= t->version) {
            e = MRD_OK;
        } else {
            mrd_free(blob);
            return ctl_fail_why(
                MRD_EVERSION, detail, "topology push to %s", args->nodes[0]);
        }
        mrd_free(blob);
    }
    if (e != MRD_OK) {
        return ctl_fail_why(
            e, mrd_errdetail(), "topology push to %s", args->nodes[0]);
    }
    for (uint32_t i = 0; i < t->node_count; i++) {
        const char *addr[1] = { t->nodes[i].address };
        nodes[i]            = NULL;
        have[i]             = 0;
        err[i]              = MRD_OK;
        if (t->nodes[i].state == TOPO_NODE_REMOVED) {
            continue;
        }
        err[i] = ctl_client_open_on(
            args, addr, 1, NULL, CTL_NODE_TIMEOUT_MS, &nodes[i]);
    }
    bool all = false;
    while (!all) {
        all = true;
        for (uint32_t i = 0; i < t->node_count; i++) {
            if (nodes[i] == NULL || have[i] >= t->version) {
                all = all
                    && (nodes[i] != NULL
                        || t->nodes[i].state == TOPO_NODE_REMOVED);
                continue;
            }
            void  *signed_topo = NULL;
            size_t slen        = 0;
            err[i]             = mrd_topology_get(
                            nodes[i], t->version, &have[i], &signed_topo, &slen);
            mrd_free(signed_topo);
            all = all && err[i] == MRD_OK && have[i] >= t->version;
        }
        if (all || mrd_now_mono_ms() - start >= wait_ms) {
            break;
        }
        struct timespec ts = { 0, (long) CTL_TOPO_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
    json_t *reached = json_array();
    json_t *missing = json_array();
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        if (n->state == TOPO_NODE_REMOVED) {
            continue;
        }
        if (nodes[i] != NULL && have[i] >= t->version) {
            json_array_append_new(reached, json_string(n->name));
        } else {
            json_array_append_new(missing,
                json_pack("{s:s, s:s, s:o, s:s?}", "name", n->name, "address",
                    n->address, "version", ctl_json_u64(have[i]), "error",
                    err[i] != MRD_OK ? mrd_strerror(err[i]) : NULL));
        }
        mrd_client_close(nodes[i]);
        nodes[i] = NULL;
    }
    uint64_t ms   = mrd_now_mono_ms() - start;
    bool     done = json_array_size(missing) == 0;
    if (!args->json) {
        char took[32];
        ctl_duration_format(ms, took, sizeof took);
        if (done) {
            printf("version %" PRIu64 " reached every node (%zu) in %s\n",
                t->version, json_array_size(reached), took);
        } else {
            size_t  i;
            json_t *m;
            printf("version %" PRIu64 " reached %zu of %zu nodes in %s; not:\n",
                t->version, json_array_size(reached),
                json_array_size(reached) + json_array_size(missing), took);
            json_array_foreach(missing, i, m)
            {
                const char *why
                    = json_string_value(json_object_get(m, "error"));
                printf("  %s (%s): version %" PRIu64 "%s%s\n",
                    json_string_value(json_object_get(m, "name")),
                    json_string_value(json_object_get(m, "address")),
                    (uint64_t) json_integer_value(
                        json_object_get(m, "version")),
                    why != NULL ? ", " : "", why != NULL ? why : "");
            }
        }
    }
    *report = json_pack("{s:o, s:o, s:o, s:o}", "node_version",
        ctl_json_u64(node_version), "reached", reached, "missing", missing,
        "ms", ctl_json_u64(ms));
    return done ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

static int
ctl_topo_change(const struct ctl_args *args, const struct ctl_topo_sub *sub)
{
    uint8_t     sk[TOPO_SECRET_KEY_SIZE];
    char        what[512];
    const char *why = NULL;

    int rv = ctl_key_read(args->admin_key_file, sk);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    memcpy(&ctl_topo_next, &ctl_topo_cur, sizeof(ctl_topo_next));
    int err = sub->apply(&ctl_topo_next, args, what, sizeof(what), &why);
    if (err != MRD_OK) {
        sodium_memzero(sk, sizeof(sk));
        return ctl_fail_why(
            err, why, "topology %s %s", sub->name, args->positional[1]);
    }
    struct proto_buf signed_buf;
    proto_buf_init(&signed_buf, TOPO_SIGNED_SIZE_MAX);
    rv = ctl_topo_write(args, sk, &signed_buf);
    sodium_memzero(sk, sizeof(sk));
    if (rv != CTL_EXIT_OK) {
        proto_buf_fini(&signed_buf);
        return rv;
    }
    ctl_topo_warn(&ctl_topo_next);
    const char *path
        = args->out_path != NULL ? args->out_path : args->topo_file;
    if (!args->json) {
        printf(
            "%s: version %" PRIu64 ": %s\n", path, ctl_topo_next.version, what);
    }
    json_t *push = NULL;
    if (args->push) {
        mrd_client *c = NULL;
        rv            = ctl_client_open(args, &c);
        if (rv == CTL_EXIT_OK) {
            rv = ctl_topo_spread(args, c, signed_buf.data, signed_buf.len,
                &ctl_topo_next, &push);
        }
        mrd_client_close(c);
    }
    proto_buf_fini(&signed_buf);
    if (args->json) {
        int prv = ctl_json_print(json_pack("{s:s, s:o, s:s, s:s, s:o?}", "file",
            path, "version", ctl_json_u64(ctl_topo_next.version), "change",
            sub->name, "summary", what, "push", push));
        return prv != CTL_EXIT_OK ? prv : rv;
    }
    json_decref(push);
    int frv = ctl_stdout_flush();
    return frv != CTL_EXIT_OK ? frv : rv;
}

/* Writes --node's current topology to FILE, once it verifies: what the
 * cluster runs now, gossip included, to show or to change. */
static int
ctl_topo_fetch(const struct ctl_args *args, mrd_client *client)
{
    void       *data    = NULL;
    size_t      len     = 0;
    uint64_t    version = 0;
    const char *why     = NULL;

    int err = mrd_topology_get(client, 0, &version, &data, &len);
    if (err != MRD_OK) {
        return ctl_fail_why(
            err, mrd_errdetail(), "topology fetch from %s", args->nodes[0]);
    }
    err = topo_open_signed(data, len, &ctl_topo_cur, &why);
    if (err != MRD_OK) {
        mrd_free(data);
        return ctl_fail_why(err, why, "the topology %s sent", args->nodes[0]);
    }
    int rv = ctl_file_replace(args->topo_file, data, len);
    mrd_free(data);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (args->json) {
        return ctl_json_print(json_pack("{s:s, s:s, s:o}", "node",
            args->nodes[0], "file", args->topo_file, "version",
            ctl_json_u64(ctl_topo_cur.version)));
    }
    printf("%s: topology version %" PRIu64 " from %s\n", args->topo_file,
        ctl_topo_cur.version, args->nodes[0]);
    return ctl_stdout_flush();
}

/* Hands the (verified) file to --node, which checks it against its own
 * version and spreads it by gossip, and waits until every node has it. */
static int
ctl_topo_push(const struct ctl_args *args, mrd_client *client,
    const uint8_t *data, size_t len)
{
    json_t *report = NULL;
    int rv = ctl_topo_spread(args, client, data, len, &ctl_topo_cur, &report);

    if (report == NULL) {
        return rv; /* the push itself was refused: said already */
    }
    if (args->json) {
        int prv = ctl_json_print(json_pack("{s:s, s:o, s:O, s:O, s:O}", "node",
            args->nodes[0], "file_version", ctl_json_u64(ctl_topo_cur.version),
            "node_version", json_object_get(report, "node_version"), "reached",
            json_object_get(report, "reached"), "missing",
            json_object_get(report, "missing")));
        json_decref(report);
        return prv != CTL_EXIT_OK ? prv : rv;
    }
    json_decref(report);
    int frv = ctl_stdout_flush();
    return frv != CTL_EXIT_OK ? frv : rv;
}

int
ctl_cmd_topology(const struct ctl_args *args, mrd_client *client)
{
    const struct ctl_topo_sub *sub = NULL;
    uint8_t                   *data;
    size_t                     len;
    const char                *why = NULL;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(ctl_topo_subs); i++) {
        if (strcmp(ctl_topo_subs[i].name, args->positional[0]) == 0) {
            sub = &ctl_topo_subs[i];
        }
    }
    if (sub == NULL) {
        return ctl_fail_usage("topology: '%s' is not a subcommand (see "
                              "'meridianctl topology --help')",
            args->positional[0]);
    }
    int rv = ctl_topo_usage(args, sub);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (sodium_init() < 0) {
        return ctl_fail_mrd(MRD_EINTERNAL, "initialise libsodium");
    }
    /* Only fetch and push talk to a node: the others work on the file
     * and need no client key (the command is marked offline). */
    (void) client;
    mrd_client *c = NULL;
    if (strcmp(sub->name, "fetch") == 0) {
        rv = ctl_client_open(args, &c);
        if (rv == CTL_EXIT_OK) {
            rv = ctl_topo_fetch(args, c);
        }
        mrd_client_close(c);
        return rv;
    }
    rv = ctl_file_read(args->topo_file, TOPO_SIGNED_SIZE_MAX, &data, &len);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    int err = topo_open_signed(data, len, &ctl_topo_cur, &why);
    if (err != MRD_OK) {
        free(data);
        return ctl_fail_why(err, why, "%s", args->topo_file);
    }
    if (strcmp(sub->name, "push") == 0) {
        rv = ctl_client_open(args, &c);
        if (rv == CTL_EXIT_OK) {
            rv = ctl_topo_push(args, c, data, len);
        }
        mrd_client_close(c);
        free(data);
        return rv;
    }
    free(data);
    if (sub->apply == NULL) {
        return ctl_topo_show(&ctl_topo_cur, args->topo_file, args->json);
    }
    return ctl_topo_change(args, sub);
}
