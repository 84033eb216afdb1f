#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "registry.h"

static int entry_cmp(const void *a, const void *b) {
        const agent_key_entry *x = a, *y = b;
        int c = strcmp(x->principal, y->principal);
        if (c != 0)
                return c;
        return x->generation < y->generation ? -1 : x->generation > y->generation;
}

int registry_rebuild(agent_registry *reg, keys_store *store) {
        size_t n = keys_store_count(store);
        agent_key_entry *keys = calloc(n ? n : 1, sizeof *keys);
        if (!keys)
                return -ENOMEM;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                keys_key *k = keys_store_get(store, i);
                agent_key_entry *e = &keys[m];
                if (keys_label_parse(keys_key_label(k), e->principal, sizeof e->principal, &e->generation) < 0)
                        continue;
                if (strcmp(e->principal, "log") == 0)
                        continue; /* the log key is not a principal's */
                e->key = k;
                m++;
        }
        qsort(keys, m, sizeof *keys, entry_cmp);
        free(reg->keys);
        reg->keys = keys;
        reg->n = m;
        return 0;
}

void registry_done(agent_registry *reg) {
        free(reg->keys);
        reg->keys = NULL;
        reg->n = 0;
}

const agent_key_entry *registry_active(const agent_registry *reg, const char *principal) {
        const agent_key_entry *best = NULL;
        for (size_t i = 0; i < reg->n; i++)
                if (strcmp(reg->keys[i].principal, principal) == 0)
                        best = &reg->keys[i];
        return best;
}

const agent_key_entry *registry_find_id(const agent_registry *reg, const char *hex) {
        for (size_t i = 0; i < reg->n; i++)
                if (strcmp(keys_key_id_hex(reg->keys[i].key), hex) == 0)
                        return &reg->keys[i];
        return NULL;
}

int registry_ensure_keys(agent_registry *reg, keys_store *store, const agent_config *cfg, agent_audit *audit,
                         char **ret_error) {
        int r = registry_rebuild(reg, store);
        if (r < 0)
                return r;
        for (size_t i = 0; i < cfg->n_principals; i++) {
                const agent_principal *p = &cfg->principals[i];
                if (registry_active(reg, p->name))
                        continue;
                int alg = p->algorithm ? p->algorithm : cfg->algorithm;
                char label[128];
                snprintf(label, sizeof label, "provsign/%s/1", p->name);
                keys_key *k = NULL;
                r = keys_generate(store, alg, label, &k, ret_error);
                if (r < 0)
                        return r;
                log_notice("generated key %s (%s) for principal %s", keys_key_id_hex(k), proto_key_algorithm_name(alg),
                           p->name);
                size_t spki_len;
                const uint8_t *spki = keys_key_spki(k, &spki_len);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__KEY_CREATE;
                e.principal = p->name;
                e.keyid = (char *) keys_key_id_hex(k);
                e.generation = 1;
                e.algorithm = (Provsign__KeyAlgorithm) alg;
                e.public_key_der.data = (uint8_t *) spki;
                e.public_key_der.len = spki_len;
                uint64_t seq;
                r = audit_append(audit, &e, &seq, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return registry_rebuild(reg, store);
}
