/* Signing through a running agent with requests pipelined on connections
 * (request ids; docs/formats.md "Request ids"), log on.
 *
 *   bench-pipeline PRINCIPAL CONNECTIONS DEPTH SECONDS
 *                                          (socket: $PROVSIGN_AGENT_SOCK)
 *
 * CONNECTIONS threads, each with one connection keeping DEPTH Sign
 * requests in flight (a new one written as each reply comes) for SECONDS.
 * Prints signatures/s and the latency of each request (written to
 * answered) as bench-sign does. Speaks the frames itself (proto/): a reply
 * counts when its status is OK, its id is one in flight and it carries a
 * signature and a receipt; the receipt is not verified (libprovsign's
 * check costs the client, not the agent). Figures only. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "frame.h"
#include "latency.h"
#include "provsign.pb-c.h"

#define MAX_DEPTH 1024

struct worker {
        const char *principal;
        const char *sock;
        int depth;
        double deadline;
        struct bench_lat lat;
};

static int connect_to(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -1;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
        while (n) {
                ssize_t k = recv(fd, p, n, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int send_sign(struct worker *w, int fd, uint64_t id) {
        uint8_t digest[32];
        RAND_bytes(digest, sizeof digest);
        Provsign__SignRequest sr = PROVSIGN__SIGN_REQUEST__INIT;
        sr.principal = (char *) w->principal;
        sr.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        sr.digest.data = digest;
        sr.digest.len = sizeof digest;
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        req.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        req.body_case = PROVSIGN__REQUEST__BODY_SIGN;
        req.sign = &sr;
        req.request_id = id;
        uint8_t *buf;
        size_t len;
        if (proto_frame_pack(&req.base, &buf, &len) < 0)
                return -1;
        int r = write_all(fd, buf, len);
        free(buf);
        return r;
}

static void *run(void *arg) {
        struct worker *w = arg;
        double sent_at[MAX_DEPTH];   /* by id % depth: ids go out in order, one per slot */
        uint64_t next_id = 1, oldest = 1;
        bool done_ids[MAX_DEPTH] = { false };
        uint8_t *buf = NULL;
        int fd = connect_to(w->sock);
        if (fd < 0) {
                w->lat.errors++;
                return NULL;
        }
        for (int i = 0; i < w->depth; i++, next_id++) {
                sent_at[next_id % (uint64_t) w->depth] = bench_now();
                if (send_sign(w, fd, next_id) < 0)
                        goto fail;
        }
        while (oldest < next_id) {
                uint8_t hdr[4];
                if (read_all(fd, hdr, 4) < 0)
                        goto fail;
                size_t n = proto_get_u32be(hdr);
                free(buf);
                buf = malloc(n ? n : 1);
                if (!buf || read_all(fd, buf, n) < 0)
                        goto fail;
                double t1 = bench_now();
                Provsign__Response *resp = provsign__response__unpack(NULL, n, buf);
                uint64_t id = resp ? resp->request_id : 0;
                bool ok = resp && resp->status == PROVSIGN__STATUS__OK && resp->body_case == PROVSIGN__RESPONSE__BODY_SIGN &&
                          resp->sign->signature.len && resp->sign->receipt && id >= oldest && id < next_id &&
                          !done_ids[id % (uint64_t) w->depth];
                if (resp)
                        provsign__response__free_unpacked(resp, NULL);
                if (!ok) {
                        w->lat.errors++;
                        goto fail;
                }
                bench_lat_add(&w->lat, t1 - sent_at[id % (uint64_t) w->depth]);
                done_ids[id % (uint64_t) w->depth] = true;
                /* the window slides past every answered id at its start */
                while (oldest < next_id && done_ids[oldest % (uint64_t) w->depth]) {
                        done_ids[oldest % (uint64_t) w->depth] = false;
                        oldest++;
                        if (bench_now() < w->deadline) {
                                sent_at[next_id % (uint64_t) w->depth] = bench_now();
                                if (send_sign(w, fd, next_id) < 0)
                                        goto fail;
                                next_id++;
                        }
                }
        }
        free(buf);
        close(fd);
        return NULL;
fail:
        free(buf);
        close(fd);
        return NULL;
}

int main(int argc, char **argv) {
        if (argc != 5) {
                fprintf(stderr, "usage: bench-pipeline PRINCIPAL CONNECTIONS DEPTH SECONDS\n");
                return 2;
        }
        const char *sock = getenv("PROVSIGN_AGENT_SOCK");
        int conns = atoi(argv[2]), depth = atoi(argv[3]);
        double secs = atof(argv[4]);
        if (!sock || conns < 1 || depth < 1 || depth > MAX_DEPTH || secs <= 0) {
                fprintf(stderr, "bench-pipeline: needs $PROVSIGN_AGENT_SOCK, CONNECTIONS >= 1, DEPTH 1..%d, SECONDS > 0\n",
                        MAX_DEPTH);
                return 2;
        }
        struct worker *w = calloc((size_t) conns, sizeof *w);
        pthread_t *t = calloc((size_t) conns, sizeof *t);
        if (!w || !t)
                return 5;
        double start = bench_now();
        for (int i = 0; i < conns; i++) {
                w[i] = (struct worker){ .principal = argv[1], .sock = sock, .depth = depth, .deadline = start + secs };
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        struct bench_lat all = { 0 };
        for (int i = 0; i < conns; i++) {
                pthread_join(t[i], NULL);
                bench_lat_merge(&all, &w[i].lat);
        }
        double elapsed = bench_now() - start;
        int errors = all.errors;
        char extra[64];
        snprintf(extra, sizeof extra, ", \"depth\": %d", depth);
        bench_lat_print(&all, "connections", conns, elapsed, extra);
        free(w);
        free(t);
        return errors ? 1 : 0;
}
