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
 * the run: the baseline a program signing in-process needs). Figures only.
 * BENCH_PACE_US=N in the environment sleeps N µs between signatures: a
 * signature made the way a request/response server makes one, with the
 * caches gone cold in between (its latency is the one-client floor's
 * honest token term; see tests/bench/RESULTS.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "keystore.h"
#include "latency.h"

struct worker {
        keys_store *store;
        keys_key *key;
        double deadline;
        long pace_us;
        struct bench_lat lat; /* samples and errors */
};

static void *run(void *arg) {
        struct worker *w = arg;
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        while (bench_now() < w->deadline) {
                RAND_bytes(digest, sizeof digest);
                size_t len;
                double t0 = bench_now();
                int r = keys_sign(w->store, w->key, digest, sizeof digest, sig, &len);
                double t1 = bench_now();
                if (r < 0) {
                        w->lat.errors++;
                        continue;
                }
                bench_lat_add(&w->lat, t1 - t0);
                if (w->pace_us > 0) {
                        struct timespec ts = { w->pace_us / 1000000, (w->pace_us % 1000000) * 1000 };
                        nanosleep(&ts, NULL);
                }
        }
        return NULL;
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
        const char *pace = getenv("BENCH_PACE_US");
        long pace_us = pace ? strtol(pace, NULL, 10) : 0;
        double c0 = bench_cpu_s(), start = bench_now();
        for (int i = 0; i < threads; i++) {
                w[i].store = store;
                w[i].key = key;
                w[i].deadline = start + secs;
                w[i].pace_us = pace_us;
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        struct bench_lat all = { 0 };
        for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                bench_lat_merge(&all, &w[i].lat);
        }
        double elapsed = bench_now() - start, cpu = bench_cpu_s() - c0;
        long rss = rss_kib();
        char extra[96];
        snprintf(extra, sizeof extra, ", \"cpu_us_per_op\": %.1f, \"rss_kib\": %ld",
                 all.n ? cpu * 1e6 / (double) all.n : 0.0, rss);
        int errors = all.errors;
        bench_lat_print(&all, "threads", threads, elapsed, extra);
        free(w);
        free(t);
        keys_store_free(store);
        return errors ? 1 : 0;
}
