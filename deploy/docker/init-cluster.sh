#!/bin/sh
# deploy/docker/init-cluster.sh: the compose `init` service (installed in
# the image as /usr/local/bin/meridian-init-cluster). Writes the configs,
# keys and signed topology of a three-region cluster (one node each:
# node-1 eu-west, node-2 us-east, node-3 ap-south) into the shared volume,
# once: a volume that already holds a cluster is left alone, so
# `docker compose up` can run it every time.
#
# `meridianctl cluster init` writes a topology whose node addresses are
# tcp://127.0.0.1:7401..7403, and the CLI has no command that changes a
# node's address (`meridianctl topology` can add, drain and remove nodes,
# not move them). So the topology stays as written and compose.yaml makes
# it work instead:
#   - each node listens on tcp://0.0.0.0:7401 in its own container
#     (meridiand --listen overrides the topology's address),
#   - each node dials its peers at their service names
#     (meridiand --peer-address 2=tcp://node-2:7401,...),
#   - the host publishes node-N's 7401 on 127.0.0.1:740N, which is exactly
#     the address the topology names, so clients on the host that route by
#     the topology reach the right node.
# Clients inside the compose network must name the nodes themselves
# (--node tcp://node-1:7401 ...); see deploy/README.md.
set -eu

dir=${MERIDIAN_CLUSTER_DIR:-/etc/meridian/cluster}
regions=${MERIDIAN_REGIONS:-eu-west,us-east,ap-south}
shards=${MERIDIAN_SHARDS:-16}

if [ -f "$dir/cluster.json" ]; then
    echo "init-cluster: $dir already holds a cluster; nothing to do"
    exit 0
fi

umask 077
meridianctl cluster init --dir "$dir" --regions "$regions" \
    --nodes-per-region 1 --base-port 7401 --shards "$shards"

# The configs and topology are not secret (the keys are 0600 already);
# the nodes run as the same user, so nothing else needs to change.
chmod 0644 "$dir"/node-*.json "$dir/topology.signed" "$dir/keyring" "$dir/cluster.json"
echo "init-cluster: wrote $dir; admin key: $dir/admin.key (keep it safe)"
