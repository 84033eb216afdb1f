/* SIGHUP: re-read the config. A good new policy applies to the next request;
 * a bad one is refused with its reason and the old policy stays. Settings
 * that bind the process to its token and socket need a restart. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "events.h"
#include "log.h"
#include "reload.h"
#include "server.h"

/* One reload at a time: a SIGHUP while the keys of the previous one are
 * being made reloads again once it is done (the newest file wins). */
static bool reload_busy, reload_again;

typedef struct reload_key {
        agent_principal_keys *p;
        int algorithm;
        char label[KEYS_LABEL_MAX];
        uint32_t gen;
        uint8_t *spki;
        size_t spki_len;
} reload_key;

enum reload_phase { RELOAD_GENERATE, RELOAD_LOG, RELOAD_DONE };

typedef struct reload_job {
        agent_conn_job base;
        agent *agent;
        agent_config *next;
        enum reload_phase phase;
        reload_key *keys;
        size_t n_keys;
        int r;
        char *err;
} reload_job;

static void reload_job_free(reload_job *job) {
        for (size_t i = 0; i < job->n_keys; i++)
                free(job->keys[i].spki);
        free(job->keys);
        free(job->err);
        agent_config_free(job->next);
        free(job);
}

/* The new policy goes live. */
static void reload_apply(agent *a, agent_config *next) {
        agent_journal_configure(a, next);
        agent_config_free(a->config);
        a->config = next;
        (void) server_connection_limit(a); /* warns if the new max_connections is capped */
        log_notice("config reloaded from %s: %zu principals", next->path, next->n_principals);
        sd_notifyf(0, "STATUS=serving %zu principals", next->n_principals);
        agent_audit_policy_load(a, next->path, PROVSIGN__STATUS__OK, "reloaded on SIGHUP");
}

static void reload_refuse(agent *a, const char *path, int r, const char *err) {
        log_error("config reload refused, keeping the running policy: %s", err ? err : "key generation failed");
        agent_audit_policy_load(a, path, PROVSIGN__STATUS__HSM_UNAVAILABLE, err ? err : "key generation failed");
}

/* On the generator: the key pairs (no lock a signer takes), then on to a
 * worker for the rest. */
static void reload_generate(reload_job *job) {
        agent *a = job->agent;
        for (size_t i = 0; i < job->n_keys && job->r >= 0; i++) {
                if (generator_stopping(a->generator)) {
                        job->r = agent_errorf(&job->err, -ECANCELED, "the agent is shutting down");
                        break;
                }
                reload_key *k = &job->keys[i];
                job->r = keys_generate_pair(a->store, k->algorithm, k->label, &k->spki, &k->spki_len, &job->err);
        }
        job->phase = RELOAD_LOG;
        workers_submit_unlocked(a->workers, &job->base.base); /* at SCHED_IDLE: not the pool's lock */
}

static void reload_run(agent_job *j) {
        reload_job *job = (reload_job *) j;
        agent *a = job->agent;
        if (job->phase == RELOAD_GENERATE) {
                reload_generate(job);
                return;
        }
        /* On a worker: each key made visible and logged (KEY_CREATE). */
        for (size_t i = 0; i < job->n_keys && job->r >= 0; i++) {
                reload_key *k = &job->keys[i];
                if (!k->spki)
                        break;
                keys_key *key = NULL;
                job->r = keys_generate_insert(a->store, k->spki, k->spki_len, &key, &job->err);
                if (job->r >= 0)
                        job->r = registry_log_first_key(&a->registry, k->p, k->gen, key, a->audit, &job->err);
        }
        job->phase = RELOAD_DONE;
}

static bool reload_complete(agent *a, agent_conn *c, agent_conn_job *j) {
        reload_job *job = (reload_job *) j;
        agent_config *next = job->next;
        reload_busy = false;
        if (job->phase != RELOAD_DONE || !a->workers) {
                log_notice("config reload from %s abandoned at shutdown", next->path);
        } else if (job->r < 0) {
                reload_refuse(a, next->path, job->r, job->err);
        } else {
                job->next = NULL;
                reload_apply(a, next);
        }
        reload_job_free(job);
        if (reload_again && a->workers && a->generator) {
                reload_again = false;
                (void) agent_reload(a);
        }
        return true;
}

/* Applies next at once, or after the keys of its new principals are made
 * and logged (reload_complete). Takes next. */
static int reload_keys(agent *a, agent_config *next) {
        reload_job *job = calloc(1, sizeof *job);
        if (!job)
                goto oom;
        job->base.base.run = reload_run;
        job->base.complete = reload_complete;
        job->agent = a;
        job->next = next;
        job->keys = calloc(next->n_principals ? next->n_principals : 1, sizeof *job->keys);
        if (!job->keys)
                goto oom;
        for (size_t i = 0; i < next->n_principals; i++) {
                const agent_principal *pc = &next->principals[i];
                agent_principal_keys *p = registry_principal(&a->registry, pc->name, true);
                if (!p)
                        goto oom;
                if (!registry_needs_first_key(&a->registry, p))
                        continue;
                reload_key *k = &job->keys[job->n_keys++];
                k->p = p;
                k->algorithm = pc->algorithm ? pc->algorithm : next->algorithm;
                k->gen = registry_next_label(&a->registry, p, k->label, sizeof k->label);
        }
        if (job->n_keys == 0) {
                job->next = NULL;
                reload_job_free(job);
                reload_apply(a, next);
                return 0;
        }
        /* (no "config re..." in this line: that is the outcome's) */
        log_notice("SIGHUP: making the first key of %zu new principal%s on the key generator; the running policy "
                   "serves meanwhile",
                   job->n_keys, job->n_keys == 1 ? "" : "s");
        reload_busy = true;
        job->base.conn = NULL;
        generator_submit(a->generator, &job->base.base);
        return 0;
oom:
        if (job)
                reload_job_free(job);
        else
                agent_config_free(next);
        reload_refuse(a, a->config->path, -ENOMEM, "out of memory");
        return -ENOMEM;
}

static bool str_changed(const char *a, const char *b) {
        if (!a || !b)
                return a != b;
        return strcmp(a, b) != 0;
}

int agent_reload(agent *a) {
        if (reload_busy) {
                reload_again = true;
                log_notice("SIGHUP: the keys of the previous reload are being made; reloading again after it");
                return 0;
        }
        agent_config *next = NULL;
        char *err = NULL;
        int r = agent_config_load(a->config->path, &next, &err);
        if (r < 0) {
                log_error("config reload refused, keeping the running policy: %s", err ? err : "out of memory");
                agent_audit_policy_load(a, a->config->path, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                        err ? err : "out of memory");
                free(err);
                return r;
        }
        const agent_config *cur = a->config;
        static const char *const fixed[] = { "socket", "socket_group", "state_dir", "pkcs11_module", "token_label",
                                             "pin_file", "pin_credential", "publish_dir" };
        if (cur->publish_entries != next->publish_entries)
                log_warning("config reload: publish_entries changed; it takes effect at the next restart");
        if (cur->workers != next->workers)
                log_warning("config reload: workers changed; it takes effect at the next restart");
        const char *cur_v[] = { cur->socket, cur->socket_group, cur->state_dir, cur->pkcs11_module,
                                cur->token_label, cur->pin_file, cur->pin_credential, cur->publish_dir };
        const char *next_v[] = { next->socket, next->socket_group, next->state_dir, next->pkcs11_module,
                                 next->token_label, next->pin_file, next->pin_credential, next->publish_dir };
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
                if (str_changed(cur_v[i], next_v[i]))
                        log_warning("config reload: %s changed; it takes effect at the next restart", fixed[i]);
        /* The log keeps its name for life (origin.h): not even a restart
         * takes a new one. */
        if (str_changed(cur->log_origin, next->log_origin))
                log_warning("config reload: log_origin changed to \"%s\"; ignored: the log keeps \"%s\", and a "
                            "restart with the new value would be refused",
                            next->log_origin ? next->log_origin : "", cur->log_origin ? cur->log_origin : "");
        /* So do its keys' namespace (<state_dir>/key-namespace). */
        if (str_changed(cur->key_namespace, next->key_namespace))
                log_warning("config reload: key_namespace changed to \"%s\"; ignored: the keys stay in \"%s\", and a "
                            "restart with the new value would be refused",
                            next->key_namespace ? next->key_namespace : "",
                            cur->key_namespace ? cur->key_namespace : "");

        /* New principals get their first key before the policy that names them
         * is live, so a Sign for them never sees NO_ACTIVE_KEY. The keys are
         * made on the key generator while the running policy keeps serving
         * (an RSA-3072 key is a second of CPU: never on this thread). */
        return reload_keys(a, next);
}
