/* SIGHUP: re-read the config. A good new policy applies to the next request;
 * a bad one is refused with its reason and the old policy stays. Settings
 * that bind the process to its token and socket need a restart. */
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "events.h"
#include "log.h"
#include "reload.h"
#include "server.h"

static bool str_changed(const char *a, const char *b) {
        if (!a || !b)
                return a != b;
        return strcmp(a, b) != 0;
}

int agent_reload(agent *a) {
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
         * is live, so a Sign for them never sees NO_ACTIVE_KEY. */
        agent_journal_configure(a, next);
        r = registry_ensure_keys(&a->registry, next, a->audit, &err);
        if (r < 0) {
                agent_journal_configure(a, a->config);
                log_error("config reload refused, keeping the running policy: %s", err ? err : "key generation failed");
                agent_audit_policy_load(a, next->path, PROVSIGN__STATUS__HSM_UNAVAILABLE,
                                        err ? err : "key generation failed");
                free(err);
                agent_config_free(next);
                return r;
        }
        agent_config_free(a->config);
        a->config = next;
        (void) server_connection_limit(a); /* warns if the new max_connections is capped */
        log_notice("config reloaded from %s: %zu principals", next->path, next->n_principals);
        sd_notifyf(0, "STATUS=serving %zu principals", next->n_principals);
        agent_audit_policy_load(a, next->path, PROVSIGN__STATUS__OK, "reloaded on SIGHUP");
        return 0;
}
