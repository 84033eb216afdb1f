/* The agent's service-level numbers, for Prometheus (docs/metrics.md).
 *
 * One registry per process (the agent is one process with one token and one
 * log): counters and histograms that the main loop, the workers and the
 * committer update as things happen, and gauges read from the agent's state
 * when the text is rendered (GetMetrics). Nothing here names a uid, a
 * digest or a key id: counts only. The principal label only takes names
 * from the configuration (a refused request's unknown name is ""), so no
 * caller can grow the label set.
 *
 * Threads: every update may come from any thread (one mutex; an update is a
 * few additions). metrics_init() before the first update, metrics_free()
 * after the last; updates before init or after free are ignored. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metrics_histogram {
        METRICS_SIGN_SECONDS,      /* a Sign that reached a worker: request decoded -> reply queued */
        METRICS_TOKEN_SECONDS,     /* one keys_sign() call on the token */
        METRICS_FDATASYNC_SECONDS, /* one group commit's write + fdatasync */
        METRICS_GROUP_ENTRIES,     /* entries per group commit */
        METRICS_N_HISTOGRAMS,
};

enum metrics_counter {
        METRICS_TOKEN_OUTAGES,    /* the token went from up to down */
        METRICS_RATE_LIMITED,     /* requests refused with RATE_LIMITED */
        METRICS_LOG_WRITTEN_BYTES,
        METRICS_CHECKPOINTS,      /* checkpoints signed */
        METRICS_N_COUNTERS,
};

/* The gauges, read by the caller of metrics_render() from the agent (the
 * checkpoint's age is the registry's own: metrics_checkpoint_age()). */
typedef struct metrics_gauges {
        uint64_t log_entries;        /* durable and checkpointed */
        uint64_t log_bytes;          /* segment files on disk */
        uint64_t connections;        /* open client connections */
        bool token_up;
        bool log_failed;             /* audit_failed(): nothing is signed until a restart */
        uint64_t token_reopens;      /* keys_store_health(): re-opens after outages since start */
        uint64_t principals;         /* configured */
        uint64_t workers;            /* token worker threads (workers_load()) */
        uint64_t workers_busy;       /* of them, holding a job */
        uint64_t workers_queued;     /* jobs submitted, not yet taken by a worker */
        double uptime_s;
} metrics_gauges;

/* metrics_init: an empty registry. 0 or -ENOMEM. */
int metrics_init(void);
/* metrics_free: frees the registry; later updates are ignored. */
void metrics_free(void);

/* metrics_sign: one Sign answered with status (provsign_signatures_total);
 * principal is a configured name or "" / NULL. seconds < 0: no latency
 * sample (answered before a worker saw it). */
void metrics_sign(const char *principal, int status, double seconds);
/* metrics_refusal: one refused request (provsign_refusals_total{request,
 * reason}); request is a request name ("Sign", "Export", ... or
 * "connection"), status the refusal's status. */
void metrics_refusal(const char *request, int status);
/* metrics_key_event: one key event appended (provsign_key_events_total). */
void metrics_key_event(int audit_event);
void metrics_observe(enum metrics_histogram h, double value);
void metrics_add(enum metrics_counter c, uint64_t n);
/* metrics_checkpoint_signed: the newest checkpoint was just signed. */
void metrics_checkpoint_signed(void);
/* metrics_checkpoint_age: seconds since then, < 0 when none was. */
double metrics_checkpoint_age(void);

/* metrics_render: the registry and g as text into *ret (NUL-terminated,
 * caller frees), *ret_len bytes. openmetrics: OpenMetrics 1.0 text
 * (counter families named without _total, "# EOF" last); else the
 * Prometheus text format 0.0.4 that node_exporter's textfile collector
 * reads. 0 or -ENOMEM. */
int metrics_render(const metrics_gauges *g, bool openmetrics, char **ret, size_t *ret_len);
