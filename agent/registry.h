/* The key registry: every principal key ever created, with its state
 * (active, retired, revoked, destroyed), derived from the audit log's key
 * events (docs/operations.md "Operators: the key lifecycle"; the event
 * semantics are at the end of
 * proto/provsign.proto). The token holds only objects: a key's handle on
 * the token is looked up by key id, and may be missing (destroyed).
 *
 * One code path turns a key event into state: registry_apply(), used both
 * when the log is replayed at start and right after a live key event was
 * appended, so the state after a restart is the state before it.
 *
 * Rotation ordering (docs/architecture.md "The Sign path"): a signer signs with the key it read as
 * active, then takes its principal's `order` lock for reading, checks the
 * key is still active and appends its sign entry before letting go. A key
 * event takes `order` for writing around its append and the state change.
 * So every sign entry names the key that was active at its position in the
 * log, and a signer that raced a rotation simply signs again with the new
 * key (the token is never called under the lock).
 *
 * Threads: the principals array and each principal's keys array grow and
 * key fields change only under reg->state (a mutex, held briefly, never
 * across a token call or a log append's wait); readers on the main thread
 * (list, bundle, public key) take it too. Pointers to agent_key and
 * agent_principal_keys stay valid until registry_done(). */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "provsign.pb-c.h"

typedef struct agent_key {
        char keyid[65];
        char principal[65];
        uint32_t generation;
        int algorithm;                  /* PROVSIGN__KEY_ALGORITHM__* */
        int state;                      /* PROVSIGN__KEY_STATE__* */
        int64_t created_us, retired_us, revoked_us, compromised_since_us, destroyed_us;
        char *reason;                   /* NULL unless revoked */
        uint8_t *spki;                  /* DER SPKI from the log */
        size_t spki_len;
        char *pem;
        keys_key *key;                  /* token handle (owned by the store); NULL when not on the token */
} agent_key;

typedef struct agent_principal_keys {
        char name[65];
        pthread_rwlock_t order;         /* see above; prefers writers */
        agent_key *active;              /* NULL: NO_ACTIVE_KEY */
        agent_key **keys;               /* by generation, oldest first */
        size_t n_keys;
        uint32_t max_generation;        /* highest in the log or on the token */
        bool busy;                      /* main thread: a key operation is under way */
        int64_t schedule_retry_us;      /* main thread: no scheduled rotation before this */
} agent_principal_keys;

/* Told of each key event after it is logged and applied, on the thread
 * that appended it (a worker or the loop). */
typedef void (*registry_event_fn)(void *ctx, const Provsign__AuditEntry *e, uint64_t seq);

typedef struct agent_registry {
        pthread_mutex_t state;
        bool state_init;
        keys_store *store;
        agent_principal_keys **principals;
        size_t n_principals;
        size_t n_keys;
        registry_event_fn observe;  /* optional; set before any append */
        void *observe_ctx;
} agent_registry;

/* registry_init: an empty registry over store. 0 or -errno. */
int registry_init(agent_registry *reg, keys_store *store);
void registry_done(agent_registry *reg);

/* registry_replay_event: an audit_key_event_fn (ctx = the registry) for
 * audit_open(). */
int registry_replay_event(void *ctx, const Provsign__AuditEntry *e);

/* registry_apply: applies one key event (seq and time_us already stamped)
 * under reg->state. -EBADMSG when it contradicts what came before (a
 * rotation to a known key, a revocation of an unknown one, a key id that is
 * not the hash of its public key, ...), -ENOMEM. */
int registry_apply(agent_registry *reg, const Provsign__AuditEntry *e);

/* registry_principal: the principal's record, or NULL. With create, makes
 * an empty one (-> NULL only when out of memory). */
agent_principal_keys *registry_principal(agent_registry *reg, const char *name, bool create);

/* registry_find: the key with this id (64 hex), or NULL. */
agent_key *registry_find(agent_registry *reg, const char *keyid);

/* registry_active_key: the principal's active key (read under `order`),
 * or NULL. */
agent_key *registry_active_key(agent_principal_keys *p);

/* registry_next_label: reserves the principal's next generation and writes
 * its CKA_LABEL "provsign/<namespace>/<principal>/<gen>" (the store's
 * namespace) to label (KEYS_LABEL_MAX bytes). */
uint32_t registry_next_label(agent_registry *reg, agent_principal_keys *p, char *label, size_t size);

/* registry_key_info: a KeyInfo of k (strings borrowed from k; valid while
 * the registry lives), taken under reg->state. */
void registry_key_info(agent_registry *reg, const agent_key *k, Provsign__KeyInfo *ki);

/* registry_snapshot: copies of every key (optionally of one principal),
 * sorted by principal then generation, taken under reg->state; the copies'
 * strings are borrowed from the registry (they never change once set,
 * except reason, which is set once). Caller frees the array. */
int registry_snapshot(agent_registry *reg, const char *only, agent_key **ret, size_t *ret_n);

typedef struct agent_audit agent_audit;
typedef struct agent_config agent_config;

/* registry_attach: after the replay: binds each known key to its token
 * object, adopts provsign keys found on the token that the log has never
 * seen (a KEY_CREATE entry each, "adopted from the token"), and warns about
 * keys the log knows but the token lacks. 0 or -errno with *ret_error. */
int registry_attach(agent_registry *reg, agent_audit *audit, char **ret_error);

/* registry_ensure_keys: generates generation 1 in the token for every
 * configured principal that has never had a key (a KEY_CREATE entry each).
 * A principal whose keys were all revoked stays without one
 * (NO_ACTIVE_KEY) until an operator rotates. 0, or -errno with *ret_error. */
int registry_ensure_keys(agent_registry *reg, const agent_config *cfg, agent_audit *audit, char **ret_error);

/* registry_needs_first_key: p has never had a key (registry_ensure_keys
 * would generate one). */
bool registry_needs_first_key(agent_registry *reg, agent_principal_keys *p);

/* registry_log_first_key: the KEY_CREATE entry of k, p's first key (of
 * generation gen, from registry_next_label), appended and applied; logs
 * it. For a caller that generated k itself (a reload, on the key
 * generator). 0, or -errno with *ret_error. */
int registry_log_first_key(agent_registry *reg, agent_principal_keys *p, uint32_t gen, keys_key *k,
                           agent_audit *audit, char **ret_error);

/* registry_append_events: appends n key events to the log and applies
 * each, all under p's order lock held for writing (so a revocation and the
 * automatic rotation after it are one step for signers). On success
 * *ret_seq is the last entry's sequence number. A failure after the first
 * append leaves the earlier events applied (they are in the log). Each
 * logged and applied event then goes to reg->observe, after the lock is
 * released (possibly before the group commit makes it durable). */
#define REGISTRY_MAX_EVENTS 4 /* per registry_append_events() call (-EINVAL beyond) */
int registry_append_events(agent_registry *reg, agent_principal_keys *p, agent_audit *audit,
                           Provsign__AuditEntry *const *es, size_t n, uint64_t *ret_seq);
