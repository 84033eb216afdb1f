/* libprovsign: the agent's status and what the caller may do. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "provsign.pb-c.h"

#include "libprovsign-internal.h"
#include "provsign.h"

static void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static int strv_copy(char *const *src, size_t n, char ***ret) {
        char **v;

        /* n is bounded by the 64 KiB frame, so n + 1 cannot overflow. */
        v = calloc(n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                v[i] = strdup(str_or_empty(src[i]));
                if (!v[i]) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

/* ---- Metrics ------------------------------------------------------------- */

_public_ int provsign_get_metrics(provsign_conn *conn, int prometheus_text, char **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetMetricsRequest mr = PROVSIGN__GET_METRICS_REQUEST__INIT;
        Provsign__Response *resp = NULL;

        if (!conn || !ret)
                return -EINVAL;
        mr.prometheus_text = prometheus_text != 0;
        req.body_case = PROVSIGN__REQUEST__BODY_GET_METRICS;
        req.get_metrics = &mr;
        int r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_METRICS || !resp->metrics || !resp->metrics->text) {
                r = -EPROTO;
                goto out;
        }
        char *text = strdup(resp->metrics->text);
        if (!text) {
                r = -ENOMEM;
                goto out;
        }
        *ret = text;
out:
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

/* ---- Agent status -------------------------------------------------------- */

_public_ int provsign_status(provsign_conn *conn, provsign_agent_status **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__StatusRequest sr = PROVSIGN__STATUS_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__StatusResponse *body;
        provsign_agent_status *st = NULL;
        int r;

        if (!conn || !ret)
                return -EINVAL;

        req.body_case = PROVSIGN__REQUEST__BODY_STATUS;
        req.status = &sr;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->status_info;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_STATUS_INFO || !body ||
            (body->n_principals > 0 && !body->principals) ||
            (body->n_caller_principals > 0 && !body->caller_principals) ||
            (body->n_caller_roles > 0 && !body->caller_roles)) {
                r = -EPROTO;
                goto out;
        }

        st = calloc(1, sizeof *st);
        if (!st) {
                r = -ENOMEM;
                goto out;
        }
        st->protocol_version = body->protocol_version;
        st->uptime_seconds = body->uptime_seconds;
        st->log_size = body->log_size;
        st->log_syncs = body->log_syncs;
        st->log_failed = body->log_failed ? 1 : 0;
        st->agent_version = strdup(str_or_empty(body->agent_version));
        st->token_label = strdup(str_or_empty(body->token_label));
        st->log_origin = strdup(str_or_empty(body->log_origin));
        if (!st->agent_version || !st->token_label || !st->log_origin) {
                r = -ENOMEM;
                goto out;
        }
        r = strv_copy(body->principals, body->n_principals, &st->principals);
        if (r < 0)
                goto out;
        r = strv_copy(body->caller_principals, body->n_caller_principals, &st->caller_principals);
        if (r < 0)
                goto out;
        r = strv_copy(body->caller_roles, body->n_caller_roles, &st->caller_roles);
        if (r < 0)
                goto out;

        *ret = st;
        st = NULL;
        r = 0;
out:
        provsign_agent_status_free(st);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_agent_status_agent_version(const provsign_agent_status *st) {
        return st->agent_version;
}

_public_ uint32_t provsign_agent_status_protocol_version(const provsign_agent_status *st) {
        return st->protocol_version;
}

_public_ const char *provsign_agent_status_token_label(const provsign_agent_status *st) {
        return st->token_label;
}

_public_ uint64_t provsign_agent_status_uptime_seconds(const provsign_agent_status *st) {
        return st->uptime_seconds;
}

_public_ const char *provsign_agent_status_log_origin(const provsign_agent_status *st) {
        return st->log_origin;
}

_public_ uint64_t provsign_agent_status_log_size(const provsign_agent_status *st) {
        return st->log_size;
}

_public_ uint64_t provsign_agent_status_log_syncs(const provsign_agent_status *st) {
        return st->log_syncs;
}

_public_ int provsign_agent_status_log_failed(const provsign_agent_status *st) {
        return st->log_failed;
}

_public_ const char *const *provsign_agent_status_principals(const provsign_agent_status *st) {
        return (const char *const *) st->principals;
}

_public_ const char *const *provsign_agent_status_caller_principals(const provsign_agent_status *st) {
        return (const char *const *) st->caller_principals;
}

_public_ const char *const *provsign_agent_status_caller_roles(const provsign_agent_status *st) {
        return (const char *const *) st->caller_roles;
}

_public_ void provsign_agent_status_free(provsign_agent_status *st) {
        if (!st)
                return;
        free(st->agent_version);
        free(st->token_label);
        free(st->log_origin);
        strv_free(st->principals);
        strv_free(st->caller_principals);
        strv_free(st->caller_roles);
        free(st);
}

