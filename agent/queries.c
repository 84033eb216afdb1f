/* The requests that read the agent's state and answer at once (queries.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "entry.h"
#include "frame.h"
#include "index.h"
#include "merkle.h"
#include "metrics.h"
#include "queries.h"

/* ---- The log ---- */

bool queries_handle_get_checkpoint(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        char *note = NULL;
        uint64_t size = 0, from = req->get_checkpoint->from_size;
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][32];
        ProtobufCBinaryData hashes[PROTO_MERKLE_MAX_PROOF];
        size_t n = 0;
        int r = audit_checkpoint(a->audit, from, &note, &size, proof, &n);
        if (r == -EINVAL) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT, "from_size %llu is beyond the log's size",
                       (unsigned long long) from);
                return false;
        }
        if (r < 0) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "%s", strerror(-r));
                return false;
        }
        for (size_t i = 0; i < n; i++)
                hashes[i] = (ProtobufCBinaryData){ .len = 32, .data = proof[i] };
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__GetCheckpointResponse cr = PROVSIGN__GET_CHECKPOINT_RESPONSE__INIT;
        cr.checkpoint = note;
        cr.tree_size = size;
        cr.from_size = from;
        cr.consistency_proof = hashes;
        cr.n_consistency_proof = n;
        resp.body_case = PROVSIGN__RESPONSE__BODY_CHECKPOINT;
        resp.checkpoint = &cr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        free(note);
        return false;
}

bool queries_handle_get_log_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const keys_key *k = audit_log_key(a->audit);
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__GetLogKeyResponse lr = PROVSIGN__GET_LOG_KEY_RESPONSE__INIT;
        lr.origin = (char *) audit_origin(a->audit);
        lr.public_key_der.data = (uint8_t *) spki;
        lr.public_key_der.len = spki_len;
        lr.public_key_pem = (char *) keys_key_pem(k);
        lr.verifier_key = (char *) audit_verifier_key(a->audit);
        lr.keyid = (char *) keys_key_id_hex(k);
        resp.body_case = PROVSIGN__RESPONSE__BODY_LOG_KEY;
        resp.log_key = &lr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        return false;
}

/* ---- Keys ---- */

bool queries_handle_get_public_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__GetPublicKeyRequest *g = req->get_public_key;
        agent_key *k;
        if (g->principal[0]) {
                agent_principal_keys *pk = registry_principal(&a->registry, g->principal, false);
                if (!agent_config_find_principal(a->config, g->principal) && !pk) {
                        dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no principal \"%s\"", g->principal);
                        return false;
                }
                k = pk ? registry_active_key(pk) : NULL;
                if (!k) {
                        dispatch_refuse(a, c, h, PROVSIGN__STATUS__NO_ACTIVE_KEY, "principal \"%s\" has no active key",
                                        g->principal);
                        return false;
                }
        } else {
                /* Any key ever made, destroyed ones too: verifiers need them. */
                k = registry_find(&a->registry, g->keyid);
                if (!k) {
                        dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no key %s", g->keyid);
                        return false;
                }
        }
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__GetPublicKeyResponse gr = PROVSIGN__GET_PUBLIC_KEY_RESPONSE__INIT;
        Provsign__KeyInfo ki = PROVSIGN__KEY_INFO__INIT;
        registry_key_info(&a->registry, k, &ki);
        gr.key = &ki;
        gr.public_key_pem = k->pem;
        resp.body_case = PROVSIGN__RESPONSE__BODY_GET_PUBLIC_KEY;
        resp.get_public_key = &gr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        return false;
}

bool queries_handle_list_keys(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const char *only = req->list_keys->principal;
        if (only[0] && !agent_config_find_principal(a->config, only) &&
            !registry_principal(&a->registry, only, false)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no principal \"%s\"", only);
                return false;
        }
        agent_key *keys = NULL;
        size_t n = 0;
        Provsign__KeyInfo *infos = NULL;
        Provsign__KeyInfo **ptrs = NULL;
        if (registry_snapshot(&a->registry, only[0] ? only : NULL, &keys, &n) < 0 ||
            !(infos = calloc(n ? n : 1, sizeof *infos)) || !(ptrs = calloc(n ? n : 1, sizeof *ptrs))) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                provsign__key_info__init(&infos[i]);
                registry_key_info(&a->registry, &keys[i], &infos[i]);
                /* The list is for reading; public keys come from GetPublicKey. */
                infos[i].public_key_der.len = 0;
                infos[i].public_key_der.data = NULL;
                ptrs[i] = &infos[i];
        }
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__ListKeysResponse lr = PROVSIGN__LIST_KEYS_RESPONSE__INIT;
        lr.keys = ptrs;
        lr.n_keys = n;
        resp.body_case = PROVSIGN__RESPONSE__BODY_LIST_KEYS;
        resp.list_keys = &lr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
out:
        free(keys);
        free(infos);
        free(ptrs);
        return false;
}

/* ---- Metrics ---- */

bool queries_handle_get_metrics(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        (void) h;
        unsigned reopens = 0;
        bool token_up = keys_store_health(a->store, &reopens) >= 0;
        size_t threads, busy, queued;
        workers_load(a->workers, &threads, &busy, &queued);
        metrics_gauges g = {
                .log_entries = audit_committed(a->audit),
                .log_bytes = audit_bytes(a->audit),
                .connections = server_connections(a),
                .token_up = token_up,
                .token_reopens = reopens,
                .principals = a->config->n_principals,
                .workers = threads,
                .workers_busy = busy,
                .workers_queued = queued,
                .log_failed = audit_failed(a->audit),
                .uptime_s = (double) (agent_now_us() - a->started_us) / 1e6,
        };
        char *text = NULL;
        size_t len = 0;
        int r = metrics_render(&g, !req->get_metrics->prometheus_text, &text, &len);
        if (r < 0) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__GetMetricsResponse mr = PROVSIGN__GET_METRICS_RESPONSE__INIT;
        mr.text = text;
        resp.body_case = PROVSIGN__RESPONSE__BODY_METRICS;
        resp.metrics = &mr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        free(text);
        return false;
}

/* ---- Status ---- */

bool queries_handle_status(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const agent_config *cfg = a->config;
        const agent_caller *who = server_conn_caller(c);
        size_t np = cfg->n_principals;
        char **all = calloc(np ? np : 1, sizeof *all);
        char **mine = calloc(np ? np : 1, sizeof *mine);
        if (!all || !mine) {
                free(all);
                free(mine);
                {
                        server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                        return false;
                }
        }
        size_t nm = 0;
        for (size_t i = 0; i < np; i++) {
                all[i] = cfg->principals[i].name;
                if (policy_ids_match(&cfg->principals[i].ids, who))
                        mine[nm++] = cfg->principals[i].name;
        }
        char *roles[2];
        size_t nr = 0;
        if (policy_has_role(cfg, who, POLICY_OPERATOR))
                roles[nr++] = (char *) "operator";
        if (policy_has_role(cfg, who, POLICY_AUDITOR))
                roles[nr++] = (char *) "auditor";

        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__StatusResponse sr = PROVSIGN__STATUS_RESPONSE__INIT;
        sr.agent_version = (char *) PROVSIGN_VERSION;
        sr.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        sr.token_label = (char *) keys_store_token_label(a->store);
        sr.principals = all;
        sr.n_principals = np;
        sr.uptime_seconds = (agent_now_us() - a->started_us) / 1000000u;
        sr.caller_principals = mine;
        sr.n_caller_principals = nm;
        sr.caller_roles = roles;
        sr.n_caller_roles = nr;
        sr.log_origin = (char *) audit_origin(a->audit);
        sr.log_size = audit_committed(a->audit);
        sr.log_syncs = audit_syncs(a->audit);
        sr.log_failed = audit_failed(a->audit);
        resp.body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        resp.status_info = &sr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        free(all);
        free(mine);
        return false;
}

/* ---- Proof ---- */

bool queries_handle_proof(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        uint64_t seq = req->proof->seq, committed = audit_committed(a->audit);
        if (seq >= committed) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND,
                       "entry %" PRIu64 " is not in the log (it has %" PRIu64 " committed entries)", seq, committed);
                return false;
        }
        agent_logreader *rd = NULL;
        const uint8_t *entry;
        size_t n;
        proto_entry_head f;
        Provsign__Receipt receipt;
        int r = logreader_new(audit_dir_fd(a->audit), audit_index(a->audit), &rd);
        if (r >= 0)
                r = logreader_get(rd, seq, &entry, &n);
        if (r >= 0)
                r = proto_entry_peek(entry, n, &f);
        if (r >= 0)
                r = audit_receipt(a->audit, seq, f.time_us, entry, n, &receipt);
        if (r < 0) {
                logreader_free(rd);
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot prove entry %" PRIu64 ": %s", seq,
                             strerror(-r));
                return false;
        }
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__ProofResponse pr = PROVSIGN__PROOF_RESPONSE__INIT;
        pr.receipt = &receipt;
        resp.body_case = PROVSIGN__RESPONSE__BODY_PROOF;
        resp.proof = &pr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        receipt.leaf.data = NULL; /* borrowed from the reader */
        audit_receipt_done(&receipt);
        logreader_free(rd);
        return false;
}
