/* The agent_config object (config.h): its defaults, those that depend on
 * other keys once the file is read, lookup and free. Reading the file is
 * config-load.c; what each key means is config-keys.c. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"
#include "keystore.h"
#include "provsign.pb-c.h"

agent_config *config_new(const char *path) {
        agent_config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        *c = (agent_config) {
                .path = strdup(path),
                .socket = strdup("/run/provsign/agent.sock"),
                .socket_gid = (gid_t) -1,
                .state_dir = strdup("/var/lib/provsign"),
                .pkcs11_module = strdup("/usr/lib/softhsm/libsofthsm2.so"),
                .token_label = strdup("provsign"),
                .pin_credential = strdup("pin"),
                .algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256,
                .checkpoint_every = 1000,
                .checkpoint_interval_s = 60,
                .journal_events = AGENT_JOURNAL_DEFAULT,
                .rotate_after_s = 0,
                .auto_rotate_on_revoke = false,
                .max_connections = 1024,
                .max_connections_per_uid = 128,
                .max_inflight_per_connection = 16,
                .idle_timeout_s = 300,
                .read_timeout_s = 10,
                .hsm_timeout_s = 5,
                .rate_limit = { .count = 0, .per_s = 1 },
                .max_annotations = 32,
                .max_annotation_bytes = 4096,
        };
        if (!c->path || !c->socket || !c->state_dir || !c->pkcs11_module || !c->token_label ||
            !c->pin_credential) {
                agent_config_free(c);
                return NULL;
        }
        return c;
}

int config_finish(agent_config *c) {
        /* exactly one of pin_file and pin_credential is set */
        if (c->pin_file) {
                free(c->pin_credential);
                c->pin_credential = NULL;
        }
        /* key_namespace defaults to the log origin's host part (left unset
         * when that is no namespace: the agent then asks for key_namespace) */
        if (!c->key_namespace && c->log_origin) {
                char ns[KEYS_NAMESPACE_MAX + 1];
                if (keys_namespace_from_origin(c->log_origin, ns) == 0) {
                        c->key_namespace = strdup(ns);
                        if (!c->key_namespace)
                                return -ENOMEM;
                }
        }
        /* "agent default if unset": the [agent] section may come later */
        for (size_t i = 0; i < c->n_principals; i++)
                if (c->principals[i].algorithm == PROVSIGN__KEY_ALGORITHM__KEY_ALGORITHM_UNSPECIFIED)
                        c->principals[i].algorithm = c->algorithm;
        return 0;
}

static void id_set_done(agent_id_set *s) {
        free(s->uids);
        free(s->gids);
}

void agent_config_free(agent_config *c) {
        if (!c)
                return;

        free(c->path);
        free(c->socket);
        free(c->socket_group);
        free(c->state_dir);
        free(c->publish_dir);
        free(c->pkcs11_module);
        free(c->token_label);
        free(c->pin_file);
        free(c->pin_credential);
        free(c->log_origin);
        free(c->key_namespace);
        for (size_t i = 0; i < c->n_principals; i++) {
                free(c->principals[i].name);
                id_set_done(&c->principals[i].ids);
        }
        free(c->principals);
        id_set_done(&c->operators);
        id_set_done(&c->auditors);
        free(c);
}

const agent_principal *agent_config_find_principal(const agent_config *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_principals; i++)
                if (c->principals[i].name && streq(c->principals[i].name, name))
                        return &c->principals[i];
        return NULL;
}
