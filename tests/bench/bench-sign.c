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

#include "latency.h"

struct worker {
        const char *principal;
        double deadline;
        struct bench_lat lat; /* samples and errors */
};

static void *run(void *arg) {
        struct worker *w = arg;
        provsign_conn *conn = NULL;
        if (provsign_connect(NULL, &conn) != 0) {
                w->lat.errors++;
                return NULL;
        }
        uint8_t digest[32];
        while (bench_now() < w->deadline) {
                RAND_bytes(digest, sizeof digest);
                provsign_signature *sig = NULL;
                double t0 = bench_now();
                int r = provsign_sign(conn, w->principal, PROVSIGN_DIGEST_SHA256, digest, sizeof digest, NULL, NULL, 0,
                                      &sig);
                double t1 = bench_now();
                if (r != 0) {
                        w->lat.errors++;
                        continue;
                }
                provsign_signature_free(sig);
                bench_lat_add(&w->lat, t1 - t0);
        }
        provsign_close(conn);
        return NULL;
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
        double start = bench_now();
        for (int i = 0; i < clients; i++) {
                w[i].principal = argv[1];
                w[i].deadline = start + secs;
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        struct bench_lat all = { 0 };
        for (int i = 0; i < clients; i++) {
                pthread_join(t[i], NULL);
                bench_lat_merge(&all, &w[i].lat);
        }
        double elapsed = bench_now() - start;
        int errors = all.errors;
        bench_lat_print(&all, "clients", clients, elapsed, "");
        free(w);
        free(t);
        return errors ? 1 : 0;
}
