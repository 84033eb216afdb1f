/* Shared by the bench programs (bench-sign, bench-ceiling, bench-ssh,
 * bench-micro): a monotonic clock, the process's CPU time, per-thread
 * latency samples, and the one
 * JSON line each prints, so every peer is measured and reported the same
 * way. Figures only; nothing here decides pass or fail. */
#pragma once

#include <stddef.h>

/* bench_now: CLOCK_MONOTONIC in seconds. */
double bench_now(void);

/* bench_cpu_s: this process's CPU time so far (user + system), in seconds. */
double bench_cpu_s(void);

/* One thread's samples (seconds each) and its failed operations. Zero it
 * before use. */
struct bench_lat {
        double *v;
        size_t n, cap;
        int errors;
};

/* bench_lat_add: records one latency; aborts when out of memory (a bench
 * has no better answer). */
void bench_lat_add(struct bench_lat *l, double seconds);

/* bench_lat_merge: moves from's samples and errors into into, freeing
 * from's. */
void bench_lat_merge(struct bench_lat *into, struct bench_lat *from);

/* bench_lat_p50_us: the median in µs (sorts l's samples; 0 for none). */
double bench_lat_p50_us(struct bench_lat *l);

/* bench_lat_print: sorts all and prints one JSON line: {"<who>": count,
 * "signatures", "errors", "seconds", "ops_per_s", "p50_us", "p99_us",
 * "p999_us"<extra>} where extra is "" or more ", \"key\": value" pairs.
 * Frees all's samples. */
void bench_lat_print(struct bench_lat *all, const char *who, int count, double elapsed, const char *extra);
