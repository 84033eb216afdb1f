/* GetKeyBundle: every principal key ever made, with its state and times,
 * as a DSSE envelope signed by the log key (payloadType
 * PROTO_KEY_BUNDLE_TYPE). The format is proto/keybundle.c's (one writer,
 * one reader). The JSON is built on the main thread from a snapshot of
 * the registry; the log key signs the PAE digest on a worker; the envelope
 * goes out in parts of one frame each (a server_stream), up to
 * PROTO_KEY_BUNDLE_MAX bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base64.h"
#include "bundle.h"
#include "dsse.h"
#include "frame.h"
#include "keybundle.h"
#include "log.h"
#include "names.h"
#include "timefmt.h"

/* Bundles being signed or sent at once: each holds up to
 * PROTO_KEY_BUNDLE_MAX bytes and costs a log-key signature, and any caller
 * may ask. Main thread only. */
#define BUNDLE_MAX_LIVE 4u
static unsigned live_bundles;

typedef struct bundle_job {
        agent_conn_job base;
        agent *agent;
        bool in_parts;          /* the client reads several frames */
        bool handed_on;         /* its live_bundles count moved to a stream */
        char *payload;          /* the bundle JSON */
        size_t payload_len;
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        size_t digest_len;
        uint8_t sig[KEYS_MAX_SIGNATURE];
        size_t sig_len;
        int r;
} bundle_job;

/* The agent's "not so" time (0) in the bundle's terms (null). */
static int64_t bundle_time(int64_t us) {
        return us ? us : PROTO_BUNDLE_NO_TIME;
}

int bundle_build(agent *a, const char *only, char **ret, size_t *ret_len) {
        struct proto_bundle b = { .origin = (char *) audit_origin(a->audit), .principal = (char *) only,
                                  .log_size = audit_committed(a->audit), .issued_us = (int64_t) agent_now_us() };
        agent_key *keys = NULL;
        size_t n = 0;
        int r = registry_snapshot(&a->registry, only, &keys, &n);
        if (r < 0)
                return r;
        memcpy(b.log_keyid, keys_key_id_hex(audit_log_key(a->audit)), sizeof b.log_keyid);
        b.keys = calloc(n ? n : 1, sizeof *b.keys);
        if (!b.keys) {
                free(keys);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const agent_key *k = &keys[i];
                b.keys[i] = (struct proto_bundle_key) {
                        .principal = (char *) k->principal, .generation = k->generation, .algorithm = k->algorithm,
                        .state = k->state, .created_us = bundle_time(k->created_us),
                        .retired_us = bundle_time(k->retired_us), .revoked_us = bundle_time(k->revoked_us),
                        .compromised_since_us = bundle_time(k->revoked_us ? k->compromised_since_us : 0),
                        .destroyed_us = bundle_time(k->destroyed_us), .reason = k->reason, .pem = k->pem,
                };
                memcpy(b.keys[i].keyid, k->keyid, sizeof b.keys[i].keyid);
        }
        b.n_keys = n;
        r = proto_bundle_format(&b, ret, ret_len);
        free(b.keys);
        free(keys);
        return r;
}

/* The envelope in parts of at most BUNDLE_PART bytes, one per frame
 * (GetKeyBundleResponse.more on all but the last). */
#define BUNDLE_PART (PROTO_FRAME_MAX - 1024u)

typedef struct bundle_stream {
        server_stream base;
        char *envelope;
        size_t len, off;
} bundle_stream;

static void bundle_stream_free(server_stream *s) {
        bundle_stream *st = (bundle_stream *) s;
        live_bundles--;
        free(st->envelope);
        free(st);
}

static int bundle_next(server_stream *s, uint8_t **ret, size_t *ret_len, bool *ret_last) {
        bundle_stream *st = (bundle_stream *) s;
        size_t n = st->len - st->off < BUNDLE_PART ? st->len - st->off : BUNDLE_PART;
        /* the part in place: NUL-terminated for the pack, then restored */
        char *part = st->envelope + st->off, saved = part[n];
        part[n] = '\0';
        st->off += n;
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__GetKeyBundleResponse br = PROVSIGN__GET_KEY_BUNDLE_RESPONSE__INIT;
        br.envelope = part;
        br.more = st->off < st->len;
        resp.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp.status = PROVSIGN__STATUS__OK;
        resp.request_id = s->request_id;
        resp.body_case = PROVSIGN__RESPONSE__BODY_KEY_BUNDLE;
        resp.key_bundle = &br;
        *ret_last = !br.more;
        int r = proto_frame_pack(&resp.base, ret, ret_len);
        part[n] = saved;
        return r;
}

static void bundle_job_free(bundle_job *job) {
        if (!job->handed_on)
                live_bundles--;
        free(job->payload);
        free(job);
}

/* The refusal of a bundle too big to send: the envelope's size, or (before
 * signing) a lower bound of it. */
static void refuse_size(agent *a, agent_conn *c, const handler *h, size_t len, size_t limit) {
        dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE,
                        "the key bundle (%zu bytes) is over %s (%zu bytes); ask for one principal's keys "
                        "(provsign key bundle --principal P)",
                        len, limit == PROTO_KEY_BUNDLE_MAX ? "the limit of verifiers" : "one frame, and this client "
                        "reads no more", limit);
}

static size_t size_limit(bool in_parts) {
        return in_parts ? PROTO_KEY_BUNDLE_MAX : BUNDLE_PART;
}

static void bundle_run(agent_job *j) {
        bundle_job *job = (bundle_job *) j;
        job->r = keys_sign(job->agent->store, (keys_key *) audit_log_key(job->agent->audit), job->digest,
                           job->digest_len, job->sig, &job->sig_len);
}

static bool bundle_complete(agent *a, agent_conn *c, agent_conn_job *j) {
        bundle_job *job = (bundle_job *) j;
        const handler h = { PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE, "GetKeyBundle", POLICY_ANY, NULL };
        if (!c)
                goto out;
        if (job->r < 0) {
                log_error("cannot sign the key bundle with the log key: %s", strerror(-job->r));
                dispatch_refuse(a, c, &h, PROVSIGN__STATUS__HSM_UNAVAILABLE,
                                "the token failed to sign the key bundle: %s", strerror(-job->r));
                goto out;
        }
        struct proto_dsse_sig sig = { .keyid = (char *) keys_key_id_hex(audit_log_key(a->audit)),
                                      .sig = job->sig,
                                      .sig_len = job->sig_len };
        char *envelope = NULL;
        int r = proto_dsse_envelope_format(PROTO_KEY_BUNDLE_TYPE, (const uint8_t *) job->payload, job->payload_len,
                                           &sig, 1, &envelope);
        if (r < 0) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot build the key bundle: %s",
                             strerror(-r));
                goto out;
        }
        size_t len = strlen(envelope);
        if (len > size_limit(job->in_parts)) {
                refuse_size(a, c, &h, len, size_limit(job->in_parts));
                free(envelope);
                goto out;
        }
        bundle_stream *st = calloc(1, sizeof *st);
        if (!st) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot send the key bundle: %s",
                             strerror(ENOMEM));
                free(envelope);
                goto out;
        }
        st->base.next = bundle_next;
        st->base.free = bundle_stream_free;
        st->base.request_id = server_conn_request_id(c);
        st->envelope = envelope;
        st->len = len;
        job->handed_on = true;
        server_stream_start(a, c, &st->base);
out:
        bundle_job_free(job);
        return true;
}

bool bundle_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const char *only = req->get_key_bundle->principal;
        if (only[0] && !agent_config_find_principal(a->config, only) && !registry_principal(&a->registry, only, false)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no principal \"%s\"", only);
                return false;
        }
        if (live_bundles >= BUNDLE_MAX_LIVE) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE, "%u key bundles are being sent; try again later",
                                live_bundles);
                return false;
        }
        bundle_job *job = calloc(1, sizeof *job);
        if (!job) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot build the key bundle: %s",
                             strerror(ENOMEM));
                return false;
        }
        live_bundles++;
        job->in_parts = req->get_key_bundle->in_parts;
        int r = bundle_build(a, only[0] ? only : NULL, &job->payload, &job->payload_len);
        /* the envelope is at least the payload's base64: refuse before signing */
        if (r >= 0 && PROTO_BASE64_LEN(job->payload_len) > size_limit(job->in_parts)) {
                refuse_size(a, c, h, PROTO_BASE64_LEN(job->payload_len), size_limit(job->in_parts));
                bundle_job_free(job);
                return false;
        }
        if (r >= 0) {
                r = proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, PROTO_KEY_BUNDLE_TYPE,
                                          (const uint8_t *) job->payload, job->payload_len, job->digest);
                if (r >= 0)
                        job->digest_len = (size_t) r;
        }
        if (r < 0) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot build the key bundle: %s",
                             strerror(-r));
                bundle_job_free(job);
                return false;
        }
        job->base.base.run = bundle_run;
        job->base.complete = bundle_complete;
        job->agent = a;
        server_submit(a, c, &job->base);
        return false;
}
