#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyops.h"
#include "log.h"
#include "names.h"

/* Revocations may name a compromise up to this far in the future (clock
 * skew between the operator's machine and the agent); later is a typo. */
#define COMPROMISE_SKEW_US (5 * 60 * INT64_C(1000000))
/* A scheduled rotation that failed is tried again after this long. */
#define SCHEDULE_RETRY_US (60 * INT64_C(1000000))

enum keyop { KEYOP_ROTATE, KEYOP_REVOKE, KEYOP_DESTROY };

/* A key operation that generates a key (a rotation, a revocation with
 * auto_rotate_on_revoke) goes worker -> main thread -> generator -> worker
 * -> main thread: the generation runs on the generator thread at idle
 * priority (generator.h), the rest (the new key's insert under the store's
 * write lock, the entries) on a worker at normal priority, so nothing a
 * signer waits for is ever held by a thread that signers preempt. */
enum keyop_phase {
        PHASE_RUN,        /* on a worker: the whole operation, or nothing for one that generates */
        PHASE_QUEUE,      /* back on the main thread: to be handed to the generator */
        PHASE_GENERATE,   /* on the generator */
        PHASE_LOG,        /* on a worker: insert the key, append the entries */
        PHASE_DONE,
};

typedef struct keyop_job {
        agent_conn_job base;
        agent *agent;
        const handler *h;
        enum keyop op;
        enum keyop_phase phase;
        agent_principal_keys *p;
        agent_key *target;           /* revoke, destroy */
        agent_key *before;           /* rotate: the active key when asked */
        int algorithm;               /* rotate, auto-rotate */
        bool auto_rotate;
        char *reason;
        int64_t compromised_since_us;
        char why[128];               /* the entries' message */
        agent_caller who;            /* exe owned */
        bool has_caller;
        int status;
        char msg[512];
        bool reported;               /* complete() ran once already (parked) */
        /* the new key: label and generation (main thread), then its SPKI
         * (generator) or why it could not be made */
        char label[KEYS_LABEL_MAX];
        uint32_t gen;
        uint8_t *spki;
        size_t spki_len;
        int gen_r;
        uint64_t gen_ns, insert_ns;  /* how long the generation and the insert took */
} keyop_job;

static const char *const op_names[] = { "RotateKey", "RevokeKey", "DestroyKey" };

static void keyop_free(keyop_job *job) {
        free(job->spki);
        free(job->reason);
        free(job->who.exe);
        free(job);
}

static void keyop_fail(keyop_job *job, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void keyop_fail(keyop_job *job, int status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(job->msg, sizeof job->msg, fmt, ap);
        va_end(ap);
        job->status = status;
}

static void entry_init(keyop_job *job, Provsign__Caller *caller, Provsign__AuditEntry *e, int event) {
        provsign__audit_entry__init(e);
        e->event = event;
        e->message = job->why;
        if (job->has_caller) {
                provsign__caller__init(caller);
                caller->uid = job->who.uid;
                caller->gid = job->who.gid;
                caller->pid = job->who.pid;
                caller->exe = job->who.exe ? job->who.exe : (char *) "";
                e->caller = caller;
        }
}

static bool generates(const keyop_job *job) {
        return job->op == KEYOP_ROTATE || (job->op == KEYOP_REVOKE && job->auto_rotate);
}

/* On the generator: the principal's next key pair in the token, then on to
 * a worker. A job whose caller gave up (hsm_timeout) before its generation
 * began, or one queued at shutdown, generates nothing and still "did not
 * run". */
static void keyop_generate(keyop_job *job) {
        agent *a = job->agent;
        job->phase = PHASE_DONE;
        if (!__atomic_load_n(&job->base.base.cancelled, __ATOMIC_ACQUIRE) && !generator_stopping(a->generator)) {
                char *err = NULL;
                job->status = PROVSIGN__STATUS__OK; /* it runs: see keyop_new */
                job->msg[0] = '\0';
                uint64_t t0 = agent_monotonic_ns();
                job->gen_r = keys_generate_pair(a->store, job->algorithm, job->label, &job->spki, &job->spki_len,
                                                &err);
                job->gen_ns = agent_monotonic_ns() - t0;
                if (job->gen_r < 0)
                        keyop_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE, "cannot generate the next key of \"%s\": %s",
                                   job->p->name, err ? err : strerror(-job->gen_r));
                free(err);
                job->phase = PHASE_LOG;
                /* Started, so it finishes (logged, or its failure said) even
                 * if its caller gave up meanwhile: a worker skips a cancelled
                 * job, and at shutdown nothing would submit it again. */
                __atomic_store_n(&job->base.base.cancelled, 0, __ATOMIC_RELEASE);
        }
        workers_submit_unlocked(a->workers, &job->base.base); /* at SCHED_IDLE: not the pool's lock */
}

/* On a worker: makes the generated key visible and fills a KEY_ROTATE
 * entry for it (public key bytes borrowed from the store). */
static int new_key(keyop_job *job, Provsign__AuditEntry *e) {
        agent *a = job->agent;
        char *err = NULL;
        keys_key *k = NULL;
        int r = job->gen_r;
        if (r >= 0) {
                uint64_t t0 = agent_monotonic_ns();
                r = keys_generate_insert(a->store, job->spki, job->spki_len, &k, &err);
                job->insert_ns = agent_monotonic_ns() - t0;
                if (r < 0)
                        keyop_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE, "cannot add the next key of \"%s\": %s",
                                   job->p->name, err ? err : strerror(-r));
                free(err);
        }
        if (r < 0)
                return r;
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        e->principal = job->p->name;
        e->keyid = (char *) keys_key_id_hex(k);
        e->generation = job->gen;
        e->algorithm = (Provsign__KeyAlgorithm) job->algorithm;
        e->public_key_der.data = (uint8_t *) spki;
        e->public_key_der.len = spki_len;
        return 0;
}

static void keyop_log(keyop_job *job, Provsign__AuditEntry *const *es, size_t n) {
        uint64_t seq;
        int r = registry_append_events(&job->agent->registry, job->p, job->agent->audit, es, n, &seq);
        if (r < 0) {
                keyop_fail(job, PROVSIGN__STATUS__UNAVAILABLE, "the audit log cannot record the key event: %s",
                           strerror(-r));
                return;
        }
        job->base.wait_seq = seq;
}

static void keyop_run(agent_job *j) {
        keyop_job *job = (keyop_job *) j;
        agent *a = job->agent;
        if (job->phase == PHASE_GENERATE) {
                keyop_generate(job);
                return;
        }
        if (job->phase == PHASE_DONE)
                return;
        if (job->phase == PHASE_RUN && generates(job)) {
                job->phase = PHASE_QUEUE; /* the main thread hands it to the generator */
                return;
        }
        if (job->phase == PHASE_RUN) {
                job->status = PROVSIGN__STATUS__OK; /* it runs: see keyop_new */
                job->msg[0] = '\0';
        }
        job->phase = PHASE_DONE;
        Provsign__Caller c1, c2;
        Provsign__AuditEntry e1, e2;
        Provsign__AuditEntry *es[2] = { &e1, &e2 };

        switch (job->op) {
        case KEYOP_ROTATE:
                entry_init(job, &c1, &e1, PROVSIGN__AUDIT_EVENT__KEY_ROTATE);
                if (new_key(job, &e1) < 0)
                        return;
                e1.previous_keyid = job->before ? job->before->keyid : (char *) "";
                keyop_log(job, es, 1);
                return;
        case KEYOP_REVOKE: {
                entry_init(job, &c1, &e1, PROVSIGN__AUDIT_EVENT__KEY_REVOKE);
                e1.principal = job->target->principal;
                e1.keyid = job->target->keyid;
                e1.generation = job->target->generation;
                e1.algorithm = (Provsign__KeyAlgorithm) job->target->algorithm;
                e1.reason = job->reason;
                e1.compromised_since_us = job->compromised_since_us;
                size_t n = 1;
                if (job->auto_rotate) {
                        /* The successor is made first so that the revocation
                         * and the rotation reach signers as one step. If it
                         * cannot be made, the revocation still happens. */
                        entry_init(job, &c2, &e2, PROVSIGN__AUDIT_EVENT__KEY_ROTATE);
                        e2.message = (char *) "automatic rotation after a revocation (auto_rotate_on_revoke)";
                        if (new_key(job, &e2) == 0)
                                n = 2;
                        else
                                log_error("revoking %s without a successor: %s", job->target->keyid, job->msg);
                        job->status = PROVSIGN__STATUS__OK;
                }
                keyop_log(job, es, n);
                return;
        }
        case KEYOP_DESTROY: {
                keys_key *tk = job->target->key;
                char *err = NULL;
                int r = tk ? keys_destroy(a->store, tk, &err) : 0;
                if (r < 0) {
                        keyop_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE, "cannot destroy the private key %s: %s",
                                   job->target->keyid, err ? err : strerror(-r));
                        free(err);
                        return;
                }
                entry_init(job, &c1, &e1, PROVSIGN__AUDIT_EVENT__KEY_DESTROY);
                if (r == 0)
                        e1.message = (char *) "destroyed: the private key was not on the token";
                e1.principal = job->target->principal;
                e1.keyid = job->target->keyid;
                e1.generation = job->target->generation;
                e1.algorithm = (Provsign__KeyAlgorithm) job->target->algorithm;
                keyop_log(job, es, 1);
                return;
        }
        }
}

static void reply_change(agent *a, agent_conn *c, keyop_job *job) {
        agent_key *changed = job->op == KEYOP_ROTATE ? job->before : job->target;
        agent_key *active = registry_active_key(job->p);
        Provsign__KeyInfo k1 = PROVSIGN__KEY_INFO__INIT, k2 = PROVSIGN__KEY_INFO__INIT;
        Provsign__KeyChangeResponse kr = PROVSIGN__KEY_CHANGE_RESPONSE__INIT;
        if (changed) {
                registry_key_info(&a->registry, changed, &k1);
                k1.public_key_der = (ProtobufCBinaryData){ 0 };
                kr.key = &k1;
        }
        if (active) {
                registry_key_info(&a->registry, active, &k2);
                k2.public_key_der = (ProtobufCBinaryData){ 0 };
                kr.active = &k2;
        }
        kr.log_seq = job->base.wait_seq;
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        resp.body_case = PROVSIGN__RESPONSE__BODY_KEY_CHANGE;
        resp.key_change = &kr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
}

static bool keyop_complete(agent *a, agent_conn *c, agent_conn_job *j) {
        keyop_job *job = (keyop_job *) j;
        if (!c)
                j->conn = NULL; /* a dead connection is freed once this returns */
        /* (at shutdown the generator and the workers are gone: nothing more runs) */
        if (job->phase == PHASE_QUEUE && a->generator) {
                job->gen = registry_next_label(&a->registry, job->p, job->label, sizeof job->label);
                job->phase = PHASE_GENERATE;
                if (job->op == KEYOP_REVOKE)
                        generator_submit_urgent(a->generator, &j->base);
                else
                        generator_submit(a->generator, &j->base);
                return false;
        }
        if (job->phase == PHASE_LOG && a->workers) {
                /* Its caller gave up (hsm_timeout) while the key was being
                 * made: the key exists, so it is added and logged all the
                 * same (as any operation that started). */
                __atomic_store_n(&j->base.cancelled, 0, __ATOMIC_RELEASE);
                workers_submit(a->workers, &j->base);
                return false;
        }
        if (job->phase == PHASE_LOG)
                log_warning("%s for %s: the key pair %s was made but not logged before shutdown; the next start "
                            "adopts it from the token", op_names[job->op], job->p->name, job->label);
        if (job->phase == PHASE_QUEUE || job->phase == PHASE_LOG)
                keyop_fail(job, PROVSIGN__STATUS__UNAVAILABLE, "%s did not finish: the agent is shutting down",
                           op_names[job->op]);
        job->p->busy = false;
        agent_key *active = registry_active_key(job->p);
        if (job->status != PROVSIGN__STATUS__OK) {
                log_error("%s for %s failed: %s", op_names[job->op], job->p->name, job->msg);
                if (!job->has_caller) /* a scheduled rotation: not again at once */
                        job->p->schedule_retry_us = (int64_t) agent_now_us() + SCHEDULE_RETRY_US;
                if (c)
                        dispatch_refuse(a, c, job->h, job->status, "%s", job->msg);
                keyop_free(job);
                return true;
        }
        if (job->reported)
                goto reply;
        job->reported = true;
        if (job->op == KEYOP_ROTATE || job->auto_rotate) {
                log_notice("principal %s rotated to key %s (%s)", job->p->name, active ? active->keyid : "none",
                           job->why);
                /* (the insert holds the store's write lock: signers wait for it) */
                log_info("key generation for %s: %.0f ms on the key generator, %.1f ms to add the key", job->p->name,
                         (double) job->gen_ns / 1e6, (double) job->insert_ns / 1e6);
        }
        if (job->op == KEYOP_REVOKE)
                log_notice("key %s of %s revoked: %s", job->target->keyid, job->p->name, job->reason);
        if (job->op == KEYOP_DESTROY)
                log_notice("private key %s of %s destroyed", job->target->keyid, job->p->name);
        if (c && !audit_failed(a->audit) && job->base.wait_seq >= audit_committed(a->audit)) {
                job->p->busy = true; /* until the reply is out */
                dispatch_park(a, &job->base);
                return false;
        }
reply:
        if (c) {
                if (audit_failed(a->audit))
                        server_reply(a, c, NULL, PROVSIGN__STATUS__UNAVAILABLE, false,
                                     "the key event was not made durable: the audit log has failed");
                else
                        reply_change(a, c, job);
        }
        keyop_free(job);
        return true;
}

static keyop_job *keyop_new(agent *a, agent_conn *c, const handler *h, enum keyop op, agent_principal_keys *p) {
        keyop_job *job = calloc(1, sizeof *job);
        if (!job)
                return NULL;
        job->base.base.run = keyop_run;
        job->base.complete = keyop_complete;
        job->agent = a;
        job->h = h;
        job->op = op;
        job->p = p;
        /* A job cancelled at hsm_timeout before a worker took it comes back
         * without having run: it must say so, never "done" (keyop_run
         * replaces this when it starts). */
        keyop_fail(job, PROVSIGN__STATUS__HSM_UNAVAILABLE,
                   "%s did not run: the token did not answer within hsm_timeout", op_names[op]);
        if (c) {
                const agent_caller *who = server_conn_caller(c);
                job->who = (agent_caller){ .uid = who->uid, .gid = who->gid, .pid = who->pid };
                job->who.exe = who->exe ? strdup(who->exe) : NULL;
                job->has_caller = true;
                snprintf(job->why, sizeof job->why, "%s by uid %u", op_names[op], (unsigned) who->uid);
        }
        return job;
}

/* Common start: one operation per principal at a time. */
static bool keyop_start(agent *a, agent_conn *c, const handler *h, keyop_job *job) {
        if (job->p->busy) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE,
                                "another key operation on principal \"%s\" is under way; retry", job->p->name);
                keyop_free(job);
                return false;
        }
        job->p->busy = true;
        server_submit(a, c, &job->base);
        return false;
}

static int principal_algorithm(const agent_config *cfg, const char *name) {
        const agent_principal *pc = agent_config_find_principal(cfg, name);
        return pc && pc->algorithm ? pc->algorithm : cfg->algorithm;
}

bool keyops_handle_rotate(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__RotateKeyRequest *rq = req->rotate_key;
        if (!agent_config_find_principal(a->config, rq->principal)) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no principal \"%s\" in the configuration",
                                rq->principal);
                return false;
        }
        agent_principal_keys *p = registry_principal(&a->registry, rq->principal, true);
        keyop_job *job = p ? keyop_new(a, c, h, KEYOP_ROTATE, p) : NULL;
        if (!job) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        job->algorithm = rq->algorithm ? (int) rq->algorithm : principal_algorithm(a->config, p->name);
        job->before = registry_active_key(p);
        return keyop_start(a, c, h, job);
}

static const char *state_name(const agent_key *k) {
        return proto_key_state_name(k->state);
}

bool keyops_handle_revoke(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__RevokeKeyRequest *rq = req->revoke_key;
        agent_key *k = registry_find(&a->registry, rq->keyid);
        if (!k) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no key %s", rq->keyid);
                return false;
        }
        if (k->revoked_us) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT, "key %s is already revoked", rq->keyid);
                return false;
        }
        /* No compromise time given: 0, which the log replaces with the
         * KEY_REVOKE entry's own time (audit_append), not the time the request
         * came: the key signs until that entry, after a successor's
         * generation, and every signature it made meanwhile must verify. */
        int64_t now = (int64_t) agent_now_us();
        int64_t since = rq->compromised_since_us;
        if (since > now + COMPROMISE_SKEW_US) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                "compromised_since is in the future; a compromise is dated at or before now");
                return false;
        }
        agent_principal_keys *p = registry_principal(&a->registry, k->principal, false);
        keyop_job *job = p ? keyop_new(a, c, h, KEYOP_REVOKE, p) : NULL;
        if (job)
                job->reason = strdup(rq->reason);
        if (!job || !job->reason) {
                if (job)
                        keyop_free(job);
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        job->target = k;
        job->compromised_since_us = since;
        job->auto_rotate = a->config->auto_rotate_on_revoke && registry_active_key(p) == k &&
                           agent_config_find_principal(a->config, p->name);
        job->algorithm = principal_algorithm(a->config, p->name);
        return keyop_start(a, c, h, job);
}

bool keyops_handle_destroy(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__DestroyKeyRequest *rq = req->destroy_key;
        agent_key *k = registry_find(&a->registry, rq->keyid);
        if (!k) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__NOT_FOUND, "no key %s", rq->keyid);
                return false;
        }
        agent_principal_keys *p = registry_principal(&a->registry, k->principal, false);
        if (!p || registry_active_key(p) == k) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                "key %s is the active key of \"%s\"; rotate or revoke it first", rq->keyid, k->principal);
                return false;
        }
        if (k->destroyed_us) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT, "key %s (%s) is already destroyed",
                                rq->keyid, state_name(k));
                return false;
        }
        keyop_job *job = keyop_new(a, c, h, KEYOP_DESTROY, p);
        if (!job) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        job->target = k;
        return keyop_start(a, c, h, job);
}

void keyops_tick(agent *a) {
        static const handler scheduled = { PROVSIGN__REQUEST__BODY_ROTATE_KEY, "RotateKey", POLICY_OPERATOR, NULL };
        const agent_config *cfg = a->config;
        if (a->generator)
                generator_tick(a->generator);
        int64_t now = (int64_t) agent_now_us();
        for (size_t i = 0; i < cfg->n_principals; i++) {
                const agent_principal *pc = &cfg->principals[i];
                uint64_t after_s = pc->rotate_after_s ? pc->rotate_after_s : cfg->rotate_after_s;
                if (!after_s)
                        continue;
                agent_principal_keys *p = registry_principal(&a->registry, pc->name, false);
                if (!p || p->busy || now < p->schedule_retry_us)
                        continue;
                agent_key *k = registry_active_key(p);
                /* No active key (all revoked): an operator decides. */
                if (!k || now - k->created_us < (int64_t) after_s * 1000000)
                        continue;
                keyop_job *job = keyop_new(a, NULL, &scheduled, KEYOP_ROTATE, p);
                if (!job)
                        return;
                job->algorithm = principal_algorithm(cfg, p->name);
                job->before = k;
                snprintf(job->why, sizeof job->why, "scheduled rotation: key older than rotate_after (%" PRIu64 "s)",
                         after_s);
                p->busy = true;
                server_submit_background(a, &job->base);
        }
}
