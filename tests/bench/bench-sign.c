/* Signing throughput and latency through a running agent, log on.
 *
 *   bench-sign PRINCIPAL CLIENTS SECONDS     (socket: $PROVSIGN_AGENT_SOCK)
 *
 * CLIENTS threads, each with its own connection, sign random SHA-256
 * digests back to back for SECONDS. Prints signatures/s and latency
 * percentiles. Every reply carries a receipt (the library refuses one
 * without); figures only, no pass/fail. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <provsign.h>

struct worker {
        const char *principal;
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
        provsign_conn *conn = NULL;
        if (provsign_connect(NULL, &conn) != 0) {
                w->errors++;
                return NULL;
        }
        uint8_t digest[32];
        while (now() < w->deadline) {
                RAND_bytes(digest, sizeof digest);
                provsign_signature *sig = NULL;
                double t0 = now();
                int r = provsign_sign(conn, w->principal, PROVSIGN_DIGEST_SHA256, digest, sizeof digest, NULL, NULL, 0,
                                      &sig);
                double t1 = now();
                if (r != 0) {
                        w->errors++;
                        continue;
                }
                provsign_signature_free(sig);
                if (w->n == w->cap) {
                        w->cap = w->cap ? w->cap * 2 : 4096;
                        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
                        if (!w->lat)
                                abort();
                }
                w->lat[w->n++] = t1 - t0;
        }
        provsign_close(conn);
        return NULL;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: bench-sign PRINCIPAL CLIENTS SECONDS\n");
                return 2;
        }
        int clients = atoi(argv[2]);
        double secs = atof(argv[3]);
        if (clients < 1 || secs <= 0)
                return 2;
        struct worker *w = calloc((size_t) clients, sizeof *w);
        pthread_t *t = calloc((size_t) clients, sizeof *t);
        if (!w || !t)
                return 5;
        double start = now();
        for (int i = 0; i < clients; i++) {
                w[i].principal = argv[1];
                w[i].deadline = start + secs;
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        size_t total = 0;
        int errors = 0;
        for (int i = 0; i < clients; i++) {
                pthread_join(t[i], NULL);
                total += w[i].n;
                errors += w[i].errors;
        }
        double elapsed = now() - start;
        double *all = malloc((total ? total : 1) * sizeof *all);
        size_t k = 0;
        for (int i = 0; i < clients; i++) {
                memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
                k += w[i].n;
                free(w[i].lat);
        }
        qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t) ((double) (total - 1) * (p))] * 1e6 : 0)
        printf("{\"clients\": %d, \"signatures\": %zu, \"errors\": %d, \"seconds\": %.2f, \"ops_per_s\": %.0f, "
               "\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f}\n",
               clients, total, errors, elapsed, (double) total / elapsed, PCT(0.50), PCT(0.99), PCT(0.999));
        free(all);
        free(w);
        free(t);
        return errors ? 1 : 0;
}
