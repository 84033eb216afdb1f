/* How long does the agent take to open an audit log of N entries?
 * (Replay: read every segment, check every record's CRC32C and sequence
 * number, rebuild the Merkle tree, sign a fresh checkpoint.)
 *
 *   bench-log-open TOKEN_DIR N      # TOKEN_DIR from tests/lib/make-token
 *
 * Writes N sign entries through the real writer (group commit), closes,
 * then times audit_open. Prints figures; asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: bench-log-open TOKEN_DIR N\n");
                return 2;
        }
        const char *tok = argv[1];
        unsigned long n = strtoul(argv[2], NULL, 10);
        char path[512], pin[128] = { 0 };
        snprintf(path, sizeof path, "%s/softhsm2.conf", tok);
        setenv("SOFTHSM2_CONF", path, 1);
        snprintf(path, sizeof path, "%s/pin", tok);
        FILE *f = fopen(path, "r");
        if (!f)
                return 5;
        size_t pin_len = fread(pin, 1, sizeof pin - 1, f);
        fclose(f);
        keys_store *store = NULL;
        char *err = NULL;
        if (keys_store_open("/usr/lib/softhsm/libsofthsm2.so", "provsign", pin, pin_len, &store, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        char state[512];
        snprintf(state, sizeof state, "%s/bench-state", tok);
        if (mkdir(state, 0700) < 0) {
                perror(state);
                return 1;
        }
        agent_config cfg = { .path = (char *) "bench", .state_dir = state, .log_origin = (char *) "bench/log" };
        agent_audit *a = NULL;
        if (audit_open(&cfg, store, NULL, NULL, &a, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        uint8_t digest[32] = { 0 };
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        caller.uid = 1001;
        caller.pid = 4242;
        caller.exe = (char *) "/usr/bin/provsign";
        double t0 = now();
        for (unsigned long i = 0; i < n; i++) {
                memcpy(digest, &i, sizeof i);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__SIGN;
                e.caller = &caller;
                e.principal = (char *) "ci-release";
                e.keyid = (char *) "c5c0ee027ed9324e4ac0a1d79afffdfa605d36ca867c1b0853ffd5d1c7e8c56b";
                e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
                e.digest.data = digest;
                e.digest.len = sizeof digest;
                e.payload_type = (char *) "application/vnd.in-toto+json";
                uint64_t seq;
                if (audit_append(a, &e, &seq, NULL, NULL) < 0)
                        return 1;
        }
        while (audit_committed(a) < n)
                usleep(1000);
        double t1 = now();
        uint64_t syncs = audit_syncs(a);
        audit_close(a);

        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        double t2 = now();
        if (audit_open(&cfg, store, NULL, NULL, &a, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        double t3 = now();
        getrusage(RUSAGE_SELF, &after);
        printf("entries:           %lu\n", n);
        printf("write:             %.2f s (%.0f entries/s, %llu group commits)\n", t1 - t0, (double) n / (t1 - t0),
               (unsigned long long) syncs);
        printf("open (replay):     %.3f s (%.0f entries/s)\n", t3 - t2, (double) n / (t3 - t2));
        printf("peak RSS:          %ld MiB\n", after.ru_maxrss / 1024);
        audit_close(a);
        keys_store_free(store);
        return 0;
}
