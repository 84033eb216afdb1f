#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/uio.h>

#include <systemd/sd-journal.h>

#include "events.h"
#include "filehash.h"
#include "names.h"
#include "log.h"
#include "metrics.h"

void agent_audit_lifecycle(agent *a, int event, const char *message) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = (Provsign__AuditEvent) event;
        e.message = (char *) message;
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record %s: %s", message, strerror(-r));
        agent_journal_fields f = { .event = event == PROVSIGN__AUDIT_EVENT__AGENT_START ? "AGENT_START" : "AGENT_STOP",
                                   .has_seq = r >= 0, .seq = seq };
        agent_journal_event(a, AGENT_JOURNAL_LIFECYCLE, LOG_NOTICE, &f, "%s", message);
}

void agent_audit_policy_load(agent *a, const char *path, int status, const char *message) {
        uint8_t digest[32];
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__POLICY_LOAD;
        e.status = (Provsign__Status) status;
        e.payload_type = (char *) "text/x-provsign-agent-conf";
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, message);
        e.message = msg;
        if (proto_sha256_file(path, digest) == 0) {
                e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
                e.digest.data = digest;
                e.digest.len = sizeof digest;
        }
        uint64_t seq;
        int r = audit_append(a->audit, &e, &seq, NULL, NULL);
        if (r < 0)
                log_warning("audit log: cannot record the policy load: %s", strerror(-r));
        agent_journal_fields f = { .event = "POLICY_LOAD", .has_seq = r >= 0, .seq = seq,
                                   .status = proto_status_name(status) };
        agent_journal_event(a, AGENT_JOURNAL_LIFECYCLE, status == PROVSIGN__STATUS__OK ? LOG_NOTICE : LOG_WARNING, &f,
                            "policy %s", msg);
}

/* ---- journald ---- */

void agent_journal_configure(agent *a, const agent_config *cfg) {
        a->journal_events = (int) cfg->journal_events;
}

bool agent_journal_wanted(const agent *a, enum agent_journal_class cls) {
        int mode = a->journal_events; /* one atomic load */
        switch (mode) {
        case AGENT_JOURNAL_NONE:
                return false;
        case AGENT_JOURNAL_ALL:
                return true;
        case AGENT_JOURNAL_DEFAULT:
        default:
                return cls != AGENT_JOURNAL_SIGN;
        }
}

#define MAX_FIELDS 16

void agent_journal_event(const agent *a, enum agent_journal_class cls, int priority, const agent_journal_fields *f,
                         const char *fmt, ...) {
        if (!agent_journal_wanted(a, cls))
                return;
        char *fields[MAX_FIELDS] = { 0 };
        struct iovec iov[MAX_FIELDS];
        size_t n = 0;
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
#define ADD(...)                                                                \
        do {                                                                    \
                if (n < MAX_FIELDS && asprintf(&fields[n], __VA_ARGS__) >= 0)   \
                        n++;                                                    \
                else if (n < MAX_FIELDS)                                        \
                        fields[n] = NULL;                                       \
        } while (0)
        ADD("MESSAGE=%s", msg);
        ADD("PRIORITY=%d", priority);
        ADD("SYSLOG_IDENTIFIER=provsign-agent");
        ADD("PROVSIGN_ORIGIN=%s", audit_origin(a->audit));
        if (f->event)
                ADD("PROVSIGN_EVENT=%s", f->event);
        if (f->has_seq)
                ADD("PROVSIGN_SEQ=%" PRIu64, f->seq);
        if (f->principal && *f->principal)
                ADD("PROVSIGN_PRINCIPAL=%s", f->principal);
        if (f->keyid && *f->keyid)
                ADD("PROVSIGN_KEYID=%s", f->keyid);
        if (f->digest && *f->digest)
                ADD("PROVSIGN_DIGEST=%s", f->digest);
        if (f->request && *f->request)
                ADD("PROVSIGN_REQUEST=%s", f->request);
        if (f->status && *f->status)
                ADD("PROVSIGN_STATUS=%s", f->status);
        if (f->who) {
                ADD("PROVSIGN_UID=%u", (unsigned) f->who->uid);
                ADD("PROVSIGN_GID=%u", (unsigned) f->who->gid);
                ADD("PROVSIGN_PID=%d", (int) f->who->pid);
                if (f->who->exe)
                        ADD("PROVSIGN_EXE=%s", f->who->exe);
        }
#undef ADD
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){ .iov_base = fields[i], .iov_len = strlen(fields[i]) };
        /* Without journald this fails (no socket): the stderr lines remain. */
        (void) sd_journal_sendv(iov, (int) n);
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
}

void agent_journal_key_event(void *ctx, const Provsign__AuditEntry *e, uint64_t seq) {
        const agent *a = ctx;
        metrics_key_event((int) e->event);
        const char *name = proto_audit_event_name((int) e->event);
        agent_caller who = { 0 };
        agent_journal_fields f = { .event = name, .has_seq = true, .seq = seq, .principal = e->principal,
                                   .keyid = e->keyid };
        if (e->caller) {
                who.uid = e->caller->uid;
                who.gid = e->caller->gid;
                who.pid = e->caller->pid;
                who.exe = e->caller->exe && *e->caller->exe ? e->caller->exe : NULL;
                f.who = &who;
        }
        agent_journal_event(a, AGENT_JOURNAL_KEY, LOG_NOTICE, &f, "%s %s of %s%s%s", name ? name : "key event",
                            e->keyid ? e->keyid : "", e->principal ? e->principal : "",
                            e->message && *e->message ? ": " : "", e->message ? e->message : "");
}
