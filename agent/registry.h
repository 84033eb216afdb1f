/* Which key each principal signs with. Built from the provsign keys on the
 * token (CKA_LABEL provsign/<principal>/<generation>); the highest
 * generation of a principal is its active key. Main thread only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "config.h"
#include "keystore.h"

typedef struct agent_key_entry {
        char principal[65];
        uint32_t generation;
        keys_key *key;          /* owned by the keys_store */
} agent_key_entry;

typedef struct agent_registry {
        agent_key_entry *keys;  /* sorted by principal, then generation */
        size_t n;
} agent_registry;

/* registry_rebuild: re-reads the store's key list. 0 or -ENOMEM (the old
 * registry stays on failure). */
int registry_rebuild(agent_registry *reg, keys_store *store);

void registry_done(agent_registry *reg);

/* registry_active: the principal's active key, or NULL (NO_ACTIVE_KEY). */
const agent_key_entry *registry_active(const agent_registry *reg, const char *principal);

/* registry_find_id: the entry whose key id is hex (64 lowercase digits). */
const agent_key_entry *registry_find_id(const agent_registry *reg, const char *hex);

/* registry_ensure_keys: generates generation 1 in the token for every
 * configured principal that has no key yet (a KEY_CREATE entry in the audit
 * log for each, and a journal line), then rebuilds. 0, or a negative errno
 * with *ret_error set. */
int registry_ensure_keys(agent_registry *reg, keys_store *store, const agent_config *cfg, agent_audit *audit,
                         char **ret_error);
