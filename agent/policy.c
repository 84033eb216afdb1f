#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "provsign.pb-c.h"

bool policy_ids_match(const agent_id_set *ids, const agent_caller *c) {
        for (size_t i = 0; i < ids->n_uids; i++)
                if (ids->uids[i] == c->uid)
                        return true;
        for (size_t i = 0; i < ids->n_gids; i++)
                if (agent_caller_in_group(c, ids->gids[i]))
                        return true;
        return false;
}

bool policy_has_role(const agent_config *cfg, const agent_caller *c, enum policy_access role) {
        switch (role) {
        case POLICY_ANY:
                return true;
        case POLICY_OPERATOR:
                return policy_ids_match(&cfg->operators, c);
        case POLICY_AUDITOR:
                return policy_ids_match(&cfg->auditors, c);
        case POLICY_SIGNER:
                break;
        }
        return false;
}

int policy_resolve_signer(const agent_config *cfg, const agent_caller *c, const char *requested,
                          const agent_principal **ret, char *msg, size_t msg_size) {
        if (requested[0]) {
                const agent_principal *p = agent_config_find_principal(cfg, requested);
                if (!p) {
                        snprintf(msg, msg_size, "no principal \"%s\"", requested);
                        return PROVSIGN__STATUS__NOT_FOUND;
                }
                if (!policy_ids_match(&p->ids, c)) {
                        snprintf(msg, msg_size, "uid %u may not sign for principal \"%s\"", (unsigned) c->uid,
                                 requested);
                        return PROVSIGN__STATUS__PERMISSION_DENIED;
                }
                *ret = p;
                return PROVSIGN__STATUS__OK;
        }

        const agent_principal *only = NULL;
        size_t n = 0;
        for (size_t i = 0; i < cfg->n_principals; i++)
                if (policy_ids_match(&cfg->principals[i].ids, c)) {
                        if (n++ == 0)
                                only = &cfg->principals[i];
                }
        if (n == 0) {
                snprintf(msg, msg_size, "uid %u may not sign for any principal", (unsigned) c->uid);
                return PROVSIGN__STATUS__PERMISSION_DENIED;
        }
        if (n > 1) {
                snprintf(msg, msg_size, "uid %u may sign for %zu principals; name one (--principal)",
                         (unsigned) c->uid, n);
                return PROVSIGN__STATUS__INVALID_ARGUMENT;
        }
        *ret = only;
        return PROVSIGN__STATUS__OK;
}
