/* Requests: decode, validate every field, check who may ask, handle.
 * Every request gets exactly one reply, made through server_reply(). */
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "export.h"
#include "keyid.h"
#include "keyops.h"
#include "names.h"
#include "purge.h"
#include "queries.h"
#include "refusals.h"
#include "requests.h"
#include "sign.h"

#define MAX_PAYLOAD_TYPE 256u
#define MAX_REASON 1024u
/* The client-chosen bytes of a Sign request (payload type, annotations) all
 * go into its audit entry, and the entry goes back in the reply's receipt
 * next to the signature, an inclusion proof (<= 64 x 32 bytes) and the
 * checkpoint note. Bounding them here keeps both the entry and the reply
 * under the 64 KiB frame limit, whatever max_annotations and
 * max_annotation_bytes say, so nothing is signed that cannot be answered. */
#define SIGN_REQUEST_BUDGET (24u * 1024u)

/* ---- Validators: every field, before anything else sees the message ---- */

static int invalid(char *msg, size_t n, const char *what) {
        snprintf(msg, n, "%s", what);
        return PROVSIGN__STATUS__INVALID_ARGUMENT;
}

/* An optional principal name ("" means none). */
static int check_principal(const char *p, char *msg, size_t n) {
        if (p[0] && !dispatch_name_valid(p))
                return invalid(msg, n, "invalid principal name");
        return PROVSIGN__STATUS__OK;
}

/* RFC 6838 section 4.2 restricted-name: 1..127 of ALPHA DIGIT ! # $ & - ^ _
 * . +, the first ALPHA or DIGIT. Returns the length taken, 0 if none. */
static size_t restricted_name(const char *s) {
        size_t n = 0;
        for (; s[n] && n < 127; n++) {
                char ch = s[n];
                bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                if (!alnum && (n == 0 || !strchr("!#$&-^_.+", ch)))
                        break;
        }
        return n;
}

/* payload_type is a media type (RFC 6838 type "/" subtype), optionally with
 * parameters "; name=value" whose names and values are restricted-names too
 * (no quoted strings). It reaches auditors' exports and spreadsheets, so
 * nothing else passes: no leading "=", "+", "-", "@", no spaces or quotes.
 * Empty means "not given". */
static bool media_type_valid(const char *s) {
        if (!*s)
                return true;
        size_t n = restricted_name(s);
        if (!n || s[n] != '/')
                return false;
        s += n + 1;
        if (!(n = restricted_name(s)))
                return false;
        s += n;
        while (*s) {
                while (*s == ' ')
                        s++;
                if (*s++ != ';')
                        return false;
                while (*s == ' ')
                        s++;
                if (!(n = restricted_name(s)) || s[n] != '=')
                        return false;
                s += n + 1;
                if (!(n = restricted_name(s)))
                        return false;
                s += n;
        }
        return true;
}

static int validate_sign(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        const Provsign__SignRequest *s = req->sign;
        if (check_principal(s->principal, msg, n) != PROVSIGN__STATUS__OK)
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        size_t want = proto_digest_length(s->digest_algorithm);
        if (!want) {
                snprintf(msg, n, "unknown digest algorithm %d", (int) s->digest_algorithm);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        if (s->digest.len != want) {
                snprintf(msg, n, "a %s digest is %zu bytes, not %zu", proto_digest_name(s->digest_algorithm), want,
                         s->digest.len);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        if (!dispatch_text_valid(s->payload_type, MAX_PAYLOAD_TYPE)) {
                snprintf(msg, n, "payload_type must be at most %u printable characters", MAX_PAYLOAD_TYPE);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        if (!media_type_valid(s->payload_type))
                return invalid(msg, n, "payload_type must be a media type (RFC 6838), e.g. application/vnd.in-toto+json");
        if (s->n_annotations > cfg->max_annotations) {
                snprintf(msg, n, "%zu annotations; at most %u allowed", s->n_annotations, cfg->max_annotations);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        size_t total = strlen(s->payload_type);
        for (size_t i = 0; i < s->n_annotations; i++)
                total += strlen(s->annotations[i]->key) + strlen(s->annotations[i]->value) + 8;
        if (total > SIGN_REQUEST_BUDGET) {
                snprintf(msg, n, "payload_type and annotations total %zu bytes; at most %u allowed", total,
                         SIGN_REQUEST_BUDGET);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        for (size_t i = 0; i < s->n_annotations; i++) {
                const Provsign__Annotation *an = s->annotations[i];
                size_t len = strlen(an->key) + strlen(an->value);
                if (!an->key[0] || len > cfg->max_annotation_bytes ||
                    !dispatch_text_valid(an->key, cfg->max_annotation_bytes) ||
                    !dispatch_text_valid(an->value, cfg->max_annotation_bytes)) {
                        snprintf(msg, n, "annotation %zu: key must be non-empty, printable, and key+value at most %u bytes",
                                 i, cfg->max_annotation_bytes);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                /* One key, one value: a JSON object (the export) keeps only
                 * one of two equal keys, so an entry must not have two.
                 * n is at most max_annotations: the quadratic scan is small. */
                for (size_t j = 0; j < i; j++)
                        if (strcmp(s->annotations[j]->key, an->key) == 0) {
                                snprintf(msg, n, "annotation %zu repeats the key of annotation %zu", i, j);
                                return PROVSIGN__STATUS__INVALID_ARGUMENT;
                        }
        }
        return PROVSIGN__STATUS__OK;
}

static int validate_get_public_key(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        const Provsign__GetPublicKeyRequest *g = req->get_public_key;
        if (!!g->principal[0] == !!g->keyid[0])
                return invalid(msg, n, "name exactly one of principal and keyid");
        if (check_principal(g->principal, msg, n) != PROVSIGN__STATUS__OK)
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        if (g->keyid[0] && !proto_keyid_hex_valid(g->keyid))
                return invalid(msg, n, "a key id is 64 lowercase hex digits");
        return PROVSIGN__STATUS__OK;
}

static int validate_list_keys(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        return check_principal(req->list_keys->principal, msg, n);
}

static int validate_get_key_bundle(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        return check_principal(req->get_key_bundle->principal, msg, n);
}

static int validate_rotate_key(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        if (!dispatch_name_valid(req->rotate_key->principal))
                return invalid(msg, n, "invalid principal name");
        if (req->rotate_key->algorithm && !proto_key_algorithm_name(req->rotate_key->algorithm)) {
                snprintf(msg, n, "unknown key algorithm %d", (int) req->rotate_key->algorithm);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        return PROVSIGN__STATUS__OK;
}

static int validate_revoke_key(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        const Provsign__RevokeKeyRequest *r = req->revoke_key;
        if (!proto_keyid_hex_valid(r->keyid) || !r->reason[0] || !dispatch_text_valid(r->reason, MAX_REASON) ||
            r->compromised_since_us < 0) {
                snprintf(msg, n,
                         "revoke needs a 64-hex key id, a printable reason of 1..%u bytes and a compromise time after 1970",
                         MAX_REASON);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        return PROVSIGN__STATUS__OK;
}

static int validate_destroy_key(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        if (!proto_keyid_hex_valid(req->destroy_key->keyid))
                return invalid(msg, n, "a key id is 64 lowercase hex digits");
        return PROVSIGN__STATUS__OK;
}

/* Export's and Find's filters are checked by their handlers (export.c),
 * after the role check: a caller without the auditor role hears
 * PERMISSION_DENIED whatever its filter says. */
static int validate_find(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        return check_principal(req->find->principal, msg, n);
}

static int validate_purge(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        (void) cfg;
        if (req->purge->before_us <= 0 || req->purge->before_us > (int64_t) agent_now_us())
                return invalid(msg, n, "purge needs a time after 1970 and not in the future");
        return PROVSIGN__STATUS__OK;
}

/* ---- The table: one row per request type ---- */

static const handler handlers[] = {
        { PROVSIGN__REQUEST__BODY_SIGN, "Sign", POLICY_SIGNER, sign_handle, validate_sign, .concurrent = true },
        { PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY, "GetPublicKey", POLICY_ANY, queries_handle_get_public_key,
          validate_get_public_key },
        { PROVSIGN__REQUEST__BODY_STATUS, "Status", POLICY_ANY, queries_handle_status, NULL },
        { PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE, "GetKeyBundle", POLICY_ANY, bundle_handle, validate_get_key_bundle },
        { PROVSIGN__REQUEST__BODY_GET_CHECKPOINT, "GetCheckpoint", POLICY_ANY, queries_handle_get_checkpoint, NULL },
        { PROVSIGN__REQUEST__BODY_GET_LOG_KEY, "GetLogKey", POLICY_ANY, queries_handle_get_log_key, NULL },
        { PROVSIGN__REQUEST__BODY_LIST_KEYS, "ListKeys", POLICY_OPERATOR, queries_handle_list_keys, validate_list_keys },
        { PROVSIGN__REQUEST__BODY_ROTATE_KEY, "RotateKey", POLICY_OPERATOR, keyops_handle_rotate, validate_rotate_key },
        { PROVSIGN__REQUEST__BODY_REVOKE_KEY, "RevokeKey", POLICY_OPERATOR, keyops_handle_revoke, validate_revoke_key },
        { PROVSIGN__REQUEST__BODY_DESTROY_KEY, "DestroyKey", POLICY_OPERATOR, keyops_handle_destroy,
          validate_destroy_key },
        { PROVSIGN__REQUEST__BODY_EXPORT, "Export", POLICY_AUDITOR, export_handle_export, NULL },
        { PROVSIGN__REQUEST__BODY_FIND, "Find", POLICY_AUDITOR, export_handle_find, validate_find },
        { PROVSIGN__REQUEST__BODY_PROOF, "Proof", POLICY_AUDITOR, queries_handle_proof, NULL },
        { PROVSIGN__REQUEST__BODY_GET_METRICS, "GetMetrics", POLICY_ANY, queries_handle_get_metrics, NULL },
        { PROVSIGN__REQUEST__BODY_PURGE, "Purge", POLICY_OPERATOR, purge_handle, validate_purge },
};

static const handler *row_of(const Provsign__Request *req) {
        for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
                if (handlers[i].body == req->body_case)
                        return &handlers[i];
        return NULL;
}

static int row_validate(const handler *h, const agent_config *cfg, const Provsign__Request *req, char *msg,
                        size_t n) {
        if (!h) {
                snprintf(msg, n, "request carries no known body (field %d)", (int) req->body_case);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        return h->validate ? h->validate(cfg, req, msg, n) : PROVSIGN__STATUS__OK;
}

int requests_validate(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n) {
        return row_validate(row_of(req), cfg, req, msg, n);
}

static const char *role_name(enum policy_access r) {
        return r == POLICY_OPERATOR ? "operator" : "auditor";
}

int requests_frame(agent *a, agent_conn *c, const uint8_t *payload, size_t len) {
        Provsign__Request *req = provsign__request__unpack(NULL, len, payload);
        if (!req) {
                char msg[64];
                snprintf(msg, sizeof msg, "undecodable request of %zu bytes; connection closed", len);
                refusals_record(a, server_conn_caller(c), "request", NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, msg);
                /* (closed once the pipelined jobs before it are answered) */
                server_reply(a, c, NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, true, "undecodable request");
                return SERVER_FRAME_TAKEN;
        }
        const handler *h = row_of(req);
        if (server_stopping(a)) {
                /* SIGTERM finishes what is in flight and starts nothing new.
                 * The refusal carries the request's id, so a pipelining
                 * client knows which request it refuses; the connection
                 * stays open (each later frame refused alike) while its jobs
                 * are out, and closes after this reply when none is. */
                server_conn_begin(c, req->request_id, false);
                server_reply(a, c, NULL, PROVSIGN__STATUS__UNAVAILABLE, server_conn_jobs(c) == 0,
                             "agent is shutting down");
                provsign__request__free_unpacked(req, NULL);
                return SERVER_FRAME_TAKEN;
        }
        /* Pipelining (docs/formats.md "Request ids"): a request with an id
         * whose row allows it runs alongside the others of its connection;
         * any other waits until they are answered, and then runs alone, so
         * replies without ids keep the order of their requests. */
        bool concurrent = h && h->concurrent && req->request_id;
        if (!concurrent && server_conn_jobs(c) > 0) {
                provsign__request__free_unpacked(req, NULL);
                return SERVER_FRAME_WAIT;
        }
        server_conn_begin(c, req->request_id, concurrent);
        char msg[256];
        int st = row_validate(h, a->config, req, msg, sizeof msg);
        if (st != PROVSIGN__STATUS__OK) {
                dispatch_refuse(a, c, h, st, "%s", msg);
                goto out;
        }
        if ((h->access == POLICY_OPERATOR || h->access == POLICY_AUDITOR) &&
            !policy_has_role(a->config, server_conn_caller(c), h->access)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__PERMISSION_DENIED, "%s needs the %s role; uid %u does not have it",
                                h->name, role_name(h->access), (unsigned) server_conn_caller(c)->uid);
                goto out;
        }
        if (h->handle(a, c, h, req))
                return SERVER_FRAME_TAKEN; /* the handler keeps req */
out:
        provsign__request__free_unpacked(req, NULL);
        return SERVER_FRAME_TAKEN;
}
