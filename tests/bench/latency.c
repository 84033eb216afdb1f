#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "latency.h"

double bench_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

double bench_cpu_s(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
               (double) ru.ru_stime.tv_usec / 1e6;
}

static void reserve(struct bench_lat *l, size_t more) {
        if (l->cap - l->n >= more)
                return;
        size_t cap = l->cap ? l->cap : 4096;
        while (cap - l->n < more)
                cap *= 2;
        double *v = realloc(l->v, cap * sizeof *v);
        if (!v)
                abort();
        l->v = v;
        l->cap = cap;
}

void bench_lat_add(struct bench_lat *l, double seconds) {
        reserve(l, 1);
        l->v[l->n++] = seconds;
}

void bench_lat_merge(struct bench_lat *into, struct bench_lat *from) {
        if (from->n) {
                reserve(into, from->n);
                memcpy(into->v + into->n, from->v, from->n * sizeof *from->v);
                into->n += from->n;
        }
        into->errors += from->errors;
        free(from->v);
        *from = (struct bench_lat){ 0 };
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

static double pct_us(const struct bench_lat *l, double p) {
        return l->n ? l->v[(size_t) ((double) (l->n - 1) * p)] * 1e6 : 0;
}

static void sort(struct bench_lat *l) {
        if (l->n)
                qsort(l->v, l->n, sizeof *l->v, cmp);
}

double bench_lat_p50_us(struct bench_lat *l) {
        sort(l);
        return pct_us(l, 0.50);
}

void bench_lat_print(struct bench_lat *all, const char *who, int count, double elapsed, const char *extra) {
        sort(all);
        printf("{\"%s\": %d, \"signatures\": %zu, \"errors\": %d, \"seconds\": %.2f, \"ops_per_s\": %.0f, "
               "\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f%s}\n",
               who, count, all->n, all->errors, elapsed, (double) all->n / elapsed, pct_us(all, 0.50),
               pct_us(all, 0.99), pct_us(all, 0.999), extra);
        free(all->v);
        *all = (struct bench_lat){ 0 };
}
