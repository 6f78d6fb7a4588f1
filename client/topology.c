/*
 * topology.c: reading and pushing the cluster's signed topology.
 *
 * The library moves the signed document as bytes; it does not need to
 * trust it to carry it. Tools decode and verify it with replication/topo.h.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

void
mrd_free(void *p)
{
    free(p);
}

static MRD_MUST_USE int
client_topo_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_str signed_topo;
    const char      *why = NULL;

    if (proto_topo_rep_decode(body, &call->topo_version, &signed_topo, &why)
        != MRD_OK) {
        return MRD_EPROTO;
    }
    if (signed_topo.len > 0) {
        call->blob = malloc(signed_topo.len);
        if (call->blob == NULL) {
            return MRD_ENOMEM;
        }
        memcpy(call->blob, signed_topo.ptr, signed_topo.len);
        call->blob_len = signed_topo.len;
    }
    return MRD_OK;
}

int
mrd_topology_get(mrd_client *client, uint64_t have, uint64_t *version_out,
    void **signed_out, size_t *len_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (signed_out != NULL) {
        *signed_out = NULL;
    }
    if (len_out != NULL) {
        *len_out = 0;
    }
    if (client == NULL || signed_out == NULL || len_out == NULL) {
        return MRD_EINVAL;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_TOPOLOGY;
    call->decode = client_topo_decode;
    rv = client_call_exec(call, proto_topo_req_encode(&call->req, have), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    if (version_out != NULL) {
        *version_out = call->topo_version;
    }
    *signed_out = call->blob;
    *len_out    = call->blob_len;
    call->blob  = NULL;
    client_call_put(call);
    return MRD_OK;
}

static MRD_MUST_USE int
client_topo_push_decode(struct client_call *call, struct proto_rd *body)
{
    const char *why = NULL;

    return proto_topo_push_rep_decode(body, &call->topo_version, &why) == MRD_OK
        ? MRD_OK
        : MRD_EPROTO;
}

int
mrd_topology_push(mrd_client *client, const void *signed_topo, size_t len,
    uint64_t *version_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (client == NULL || signed_topo == NULL || len == 0) {
        return MRD_EINVAL;
    }
    if (len > PROTO_TOPOLOGY_SIZE_MAX) {
        return MRD_ETOOBIG;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_TOPOLOGY_PUSH;
    call->decode = client_topo_push_decode;
    rv           = client_call_exec(call,
                  proto_topo_push_encode(
                      &call->req, (struct proto_str) { signed_topo, (uint32_t) len }),
                  NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    if (version_out != NULL) {
        *version_out = call->topo_version;
    }
    client_call_put(call);
    return MRD_OK;
}
