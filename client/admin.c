/*
 * admin.c: the operations calls (STATUS, FENCE, DIGEST) that meridianctl's
 * status, verify and drill commands are made of. Each is one call to the
 * first address that answers, like node info and stats.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(MRD_FENCE_MS_MAX == PROTO_FENCE_MS_MAX, "one limit");
_Static_assert(MRD_FENCE_PEERS_MAX == PROTO_FENCE_PEERS_MAX, "one limit");
_Static_assert(
    MRD_FENCE_LABEL_SIZE_MAX == PROTO_FENCE_LABEL_SIZE_MAX, "one limit");
_Static_assert(MRD_DIGEST_SIZE == PROTO_DIGEST_SUM_SIZE, "one limit");

/* A JSON document reply: a NUL-terminated copy into call->blob. */
static int
client_doc_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_str json;
    if (proto_doc_rep_decode(body, &json, NULL) != MRD_OK) {
        return MRD_EPROTO;
    }
    call->blob = malloc((size_t) json.len + 1);
    if (call->blob == NULL) {
        return MRD_ENOMEM;
    }
    memcpy(call->blob, json.ptr, json.len);
    call->blob[json.len] = '\0';
    call->blob_len       = json.len;
    return MRD_OK;
}

static int
client_digest_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_digest_rep rep;
    if (proto_digest_rep_decode(body, &rep, NULL) != MRD_OK) {
        return MRD_EPROTO;
    }
    call->out.digest.events = rep.events;
    memcpy(call->out.digest.sum, rep.sum, sizeof rep.sum);
    return MRD_OK;
}

/* Runs a call whose request is in call->req; hands over the document. */
static int
client_doc_call(struct client_call *call, int enc, char **json_out)
{
    int rv = client_call_exec(call, enc, NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    if (json_out != NULL) {
        *json_out  = (char *) call->blob;
        call->blob = NULL;
    }
    client_call_put(call);
    return MRD_OK;
}

int
mrd_node_status_get(mrd_client *client, char **json_out)
{
    struct client_call *call = NULL;

    if (client == NULL || json_out == NULL) {
        return MRD_EINVAL;
    }
    *json_out = NULL;
    int rv    = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_STATUS;
    call->decode = client_doc_decode;
    proto_empty_req_encode(&call->req, PROTO_T_STATUS);
    return client_doc_call(call, proto_buf_status(&call->req), json_out);
}

int
mrd_node_fence(mrd_client *client, const mrd_fence *fence, char **json_out)
{
    struct client_call    *call = NULL;
    struct proto_fence_req req  = { 0 };
    uint8_t               *ids  = NULL;

    if (json_out != NULL) {
        *json_out = NULL;
    }
    if (client == NULL || fence == NULL || fence->ms > MRD_FENCE_MS_MAX
        || fence->peer_count > MRD_FENCE_PEERS_MAX
        || (fence->peer_count > 0 && fence->peers == NULL)) {
        return MRD_EINVAL;
    }
    if (fence->peer_count > 0) {
        ids = malloc(fence->peer_count * 8);
        if (ids == NULL) {
            return MRD_ENOMEM;
        }
        for (size_t i = 0; i < fence->peer_count; i++) {
            mrd_be64_put(ids + 8 * i, fence->peers[i]);
        }
    }
    req.ms      = fence->ms;
    req.clients = fence->refuse_clients != 0;
    req.peers   = (struct proto_str) { (const char *) ids,
          (uint32_t) (fence->peer_count * 8) };
    if (fence->label != NULL) {
        size_t n = strnlen(fence->label, MRD_FENCE_LABEL_SIZE_MAX + 1);
        if (n > MRD_FENCE_LABEL_SIZE_MAX) {
            free(ids);
            return MRD_EINVAL;
        }
        req.label = (struct proto_str) { fence->label, (uint32_t) n };
    }
    int rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        free(ids);
        return rv;
    }
    call->type   = PROTO_T_FENCE;
    call->decode = client_doc_decode;
    int enc      = proto_fence_req_encode(&call->req, &req);
    free(ids);
    return client_doc_call(call, enc, json_out);
}

int
mrd_shard_digest_get(mrd_client *client, uint32_t shard, const uint64_t *cut,
    size_t cut_count, mrd_shard_digest *out)
{
    struct client_call     *call = NULL;
    struct proto_digest_req req  = { .shard = shard };
    uint8_t                *vv   = NULL;

    if (client == NULL || out == NULL || (cut == NULL && cut_count > 0)
        || cut_count > PROTO_VV_ENTRIES_MAX) {
        return MRD_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (cut != NULL) {
        vv = malloc(cut_count * 16 + 1);
        if (vv == NULL) {
            return MRD_ENOMEM;
        }
        for (size_t i = 0; i < cut_count; i++) {
            mrd_be64_put(vv + 16 * i, cut[2 * i]);
            mrd_be64_put(vv + 16 * i + 8, cut[2 * i + 1]);
        }
        req.has_cut = true;
        req.cut     = (struct proto_str) { (const char *) vv,
                (uint32_t) (cut_count * 16) };
    }
    int rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        free(vv);
        return rv;
    }
    call->type   = PROTO_T_DIGEST;
    call->decode = client_digest_decode;
    int enc      = proto_digest_req_encode(&call->req, &req);
    free(vv);
    rv = client_call_exec(call, enc, NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *out = call->out.digest;
    client_call_put(call);
    return MRD_OK;
}
