/* Requests: decode, validate every field, check who may ask, handle. Every
 * request gets exactly one reply, made through server_reply(). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "config.h"
#include "events.h"
#include "export.h"
#include "purge.h"
#include "frame.h"
#include "keyid.h"
#include "log.h"
#include "merkle.h"
#include "names.h"
#include "policy.h"
#include "ratelimit.h"
#include "refusals.h"
#include "bundle.h"
#include "dispatch.h"
#include "keyops.h"
#include "metrics.h"
#include "server.h"

#define MAX_NAME 64u
#define MAX_PAYLOAD_TYPE 256u
#define MAX_REASON 1024u
/* The client-chosen bytes of a Sign request (payload type, annotations) all
 * go into its audit entry, and the entry goes back in the reply's receipt
 * next to the signature, an inclusion proof (<= 64 x 32 bytes) and the
 * checkpoint note. Bounding them here keeps both the entry and the reply
 * under the 64 KiB frame limit, whatever max_annotations and
 * max_annotation_bytes say, so nothing is signed that cannot be answered. */
#define SIGN_REQUEST_BUDGET (24u * 1024u)

static void refuse_va(agent *a, agent_conn *c, const char *name, int status, const char *fmt, va_list ap)
        __attribute__((format(printf, 5, 0)));
static void refuse_va(agent *a, agent_conn *c, const char *name, int status, const char *fmt, va_list ap) {
        char msg[512];
        vsnprintf(msg, sizeof msg, fmt, ap);
        refusals_record(a, server_conn_caller(c), name, NULL, status, msg);
        server_reply(a, c, NULL, status, false, "%s", msg);
}

void dispatch_refuse(agent *a, agent_conn *c, const handler *h, int status, const char *fmt, ...) {
        va_list ap;
        /* metrics: a Sign refused before it reached a worker (sign_complete
         * counts the others, with their principal). */
        if (h && h->body == PROVSIGN__REQUEST__BODY_SIGN && h->handle)
                metrics_sign(NULL, status, -1);
        va_start(ap, fmt);
        refuse_va(a, c, h ? h->name : "request", status, fmt, ap);
        va_end(ap);
}

void dispatch_refuse_named(agent *a, agent_conn *c, const char *name, int status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        refuse_va(a, c, name, status, fmt, ap);
        va_end(ap);
}

static bool name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > MAX_NAME)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-'))
                        return false;
        return true;
}

/* Printable UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
 * no control characters: these strings go into protobuf string fields of the
 * audit log, which strict decoders elsewhere must be able to read. */
bool dispatch_text_valid(const char *s, size_t max) {
        size_t n = strlen(s);
        if (n > max)
                return false;
        const unsigned char *p = (const unsigned char *) s, *end = p + n;
        while (p < end) {
                unsigned c = *p;
                if (c < 0x80) {
                        if (c < 0x20 || c == 0x7f)
                                return false;
                        p++;
                        continue;
                }
                size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
                if (k == 0 || c > 0xf4 || (size_t) (end - p) < k)
                        return false;
                for (size_t i = 1; i < k; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
                    (c == 0xf4 && p[1] >= 0x90))
                        return false;
                p += k;
        }
        return true;
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

/* One place checks every field before any handler sees the message
 * (protobuf-c guarantees wire validity, not meaning). Returns a status. */
static int request_validate(const agent *a, const Provsign__Request *req, char *msg, size_t n) {
        const agent_config *cfg = a->config;
        switch (req->body_case) {
        case PROVSIGN__REQUEST__BODY_SIGN: {
                const Provsign__SignRequest *s = req->sign;
                if (s->principal[0] && !name_valid(s->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                size_t want = proto_digest_length(s->digest_algorithm);
                if (!want) {
                        snprintf(msg, n, "unknown digest algorithm %d", (int) s->digest_algorithm);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (s->digest.len != want) {
                        snprintf(msg, n, "a %s digest is %zu bytes, not %zu", proto_digest_name(s->digest_algorithm),
                                 want, s->digest.len);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (!dispatch_text_valid(s->payload_type, MAX_PAYLOAD_TYPE)) {
                        snprintf(msg, n, "payload_type must be at most %u printable characters", MAX_PAYLOAD_TYPE);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (!media_type_valid(s->payload_type)) {
                        snprintf(msg, n, "payload_type must be a media type (RFC 6838), e.g. application/vnd.in-toto+json");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
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
                                snprintf(msg, n,
                                         "annotation %zu: key must be non-empty, printable, and key+value at most %u bytes",
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
        case PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY: {
                const Provsign__GetPublicKeyRequest *g = req->get_public_key;
                if (!!g->principal[0] == !!g->keyid[0]) {
                        snprintf(msg, n, "name exactly one of principal and keyid");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (g->principal[0] && !name_valid(g->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (g->keyid[0] && !proto_keyid_hex_valid(g->keyid)) {
                        snprintf(msg, n, "a key id is 64 lowercase hex digits");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        }
        case PROVSIGN__REQUEST__BODY_LIST_KEYS:
                if (req->list_keys->principal[0] && !name_valid(req->list_keys->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE:
                if (req->get_key_bundle->principal[0] && !name_valid(req->get_key_bundle->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_ROTATE_KEY:
                if (!name_valid(req->rotate_key->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                if (req->rotate_key->algorithm && !proto_key_algorithm_name(req->rotate_key->algorithm)) {
                        snprintf(msg, n, "unknown key algorithm %d", (int) req->rotate_key->algorithm);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_REVOKE_KEY:
                if (!proto_keyid_hex_valid(req->revoke_key->keyid) || !req->revoke_key->reason[0] ||
                    !dispatch_text_valid(req->revoke_key->reason, MAX_REASON) ||
                    req->revoke_key->compromised_since_us < 0) {
                        snprintf(msg, n,
                                 "revoke needs a 64-hex key id, a printable reason of 1..%u bytes and a compromise "
                                 "time after 1970",
                                 MAX_REASON);
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_DESTROY_KEY:
                if (!proto_keyid_hex_valid(req->destroy_key->keyid)) {
                        snprintf(msg, n, "a key id is 64 lowercase hex digits");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_FIND:
                if (req->find->principal[0] && !name_valid(req->find->principal)) {
                        snprintf(msg, n, "invalid principal name");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_PURGE:
                if (req->purge->before_us <= 0 || req->purge->before_us > (int64_t) agent_now_us()) {
                        snprintf(msg, n, "purge needs a time after 1970 and not in the future");
                        return PROVSIGN__STATUS__INVALID_ARGUMENT;
                }
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY_STATUS:
        case PROVSIGN__REQUEST__BODY_GET_CHECKPOINT:
        case PROVSIGN__REQUEST__BODY_GET_LOG_KEY:
        case PROVSIGN__REQUEST__BODY_EXPORT:
        case PROVSIGN__REQUEST__BODY_PROOF:
        case PROVSIGN__REQUEST__BODY_GET_METRICS:
                return PROVSIGN__STATUS__OK;
        case PROVSIGN__REQUEST__BODY__NOT_SET:
        default:
                snprintf(msg, n, "request carries no known body (field %d)", (int) req->body_case);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
}

/* ---- Sign ----
 *
 * main thread: authorize, pick the key, hand a job to a worker
 * worker:      sign in the token, then append the sign entry to the log
 * main thread: reply once the entry is durable and checkpointed (the
 *              committer wakes us), with a receipt; until then the job is
 *              parked and the connection reads nothing more.
 * A signature whose entry cannot be logged never leaves the agent. */

typedef struct sign_job {
        agent_conn_job base;
        agent *agent;
        Provsign__Request *req;  /* owned: principal, digest, payload type, annotations */
        agent_principal_keys *keys;
        agent_key *key;          /* the key that signed (set by the worker) */
        char principal[MAX_NAME + 1];
        agent_caller who;        /* copy; exe owned */
        int status;              /* a refusal decided on the worker, with msg */
        char msg[256];
        int append_r;            /* audit log result */
        int64_t time_us;
        uint64_t start_ns;       /* request decoded (metrics: sign latency) */
        uint8_t *leaf;
        size_t leaf_len;
        uint8_t sig[KEYS_MAX_SIGNATURE];
        size_t sig_len;
} sign_job;

static void sign_job_free(sign_job *job) {
        provsign__request__free_unpacked(job->req, NULL);
        free(job->who.exe);
        free(job->leaf);
        free(job);
}

/* A rotation between choosing the key and logging the entry makes the
 * signer sign again with the new key; more than this many in a row means
 * something is rotating in a loop. */
#define SIGN_ATTEMPTS 4

static void sign_fail(sign_job *job, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sign_fail(sign_job *job, int status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->msg, sizeof job->msg, fmt, ap);
        va_end(ap);
        job->status = status;
}

/* A logged signature's line on stderr (info with journal_events = all,
 * else debug) and journald event (all only). returned: whether its caller
 * gets it (not when the caller left or was answered at hsm_timeout; the
 * entry is in the log either way). */
static void sign_journal(agent *a, const sign_job *job, bool returned) {
        const char *note = returned ? "" : " (not returned: the caller is gone)";
        agent_log(agent_journal_wanted(a, AGENT_JOURNAL_SIGN) ? LOG_INFO : LOG_DEBUG,
                  "signed for %s with %s (uid %u pid %d), log entry %llu%s", job->principal, job->key->keyid,
                  (unsigned) job->who.uid, (int) job->who.pid, (unsigned long long) job->base.wait_seq, note);
        if (!agent_journal_wanted(a, AGENT_JOURNAL_SIGN))
                return;
        const Provsign__SignRequest *s = job->req->sign;
        char *digest = proto_digest_spec((int) s->digest_algorithm, s->digest.data, s->digest.len);
        agent_journal_fields f = { .event = "SIGN", .has_seq = true, .seq = job->base.wait_seq,
                                   .principal = job->principal, .keyid = job->key->keyid, .digest = digest,
                                   .status = "OK", .who = &job->who };
        agent_journal_event(a, AGENT_JOURNAL_SIGN, LOG_INFO, &f, "signed %s for %s with %s%s", digest ? digest : "",
                            job->principal, job->key->keyid, note);
        free(digest);
}

/* Appends the sign entry; the caller holds the principal's order lock. */
static void sign_append(sign_job *job, agent_key *k) {
        const Provsign__SignRequest *s = job->req->sign;
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        caller.uid = job->who.uid;
        caller.gid = job->who.gid;
        caller.pid = job->who.pid;
        caller.exe = job->who.exe ? job->who.exe : (char *) "";
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__SIGN;
        e.caller = &caller;
        e.principal = job->principal;
        e.keyid = k->keyid;
        e.generation = k->generation;
        e.algorithm = (Provsign__KeyAlgorithm) k->algorithm;
        e.digest_algorithm = s->digest_algorithm;
        e.digest = s->digest;
        e.payload_type = s->payload_type;
        e.annotations = s->annotations;
        e.n_annotations = s->n_annotations;
        e.status = PROVSIGN__STATUS__OK;
        job->append_r = audit_append(job->agent->audit, &e, &job->base.wait_seq, &job->leaf, &job->leaf_len);
        job->time_us = e.time_us;
}

/* Worker: sign with the active key outside any lock, then log the entry
 * only if that key is still active (registry.h "Rotation ordering"). */
static void sign_run(agent_job *j) {
        sign_job *job = (sign_job *) j;
        const Provsign__SignRequest *s = job->req->sign;
        agent_principal_keys *p = job->keys;
        job->status = PROVSIGN__STATUS__OK;
        for (int attempt = 0; attempt < SIGN_ATTEMPTS; attempt++) {
                pthread_rwlock_rdlock(&p->order);
                agent_key *k = p->active;
                keys_key *tk = k ? k->key : NULL;
                pthread_rwlock_unlock(&p->order);
                if (!k)
                        return sign_fail(job, PROVSIGN__STATUS__NO_ACTIVE_KEY, "principal \"%s\" has no active key",
                                         p->name);
                if (!tk)
                        return sign_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE,
                                         "the active key %s of \"%s\" is not on the token", k->keyid, p->name);
                if (proto_key_algorithm_digest(k->algorithm) != (int) s->digest_algorithm)
                        return sign_fail(job, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                         "the %s key of \"%s\" signs %s digests, not %s",
                                         proto_key_algorithm_name(k->algorithm), p->name,
                                         proto_digest_name(proto_key_algorithm_digest(k->algorithm)),
                                         proto_digest_name(s->digest_algorithm));
                uint64_t t0 = agent_monotonic_ns();
                int r = keys_sign(job->agent->store, tk, s->digest.data, s->digest.len, job->sig, &job->sig_len);
                metrics_observe(METRICS_TOKEN_SECONDS, (double) (agent_monotonic_ns() - t0) / 1e9);
                if (r < 0 && r != -ENOENT)
                        return sign_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE, "the token failed to sign: %s",
                                         strerror(-r));
                pthread_rwlock_rdlock(&p->order);
                if (r == 0 && p->active == k) {
                        sign_append(job, k);
                        pthread_rwlock_unlock(&p->order);
                        job->key = k;
                        return;
                }
                pthread_rwlock_unlock(&p->order);
                /* Rotated, revoked or destroyed meanwhile: look again. */
        }
        sign_fail(job, PROVSIGN__STATUS__UNAVAILABLE, "the keys of \"%s\" kept changing while signing; retry",
                  p->name);
}

void dispatch_park(agent *a, agent_conn_job *job) {
        job->next_parked = NULL;
        if (a->parked_tail)
                a->parked_tail->next_parked = job;
        else
                a->parked_head = job;
        a->parked_tail = job;
}

/* metrics: a Sign answered (or given up) after its worker ran. */
static void sign_count(const sign_job *job, int status) {
        metrics_sign(job->principal, status, (double) (agent_monotonic_ns() - job->start_ns) / 1e9);
}

static bool sign_complete(agent *a, agent_conn *c, agent_conn_job *j) {
        sign_job *job = (sign_job *) j;
        const handler h = { PROVSIGN__REQUEST__BODY_SIGN, "Sign", POLICY_SIGNER, NULL };
        if (job->status != PROVSIGN__STATUS__OK)
                sign_count(job, job->status);
        else if (job->append_r < 0 || audit_failed(a->audit))
                sign_count(job, PROVSIGN__STATUS__UNAVAILABLE);
        if (!c) {
                if (job->status == PROVSIGN__STATUS__OK && job->append_r >= 0 && job->key)
                        sign_journal(a, job, false);
                sign_job_free(job);
                return true;
        }
        if (job->status != PROVSIGN__STATUS__OK) {
                /* (a token outage: watch_token says so once; the refusal line
                 * below is rate-limited per uid, an unlimited one was not) */
                dispatch_refuse(a, c, &h, job->status, "%s", job->msg);
                sign_job_free(job);
                return true;
        }
        if (job->append_r < 0 || audit_failed(a->audit)) {
                log_error("signature for %s withheld: the audit log cannot record it", job->principal);
                server_reply(a, c, NULL, PROVSIGN__STATUS__UNAVAILABLE, false,
                             "the audit log cannot record the signature, so it was withheld");
                sign_job_free(job);
                return true;
        }
        if (job->base.wait_seq >= audit_committed(a->audit)) {
                dispatch_park(a, &job->base);
                return false;
        }

        Provsign__Receipt receipt;
        int r = audit_receipt(a->audit, job->base.wait_seq, job->time_us, job->leaf, job->leaf_len, &receipt);
        sign_count(job, r < 0 ? PROVSIGN__STATUS__INTERNAL : PROVSIGN__STATUS__OK);
        if (r < 0) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot build the receipt: %s",
                             strerror(-r));
                sign_job_free(job);
                return true;
        }
        sign_journal(a, job, true);
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__SignResponse sr = PROVSIGN__SIGN_RESPONSE__INIT;
        sr.keyid = job->key->keyid;
        sr.algorithm = (Provsign__KeyAlgorithm) job->key->algorithm;
        sr.signature.data = job->sig;
        sr.signature.len = job->sig_len;
        sr.principal = job->principal;
        sr.generation = job->key->generation;
        sr.receipt = &receipt;
        resp.body_case = PROVSIGN__RESPONSE__BODY_SIGN;
        resp.sign = &sr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        audit_receipt_done(&receipt);
        sign_job_free(job);
        return true;
}

void dispatch_audit_progress(agent *a) {
        uint64_t committed = audit_committed(a->audit);
        bool failed = audit_failed(a->audit);
        agent_conn_job **pp = &a->parked_head;
        agent_conn_job *prev = NULL;
        while (*pp) {
                agent_conn_job *j = *pp;
                if (!failed && j->wait_seq >= committed) {
                        prev = j;
                        pp = &j->next_parked;
                        continue;
                }
                *pp = j->next_parked;
                if (a->parked_tail == j)
                        a->parked_tail = prev;
                server_resume_job(a, j);
        }
}

void dispatch_abandon_parked(agent *a) {
        while (a->parked_head) {
                agent_conn_job *j = a->parked_head;
                a->parked_head = j->next_parked;
                j->base.next = NULL;
                server_abandon_jobs(a, &j->base);
        }
        a->parked_tail = NULL;
}

static bool handle_sign(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__SignRequest *s = req->sign;
        const agent_principal *p = NULL;
        char msg[256];
        int st = policy_resolve_signer(a->config, server_conn_caller(c), s->principal, &p, msg, sizeof msg);
        if (st != PROVSIGN__STATUS__OK) {
                dispatch_refuse(a, c, h, st, "%s", msg);
                return false;
        }
        if (audit_failed(a->audit)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE, "the audit log has failed; nothing is signed");
                return false;
        }
        agent_rate rate = ratelimit_for(a->config, p);
        uint64_t retry_s = 0;
        if (!ratelimit_allow(p->name, rate, agent_monotonic_ms(), &retry_s)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__RATE_LIMITED,
                       "principal \"%s\" is over its rate_limit of %u per %us; retry in %llus", p->name, rate.count,
                       rate.per_s, (unsigned long long) retry_s);
                return false;
        }
        /* Early answers for what is plain now; the worker checks again
         * against the key it actually uses. */
        agent_principal_keys *pk = registry_principal(&a->registry, p->name, false);
        agent_key *k = pk ? registry_active_key(pk) : NULL;
        if (!k) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NO_ACTIVE_KEY, "principal \"%s\" has no active key",
                                p->name);
                return false;
        }
        if (proto_key_algorithm_digest(k->algorithm) != (int) s->digest_algorithm) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                "the %s key of \"%s\" signs %s digests, not %s", proto_key_algorithm_name(k->algorithm),
                                p->name, proto_digest_name(proto_key_algorithm_digest(k->algorithm)),
                                proto_digest_name(s->digest_algorithm));
                return false;
        }

        sign_job *job = calloc(1, sizeof *job);
        const agent_caller *who = server_conn_caller(c);
        if (!job) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        job->base.base.run = sign_run;
        job->base.complete = sign_complete;
        /* Not run yet (it may never run: cancelled at hsm_timeout). */
        job->append_r = -ECANCELED;
        job->status = PROVSIGN__STATUS__HSM_UNAVAILABLE;
        snprintf(job->msg, sizeof job->msg, "the signature was not made: the token did not answer within hsm_timeout");
        job->agent = a;
        job->req = req;
        job->keys = pk;
        job->start_ns = agent_monotonic_ns();
        snprintf(job->principal, sizeof job->principal, "%s", p->name);
        job->who = (agent_caller){ .uid = who->uid, .gid = who->gid, .pid = who->pid };
        if (who->exe)
                job->who.exe = strdup(who->exe);
        server_submit(a, c, &job->base);
        return true;
}

/* ---- The log ---- */

static bool handle_get_checkpoint(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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

static bool handle_get_log_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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

static bool handle_get_public_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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

static bool handle_list_keys(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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

static bool handle_get_metrics(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        (void) h;
        unsigned reopens = 0;
        bool token_up = keys_store_health(a->store, &reopens) >= 0;
        metrics_gauges g = {
                .log_entries = audit_committed(a->audit),
                .log_bytes = audit_bytes(a->audit),
                .connections = server_connections(a),
                .token_up = token_up,
                .token_reopens = reopens,
                .principals = a->config->n_principals,
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

static bool handle_status(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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
        resp.body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        resp.status_info = &sr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        free(all);
        free(mine);
        return false;
}

static const handler handlers[] = {
        { PROVSIGN__REQUEST__BODY_SIGN, "Sign", POLICY_SIGNER, handle_sign },
        { PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY, "GetPublicKey", POLICY_ANY, handle_get_public_key },
        { PROVSIGN__REQUEST__BODY_STATUS, "Status", POLICY_ANY, handle_status },
        { PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE, "GetKeyBundle", POLICY_ANY, bundle_handle },
        { PROVSIGN__REQUEST__BODY_GET_CHECKPOINT, "GetCheckpoint", POLICY_ANY, handle_get_checkpoint },
        { PROVSIGN__REQUEST__BODY_GET_LOG_KEY, "GetLogKey", POLICY_ANY, handle_get_log_key },
        { PROVSIGN__REQUEST__BODY_LIST_KEYS, "ListKeys", POLICY_OPERATOR, handle_list_keys },
        { PROVSIGN__REQUEST__BODY_ROTATE_KEY, "RotateKey", POLICY_OPERATOR, keyops_handle_rotate },
        { PROVSIGN__REQUEST__BODY_REVOKE_KEY, "RevokeKey", POLICY_OPERATOR, keyops_handle_revoke },
        { PROVSIGN__REQUEST__BODY_DESTROY_KEY, "DestroyKey", POLICY_OPERATOR, keyops_handle_destroy },
        { PROVSIGN__REQUEST__BODY_EXPORT, "Export", POLICY_AUDITOR, export_handle_export },
        { PROVSIGN__REQUEST__BODY_FIND, "Find", POLICY_AUDITOR, export_handle_find },
        { PROVSIGN__REQUEST__BODY_PROOF, "Proof", POLICY_AUDITOR, export_handle_proof },
        { PROVSIGN__REQUEST__BODY_GET_METRICS, "GetMetrics", POLICY_ANY, handle_get_metrics },
        { PROVSIGN__REQUEST__BODY_PURGE, "Purge", POLICY_OPERATOR, purge_handle },
};

static const char *role_name(enum policy_access r) {
        return r == POLICY_OPERATOR ? "operator" : "auditor";
}

void dispatch_frame(agent *a, agent_conn *c, const uint8_t *payload, size_t len) {
        Provsign__Request *req = provsign__request__unpack(NULL, len, payload);
        if (!req) {
                char msg[64];
                snprintf(msg, sizeof msg, "undecodable request of %zu bytes; connection closed", len);
                refusals_record(a, server_conn_caller(c), "request", NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, msg);
                server_reply(a, c, NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, true, "undecodable request");
                return;
        }
        const handler *h = NULL;
        for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
                if (handlers[i].body == req->body_case)
                        h = &handlers[i];

        char msg[256];
        int st = request_validate(a, req, msg, sizeof msg);
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
                return; /* the handler keeps req */
out:
        provsign__request__free_unpacked(req, NULL);
}
