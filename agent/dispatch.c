/* The helpers every request handler shares (dispatch.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "metrics.h"
#include "refusals.h"

static void refuse_va(agent *a, agent_conn *c, const char *name, int status, const char *fmt, va_list ap)
        __attribute__((format(printf, 5, 0)));
static void refuse_va(agent *a, agent_conn *c, const char *name, int status, const char *fmt, va_list ap) {
        char msg[512];
        vsnprintf(msg, sizeof msg, fmt, ap);
        refusals_record(a, server_conn_caller(c), name, NULL, status, msg);
        server_reply(a, c, NULL, status, false, "%s", msg);
}

void dispatch_refuse(agent *a, agent_conn *c, const handler *h, int status, const char *fmt, ...) {
        va_list ap;
        /* metrics: a Sign refused before it reached a worker (sign_complete
         * counts the others, with their principal). */
        if (h && h->body == PROVSIGN__REQUEST__BODY_SIGN && h->handle)
                metrics_sign(NULL, status, -1);
        va_start(ap, fmt);
        refuse_va(a, c, h ? h->name : "request", status, fmt, ap);
        va_end(ap);
}

void dispatch_refuse_named(agent *a, agent_conn *c, const char *name, int status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        refuse_va(a, c, name, status, fmt, ap);
        va_end(ap);
}

bool dispatch_name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > DISPATCH_MAX_NAME)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-'))
                        return false;
        return true;
}

/* Printable UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
 * no control characters: these strings go into protobuf string fields of the
 * audit log, which strict decoders elsewhere must be able to read. */
bool dispatch_text_valid(const char *s, size_t max) {
        size_t n = strlen(s);
        if (n > max)
                return false;
        const unsigned char *p = (const unsigned char *) s, *end = p + n;
        while (p < end) {
                unsigned c = *p;
                if (c < 0x80) {
                        if (c < 0x20 || c == 0x7f)
                                return false;
                        p++;
                        continue;
                }
                size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
                if (k == 0 || c > 0xf4 || (size_t) (end - p) < k)
                        return false;
                for (size_t i = 1; i < k; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
                    (c == 0xf4 && p[1] >= 0x90))
                        return false;
                p += k;
        }
        return true;
}

/* ---- Replies that wait for the log ---- */

void dispatch_park(agent *a, agent_conn_job *job) {
        job->next_parked = NULL;
        if (a->parked_tail)
                a->parked_tail->next_parked = job;
        else
                a->parked_head = job;
        a->parked_tail = job;
}

void dispatch_audit_progress(agent *a) {
        if (!a->parked_head)
                return;
        uint64_t committed = audit_committed(a->audit);
        bool failed = audit_failed(a->audit);
        agent_conn_job **pp = &a->parked_head;
        agent_conn_job *prev = NULL;
        while (*pp) {
                agent_conn_job *j = *pp;
                if (!failed && j->wait_seq >= committed) {
                        prev = j;
                        pp = &j->next_parked;
                        continue;
                }
                *pp = j->next_parked;
                if (a->parked_tail == j)
                        a->parked_tail = prev;
                server_resume_job(a, j);
        }
}

void dispatch_abandon_parked(agent *a) {
        while (a->parked_head) {
                agent_conn_job *j = a->parked_head;
                a->parked_head = j->next_parked;
                j->base.next = NULL;
                server_abandon_jobs(a, &j->base);
        }
        a->parked_tail = NULL;
}
