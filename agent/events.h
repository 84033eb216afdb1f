/* Audit entries for the agent's own lifecycle: start, stop, policy loads.
 * (Signatures, refusals and key events are written where they happen.)
 *
 * And structured journald events: agent_journal_event() sends
 * one entry with PROVSIGN_* fields through sd_journal_sendv(), beside (not
 * instead of) the agent's stderr lines. Which classes go out is
 * journal_events: "default" = lifecycle, policy loads, key events and
 * refusals (rate-limited per uid like their audit entries); "all" = also
 * every signature; "none" = nothing structured. Without journald the send
 * fails quietly: nothing else changes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "peer.h"

/* agent_audit_lifecycle: AGENT_START or AGENT_STOP with a message. */
void agent_audit_lifecycle(agent *a, int event, const char *message);

/* agent_audit_policy_load: POLICY_LOAD naming the file, with the SHA-256 of
 * its bytes as digest (so an auditor can tell which policy was in force),
 * status OK or why the load was refused. */
void agent_audit_policy_load(agent *a, const char *path, int status, const char *message);

enum agent_journal_class {
        AGENT_JOURNAL_LIFECYCLE, /* start, stop, policy load */
        AGENT_JOURNAL_REFUSAL,
        AGENT_JOURNAL_KEY,       /* key create, rotate, revoke, destroy */
        AGENT_JOURNAL_SIGN,      /* every signature: journal_events = all only */
};

/* The fields of one event; NULL / has_seq false: the field is left out. */
typedef struct agent_journal_fields {
        const char *event;       /* PROVSIGN_EVENT: the AuditEvent name ("SIGN", "REFUSED", ...) */
        bool has_seq;
        uint64_t seq;            /* PROVSIGN_SEQ: its audit log entry */
        const char *principal;   /* PROVSIGN_PRINCIPAL */
        const char *keyid;       /* PROVSIGN_KEYID */
        const char *digest;      /* PROVSIGN_DIGEST: "sha256:HEX" */
        const char *request;     /* PROVSIGN_REQUEST: for refusals */
        const char *status;      /* PROVSIGN_STATUS: status name */
        const agent_caller *who; /* PROVSIGN_UID, PROVSIGN_GID, PROVSIGN_PID, PROVSIGN_EXE */
} agent_journal_fields;

/* agent_journal_configure: takes journal_events from cfg (the config at
 * start; the new one on reload, before its first key events), for senders
 * on any thread. */
void agent_journal_configure(agent *a, const agent_config *cfg);

/* agent_journal_wanted: whether journal_events sends events of cls. */
bool agent_journal_wanted(const agent *a, enum agent_journal_class cls);

/* agent_journal_event: when wanted, one journal entry: MESSAGE (printf
 * style), PRIORITY, SYSLOG_IDENTIFIER=provsign-agent, PROVSIGN_ORIGIN (the
 * log origin, which names this agent in a fleet) and f's fields. */
void agent_journal_event(const agent *a, enum agent_journal_class cls, int priority, const agent_journal_fields *f,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* agent_journal_key_event: a registry_event_fn (ctx = the agent): one
 * AGENT_JOURNAL_KEY event per logged key event (create, rotate, revoke,
 * destroy), with its seq, principal, key id and the operator who asked. */
void agent_journal_key_event(void *ctx, const Provsign__AuditEntry *e, uint64_t seq);
