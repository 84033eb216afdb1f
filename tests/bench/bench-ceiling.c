/* The ceiling: signing in-process through libp11 (keys/), no agent.
 *
 *   bench-ceiling MODULE TOKEN_LABEL PIN_FILE KEY_LABEL THREADS SECONDS [START]
 *
 * START (seconds since the epoch, optional) makes several processes sign
 * over the same window: each opens the token, then waits until START.
 * Opens MODULE (SoftHSM2, or p11-kit-client.so to measure `p11-kit server`),
 * logs in with the PIN read from PIN_FILE (never from argv), and signs
 * random SHA-256 digests with the key labelled KEY_LABEL from THREADS
 * threads for SECONDS. Prints one JSON line: signatures/s, latency
 * percentiles, this process's CPU per signature and its RSS (VmRSS after
 * the run: the baseline a program signing in-process needs). Figures only. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "keystore.h"

struct worker {
        keys_store *store;
        keys_key *key;
        double deadline;
        double *lat;
        size_t n, cap;
        int errors;
};

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
        struct worker *w = arg;
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        while (now() < w->deadline) {
                RAND_bytes(digest, sizeof digest);
                size_t len;
                double t0 = now();
                int r = keys_sign(w->store, w->key, digest, sizeof digest, sig, &len);
                double t1 = now();
                if (r < 0) {
                        w->errors++;
                        continue;
                }
                if (w->n == w->cap) {
                        w->cap = w->cap ? w->cap * 2 : 4096;
                        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
                        if (!w->lat)
                                abort();
                }
                w->lat[w->n++] = t1 - t0;
        }
        return NULL;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

static long rss_kib(void) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long v = -1;
        while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

static double cpu_s(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
               (double) ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
        if (argc != 7 && argc != 8) {
                fprintf(stderr, "usage: bench-ceiling MODULE TOKEN_LABEL PIN_FILE KEY_LABEL THREADS SECONDS [START]\n");
                return 2;
        }
        int threads = atoi(argv[5]);
        double secs = atof(argv[6]);
        if (threads < 1 || secs <= 0)
                return 2;
        char pin[256];
        FILE *f = fopen(argv[3], "r");
        if (!f) {
                perror(argv[3]);
                return 5;
        }
        size_t pin_len = fread(pin, 1, sizeof pin, f);
        fclose(f);
        while (pin_len && (pin[pin_len - 1] == '\n' || pin[pin_len - 1] == '\r'))
                pin_len--;
        keys_store *store = NULL;
        char *err = NULL;
        int r = keys_store_open(argv[1], argv[2], pin, pin_len, &store, &err);
        memset(pin, 0, sizeof pin);
        if (r < 0) {
                fprintf(stderr, "bench-ceiling: %s\n", err ? err : "cannot open the token");
                return 1;
        }
        keys_key *key = keys_store_find_label(store, argv[4]);
        if (!key) {
                fprintf(stderr, "bench-ceiling: no key labelled %s\n", argv[4]);
                return 1;
        }
        if (argc == 8) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                double wait = atof(argv[7]) - ((double) ts.tv_sec + (double) ts.tv_nsec / 1e9);
                if (wait > 0)
                        usleep((useconds_t) (wait * 1e6));
        }
        struct worker *w = calloc((size_t) threads, sizeof *w);
        pthread_t *t = calloc((size_t) threads, sizeof *t);
        if (!w || !t)
                return 5;
        double c0 = cpu_s(), start = now();
        for (int i = 0; i < threads; i++) {
                w[i].store = store;
                w[i].key = key;
                w[i].deadline = start + secs;
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        size_t total = 0;
        int errors = 0;
        for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                total += w[i].n;
                errors += w[i].errors;
        }
        double elapsed = now() - start, cpu = cpu_s() - c0;
        long rss = rss_kib();
        double *all = malloc((total ? total : 1) * sizeof *all);
        size_t k = 0;
        for (int i = 0; i < threads; i++) {
                memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
                k += w[i].n;
                free(w[i].lat);
        }
        qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t) ((double) (total - 1) * (p))] * 1e6 : 0)
        printf("{\"threads\": %d, \"signatures\": %zu, \"errors\": %d, \"seconds\": %.2f, \"ops_per_s\": %.0f, "
               "\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f, \"cpu_us_per_op\": %.1f, \"rss_kib\": %ld}\n",
               threads, total, errors, elapsed, (double) total / elapsed, PCT(0.50), PCT(0.99), PCT(0.999),
               total ? cpu * 1e6 / (double) total : 0.0, rss);
        free(all);
        free(w);
        free(t);
        keys_store_free(store);
        return errors ? 1 : 0;
}
