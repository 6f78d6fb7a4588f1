/*
 * args.c: meridianctl's command line.
 *
 * One pass over argv. Global options (--node, --timeout-ms, --json, --help,
 * --version) are accepted anywhere; the first word that is not an option
 * names the command; the command's own options are accepted after it. Both
 * `--opt value` and `--opt=value` work, an option value is taken as is even
 * when it starts with a dash (so `--data -` means stdin), and `--` ends the
 * options. Options are table-driven so that the parser, the duplicate check
 * and the "which command takes which option" rule live in one place. Every
 * option except --node and --meta may be given once: a CLI that writes to an
 * event store should refuse an ambiguous line rather than guess.
 *
 * Nothing here allocates: strings point into argv, and MERIDIAN_NODES is
 * copied into a fixed buffer in struct ctl_args before it is split.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

/* ------------------------------------------------------------ help texts -- */

static const char ctl_help_global[]
    = "Usage: meridianctl [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
      "\n"
      "The admin CLI of Meridian, a multi-region event store.\n"
      "\n"
      "Commands:\n"
      "%s" /* filled in from ctl_cmds by ctl_help_print() */
      "\n"
      "Global options (accepted before or after the command):\n"
      "  --node URL        a node to talk to, e.g. tcp://127.0.0.1:7400;\n"
      "                    repeat it to give several (tried in order).\n"
      "                    Default: $MERIDIAN_NODES (comma-separated),\n"
      "                    else " CTL_NODE_DEFAULT "\n"
      "  --timeout-ms N    deadline of each call, retries included\n"
      "                    (default 10000); for tail: how long to follow\n"
      "  --home-region R   in a cluster run from a signed topology, send\n"
      "                    each stream to a replica in region R first\n"
      "                    (default: $MERIDIAN_REGION, else no preference)\n"
      "  --key FILE        this client's secret key (meridianctl keygen);\n"
      "                    its public key must be in the nodes' keyring\n"
      "                    with a role. Default: $MERIDIAN_KEY. A lone\n"
      "                    node makes DATA_DIR/admin.key at first start\n"
      "  --keyring FILE    the cluster id and the node keys to trust: the\n"
      "                    nodes' DATA_DIR/identity files put together, a\n"
      "                    node's DATA_DIR/keyring, or `cluster init`'s\n"
      "                    DIR/keyring. Default: $MERIDIAN_KEYRING.\n"
      "                    Every connection is encrypted and authenticated\n"
      "  --json            machine output: one JSON object per command,\n"
      "                    one JSON object per line for events\n"
      "  -h, --help        show this help, or a command's help\n"
      "  --version         show meridianctl's version\n"
      "\n"
      "Exit status: 0 success, 1 the operation failed, 2 usage error.\n"
      "Run 'meridianctl COMMAND --help' for a command's options.\n";

static const char ctl_help_append[]
    = "Usage: meridianctl append STREAM --type TYPE [OPTIONS]\n"
      "\n"
      "Appends an event to STREAM and prints where it went: its dot\n"
      "(origin:seq, its global id), its position, the stream's new version\n"
      "and whether the node replayed a stored answer (idempotent retry).\n"
      "\n"
      "Options:\n"
      "  --type TYPE               event type, e.g. OrderPlaced (required)\n"
      "  --data STRING             the event's data; '-' reads stdin\n"
      "  --data-file PATH          read the data from PATH ('-': stdin)\n"
      "  --content-type CT         content type of the data\n"
      "                            (default application/octet-stream)\n"
      "  --expected-version V      any (default), no-stream, exists, or N:\n"
      "                            the stream's last position must be N\n"
      "  --idempotency-key KEY     a retry with the same key writes nothing\n"
      "                            and returns the first result\n"
      "  --correlation-id ID       metadata: correlation id\n"
      "  --causation-id ID         metadata: causation id\n"
      "  --meta KEY=VALUE          user metadata; repeat for more entries\n"
      "  --count N                 append N copies of the event in one\n"
      "                            atomic append (default 1, at most 1000)\n"
      "  --op SPEC                 an op on the stream's state, applied\n"
      "                            atomically with the event; repeat for\n"
      "                            more (at most 64). See below.\n"
      "  --ack LEVEL               local (default: durable on the node that\n"
      "                            took it), region (on --ack-count replicas\n"
      "                            of its region, itself included) or global\n"
      "                            (in --ack-count regions); the output says\n"
      "                            what was reached. Exit 1 with \"written,\n"
      "                            but...\" (MRD_EDURABILITY) when the level\n"
      "                            was not reached in time: the event IS\n"
      "                            written\n"
      "  --ack-count N             k replicas or n regions (default 2)\n"
      "  --ack-wait MS             how long the node waits for the level\n"
      "                            (default 5000, at most 60000)\n"
      "\n"
      "Without --data or --data-file the event has empty data.\n"
      "\n"
      "Ops: SPEC is PATH:TYPE:OP[:ARG] or PATH:delete. PATH is the field,\n"
      "or a path of up to 8 names through nested maps, joined by dots\n"
      "(cart.apple); names cannot hold '.' or ':' here. VALUE is the rest\n"
      "of SPEC and may hold ':'.\n"
      "  PATH:counter:+N, PATH:counter:-N, PATH:counter:inc:N\n"
      "                            add N (may be negative) to a counter\n"
      "  PATH:lww:set:VALUE        last-writer-wins register := VALUE\n"
      "  PATH:mvreg:set:VALUE      multi-value register := VALUE\n"
      "  PATH:flag:enable, PATH:flag:disable\n"
      "  PATH:set:add:VALUE, PATH:set:remove:VALUE\n"
      "  PATH:delete               remove the key, whatever its type\n"
      "An op on a field that holds another type fails the whole append\n"
      "(MRD_ETYPE) and nothing is written.\n"
      "\n"
      "Examples:\n"
      "  meridianctl append orders-1 --type OrderPlaced \\\n"
      "      --content-type application/json --data '{\"total\":42}'\n"
      "  meridianctl append cart-7 --type ItemAdded \\\n"
      "      --op cart.apple:counter:+2 --op tags:set:add:fruit\n";

static const char ctl_help_read[]
    = "Usage: meridianctl read STREAM [OPTIONS]\n"
      "\n"
      "Reads events of STREAM and prints them as a table: position, dot\n"
      "(origin:seq), time (from the event's HLC, UTC), type, content type\n"
      "and data (text up to 60 characters, else hex and size). With --json,\n"
      "prints one JSON object per event and line.\n"
      "\n"
      "Options:\n"
      "  --from N|end     first position to read (default: 0 forward,\n"
      "                   end backward)\n"
      "  --backward       read from the end towards the start\n"
      "  --count N        events to read at most (default 100; large counts\n"
      "                   are read in several calls)\n"
      "  --cursor TEXT    read the events a causal cursor has not seen, on\n"
      "                   any node of any region: '1;;' is the start of the\n"
      "                   stream; the output ends with the cursor to pass\n"
      "                   next time (JSON: a last line {\"cursor\": ...}).\n"
      "                   Not with --from or --backward\n"
      "\n"
      "A stream that does not exist reads as empty.\n";

static const char ctl_help_tail[]
    = "Usage: meridianctl tail STREAM [OPTIONS]\n"
      "\n"
      "Follows STREAM and prints its events as they arrive, one per line\n"
      "(one JSON object per line with --json). Ctrl-C ends it cleanly.\n"
      "\n"
      "Options:\n"
      "  --from N|end     first position to print (default end: only events\n"
      "                   appended from now on)\n"
      "  --limit N        exit after N events\n"
      "  --timeout-ms T   exit after T milliseconds in all (exit status 0)\n";

static const char ctl_help_info[]
    = "Usage: meridianctl info STREAM\n"
      "\n"
      "Prints whether STREAM exists, its version (last position, -1 when\n"
      "empty), its number of events and its shard, on the serving node.\n";

static const char ctl_help_state[]
    = "Usage: meridianctl state STREAM [FIELD]\n"
      "\n"
      "Prints STREAM's state (every field, or only FIELD): the stream\n"
      "version it reflects, its causal context (origin:seq per node) and\n"
      "one line per field with its type and value, nested maps indented.\n"
      "Values are shown as strings when they are printable UTF-8, else as\n"
      "0x and hex. Sets are {...}, multi-value registers [...] (every\n"
      "concurrent value). A stream without state shows no fields.\n"
      "\n"
      "With --json: {\"stream\", \"version\", \"context\": [{\"origin\",\n"
      "\"seq\"}], \"fields\": {NAME: {\"type\", \"value\"}}}, maps nested\n"
      "the same way. Two entries of one name (created concurrently with\n"
      "different types) are NAME and NAME#TYPE (#TYPE again while that\n"
      "key is taken by another field). Values that are not all\n"
      "text are hex strings, with \"encoding\": \"hex\".\n";

static const char ctl_help_node_info[]
    = "Usage: meridianctl node-info\n"
      "\n"
      "Prints the serving node's id, cluster id, number of shards, protocol\n"
      "version, largest frame and software version.\n";

static const char ctl_help_cluster[]
    = "Usage: meridianctl cluster init [--dir DIR] [--regions A,B,C]\n"
      "                                [--nodes-per-region N] [--base-port P]\n"
      "                                [--shards N] [--replicas-per-region R]\n"
      "\n"
      "Writes the configs of a local multi-region cluster into DIR (default\n"
      "meridian-cluster): one meridiand JSON config per node (its id, data\n"
      "dir and the topology file, which names everything else), all of one\n"
      "new cluster id, and DIR/cluster.json listing the nodes. Regions default "
      "to eu-west,us-east,ap-south, one\n"
      "node each (at most 8 regions and 16 nodes; region names are 1..63 of\n"
      "a-z, 0-9 and '-'); node i listens on 127.0.0.1 at base port + i - 1\n"
      "(default 7401); 16 shards.\n"
      "\n"
      "It also makes the cluster's keys and first topology: DIR/admin.key\n"
      "(the admin's secret key: it signs every topology change; keep it\n"
      "safe), DIR/node-N/node.key (each node's secret key), and\n"
      "DIR/topology.signed (version 1: the regions, R replicas of each\n"
      "shard per region, default N, and every node's name node-ID, address\n"
      "and public key, signed by the admin key). Keys are mode 0600.\n"
      "\n"
      "Starts nothing: it prints the meridiand commands that do. Refuses a\n"
      "DIR that already holds a cluster.json, and never overwrites a key.\n";

static const char ctl_help_keygen[]
    = "Usage: meridianctl keygen --out FILE\n"
      "\n"
      "Makes a new Ed25519 key pair, writes the secret key to FILE (128 hex\n"
      "digits, mode 0600; an existing FILE is never overwritten) and prints\n"
      "the public key (64 hex digits) on stdout. Use it for the admin key\n"
      "and for each node's key ('topology add-node --public-key').\n";

static const char ctl_help_topology[]
    = "Usage: meridianctl topology SUBCOMMAND [ARGS] --file FILE [OPTIONS]\n"
      "\n"
      "Shows a signed topology file, or writes its next version signed by\n"
      "the admin key. FILE must verify first: a tampered or damaged file is\n"
      "refused. A change writes --out, or replaces FILE atomically.\n"
      "\n"
      "Subcommands:\n"
      "  show                      the version, regions, and nodes with how\n"
      "                            many shards each holds (--json: all of it)\n"
      "  fetch                     writes the topology --node runs now to\n"
      "                            FILE (verified first)\n"
      "  push                      sends FILE to --node, which keeps it if\n"
      "                            the admin key signed it and it is newer,\n"
      "                            then spreads it to every node by gossip;\n"
      "                            waits until every node of FILE runs it\n"
      "                            (--wait) and names those that do not\n"
      "  add-node NAME --region REGION --address tcp://HOST:PORT\n"
      "           --public-key HEX a new node, ACTIVE, with the next id (ids\n"
      "                            are never reused); HEX is what\n"
      "                            'meridianctl keygen' printed for it\n"
      "  drain-node NAME           the node gets no shards; it stays a member\n"
      "  undrain-node NAME         back to ACTIVE\n"
      "  remove-node NAME          for good: it stays as a tombstone so its\n"
      "                            id is never reused; it never comes back\n"
      "                            (a rebuilt machine joins as a new node)\n"
      "  add-region NAME R         a new region with R replicas per shard\n"
      "  drain-region REGION       the region takes no client traffic but\n"
      "                            keeps replicating\n"
      "  undrain-region REGION     takes client traffic again\n"
      "  drain NAME, undrain NAME  the node of that name, else the region\n"
      "  set-rf REGION R           R (1..8) replicas of each shard there\n"
      "\n"
      "Options:\n"
      "  --file FILE               the signed topology (required)\n"
      "  --admin-key FILE          the admin's secret key (changes only;\n"
      "                            refused unless only its owner can read it)\n"
      "  --out FILE                write the new version here instead\n"
      "  --push                    (changes) then push it to --node and wait\n"
      "                            as `push` does: exit 1 unless every node\n"
      "                            runs the new version in time\n"
      "  --wait DURATION           how long push waits (default 30s)\n"
      "\n"
      "Every change adds 1 to the version. Nodes take a version only if the\n"
      "admin key signed it and it is newer than theirs.\n"
      "\n"
      "Example:\n"
      "  PK=$(meridianctl keygen --out node-4.key)\n"
      "  meridianctl topology add-node node-4 --region us-east \\\n"
      "      --address tcp://10.0.2.4:7401 --public-key $PK \\\n"
      "      --file topology.signed --admin-key admin.key\n";

static const char ctl_help_status[]
    = "Usage: meridianctl status [--watch] [--interval-ms N] [--json]\n"
      "\n"
      "Asks every node of the cluster (from the signed topology --node\n"
      "sends; without a topology, the --node list) for its status, all at\n"
      "once, and shows:\n"
      "  nodes by region: health (up; suspect: most nodes' SWIM doubts it;\n"
      "  down: no answer; joining: rebuilding from its peers, no appends\n"
      "  yet; drained: by the topology; fenced or cut-off: by a drill,\n"
      "  refusing clients or only some peers),\n"
      "  address, version, uptime, events held, metrics URL;\n"
      "  per shard, its replicas and each one's lag: the events the other\n"
      "  replicas hold that it lacks, and for how long the others have seen\n"
      "  it behind (seconds).\n"
      "A node that does not answer within 3 s is shown down.\n"
      "\n"
      "Options:\n"
      "  --watch          refresh until interrupted (Ctrl-C)\n"
      "  --interval-ms N  the refresh period (default 2000, 200..3600000)\n"
      "  --json           one JSON object (one a refresh with --watch)\n"
      "\n"
      "Exit status: 0 when every node answered, 1 when one did not.\n";

static const char ctl_help_verify[]
    = "Usage: meridianctl verify [--json]\n"
      "\n"
      "Checks that the replicas of every shard hold the same events. For each\n"
      "shard it takes the events every replica has reported (the meet of\n"
      "their version vectors: what is still in flight is not a difference),\n"
      "asks each replica for a digest of exactly those (count and an\n"
      "order-independent sum of BLAKE2b hashes of the records), and compares.\n"
      "Where digests differ it reads the shard's log from the replicas and\n"
      "names the first event that differs: which replica lacks it, or holds\n"
      "an extra one, with its stream, type and dot.\n"
      "\n"
      "Exit status: 0 when every replica agrees, 1 when one differs or does\n"
      "not answer.\n";

static const char ctl_help_drill[]
    = "Usage: meridianctl drill KIND --for DURATION [OPTIONS]\n"
      "\n"
      "Rehearses a failure on a running cluster and reports what it cost.\n"
      "\n"
      "Kinds:\n"
      "  region-outage --region R  the nodes of R are fenced: they stop\n"
      "                            replicating with the other regions and\n"
      "                            refuse clients, which fail over\n"
      "  node-loss --target NAME   one node is fenced the same way\n"
      "  partition --regions A,B   A and B stop replicating with each other;\n"
      "                            clients are still served on both sides\n"
      "\n"
      "A drill checks that every node answers, starts a workload (appends\n"
      "from every region; --clients 0 watches your own traffic instead),\n"
      "fences, shows progress every second, lifts the fence after --for,\n"
      "waits for the cluster to converge, then checks that every append it\n"
      "had acknowledged is on every replica. The report gives:\n"
      "  recovery point: the events that had not left the fenced side when\n"
      "    the fence went up (by dot, stream and type)\n"
      "  recovery time: how long the fenced side's clients took to get an\n"
      "    append through elsewhere (median and worst)\n"
      "  peak lag: the most events and seconds a replica was behind\n"
      "  convergence: how long after the fence lifted every replica agreed\n"
      "  lost: acknowledged appends missing anywhere (must be 0)\n"
      "and a verdict: PASS, or FAIL with the reason.\n"
      "\n"
      "The fence is set on every node with a time limit of --for plus a\n"
      "minute, so a drill whose meridianctl dies never leaves a region cut\n"
      "off. Operations calls (status, verify) work on fenced nodes.\n"
      "\n"
      "Options:\n"
      "  --for DURATION              how long the failure lasts (30s, 2m, "
      "...;\n"
      "                              required, at most 1h)\n"
      "  --clients N                 workload clients per region (default 2;\n"
      "                              0: no workload)\n"
      "  --converge-timeout DURATION how long to wait for convergence after\n"
      "                              (default 2m)\n"
      "  --json                      the report as one JSON object\n"
      "\n"
      "Exit status: 0 PASS, 1 FAIL (or a node did not answer), 2 usage.\n";

static const char ctl_help_help[]
    = "Usage: meridianctl help [COMMAND]\n"
      "\n"
      "Shows the help of meridianctl or of one command.\n";

/* help has no run(): main() never gets that far for it. */
const struct ctl_cmd ctl_cmds[] = {
    { "append", "append an event (or N copies, atomically) to a stream",
        ctl_help_append, CTL_OPTS_APPEND, 1, 0, ctl_cmd_append, false },
    { "read", "read a stream's events, forward or backward", ctl_help_read,
        CTL_OPTS_READ, 1, 0, ctl_cmd_read, false },
    { "tail", "follow a stream, printing events as they arrive", ctl_help_tail,
        CTL_OPTS_TAIL, 1, 0, ctl_cmd_tail, false },
    { "info", "show a stream's version, size and shard", ctl_help_info, 0, 1, 0,
        ctl_cmd_info, false },
    { "state", "show a stream's state (CRDT fields), or one field",
        ctl_help_state, 0, 1, 1, ctl_cmd_state, false },
    { "node-info", "show the serving node's identity and limits",
        ctl_help_node_info, 0, 0, 0, ctl_cmd_node_info, false },
    { "cluster", "init: write the configs of a local multi-region cluster",
        ctl_help_cluster, CTL_OPTS_CLUSTER, 1, 0, ctl_cmd_cluster, true },
    { "keygen", "make an Ed25519 key pair: secret to a file, public shown",
        ctl_help_keygen, CTL_OPTS_KEYGEN, 0, 0, ctl_cmd_keygen, true },
    { "topology", "show a signed topology, or sign its next version",
        ctl_help_topology, CTL_OPTS_TOPOLOGY, 1, 2, ctl_cmd_topology, true },
    { "status", "show nodes by region, health, and replica lag per shard",
        ctl_help_status, CTL_OPTS_STATUS, 0, 0, ctl_cmd_status, false },
    { "verify", "compare every shard's replicas by digest", ctl_help_verify, 0,
        0, 0, ctl_cmd_verify, false },
    { "drill", "rehearse a region outage, node loss or partition",
        ctl_help_drill, CTL_OPTS_DRILL, 1, 0, ctl_cmd_drill, false },
    { "help", "show this help or a command's help", ctl_help_help, 0, 0, 0,
        NULL, false },
    { NULL, NULL, NULL, 0, 0, 0, NULL, false },
};

void
ctl_help_print(FILE *f, const struct ctl_cmd *cmd)
{
    if (cmd != NULL) {
        fputs(cmd->help, f);
        return;
    }
    /* The command list is the only variable part: print around it rather
     * than pass a non-literal format string to printf. */
    const char *mark = strstr(ctl_help_global, "%s");
    MRD_ASSERT(mark != NULL);
    fwrite(ctl_help_global, 1, (size_t) (mark - ctl_help_global), f);
    for (const struct ctl_cmd *c = ctl_cmds; c->name != NULL; c++) {
        fprintf(f, "  %-11s %s\n", c->name, c->summary);
    }
    fputs(mark + 2, f);
}

/* --------------------------------------------------------------- options -- */

enum ctl_opt_id {
    CTL_OPT_NODE,
    CTL_OPT_TIMEOUT,
    CTL_OPT_HOME_REGION,
    CTL_OPT_KEY,
    CTL_OPT_KEYRING,
    CTL_OPT_JSON,
    CTL_OPT_HELP,
    CTL_OPT_VERSION,
    CTL_OPT_TYPE,
    CTL_OPT_DATA,
    CTL_OPT_DATA_FILE,
    CTL_OPT_CONTENT_TYPE,
    CTL_OPT_EXPECTED,
    CTL_OPT_IDEMPOTENCY,
    CTL_OPT_CORRELATION,
    CTL_OPT_CAUSATION,
    CTL_OPT_META,
    CTL_OPT_COUNT,
    CTL_OPT_FROM,
    CTL_OPT_BACKWARD,
    CTL_OPT_LIMIT,
    CTL_OPT_OP,
    CTL_OPT_DIR,
    CTL_OPT_REGIONS,
    CTL_OPT_PER_REGION,
    CTL_OPT_BASE_PORT,
    CTL_OPT_SHARDS,
    CTL_OPT_REPLICAS,
    CTL_OPT_OUT,
    CTL_OPT_FILE,
    CTL_OPT_ADMIN_KEY,
    CTL_OPT_REGION,
    CTL_OPT_ADDRESS,
    CTL_OPT_PUBLIC_KEY,
    CTL_OPT_ACK,
    CTL_OPT_ACK_COUNT,
    CTL_OPT_ACK_WAIT,
    CTL_OPT_CURSOR,
    CTL_OPT_WATCH,
    CTL_OPT_INTERVAL,
    CTL_OPT_FOR,
    CTL_OPT_TARGET,
    CTL_OPT_CLIENTS,
    CTL_OPT_CONVERGE,
    CTL_OPT_PUSH,
    CTL_OPT_WAIT,
};

struct ctl_opt {
    const char     *name; /* without the leading dashes */
    enum ctl_opt_id id;
    bool            has_value;
    bool            repeatable;
    uint32_t        cmds; /* CTL_OPTS_* bits; 0: global */
};

static const struct ctl_opt ctl_opts[] = {
    { "node", CTL_OPT_NODE, true, true, 0 },
    { "timeout-ms", CTL_OPT_TIMEOUT, true, false, 0 },
    { "home-region", CTL_OPT_HOME_REGION, true, false, 0 },
    { "key", CTL_OPT_KEY, true, false, 0 },
    { "keyring", CTL_OPT_KEYRING, true, false, 0 },
    { "json", CTL_OPT_JSON, false, false, 0 },
    { "help", CTL_OPT_HELP, false, true, 0 },
    { "version", CTL_OPT_VERSION, false, false, 0 },
    { "type", CTL_OPT_TYPE, true, false, CTL_OPTS_APPEND },
    { "data", CTL_OPT_DATA, true, false, CTL_OPTS_APPEND },
    { "data-file", CTL_OPT_DATA_FILE, true, false, CTL_OPTS_APPEND },
    { "content-type", CTL_OPT_CONTENT_TYPE, true, false, CTL_OPTS_APPEND },
    { "expected-version", CTL_OPT_EXPECTED, true, false, CTL_OPTS_APPEND },
    { "idempotency-key", CTL_OPT_IDEMPOTENCY, true, false, CTL_OPTS_APPEND },
    { "correlation-id", CTL_OPT_CORRELATION, true, false, CTL_OPTS_APPEND },
    { "causation-id", CTL_OPT_CAUSATION, true, false, CTL_OPTS_APPEND },
    { "meta", CTL_OPT_META, true, true, CTL_OPTS_APPEND },
    { "count", CTL_OPT_COUNT, true, false, CTL_OPTS_APPEND | CTL_OPTS_READ },
    { "from", CTL_OPT_FROM, true, false, CTL_OPTS_READ | CTL_OPTS_TAIL },
    { "backward", CTL_OPT_BACKWARD, false, false, CTL_OPTS_READ },
    { "limit", CTL_OPT_LIMIT, true, false, CTL_OPTS_TAIL },
    { "op", CTL_OPT_OP, true, true, CTL_OPTS_APPEND },
    { "dir", CTL_OPT_DIR, true, false, CTL_OPTS_CLUSTER },
    { "regions", CTL_OPT_REGIONS, true, false,
        CTL_OPTS_CLUSTER | CTL_OPTS_DRILL },
    { "nodes-per-region", CTL_OPT_PER_REGION, true, false, CTL_OPTS_CLUSTER },
    { "base-port", CTL_OPT_BASE_PORT, true, false, CTL_OPTS_CLUSTER },
    { "shards", CTL_OPT_SHARDS, true, false, CTL_OPTS_CLUSTER },
    { "replicas-per-region", CTL_OPT_REPLICAS, true, false, CTL_OPTS_CLUSTER },
    { "out", CTL_OPT_OUT, true, false, CTL_OPTS_KEYGEN | CTL_OPTS_TOPOLOGY },
    { "file", CTL_OPT_FILE, true, false, CTL_OPTS_TOPOLOGY },
    { "admin-key", CTL_OPT_ADMIN_KEY, true, false, CTL_OPTS_TOPOLOGY },
    { "region", CTL_OPT_REGION, true, false,
        CTL_OPTS_TOPOLOGY | CTL_OPTS_DRILL },
    { "address", CTL_OPT_ADDRESS, true, false, CTL_OPTS_TOPOLOGY },
    { "public-key", CTL_OPT_PUBLIC_KEY, true, false, CTL_OPTS_TOPOLOGY },
    { "ack", CTL_OPT_ACK, true, false, CTL_OPTS_APPEND },
    { "ack-count", CTL_OPT_ACK_COUNT, true, false, CTL_OPTS_APPEND },
    { "ack-wait", CTL_OPT_ACK_WAIT, true, false, CTL_OPTS_APPEND },
    { "cursor", CTL_OPT_CURSOR, true, false, CTL_OPTS_READ },
    { "watch", CTL_OPT_WATCH, false, false, CTL_OPTS_STATUS },
    { "interval-ms", CTL_OPT_INTERVAL, true, false, CTL_OPTS_STATUS },
    { "for", CTL_OPT_FOR, true, false, CTL_OPTS_DRILL },
    { "target", CTL_OPT_TARGET, true, false, CTL_OPTS_DRILL },
    { "clients", CTL_OPT_CLIENTS, true, false, CTL_OPTS_DRILL },
    { "converge-timeout", CTL_OPT_CONVERGE, true, false, CTL_OPTS_DRILL },
    { "push", CTL_OPT_PUSH, false, false, CTL_OPTS_TOPOLOGY },
    { "wait", CTL_OPT_WAIT, true, false, CTL_OPTS_TOPOLOGY },
};
_Static_assert(MRD_ARRAY_SIZE(ctl_opts) <= 64, "seen mask is 64 bits");

bool
ctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;

    /* strtoull accepts leading space and a sign ("-1" wraps): refuse both. */
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno                = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = (uint64_t) v;
    return true;
}

static int
ctl_parse_ack(struct ctl_args *args, const char *v)
{
    if (strcmp(v, "local") == 0) {
        args->ack = MRD_ACK_LOCAL;
    } else if (strcmp(v, "region") == 0) {
        args->ack = MRD_ACK_REGION;
    } else if (strcmp(v, "global") == 0) {
        args->ack = MRD_ACK_GLOBAL;
    } else {
        return ctl_fail_usage("--ack: '%s' is not local, region or global", v);
    }
    return CTL_EXIT_OK;
}

static int
ctl_parse_expected(struct ctl_args *args, const char *v)
{
    uint64_t n;

    if (strcmp(v, "any") == 0) {
        args->expected_version = MRD_EXPECT_ANY;
    } else if (strcmp(v, "no-stream") == 0) {
        args->expected_version = MRD_EXPECT_NO_STREAM;
    } else if (strcmp(v, "exists") == 0) {
        args->expected_version = MRD_EXPECT_EXISTS;
    } else if (ctl_parse_u64(v, 0, INT64_MAX, &n)) {
        args->expected_version = (int64_t) n;
    } else {
        return ctl_fail_usage("--expected-version: '%s' is not any, "
                              "no-stream, exists or a position",
            v);
    }
    return CTL_EXIT_OK;
}

static int
ctl_parse_meta(struct ctl_args *args, const char *v)
{
    const char *eq = strchr(v, '=');

    if (args->meta_count == MRD_META_ENTRIES_MAX) {
        return ctl_fail_usage(
            "--meta: at most %u entries", MRD_META_ENTRIES_MAX);
    }
    if (eq == NULL || eq == v) {
        return ctl_fail_usage("--meta: '%s' is not KEY=VALUE", v);
    }
    size_t key_size = (size_t) (eq - v);
    if (key_size > MRD_META_KEY_SIZE_MAX) {
        return ctl_fail_usage(
            "--meta: key longer than %u bytes", MRD_META_KEY_SIZE_MAX);
    }
    struct ctl_meta *m = &args->meta[args->meta_count++];
    memcpy(m->key, v, key_size);
    m->key[key_size] = '\0';
    m->value         = eq + 1;
    return CTL_EXIT_OK;
}

static int
ctl_parse_op(struct ctl_args *args, const char *v)
{
    if (args->op_count == MRD_STATE_OPS_MAX) {
        return ctl_fail_usage(
            "--op: at most %u ops per event", MRD_STATE_OPS_MAX);
    }
    int rv = ctl_op_parse(v, &args->ops[args->op_count]);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    args->op_count++;
    return CTL_EXIT_OK;
}

static int
ctl_parse_position(const char *opt, const char *v, uint64_t *out)
{
    if (strcmp(v, "end") == 0) {
        *out = MRD_POSITION_END;
        return CTL_EXIT_OK;
    }
    /* MRD_POSITION_END itself is spelt "end". */
    if (!ctl_parse_u64(v, 0, MRD_POSITION_END - 1, out)) {
        return ctl_fail_usage("--%s: '%s' is not a position or 'end'", opt, v);
    }
    return CTL_EXIT_OK;
}

static int
ctl_parse_count(const char *opt, const char *v, uint64_t *out)
{
    if (!ctl_parse_u64(v, 1, UINT64_MAX, out)) {
        return ctl_fail_usage("--%s: '%s' is not a number >= 1", opt, v);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------- applying options --
 */

static int
ctl_apply_global(struct ctl_args *args, enum ctl_opt_id id, const char *v)
{
    uint64_t n;

    if (id == CTL_OPT_NODE) {
        if (args->node_count == CTL_NODES_MAX) {
            return ctl_fail_usage("--node: at most %u nodes", CTL_NODES_MAX);
        }
        if (v[0] == '\0') {
            return ctl_fail_usage("--node: empty address");
        }
        args->nodes[args->node_count++] = v;
    } else if (id == CTL_OPT_TIMEOUT) {
        if (!ctl_parse_u64(v, 1, UINT32_MAX, &n)) {
            return ctl_fail_usage("--timeout-ms: '%s' is not a number of "
                                  "milliseconds >= 1",
                v);
        }
        args->timeout_ms = (uint32_t) n;
    } else if (id == CTL_OPT_HOME_REGION) {
        args->home_region = v;
    } else if (id == CTL_OPT_KEY) {
        args->key_file = v;
    } else if (id == CTL_OPT_KEYRING) {
        args->keyring_file = v;
    } else if (id == CTL_OPT_JSON) {
        args->json = true;
    } else if (id == CTL_OPT_HELP) {
        args->help = true;
    } else {
        MRD_ASSERT(id == CTL_OPT_VERSION);
        args->version = true;
    }
    return CTL_EXIT_OK;
}

/* The options of keygen, topology and cluster init's keys. */
static int
ctl_apply_topology(
    struct ctl_args *args, const struct ctl_opt *opt, const char *v)
{
    uint64_t n;

    if (opt->id == CTL_OPT_REPLICAS) {
        if (!ctl_parse_u64(v, 1, TOPO_RF_MAX, &n)) {
            return ctl_fail_usage("--%s: '%s' is not a number from 1 to %u",
                opt->name, v, TOPO_RF_MAX);
        }
        args->replicas_per_region = (uint32_t) n;
        return CTL_EXIT_OK;
    }
    if (v[0] == '\0') {
        return ctl_fail_usage("--%s: empty value", opt->name);
    }
    if (opt->id == CTL_OPT_OUT) {
        args->out_path = v;
    } else if (opt->id == CTL_OPT_FILE) {
        args->topo_file = v;
    } else if (opt->id == CTL_OPT_ADMIN_KEY) {
        args->admin_key_file = v;
    } else if (opt->id == CTL_OPT_REGION) {
        args->region = v;
    } else if (opt->id == CTL_OPT_ADDRESS) {
        args->address = v;
    } else {
        MRD_ASSERT(opt->id == CTL_OPT_PUBLIC_KEY);
        args->public_key = v;
    }
    return CTL_EXIT_OK;
}

static int
ctl_apply(struct ctl_args *args, const struct ctl_opt *opt, const char *v)
{
    switch (opt->id) {
    case CTL_OPT_NODE:
    case CTL_OPT_TIMEOUT:
    case CTL_OPT_HOME_REGION:
    case CTL_OPT_KEY:
    case CTL_OPT_KEYRING:
    case CTL_OPT_JSON:
    case CTL_OPT_HELP:
    case CTL_OPT_VERSION:
        return ctl_apply_global(args, opt->id, v);
    case CTL_OPT_TYPE:
        args->type = v;
        break;
    case CTL_OPT_DATA:
        args->data = v;
        break;
    case CTL_OPT_DATA_FILE:
        args->data_file = v;
        break;
    case CTL_OPT_CONTENT_TYPE:
        args->content_type = v;
        break;
    case CTL_OPT_EXPECTED:
        return ctl_parse_expected(args, v);
    case CTL_OPT_IDEMPOTENCY:
        args->idempotency_key = v;
        break;
    case CTL_OPT_CORRELATION:
        args->correlation_id = v;
        break;
    case CTL_OPT_CAUSATION:
        args->causation_id = v;
        break;
    case CTL_OPT_META:
        return ctl_parse_meta(args, v);
    case CTL_OPT_COUNT:
        args->count_set = true;
        return ctl_parse_count(opt->name, v, &args->count);
    case CTL_OPT_FROM:
        args->from_set = true;
        return ctl_parse_position(opt->name, v, &args->from);
    case CTL_OPT_BACKWARD:
        args->backward = true;
        break;
    case CTL_OPT_ACK:
        return ctl_parse_ack(args, v);
    case CTL_OPT_ACK_COUNT:
    case CTL_OPT_ACK_WAIT: {
        uint64_t n;
        bool     count = opt->id == CTL_OPT_ACK_COUNT;
        if (!ctl_parse_u64(
                v, 1, count ? MRD_ACK_COUNT_MAX : MRD_ACK_WAIT_MS_MAX, &n)) {
            return ctl_fail_usage("--%s: '%s' is not a number from 1 to %u",
                opt->name, v, count ? MRD_ACK_COUNT_MAX : MRD_ACK_WAIT_MS_MAX);
        }
        if (count) {
            args->ack_count = (uint32_t) n;
        } else {
            args->ack_wait_ms = (uint32_t) n;
        }
        break;
    }
    case CTL_OPT_CURSOR:
        args->cursor = v;
        break;
    case CTL_OPT_WATCH:
        args->watch = true;
        break;
    case CTL_OPT_PUSH:
        args->push = true;
        break;
    case CTL_OPT_TARGET:
        args->target = v;
        break;
    case CTL_OPT_INTERVAL: {
        uint64_t n;
        if (!ctl_parse_u64(v, CTL_WATCH_MS_MIN, CTL_WATCH_MS_MAX, &n)) {
            return ctl_fail_usage("--%s: '%s' is not a number from %u to %u",
                opt->name, v, CTL_WATCH_MS_MIN, CTL_WATCH_MS_MAX);
        }
        args->interval_ms = (uint32_t) n;
        break;
    }
    case CTL_OPT_CLIENTS: {
        uint64_t n;
        if (!ctl_parse_u64(v, 0, CTL_DRILL_CLIENTS_MAX, &n)) {
            return ctl_fail_usage("--%s: '%s' is not a number from 0 to %u",
                opt->name, v, CTL_DRILL_CLIENTS_MAX);
        }
        args->clients = (int) n;
        break;
    }
    case CTL_OPT_FOR:
    case CTL_OPT_CONVERGE:
    case CTL_OPT_WAIT: {
        uint64_t ms;
        uint64_t max
            = opt->id == CTL_OPT_FOR ? CTL_DRILL_FOR_MS_MAX : CTL_WAIT_MS_MAX;
        if (!ctl_parse_duration_ms(v, max, &ms) || ms == 0) {
            return ctl_fail_usage("--%s: '%s' is not a duration from 1ms to "
                                  "%" PRIu64 "s (e.g. 30s, 500ms, 2m)",
                opt->name, v, max / 1000);
        }
        if (opt->id == CTL_OPT_FOR) {
            args->for_ms = ms;
        } else if (opt->id == CTL_OPT_CONVERGE) {
            args->converge_ms = ms;
        } else {
            args->wait_ms = ms;
        }
        break;
    }
    case CTL_OPT_LIMIT:
        return ctl_parse_count(opt->name, v, &args->limit);
    case CTL_OPT_OP:
        return ctl_parse_op(args, v);
    case CTL_OPT_DIR:
        args->cluster_dir = v;
        return CTL_EXIT_OK;
    case CTL_OPT_REGIONS:
        args->regions = v;
        return CTL_EXIT_OK;
    case CTL_OPT_REPLICAS:
    case CTL_OPT_OUT:
    case CTL_OPT_FILE:
    case CTL_OPT_ADMIN_KEY:
    case CTL_OPT_REGION:
    case CTL_OPT_ADDRESS:
    case CTL_OPT_PUBLIC_KEY:
        return ctl_apply_topology(args, opt, v);
    case CTL_OPT_PER_REGION:
    case CTL_OPT_BASE_PORT:
    case CTL_OPT_SHARDS: {
        uint64_t n;
        uint64_t max = opt->id == CTL_OPT_BASE_PORT ? 65535 : 256;
        if (!ctl_parse_u64(v, 1, max, &n)) {
            return ctl_fail_usage(
                "--%s: '%s' is not a number from 1 to %" PRIu64, opt->name, v,
                max);
        }
        if (opt->id == CTL_OPT_PER_REGION) {
            args->nodes_per_region = (uint32_t) n;
        } else if (opt->id == CTL_OPT_BASE_PORT) {
            args->base_port = (uint32_t) n;
        } else {
            args->cluster_shards = (uint32_t) n;
        }
        return CTL_EXIT_OK;
    }
    }
    return CTL_EXIT_OK;
}

/* ---------------------------------------------------------------- parser -- */

/* Finds an option by name (name_size bytes of name, which may go on with
 * "=value"); NULL when there is none. */
static const struct ctl_opt *
ctl_opt_find(const char *name, size_t name_size)
{
    for (size_t i = 0; i < MRD_ARRAY_SIZE(ctl_opts); i++) {
        if (strlen(ctl_opts[i].name) == name_size
            && memcmp(ctl_opts[i].name, name, name_size) == 0) {
            return &ctl_opts[i];
        }
    }
    return NULL;
}

static const struct ctl_cmd *
ctl_cmd_find(const char *name)
{
    for (const struct ctl_cmd *c = ctl_cmds; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

/* Checks that opt may appear here and only once. */
static int
ctl_opt_check(
    const struct ctl_args *args, const struct ctl_opt *opt, uint64_t *seen)
{
    uint64_t bit = (uint64_t) 1 << (opt - ctl_opts);

    if (opt->cmds != 0 && args->cmd == NULL) {
        return ctl_fail_usage("--%s goes after the command", opt->name);
    }
    if (opt->cmds != 0 && (opt->cmds & args->cmd->opts) == 0) {
        return ctl_fail_usage(
            "'%s' takes no --%s option", args->cmd->name, opt->name);
    }
    if (!opt->repeatable && (*seen & bit) != 0) {
        return ctl_fail_usage("--%s given twice", opt->name);
    }
    *seen |= bit;
    return CTL_EXIT_OK;
}

/* Handles the option at argv[*i], and its value; moves *i past them. */
static int
ctl_parse_opt(
    struct ctl_args *args, int argc, char **argv, int *i, uint64_t *seen)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "-h") == 0) {
        args->help = true;
        return CTL_EXIT_OK;
    }
    if (arg[1] != '-') {
        return ctl_fail_usage("unknown option '%s'", arg);
    }
    const char *name = arg + 2;
    const char *eq   = strchr(name, '=');
    size_t      size = eq != NULL ? (size_t) (eq - name) : strlen(name);
    const struct ctl_opt *opt   = ctl_opt_find(name, size);
    const char           *value = eq != NULL ? eq + 1 : NULL;

    if (opt == NULL) {
        return ctl_fail_usage("unknown option '%.*s'", (int) size + 2, arg);
    }
    int rv = ctl_opt_check(args, opt, seen);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (!opt->has_value && value != NULL) {
        return ctl_fail_usage("--%s takes no value", opt->name);
    }
    if (opt->has_value && value == NULL) {
        if (*i + 1 >= argc) {
            return ctl_fail_usage("--%s needs a value", opt->name);
        }
        value = argv[++*i];
    }
    return ctl_apply(args, opt, value);
}

static int
ctl_parse_word(struct ctl_args *args, const char *word)
{
    if (args->cmd == NULL) {
        args->cmd = ctl_cmd_find(word);
        if (args->cmd == NULL) {
            return ctl_fail_usage("unknown command '%s'", word);
        }
        return CTL_EXIT_OK;
    }
    if (args->positional_count == CTL_POSITIONAL_MAX) {
        return ctl_fail_usage("too many arguments");
    }
    args->positional[args->positional_count++] = word;
    return CTL_EXIT_OK;
}

/* Splits MERIDIAN_NODES ("url1, url2") into args->nodes. */
static int
ctl_nodes_from_env(struct ctl_args *args)
{
    const char *env = getenv("MERIDIAN_NODES");

    if (env == NULL) {
        return CTL_EXIT_OK;
    }
    if (strlen(env) >= sizeof(args->env_nodes)) {
        return ctl_fail_usage("MERIDIAN_NODES is longer than %u bytes",
            CTL_ENV_NODES_SIZE_MAX - 1);
    }
    strcpy(args->env_nodes, env);
    char *save = NULL;
    for (char *tok = strtok_r(args->env_nodes, ", \t", &save); tok != NULL;
         tok       = strtok_r(NULL, ", \t", &save)) {
        if (args->node_count == CTL_NODES_MAX) {
            return ctl_fail_usage(
                "MERIDIAN_NODES: at most %u nodes", CTL_NODES_MAX);
        }
        args->nodes[args->node_count++] = tok;
    }
    return CTL_EXIT_OK;
}

/* The checks that need the whole line: positional counts, help's topic. */
static int
ctl_args_finish(struct ctl_args *args)
{
    if (args->cmd != NULL && args->cmd->run == NULL) { /* help [COMMAND] */
        args->help = true;
        args->cmd  = NULL;
        if (args->positional_count > 1) {
            return ctl_fail_usage("help takes one command name at most");
        }
        if (args->positional_count == 1) {
            args->cmd = ctl_cmd_find(args->positional[0]);
            if (args->cmd == NULL) {
                return ctl_fail_usage(
                    "unknown command '%s'", args->positional[0]);
            }
        }
    }
    if (args->help || args->version) {
        return CTL_EXIT_OK;
    }
    if (args->cmd == NULL) { /* a bare `meridianctl`: show what it does */
        ctl_help_print(stderr, NULL);
        return CTL_EXIT_USAGE;
    }
    size_t min = args->cmd->positional_count;
    size_t max = min + args->cmd->positional_optional;
    if (args->positional_count < min || args->positional_count > max) {
        if (min == max) {
            return ctl_fail_usage("'%s' takes %zu argument%s, got %zu",
                args->cmd->name, min, min == 1 ? "" : "s",
                args->positional_count);
        }
        return ctl_fail_usage("'%s' takes %zu to %zu arguments, got %zu",
            args->cmd->name, min, max, args->positional_count);
    }
    if (args->node_count == 0) {
        int rv = ctl_nodes_from_env(args);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
    }
    if (args->node_count == 0) {
        args->nodes[args->node_count++] = CTL_NODE_DEFAULT;
    }
    return CTL_EXIT_OK;
}

int
ctl_args_parse(struct ctl_args *args, int argc, char **argv)
{
    uint64_t seen      = 0;
    bool     opts_done = false;

    memset(args, 0, sizeof(*args));
    args->expected_version = MRD_EXPECT_ANY;
    args->nodes_per_region = 1;
    args->base_port        = 7401;
    args->cluster_shards   = 16;
    args->clients          = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int         rv;
        if (!opts_done && strcmp(arg, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && arg[0] == '-' && arg[1] != '\0') {
            rv = ctl_parse_opt(args, argc, argv, &i, &seen);
        } else {
            rv = ctl_parse_word(args, arg);
        }
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
    }
    return ctl_args_finish(args);
}
