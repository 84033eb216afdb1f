/* Signing throughput and latency through a running agent, log on.
 *
 *   bench-sign PRINCIPAL CLIENTS SECONDS [PIPELINE]
 *                                            (socket: $PROVSIGN_AGENT_SOCK)
 *
 * CLIENTS threads, each with its own connection, sign random SHA-256
 * digests back to back for SECONDS. Prints signatures/s and latency
 * percentiles. Every reply carries a receipt (the library refuses one
 * without); figures only, no pass/fail. With PIPELINE > 0 each client
 * keeps PIPELINE requests in flight on its connection: provsign_sign_many()
 * calls of BATCH_WINDOWS * PIPELINE digests with a window of PIPELINE (a
 * new request goes out as each reply comes; the window drains only at the
 * end of a call). Each signature's latency is then its call's, start to
 * last reply. */
#include <errno.h>
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
        size_t pipeline;
        struct bench_lat lat; /* samples and errors */
};

/* Digests per provsign_sign_many() call, in windows. */
#define BATCH_WINDOWS 16u

/* Calls of BATCH_WINDOWS * w->pipeline digests, w->pipeline in flight. */
static void run_pipelined(struct worker *w, provsign_conn *conn) {
        size_t n = BATCH_WINDOWS * w->pipeline;
        uint8_t (*digests)[32] = calloc(n, sizeof *digests);
        const void **dp = calloc(n, sizeof *dp);
        int *results = calloc(n, sizeof *results);
        provsign_signature **sigs = calloc(n, sizeof *sigs);
        if (!digests || !dp || !results || !sigs) {
                w->lat.errors++;
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                dp[i] = digests[i];
        while (bench_now() < w->deadline) {
                RAND_bytes((uint8_t *) digests, (int) (n * sizeof *digests));
                double t0 = bench_now();
                int r = provsign_sign_many(conn, w->principal, PROVSIGN_DIGEST_SHA256, dp, 32, n, NULL, NULL, 0,
                                           w->pipeline, results, sigs);
                double t1 = bench_now();
                for (size_t i = 0; i < n; i++) {
                        if (results[i] == 0)
                                bench_lat_add(&w->lat, t1 - t0);
                        else
                                w->lat.errors++;
                        provsign_signature_free(sigs[i]);
                }
                if (r < 0 && r != -EPROTO)
                        break;  /* the connection is gone */
        }
out:
        free(digests);
        free(dp);
        free(results);
        free(sigs);
}

static void *run(void *arg) {
        struct worker *w = arg;
        provsign_conn *conn = NULL;
        if (provsign_connect(NULL, &conn) != 0) {
                w->lat.errors++;
                return NULL;
        }
        if (w->pipeline > 0) {
                run_pipelined(w, conn);
                provsign_close(conn);
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
        if (argc != 4 && argc != 5) {
                fprintf(stderr, "usage: bench-sign PRINCIPAL CLIENTS SECONDS [PIPELINE]\n");
                return 2;
        }
        int clients = atoi(argv[2]);
        double secs = atof(argv[3]);
        int pipeline = argc == 5 ? atoi(argv[4]) : 0;
        if (clients < 1 || secs <= 0 || pipeline < 0)
                return 2;
        struct worker *w = calloc((size_t) clients, sizeof *w);
        pthread_t *t = calloc((size_t) clients, sizeof *t);
        if (!w || !t)
                return 5;
        double cpu0 = bench_cpu_s(), start = bench_now();
        for (int i = 0; i < clients; i++) {
                w[i].principal = argv[1];
                w[i].deadline = start + secs;
                w[i].pipeline = (size_t) pipeline;
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        struct bench_lat all = { 0 };
        for (int i = 0; i < clients; i++) {
                pthread_join(t[i], NULL);
                bench_lat_merge(&all, &w[i].lat);
        }
        double elapsed = bench_now() - start;
        int errors = all.errors;
        /* What the clients cost the machine per signature (user + system):
         * on the agent's CPUs, it bounds what any server can reach here
         * (tests/bench/summary.py "no-overhead bound"). */
        double cpu_s = bench_cpu_s() - cpu0;
        char extra[128];
        int n = snprintf(extra, sizeof extra, ", \"client_cpu_us_per_sig\": %.1f",
                         all.n ? cpu_s * 1e6 / (double) all.n : 0.0);
        if (pipeline > 0)
                snprintf(extra + n, sizeof extra - (size_t) n, ", \"pipeline\": %d", pipeline);
        bench_lat_print(&all, "clients", clients, elapsed, extra);
        free(w);
        free(t);
        return errors ? 1 : 0;
}
