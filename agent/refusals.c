#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "refusals.h"

#define MAX_TRACKED_UIDS 256u

typedef struct tracked {
        uid_t uid;
        uint64_t window_start_ms;
        uint32_t logged;
        uint64_t suppressed;
} tracked;

static tracked table[MAX_TRACKED_UIDS];
static size_t n_tracked;

static void append_summary(agent *a, const tracked *t) {
        char msg[160];
        snprintf(msg, sizeof msg, "%" PRIu64 " refusals of uid %u not logged individually in a %us window",
                 t->suppressed, (unsigned) t->uid, REFUSAL_WINDOW_S);
        agent_caller who = { .uid = t->uid };
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        caller.uid = t->uid;
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__REFUSED_SUMMARY;
        e.caller = &caller;
        e.suppressed = t->suppressed;
        e.message = msg;
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record a refusal summary for uid %u", (unsigned) t->uid);
        log_notice("%s", msg);
        agent_journal_fields f = { .event = "REFUSED_SUMMARY", .has_seq = r >= 0, .seq = seq, .who = &who };
        agent_journal_event(a, AGENT_JOURNAL_REFUSAL, LOG_NOTICE, &f, "%s", msg);
}

void refusals_tick(agent *a, bool force) {
        uint64_t now = agent_monotonic_ms();
        for (size_t i = 0; i < n_tracked;) {
                tracked *t = &table[i];
                if (!force && now - t->window_start_ms < REFUSAL_WINDOW_S * 1000u) {
                        i++;
                        continue;
                }
                if (t->suppressed)
                        append_summary(a, t);
                table[i] = table[--n_tracked];
        }
}

void refusals_record(agent *a, const agent_caller *who, const char *request, const char *principal, int status,
                     const char *message) {
        metrics_refusal(request, status);
        uint64_t now = agent_monotonic_ms();
        tracked *t = NULL;
        for (size_t i = 0; i < n_tracked; i++)
                if (table[i].uid == who->uid)
                        t = &table[i];
        if (!t) {
                if (n_tracked == MAX_TRACKED_UIDS) {
                        /* Full: end the oldest window early (its summary is written). */
                        size_t oldest = 0;
                        for (size_t i = 1; i < n_tracked; i++)
                                if (table[i].window_start_ms < table[oldest].window_start_ms)
                                        oldest = i;
                        if (table[oldest].suppressed)
                                append_summary(a, &table[oldest]);
                        table[oldest] = table[--n_tracked];
                }
                t = &table[n_tracked++];
                *t = (tracked){ .uid = who->uid, .window_start_ms = now };
        }
        if (t->logged >= REFUSALS_PER_WINDOW) {
                t->suppressed++;
                return;
        }
        t->logged++;
        /* The stderr line (journald's, under systemd) follows the same limit:
         * an unlimited one lets a stranger trip journald's per-unit rate
         * limit and so silence every other message of the agent. */
        log_notice("refused %s from uid %u pid %d (%s): %s: %s%s", request, (unsigned) who->uid, (int) who->pid,
                   who->exe ? who->exe : "?", proto_status_name(status), message,
                   t->logged == REFUSALS_PER_WINDOW ? " (further refusals of this uid are counted, not logged, for the rest of the window)" : "");
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        caller.uid = who->uid;
        caller.gid = who->gid;
        caller.pid = who->pid;
        caller.exe = who->exe ? who->exe : (char *) "";
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__REFUSED;
        e.caller = &caller;
        e.request = (char *) request;
        e.principal = (char *) (principal ? principal : "");
        e.status = (Provsign__Status) status;
        e.message = (char *) message;
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record a refusal of uid %u", (unsigned) who->uid);
        agent_journal_fields f = { .event = "REFUSED", .has_seq = r >= 0, .seq = seq, .principal = principal,
                                   .request = request, .status = proto_status_name(status), .who = who };
        agent_journal_event(a, AGENT_JOURNAL_REFUSAL, LOG_NOTICE, &f, "refused %s from uid %u: %s", request,
                            (unsigned) who->uid, message);
}

void refusals_free(void) {
        n_tracked = 0;
}
