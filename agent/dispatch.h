/* What request handlers share: the row type of the handler table
 * (requests.c), the one way to refuse, and parking a reply until the log
 * has made its entry durable. Handlers include this and server.h, nothing
 * of each other. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"
#include "server.h"

/* One row of the handler table (requests.c). */
typedef struct handler {
        Provsign__Request__BodyCase body;
        const char *name;
        enum policy_access access;
        /* Sends exactly one reply (now, or later from a job). Returns true
         * when it kept req (it frees it later). NULL in the stand-in rows
         * handlers make for their jobs' refusals. */
        bool (*handle)(agent *a, agent_conn *c, const struct handler *h, Provsign__Request *req);
        /* Checks every field of the body before anything else sees it
         * (protobuf-c guarantees wire validity, not meaning): a status, with
         * msg written unless OK. NULL: nothing to check. Pure: no state but
         * the config's limits. */
        int (*validate)(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n);
        /* With a request_id, it may run alongside the connection's other
         * such requests (pipelining; answered in any order, each with its
         * id). Otherwise it runs alone, after those before it. */
        bool concurrent;
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

/* dispatch_audit_progress: the audit log made progress (entries durable,
 * or the log failed): resumes the parked jobs it covers. */
void dispatch_audit_progress(agent *a);

/* dispatch_abandon_parked: at shutdown, drops the replies still waiting
 * for the log (no reply is sent). */
void dispatch_abandon_parked(agent *a);

/* dispatch_text_valid: printable UTF-8 of at most max bytes. */
bool dispatch_text_valid(const char *s, size_t max);

/* dispatch_name_valid: a principal name: 1..DISPATCH_MAX_NAME of [A-Za-z0-9._-]. */
#define DISPATCH_MAX_NAME 64u
bool dispatch_name_valid(const char *s);
