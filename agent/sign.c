/* Sign (sign.h). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "ratelimit.h"
#include "sign.h"

typedef struct sign_job {
        agent_conn_job base;
        agent *agent;
        Provsign__Request *req;  /* owned: principal, digest, payload type, annotations */
        agent_principal_keys *keys;
        agent_key *key;          /* the key that signed (set by the worker) */
        char principal[DISPATCH_MAX_NAME + 1];
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
        job->append_r =
                audit_append_deferred(job->agent->audit, &e, &job->base.wait_seq, &job->leaf, &job->leaf_len);
        job->time_us = e.time_us;
}

/* Worker: sign with the active key outside any lock, then log the entry
 * only if that key is still active (registry.h "Rotation ordering"). */
static void sign_once(sign_job *job) {
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

static void sign_run(agent_job *j) {
        sign_job *job = (sign_job *) j;
        sign_once(job);
        /* The entry appended (or the attempt failed before): commit it
         * here while no other job waits for a worker, else leave it to the
         * committer so the workers go on signing (audit.h audit_commit). */
        if (job->key && job->append_r >= 0)
                audit_commit(job->agent->audit, workers_waiting(job->agent->workers) == 0);
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

bool sign_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
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
