#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "config.h"
#include "hex.h"
#include "keyid.h"
#include "log.h"
#include "names.h"
#include "registry.h"

#define LOG_KEY_OWNER "log"

int registry_init(agent_registry *reg, keys_store *store) {
        *reg = (agent_registry){ .store = store };
        int r = -pthread_mutex_init(&reg->state, NULL);
        if (r == 0)
                reg->state_init = true;
        return r;
}

static void key_free(agent_key *k) {
        if (!k)
                return;
        free(k->reason);
        free(k->spki);
        free(k->pem);
        free(k);
}

void registry_done(agent_registry *reg) {
        for (size_t i = 0; i < reg->n_principals; i++) {
                agent_principal_keys *p = reg->principals[i];
                for (size_t j = 0; j < p->n_keys; j++)
                        key_free(p->keys[j]);
                free(p->keys);
                pthread_rwlock_destroy(&p->order);
                free(p);
        }
        free(reg->principals);
        if (reg->state_init)
                pthread_mutex_destroy(&reg->state);
        *reg = (agent_registry){ 0 };
}

/* Callers hold reg->state. */
static agent_principal_keys *principal_locked(agent_registry *reg, const char *name, bool create) {
        for (size_t i = 0; i < reg->n_principals; i++)
                if (strcmp(reg->principals[i]->name, name) == 0)
                        return reg->principals[i];
        if (!create || strlen(name) >= sizeof reg->principals[0]->name)
                return NULL;
        agent_principal_keys **grown = realloc(reg->principals, (reg->n_principals + 1) * sizeof *grown);
        if (!grown)
                return NULL;
        reg->principals = grown;
        agent_principal_keys *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        int r = pthread_rwlock_init(&p->order, &attr);
        pthread_rwlockattr_destroy(&attr);
        if (r != 0) {
                free(p);
                return NULL;
        }
        snprintf(p->name, sizeof p->name, "%s", name);
        reg->principals[reg->n_principals++] = p;
        return p;
}

agent_principal_keys *registry_principal(agent_registry *reg, const char *name, bool create) {
        pthread_mutex_lock(&reg->state);
        agent_principal_keys *p = principal_locked(reg, name, create);
        pthread_mutex_unlock(&reg->state);
        return p;
}

static agent_key *find_locked(agent_registry *reg, const char *keyid) {
        for (size_t i = 0; i < reg->n_principals; i++) {
                agent_principal_keys *p = reg->principals[i];
                for (size_t j = 0; j < p->n_keys; j++)
                        if (strcmp(p->keys[j]->keyid, keyid) == 0)
                                return p->keys[j];
        }
        return NULL;
}

agent_key *registry_find(agent_registry *reg, const char *keyid) {
        pthread_mutex_lock(&reg->state);
        agent_key *k = find_locked(reg, keyid);
        pthread_mutex_unlock(&reg->state);
        return k;
}

agent_key *registry_active_key(agent_principal_keys *p) {
        pthread_rwlock_rdlock(&p->order);
        agent_key *k = p->active;
        pthread_rwlock_unlock(&p->order);
        return k;
}

uint32_t registry_next_label(agent_registry *reg, agent_principal_keys *p, char *label, size_t size) {
        pthread_mutex_lock(&reg->state);
        uint32_t gen = ++p->max_generation;
        pthread_mutex_unlock(&reg->state);
        /* (a label that does not fit, or a store without a namespace: an
         * empty label, which keys_generate refuses) */
        const char *ns = keys_store_namespace(reg->store);
        if (!ns || keys_label_format(label, size, ns, p->name, gen) < 0)
                label[0] = '\0';
        return gen;
}

/* A new key from a KEY_CREATE or KEY_ROTATE entry. */
static int key_from_entry(agent_registry *reg, const Provsign__AuditEntry *e, agent_key **ret) {
        char id[PROTO_KEYID_HEX_LEN + 1];
        if (!e->public_key_der.len || strlen(e->principal) >= sizeof(((agent_key *) 0)->principal) ||
            !proto_key_algorithm_name(e->algorithm) || e->generation == 0)
                return -EBADMSG;
        proto_keyid_hex(e->public_key_der.data, e->public_key_der.len, id);
        if (strcmp(id, e->keyid) != 0)
                return -EBADMSG;
        agent_key *k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        memcpy(k->keyid, id, sizeof id);
        snprintf(k->principal, sizeof k->principal, "%s", e->principal);
        k->generation = e->generation;
        k->algorithm = e->algorithm;
        k->state = PROVSIGN__KEY_STATE__RETIRED;
        k->created_us = e->time_us;
        k->spki = malloc(e->public_key_der.len);
        int r = k->spki ? proto_spki_pem(e->public_key_der.data, e->public_key_der.len, &k->pem) : -ENOMEM;
        if (r < 0) {
                key_free(k);
                return r == -EINVAL ? -EBADMSG : r;
        }
        memcpy(k->spki, e->public_key_der.data, e->public_key_der.len);
        k->spki_len = e->public_key_der.len;
        if (reg->store) {
                uint8_t raw[PROTO_KEYID_LEN];
                proto_keyid_compute(k->spki, k->spki_len, raw);
                k->key = keys_store_find_id(reg->store, raw);
        }
        *ret = k;
        return 0;
}

static int add_key_locked(agent_registry *reg, agent_principal_keys *p, agent_key *k) {
        agent_key **grown = realloc(p->keys, (p->n_keys + 1) * sizeof *grown);
        if (!grown)
                return -ENOMEM;
        p->keys = grown;
        size_t i = p->n_keys;
        while (i > 0 && p->keys[i - 1]->generation > k->generation) {
                p->keys[i] = p->keys[i - 1];
                i--;
        }
        p->keys[i] = k;
        p->n_keys++;
        reg->n_keys++;
        if (k->generation > p->max_generation)
                p->max_generation = k->generation;
        return 0;
}

static void retire(agent_key *k, int64_t when) {
        if (k->state == PROVSIGN__KEY_STATE__ACTIVE) {
                k->state = PROVSIGN__KEY_STATE__RETIRED;
                k->retired_us = when;
        }
}

static int apply_locked(agent_registry *reg, const Provsign__AuditEntry *e) {
        if (strcmp(e->principal, LOG_KEY_OWNER) == 0)
                return 0; /* the log key is not a principal's */
        switch (e->event) {
        case PROVSIGN__AUDIT_EVENT__KEY_CREATE:
        case PROVSIGN__AUDIT_EVENT__KEY_ROTATE: {
                if (find_locked(reg, e->keyid))
                        return -EBADMSG;
                agent_principal_keys *p = principal_locked(reg, e->principal, true);
                if (!p)
                        return -ENOMEM;
                for (size_t i = 0; i < p->n_keys; i++)
                        if (p->keys[i]->generation == e->generation)
                                return -EBADMSG;
                agent_key *k;
                int r = key_from_entry(reg, e, &k);
                if (r < 0)
                        return r;
                r = add_key_locked(reg, p, k);
                if (r < 0) {
                        key_free(k);
                        return r;
                }
                if (e->event == PROVSIGN__AUDIT_EVENT__KEY_CREATE && p->active)
                        return 0; /* adopted while another key is active: retired */
                if (e->event == PROVSIGN__AUDIT_EVENT__KEY_ROTATE && e->previous_keyid[0]) {
                        agent_key *prev = find_locked(reg, e->previous_keyid);
                        if (!prev || strcmp(prev->principal, e->principal) != 0)
                                return -EBADMSG;
                        retire(prev, e->time_us);
                }
                if (p->active)
                        retire(p->active, e->time_us);
                k->state = PROVSIGN__KEY_STATE__ACTIVE;
                p->active = k;
                return 0;
        }
        case PROVSIGN__AUDIT_EVENT__KEY_REVOKE: {
                agent_key *k = find_locked(reg, e->keyid);
                if (!k || strcmp(k->principal, e->principal) != 0 || k->revoked_us)
                        return -EBADMSG;
                char *reason = strdup(e->reason);
                if (!reason)
                        return -ENOMEM;
                agent_principal_keys *p = principal_locked(reg, k->principal, false);
                if (p && p->active == k)
                        p->active = NULL;
                k->state = PROVSIGN__KEY_STATE__REVOKED;
                k->revoked_us = e->time_us;
                k->compromised_since_us = e->compromised_since_us;
                k->reason = reason;
                return 0;
        }
        case PROVSIGN__AUDIT_EVENT__KEY_DESTROY: {
                agent_key *k = find_locked(reg, e->keyid);
                if (!k || strcmp(k->principal, e->principal) != 0 || k->state == PROVSIGN__KEY_STATE__ACTIVE ||
                    k->destroyed_us)
                        return -EBADMSG;
                k->destroyed_us = e->time_us;
                if (k->state != PROVSIGN__KEY_STATE__REVOKED)
                        k->state = PROVSIGN__KEY_STATE__DESTROYED;
                k->key = NULL;
                return 0;
        }
        default:
                return 0;
        }
}

int registry_apply(agent_registry *reg, const Provsign__AuditEntry *e) {
        pthread_mutex_lock(&reg->state);
        int r = apply_locked(reg, e);
        pthread_mutex_unlock(&reg->state);
        return r;
}

int registry_replay_event(void *ctx, const Provsign__AuditEntry *e) {
        return registry_apply(ctx, e);
}

void registry_key_info(agent_registry *reg, const agent_key *k, Provsign__KeyInfo *ki) {
        pthread_mutex_lock(&reg->state);
        ki->keyid = (char *) k->keyid;
        ki->principal = (char *) k->principal;
        ki->generation = k->generation;
        ki->algorithm = (Provsign__KeyAlgorithm) k->algorithm;
        ki->state = (Provsign__KeyState) k->state;
        ki->created_us = k->created_us;
        ki->retired_us = k->retired_us;
        ki->revoked_us = k->revoked_us;
        ki->reason = k->reason ? k->reason : (char *) "";
        ki->compromised_since_us = k->compromised_since_us;
        ki->destroyed_us = k->destroyed_us;
        ki->in_token = k->key != NULL;
        ki->public_key_der.data = k->spki;
        ki->public_key_der.len = k->spki_len;
        pthread_mutex_unlock(&reg->state);
}

static int snapshot_cmp(const void *a, const void *b) {
        const agent_key *x = a, *y = b;
        int c = strcmp(x->principal, y->principal);
        if (c != 0)
                return c;
        return x->generation < y->generation ? -1 : x->generation > y->generation;
}

int registry_snapshot(agent_registry *reg, const char *only, agent_key **ret, size_t *ret_n) {
        pthread_mutex_lock(&reg->state);
        agent_key *out = calloc(reg->n_keys ? reg->n_keys : 1, sizeof *out);
        size_t n = 0;
        if (out)
                for (size_t i = 0; i < reg->n_principals; i++) {
                        agent_principal_keys *p = reg->principals[i];
                        if (only && strcmp(p->name, only) != 0)
                                continue;
                        for (size_t j = 0; j < p->n_keys; j++)
                                out[n++] = *p->keys[j];
                }
        pthread_mutex_unlock(&reg->state);
        if (!out)
                return -ENOMEM;
        qsort(out, n, sizeof *out, snapshot_cmp);
        *ret = out;
        *ret_n = n;
        return 0;
}

int registry_append_events(agent_registry *reg, agent_principal_keys *p, agent_audit *audit,
                           Provsign__AuditEntry *const *es, size_t n, uint64_t *ret_seq) {
        int r = 0;
        uint64_t seq = 0, seqs[REGISTRY_MAX_EVENTS];
        size_t applied = 0;
        if (n > REGISTRY_MAX_EVENTS)
                return -EINVAL;
        if (p)
                pthread_rwlock_wrlock(&p->order);
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = audit_append(audit, es[i], &seq, NULL, NULL);
                if (r >= 0) {
                        r = registry_apply(reg, es[i]);
                        if (r < 0)
                                log_error("key event %llu was logged but does not apply: %s",
                                          (unsigned long long) seq, strerror(-r));
                        else
                                seqs[applied++] = seq;
                }
        }
        if (p)
                pthread_rwlock_unlock(&p->order);
        /* outside the lock: a slow observer (journald) must not hold up signers */
        for (size_t i = 0; i < applied && reg->observe; i++)
                reg->observe(reg->observe_ctx, es[i], seqs[i]);
        if (r >= 0 && ret_seq)
                *ret_seq = seq;
        return r;
}

/* A KEY_CREATE entry for k, a key that is on the token. */
static void create_entry(const keys_key *k, const char *principal, uint32_t gen, const char *message,
                         Provsign__AuditEntry *e) {
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        provsign__audit_entry__init(e);
        e->event = PROVSIGN__AUDIT_EVENT__KEY_CREATE;
        e->principal = (char *) principal;
        e->keyid = (char *) keys_key_id_hex(k);
        e->generation = gen;
        e->algorithm = (Provsign__KeyAlgorithm) keys_key_algorithm(k);
        e->public_key_der.data = (uint8_t *) spki;
        e->public_key_der.len = spki_len;
        e->message = (char *) message;
}

/* Token keys sorted by (principal, generation), so adoption follows the
 * order the keys were made in. */
typedef struct token_key {
        char owner[65];
        uint32_t gen;
        keys_key *key;
} token_key;

static int token_key_cmp(const void *a, const void *b) {
        const token_key *x = a, *y = b;
        int c = strcmp(x->owner, y->owner);
        return c ? c : (x->gen < y->gen ? -1 : x->gen > y->gen);
}

int registry_attach(agent_registry *reg, agent_audit *audit, char **ret_error) {
        size_t n = keys_store_count(reg->store);
        token_key *tk = calloc(n ? n : 1, sizeof *tk);
        if (!tk)
                return -ENOMEM;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                keys_key *k = keys_store_get(reg->store, i);
                /* (the store holds only keys of its namespace; this parses them) */
                if (keys_label_parse(keys_key_label(k), keys_store_namespace(reg->store), tk[m].owner,
                                     sizeof tk[m].owner, &tk[m].gen) < 0 ||
                    strcmp(tk[m].owner, LOG_KEY_OWNER) == 0)
                        continue;
                tk[m++].key = k;
        }
        qsort(tk, m, sizeof *tk, token_key_cmp);
        int r = 0;
        for (size_t i = 0; i < m && r >= 0; i++) {
                agent_key *known = registry_find(reg, keys_key_id_hex(tk[i].key));
                if (known) {
                        pthread_mutex_lock(&reg->state);
                        if (!known->destroyed_us)
                                known->key = tk[i].key;
                        pthread_mutex_unlock(&reg->state);
                        continue;
                }
                agent_principal_keys *p = registry_principal(reg, tk[i].owner, true);
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                uint32_t gen = tk[i].gen;
                pthread_mutex_lock(&reg->state);
                /* Keys in the log and none active: every one was revoked
                 * (or retired without a successor) and only an operator's
                 * rotation may make a new one active. A key found on the
                 * token now (a generation whose entry never got logged, a
                 * key put there behind the agent's back) is not adopted:
                 * its KEY_CREATE would make it active, and logging a
                 * KEY_REVOKE after it could be torn off by a crash. Once
                 * the principal has an active key again, a start adopts it
                 * retired, as any other. Its generation is not reused. */
                bool distrust = p->n_keys > 0 && !p->active;
                for (size_t j = 0; j < p->n_keys; j++)
                        if (p->keys[j]->generation == gen)
                                gen = 0; /* taken in the log: give it the next one */
                if (!gen)
                        gen = p->max_generation + 1;
                if (gen > p->max_generation)
                        p->max_generation = gen;
                pthread_mutex_unlock(&reg->state);
                if (distrust) {
                        log_warning("key %s (%s) of principal %s is on the token but not in the log, and every key of %s"
                                    " in the log is revoked or retired: not adopted (it never becomes active by"
                                    " itself); \"provsign key rotate\" makes a new key, or remove this one from the"
                                    " token",
                                    keys_key_id_hex(tk[i].key), keys_key_label(tk[i].key), tk[i].owner, tk[i].owner);
                        continue;
                }
                /* A key of the first round, relabelled at open: say so. */
                const char *rk, *rl;
                char message[KEYS_LABEL_MAX + 64];
                snprintf(message, sizeof message, "adopted from the token");
                for (size_t j = 0; keys_store_relabelled(reg->store, j, &rk, &rl) == 0; j++)
                        if (strcmp(rk, keys_key_id_hex(tk[i].key)) == 0)
                                snprintf(message, sizeof message, "adopted from the token (first-round label %s)", rl);
                Provsign__AuditEntry e, *ep = &e;
                create_entry(tk[i].key, tk[i].owner, gen, message, &e);
                r = registry_append_events(reg, p, audit, &ep, 1, NULL);
                if (r < 0)
                        agent_errorf(ret_error, r, "cannot log the adoption of key %s: %s", keys_key_id_hex(tk[i].key),
                                     strerror(-r));
                else
                        log_notice("adopted key %s (%s) of principal %s from the token", keys_key_id_hex(tk[i].key),
                                   keys_key_label(tk[i].key), tk[i].owner);
        }
        free(tk);
        if (r < 0)
                return r;
        pthread_mutex_lock(&reg->state);
        for (size_t i = 0; i < reg->n_principals; i++) {
                agent_principal_keys *p = reg->principals[i];
                if (p->active && !p->active->key)
                        log_warning("the active key %s of principal %s is not on the token; signing for it fails "
                                    "until the token has it or an operator rotates",
                                    p->active->keyid, p->name);
        }
        pthread_mutex_unlock(&reg->state);
        return 0;
}

bool registry_needs_first_key(agent_registry *reg, agent_principal_keys *p) {
        pthread_mutex_lock(&reg->state);
        bool none = p->n_keys == 0;
        pthread_mutex_unlock(&reg->state);
        return none;
}

int registry_log_first_key(agent_registry *reg, agent_principal_keys *p, uint32_t gen, keys_key *k,
                           agent_audit *audit, char **ret_error) {
        Provsign__AuditEntry e, *ep = &e;
        create_entry(k, p->name, gen, "first key", &e);
        int r = registry_append_events(reg, p, audit, &ep, 1, NULL);
        if (r < 0)
                return agent_errorf(ret_error, r, "cannot log the new key of %s: %s", p->name, strerror(-r));
        log_notice("generated key %s (%s) for principal %s", keys_key_id_hex(k),
                   proto_key_algorithm_name(keys_key_algorithm(k)), p->name);
        return 0;
}

int registry_ensure_keys(agent_registry *reg, const agent_config *cfg, agent_audit *audit, char **ret_error) {
        for (size_t i = 0; i < cfg->n_principals; i++) {
                const agent_principal *pc = &cfg->principals[i];
                agent_principal_keys *p = registry_principal(reg, pc->name, true);
                if (!p)
                        return -ENOMEM;
                if (!registry_needs_first_key(reg, p))
                        continue;
                int alg = pc->algorithm ? pc->algorithm : cfg->algorithm;
                char label[KEYS_LABEL_MAX];
                uint32_t gen = registry_next_label(reg, p, label, sizeof label);
                keys_key *k = NULL;
                int r = keys_generate(reg->store, alg, label, &k, ret_error);
                if (r >= 0)
                        r = registry_log_first_key(reg, p, gen, k, audit, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}
