/* Who may do what (docs/operations.md "Permissions"). Pure functions
 * of a config and a caller: no I/O, no logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "peer.h"

enum policy_access {
        POLICY_ANY,        /* any connected caller */
        POLICY_SIGNER,     /* uids/gids of the principal named in the request */
        POLICY_OPERATOR,   /* [role operator] */
        POLICY_AUDITOR,    /* [role auditor] */
};

bool policy_ids_match(const agent_id_set *ids, const agent_caller *c);
bool policy_has_role(const agent_config *cfg, const agent_caller *c, enum policy_access role);

/* policy_resolve_signer: picks the principal a Sign request is for.
 * requested may be "" (allowed when the caller may sign for exactly one).
 * Returns a PROVSIGN__STATUS__* value; on OK *ret points into cfg. On a
 * refusal msg holds the reason for the caller. */
int policy_resolve_signer(const agent_config *cfg, const agent_caller *c, const char *requested,
                          const agent_principal **ret, char *msg, size_t msg_size);
