/* Signing throughput of ssh-agent holding a PKCS#11 key (the peer a user
 * might pick instead of provsign).
 *
 *   bench-ssh COMMENT CLIENTS SECONDS        (socket: $SSH_AUTH_SOCK)
 *
 * Lists the agent's identities, takes the one whose comment is COMMENT (a
 * PKCS#11 key's comment is its label; ssh-rsa keys are asked for
 * rsa-sha2-256 signatures), and has CLIENTS threads, each with
 * its own connection, send SSH2_AGENTC_SIGN_REQUEST for 32 random bytes back
 * to back for SECONDS. Prints one JSON line. Replies are bounds-checked;
 * figures only. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "frame.h"
#include "latency.h"

#define AGENTC_REQUEST_IDENTITIES 11
#define AGENT_IDENTITIES_ANSWER 12
#define AGENTC_SIGN_REQUEST 13
#define AGENT_SIGN_RESPONSE 14
#define AGENT_RSA_SHA2_256 2
#define MAX_MSG (256 * 1024)

static uint8_t *key_blob;
static size_t key_blob_len;
static uint32_t sign_flags;

static int connect_agent(void) {
        const char *path = getenv("SSH_AUTH_SOCK");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!path || strlen(path) >= sizeof sa.sun_path)
                return -1;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static int io_all(int fd, uint8_t *p, size_t n, int out) {
        while (n > 0) {
                ssize_t k = out ? write(fd, p, n) : read(fd, p, n);
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* One request, one reply: *ret is the reply (type byte first), malloc'd. */
static int call(int fd, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len) {
        uint8_t hdr[4];
        proto_put_u32be(hdr, (uint32_t) len);
        if (io_all(fd, hdr, 4, 1) < 0 || io_all(fd, (uint8_t *) req, len, 1) < 0 || io_all(fd, hdr, 4, 0) < 0)
                return -1;
        uint32_t n = proto_get_u32be(hdr);
        if (n == 0 || n > MAX_MSG)
                return -1;
        uint8_t *buf = malloc(n);
        if (!buf || io_all(fd, buf, n, 0) < 0) {
                free(buf);
                return -1;
        }
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* An SSH string at *c: pointer and length, cursor advanced; -1 if short. */
static int get_string(proto_cursor *c, const uint8_t **p, size_t *n) {
        if (c->len < 4)
                return -1;
        uint32_t k = proto_get_u32be(c->p);
        if (c->len - 4 < k)
                return -1;
        *p = c->p + 4;
        *n = k;
        c->p += 4 + k;
        c->len -= 4 + k;
        return 0;
}

static int pick_key(const char *want) {
        int fd = connect_agent();
        if (fd < 0)
                return -1;
        uint8_t req = AGENTC_REQUEST_IDENTITIES, *rep = NULL;
        size_t len;
        int r = call(fd, &req, 1, &rep, &len);
        close(fd);
        if (r < 0 || len < 5 || rep[0] != AGENT_IDENTITIES_ANSWER) {
                free(rep);
                return -1;
        }
        proto_cursor c = proto_cursor_make(rep + 5, len - 5);
        uint32_t n = proto_get_u32be(rep + 1);
        for (uint32_t i = 0; i < n; i++) {
                const uint8_t *blob, *comment, *name;
                size_t blob_len, comment_len, name_len;
                if (get_string(&c, &blob, &blob_len) < 0 || get_string(&c, &comment, &comment_len) < 0)
                        break;
                proto_cursor b = proto_cursor_make(blob, blob_len);
                if (get_string(&b, &name, &name_len) < 0)
                        continue;
                if (comment_len == strlen(want) && memcmp(comment, want, comment_len) == 0) {
                        if (name_len == 7 && memcmp(name, "ssh-rsa", 7) == 0)
                                sign_flags = AGENT_RSA_SHA2_256;
                        key_blob = malloc(blob_len);
                        if (!key_blob)
                                break;
                        memcpy(key_blob, blob, blob_len);
                        key_blob_len = blob_len;
                        free(rep);
                        return 0;
                }
        }
        free(rep);
        return -1;
}

struct worker {
        double deadline;
        struct bench_lat lat; /* samples and errors */
};

static void *run(void *arg) {
        struct worker *w = arg;
        int fd = connect_agent();
        if (fd < 0) {
                w->lat.errors++;
                return NULL;
        }
        size_t len = 1 + 4 + key_blob_len + 4 + 32 + 4;
        uint8_t *req = malloc(len);
        if (!req)
                abort();
        req[0] = AGENTC_SIGN_REQUEST;
        proto_put_u32be(req + 1, (uint32_t) key_blob_len);
        memcpy(req + 5, key_blob, key_blob_len);
        uint8_t *data = req + 5 + key_blob_len;
        proto_put_u32be(data, 32);
        proto_put_u32be(data + 4 + 32, sign_flags);
        while (bench_now() < w->deadline) {
                RAND_bytes(data + 4, 32);
                uint8_t *rep = NULL;
                size_t rlen;
                double t0 = bench_now();
                int r = call(fd, req, len, &rep, &rlen);
                double t1 = bench_now();
                if (r < 0 || rlen < 1 || rep[0] != AGENT_SIGN_RESPONSE) {
                        free(rep);
                        w->lat.errors++;
                        if (r < 0)
                                break;
                        continue;
                }
                free(rep);
                bench_lat_add(&w->lat, t1 - t0);
        }
        free(req);
        close(fd);
        return NULL;
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: bench-ssh COMMENT CLIENTS SECONDS\n");
                return 2;
        }
        int clients = atoi(argv[2]);
        double secs = atof(argv[3]);
        if (clients < 1 || secs <= 0)
                return 2;
        if (pick_key(argv[1]) < 0) {
                fprintf(stderr, "bench-ssh: the agent holds no key \"%s\"\n", argv[1]);
                return 1;
        }
        struct worker *w = calloc((size_t) clients, sizeof *w);
        pthread_t *t = calloc((size_t) clients, sizeof *t);
        if (!w || !t)
                return 5;
        double start = bench_now();
        for (int i = 0; i < clients; i++) {
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
        free(key_blob);
        return errors ? 1 : 0;
}
