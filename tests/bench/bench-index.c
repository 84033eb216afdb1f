/* The cost of the log's index (agent/index.c): CPU per entry of
 * index_add_records() and the indexer thread behind it, for groups of 1,
 * 10 and 100 entries (a group commit's batch) handed over back to back, on
 * an index that already holds PREFILL entries. Entries
 * look like the agent's sign entries (random digest, principal, key id, two
 * annotations, one a digest). Figures, not pass/fail.
 *
 *   bench-index [PREFILL]     (default 1000000; in a temporary directory) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "index.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "record.h"

#define KEYID "9f9414c9c3b1a4f8d1e2b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6"

static size_t make_record(uint64_t seq, uint8_t *out, size_t cap) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        Provsign__Annotation a1 = PROVSIGN__ANNOTATION__INIT, a2 = PROVSIGN__ANNOTATION__INIT, *anns[] = { &a1, &a2 };
        uint8_t digest[32], src[32], tmp[2048];
        if (RAND_bytes(digest, sizeof digest) != 1 || RAND_bytes(src, sizeof src) != 1)
                abort();
        char *spec = proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA256, src, sizeof src);
        caller.uid = 1000;
        caller.pid = 4242;
        caller.exe = (char *) "/usr/bin/provsign";
        e.seq = seq;
        e.time_us = 1764000000000000 + (int64_t) seq;
        e.event = PROVSIGN__AUDIT_EVENT__SIGN;
        e.caller = &caller;
        e.principal = (char *) "ci-release";
        e.keyid = (char *) KEYID;
        e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        e.digest.data = digest;
        e.digest.len = sizeof digest;
        a1.key = (char *) "build";
        a1.value = (char *) "1234";
        a2.key = (char *) "source";
        a2.value = spec;
        e.annotations = anns;
        e.n_annotations = 2;
        size_t n = protobuf_c_message_pack(&e.base, tmp), len;
        free(spec);
        if (proto_record_encode(tmp, n, out, cap, &len) < 0)
                abort();
        return len;
}

static double cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double wall_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Adds n entries in groups of g (records made beforehand) and waits for
 * the indexer: seconds of CPU of the whole process (the committer's
 * enqueue and the indexer thread) and of wall time. */
static void add(agent_index *x, uint64_t *seq, uint64_t n, size_t g, double *ret_cpu, double *ret_wall) {
        size_t cap = (size_t) n * 1024, len = 0;
        uint8_t *buf = malloc(cap);
        size_t *ends = malloc((size_t) (n / g + 1) * sizeof *ends);
        if (!buf || !ends)
                abort();
        for (uint64_t i = 0; i < n; i++) {
                len += make_record(*seq + i, buf + len, cap - len);
                if ((i + 1) % g == 0)
                        ends[i / g] = len;
        }
        double c0 = cpu_s(), w0 = wall_s();
        size_t start = 0;
        for (uint64_t k = 0; k < n / g; k++) {
                if (index_add_records(x, 0, 0, *seq, buf + start, ends[k] - start) < 0) {
                        fprintf(stderr, "index_add_records failed at %" PRIu64 "\n", *seq);
                        exit(1);
                }
                *seq += g;
                start = ends[k];
        }
        index_flush(x);
        *ret_cpu = cpu_s() - c0;
        *ret_wall = wall_s() - w0;
        free(buf);
        free(ends);
}

int main(int argc, char **argv) {
        uint64_t prefill = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000, seq = 0;
        char dir[] = "/tmp/provsign-bench-index-XXXXXX", path[128], *err = NULL;
        if (!mkdtemp(dir))
                return 1;
        snprintf(path, sizeof path, "%s/" INDEX_FILE, dir);
        agent_index *x;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        if (index_open(path, &x) < 0 || index_sync(x, dfd, 0, &err) < 0) {
                fprintf(stderr, "cannot create the index: %s\n", err ? err : "?");
                return 1;
        }
        double cpu, wall;
        for (uint64_t done = 0; done < prefill; done += 100000)
                add(x, &seq, prefill - done < 100000 ? prefill - done : 100000, 1000, &cpu, &wall);
        printf("prefill: %" PRIu64 " entries\n", prefill);
        const size_t groups[] = { 1, 10, 100 };
        for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
                uint64_t n = 20000;
                add(x, &seq, n, groups[i], &cpu, &wall);
                printf("groups of %3zu: %6.2f us CPU, %6.2f us wall an entry\n", groups[i], cpu * 1e6 / (double) n,
                       wall * 1e6 / (double) n);
        }
        index_close(x);
        close(dfd);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : 1;
}
