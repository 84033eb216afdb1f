/* What request handlers share (agent/dispatch.c owns the table; handlers
 * for key operations live in agent/keyops.c, the key bundle in
 * agent/bundle.c). */
#pragma once

#include <stdbool.h>

#include "policy.h"
#include "server.h"

typedef struct handler {
        Provsign__Request__BodyCase body;
        const char *name;
        enum policy_access access;
        /* Returns true when it kept req (it frees it later). */
        bool (*handle)(agent *a, agent_conn *c, const struct handler *h, Provsign__Request *req);
} handler;

/* dispatch_refuse: records the refusal (refusals_record: audit log, stderr
 * and journal, rate-limited per uid) and answers it with status and the
 * formatted message. h may be NULL ("request"). */
void dispatch_refuse(agent *a, agent_conn *c, const handler *h, int status, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* dispatch_refuse_named: the same, for a request named by name. */
void dispatch_refuse_named(agent *a, agent_conn *c, const char *name, int status, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* dispatch_park: keeps job until the log has committed job->wait_seq;
 * then its complete() runs again (dispatch_audit_progress). */
void dispatch_park(agent *a, agent_conn_job *job);

/* dispatch_text_valid: printable UTF-8 of at most max bytes. */
bool dispatch_text_valid(const char *s, size_t max);
