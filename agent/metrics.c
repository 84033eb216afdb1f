/* The agent's metrics registry and its text forms (see metrics.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "names.h"
#include "provsign.pb-c.h"

#define N_STATUS 16u    /* the Status enum has 10 values; unknown ones share the last slot */
#define N_EVENTS 16u    /* AuditEvent values */
/* principal x status and request x reason pairs kept, then counted under
 * "other": keeps the text well inside one 64 KiB reply frame. */
#define MAX_LABELLED 512u
#define MAX_BUCKETS 20u

typedef struct histogram {
        const char *name, *help;
        const double *bounds;
        size_t n_bounds;
        uint64_t counts[MAX_BUCKETS]; /* per bucket, not cumulative */
        uint64_t count;
        double sum;
} histogram;

typedef struct labelled {
        char a[65], b[32]; /* principal/request, status/reason */
        uint64_t n;
} labelled;

typedef struct labelled_set {
        labelled *v;
        size_t n, cap;
} labelled_set;

static const double seconds_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                         0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10 };
static const double entries_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096 };

static struct registry {
        pthread_mutex_t lock;
        bool live;
        histogram h[METRICS_N_HISTOGRAMS];
        uint64_t c[METRICS_N_COUNTERS];
        uint64_t key_events[N_EVENTS];
        labelled_set signatures, refusals;
        uint64_t checkpoint_at_ns; /* CLOCK_MONOTONIC */
        bool has_checkpoint;
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const struct {
        const char *name, *help;
} counter_info[METRICS_N_COUNTERS] = {
        [METRICS_TOKEN_OUTAGES] = { "provsign_token_outages", "Times the token went from available to unavailable." },
        [METRICS_RATE_LIMITED] = { "provsign_rate_limited_requests", "Requests refused with RATE_LIMITED." },
        [METRICS_LOG_WRITTEN_BYTES] = { "provsign_log_written_bytes", "Bytes of records appended to the log since start." },
        [METRICS_CHECKPOINTS] = { "provsign_checkpoints_signed", "Checkpoints signed with the log key since start." },
};

int metrics_init(void) {
        pthread_mutex_lock(&reg.lock);
        static const struct {
                const char *name, *help;
                const double *bounds;
                size_t n;
        } hi[METRICS_N_HISTOGRAMS] = {
                [METRICS_SIGN_SECONDS] = { "provsign_sign_duration_seconds",
                                           "Sign requests that reached a worker: request decoded to reply queued.",
                                           seconds_bounds, sizeof seconds_bounds / sizeof seconds_bounds[0] },
                [METRICS_TOKEN_SECONDS] = { "provsign_token_sign_duration_seconds", "One signature on the token.",
                                            seconds_bounds, sizeof seconds_bounds / sizeof seconds_bounds[0] },
                [METRICS_FDATASYNC_SECONDS] = { "provsign_log_sync_duration_seconds",
                                                "One group commit: write and fdatasync of the log segment.",
                                                seconds_bounds, sizeof seconds_bounds / sizeof seconds_bounds[0] },
                [METRICS_GROUP_ENTRIES] = { "provsign_log_group_commit_entries", "Entries made durable by one group commit.",
                                            entries_bounds, sizeof entries_bounds / sizeof entries_bounds[0] },
        };
        memset(reg.h, 0, sizeof reg.h);
        for (size_t i = 0; i < METRICS_N_HISTOGRAMS; i++)
                reg.h[i] = (histogram){ .name = hi[i].name, .help = hi[i].help, .bounds = hi[i].bounds,
                                        .n_bounds = hi[i].n };
        memset(reg.c, 0, sizeof reg.c);
        memset(reg.key_events, 0, sizeof reg.key_events);
        reg.has_checkpoint = false;
        reg.live = true;
        pthread_mutex_unlock(&reg.lock);
        return 0;
}

void metrics_free(void) {
        pthread_mutex_lock(&reg.lock);
        reg.live = false;
        free(reg.signatures.v);
        free(reg.refusals.v);
        reg.signatures = (labelled_set){ 0 };
        reg.refusals = (labelled_set){ 0 };
        pthread_mutex_unlock(&reg.lock);
}

/* Adds n to the pair (a, b); past MAX_LABELLED pairs, to ("other", b). */
static void labelled_add(labelled_set *s, const char *a, const char *b, uint64_t n) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i].a, a) == 0 && strcmp(s->v[i].b, b) == 0) {
                        s->v[i].n += n;
                        return;
                }
        if (s->n == MAX_LABELLED) {
                if (strcmp(a, "other") != 0)
                        labelled_add(s, "other", b, n);
                return;
        }
        if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 16;
                labelled *v = realloc(s->v, cap * sizeof *v);
                if (!v)
                        return; /* a lost count beats a failed request */
                s->v = v;
                s->cap = cap;
        }
        labelled *l = &s->v[s->n++];
        snprintf(l->a, sizeof l->a, "%s", a);
        snprintf(l->b, sizeof l->b, "%s", b);
        l->n = n;
}

/* Under reg.lock. */
static void observe(histogram *h, double value) {
        size_t i = 0;
        while (i < h->n_bounds && value > h->bounds[i])
                i++;
        h->counts[i]++; /* i == n_bounds: only +Inf */
        h->count++;
        h->sum += value;
}

void metrics_sign(const char *principal, int status, double seconds) {
        pthread_mutex_lock(&reg.lock);
        if (reg.live) {
                labelled_add(&reg.signatures, principal ? principal : "", proto_status_name(status), 1);
                if (seconds >= 0)
                        observe(&reg.h[METRICS_SIGN_SECONDS], seconds);
        }
        pthread_mutex_unlock(&reg.lock);
}

void metrics_refusal(const char *request, int status) {
        pthread_mutex_lock(&reg.lock);
        if (reg.live) {
                labelled_add(&reg.refusals, request ? request : "", proto_status_name(status), 1);
                if (status == PROVSIGN__STATUS__RATE_LIMITED)
                        reg.c[METRICS_RATE_LIMITED]++;
        }
        pthread_mutex_unlock(&reg.lock);
}

void metrics_key_event(int audit_event) {
        pthread_mutex_lock(&reg.lock);
        if (reg.live && audit_event >= 0 && (unsigned) audit_event < N_EVENTS)
                reg.key_events[audit_event]++;
        pthread_mutex_unlock(&reg.lock);
}

void metrics_observe(enum metrics_histogram which, double value) {
        pthread_mutex_lock(&reg.lock);
        if (reg.live && which < METRICS_N_HISTOGRAMS)
                observe(&reg.h[which], value);
        pthread_mutex_unlock(&reg.lock);
}

void metrics_add(enum metrics_counter c, uint64_t n) {
        pthread_mutex_lock(&reg.lock);
        if (reg.live && c < METRICS_N_COUNTERS)
                reg.c[c] += n;
        pthread_mutex_unlock(&reg.lock);
}

void metrics_checkpoint_signed(void) {
        uint64_t now = agent_monotonic_ns();
        pthread_mutex_lock(&reg.lock);
        if (reg.live) {
                reg.checkpoint_at_ns = now;
                reg.has_checkpoint = true;
                reg.c[METRICS_CHECKPOINTS]++;
        }
        pthread_mutex_unlock(&reg.lock);
}

double metrics_checkpoint_age(void) {
        uint64_t now = agent_monotonic_ns();
        pthread_mutex_lock(&reg.lock);
        double age = reg.has_checkpoint ? (double) (now - reg.checkpoint_at_ns) / 1e9 : -1;
        pthread_mutex_unlock(&reg.lock);
        return age;
}

/* ---- text ---- */

/* A label value as the text formats want it: \ " and newline escaped. The
 * names we put there never hold them, but the format must stay valid. */
static void put_label(FILE *f, const char *s) {
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fputc('\\', f);
                if (*s == '\n') {
                        fputs("\\n", f);
                        continue;
                }
                fputc(*s, f);
        }
}

static void family(FILE *f, bool om, const char *name, const char *type, const char *help) {
        /* Prometheus 0.0.4 names a counter family by its sample (..._total);
         * OpenMetrics by the name without the suffix. */
        const char *suffix = strcmp(type, "counter") == 0 && !om ? "_total" : "";
        fprintf(f, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, type);
}

static void put_number(FILE *f, double v) {
        if (v > -1e15 && v < 1e15 && v == (double) (int64_t) v)
                fprintf(f, "%.0f", v);
        else
                fprintf(f, "%.9g", v);
}

static void render_histogram(FILE *f, bool om, const histogram *h) {
        family(f, om, h->name, "histogram", h->help);
        uint64_t cum = 0;
        for (size_t i = 0; i < h->n_bounds; i++) {
                cum += h->counts[i];
                fprintf(f, "%s_bucket{le=\"", h->name);
                put_number(f, h->bounds[i]);
                fprintf(f, "\"} %llu\n", (unsigned long long) cum);
        }
        fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", h->name, (unsigned long long) h->count, h->name);
        put_number(f, h->sum);
        fprintf(f, "\n%s_count %llu\n", h->name, (unsigned long long) h->count);
}

static void render_labelled(FILE *f, const char *name, const char *la, const char *lb, const labelled_set *s) {
        for (size_t i = 0; i < s->n; i++) {
                fprintf(f, "%s_total{%s=\"", name, la);
                put_label(f, s->v[i].a);
                fprintf(f, "\",%s=\"", lb);
                put_label(f, s->v[i].b);
                fprintf(f, "\"} %llu\n", (unsigned long long) s->v[i].n);
        }
}

static void gauge(FILE *f, bool om, const char *name, const char *help, double v) {
        family(f, om, name, "gauge", help);
        fprintf(f, "%s ", name);
        put_number(f, v);
        fputc('\n', f);
}

int metrics_render(const metrics_gauges *g, bool om, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        double ckpt_age = metrics_checkpoint_age();

        pthread_mutex_lock(&reg.lock);
        family(f, om, "provsign_signatures", "counter", "Sign requests answered, by principal and status.");
        render_labelled(f, "provsign_signatures", "principal", "status", &reg.signatures);
        family(f, om, "provsign_refusals", "counter", "Requests refused, by request and reason (the status).");
        render_labelled(f, "provsign_refusals", "request", "reason", &reg.refusals);
        family(f, om, "provsign_key_events", "counter", "Key events appended to the log, by type.");
        for (int e = 0; e < (int) N_EVENTS; e++) {
                const char *name = proto_audit_event_name(e);
                if (!name || strncmp(name, "KEY_", 4) != 0)
                        continue;
                fprintf(f, "provsign_key_events_total{event=\"%s\"} %llu\n", name,
                        (unsigned long long) reg.key_events[e]);
        }
        for (size_t i = 0; i < METRICS_N_COUNTERS; i++) {
                family(f, om, counter_info[i].name, "counter", counter_info[i].help);
                fprintf(f, "%s_total %llu\n", counter_info[i].name, (unsigned long long) reg.c[i]);
        }
        for (size_t i = 0; i < METRICS_N_HISTOGRAMS; i++)
                render_histogram(f, om, &reg.h[i]);
        pthread_mutex_unlock(&reg.lock);

        gauge(f, om, "provsign_log_entries", "Entries in the log, durable and checkpointed.", (double) g->log_entries);
        gauge(f, om, "provsign_log_bytes", "Bytes of the log's segment files.", (double) g->log_bytes);
        gauge(f, om, "provsign_log_failed", "1 when the audit log failed: nothing is signed until a restart.",
              g->log_failed ? 1 : 0);
        if (ckpt_age >= 0)
                gauge(f, om, "provsign_checkpoint_age_seconds", "Seconds since the newest checkpoint was signed.",
                      ckpt_age);
        gauge(f, om, "provsign_connections", "Client connections open.", (double) g->connections);
        family(f, om, "provsign_token_recoveries", "counter", "Times the token was re-opened after an outage.");
        fprintf(f, "provsign_token_recoveries_total %llu\n", (unsigned long long) g->token_reopens);
        gauge(f, om, "provsign_token_up", "1 when the token answers, 0 during an outage.", g->token_up ? 1 : 0);
        gauge(f, om, "provsign_workers", "Worker threads for token operations.", (double) g->workers);
        gauge(f, om, "provsign_workers_busy", "Worker threads holding a job now.", (double) g->workers_busy);
        gauge(f, om, "provsign_workers_queued", "Jobs waiting for a free worker.", (double) g->workers_queued);
        gauge(f, om, "provsign_principals", "Principals in the configuration.", (double) g->principals);
        gauge(f, om, "provsign_uptime_seconds", "Seconds since the agent started.", g->uptime_s);
        if (om)
                fputs("# EOF\n", f);
        if (fclose(f) != 0 || !buf) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}
