/* The libprovsign audit example: export the agent's audit log through the
 * library and verify it with a log key the auditor keeps. The library
 * streams the entries (one at a time, bounded memory), checks that they
 * are consecutive and hash, with the export's range hashes, to the root of
 * the checkpoint it ends with; provsign_log_export_verify() then checks
 * the checkpoint's signature with the pinned key (and, given an older
 * checkpoint, that the log only grew since). Built and run by the suite
 * (tests/integration/test-audit-export.sh).
 *
 *   export-log LOG_KEY.pem [PREVIOUS_CHECKPOINT]   (auditor role;
 *       socket: $PROVSIGN_AGENT_SOCK or the default)
 *
 * Prints "verified N entries (seq A..B), tree size T" and the checkpoint,
 * and exits 0; 1 when the export does not verify, 3 when the agent refuses,
 * 4 when it cannot be reached, 5 for any other failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <provsign.h>

static char *slurp(const char *path) {
        static char buf[65536];
        FILE *f = fopen(path, "r");
        size_t n;

        if (!f)
                return NULL;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
}

/* Called once per entry: here, only counted. */
static int count_entry(uint64_t seq, const uint8_t *leaf, size_t leaf_len, void *userdata) {
        uint64_t *n = userdata;

        (void) seq, (void) leaf, (void) leaf_len;
        (*n)++;
        return 0;
}

int main(int argc, char **argv) {
        provsign_conn *conn = NULL;
        provsign_log_query *q = NULL;
        provsign_log_export *x = NULL;
        uint64_t counted = 0, first, n;
        char *key, *previous = NULL;
        int r, status = 5;

        if (argc < 2 || argc > 3)
                return 2;
        key = slurp(argv[1]);
        if (!key || !(key = strdup(key)))
                return 5;
        if (argc == 3 && (!(previous = slurp(argv[2])) || !(previous = strdup(previous))))
                return 5;

        r = provsign_connect(NULL, &conn);
        if (r < 0) {
                fprintf(stderr, "cannot reach the agent: %s\n", provsign_strerror(r));
                status = 4;
                goto out;
        }
        r = provsign_log_query_new(&q);
        if (r == 0 && previous) {
                uint64_t size;

                /* Ask for the consistency proof from the kept checkpoint's size. */
                r = provsign_verify_checkpoint(previous, key, &size);
                if (r == 0)
                        r = provsign_log_query_set_previous_size(q, size);
        }
        if (r == 0)
                r = provsign_export_log(conn, q, count_entry, &counted, &x);
        if (r != 0) {
                fprintf(stderr, "export: %s %s\n", provsign_strerror(r), provsign_last_message(conn));
                status = r > 0 ? 3 : r == -EBADMSG ? 1 : 5;
                goto out;
        }
        r = provsign_log_export_verify(x, key, previous);
        if (r != 0) {
                fprintf(stderr, "export does not verify: %s\n", provsign_strerror(r));
                status = r == -EBADMSG ? 1 : 5;
                goto out;
        }
        n = provsign_log_export_entries(x, &first);
        if (n != counted || n == 0) {
                fprintf(stderr, "export: %llu entries streamed, %llu reported\n", (unsigned long long) counted,
                        (unsigned long long) n);
                goto out;
        }
        printf("verified %llu entries (seq %llu..%llu), tree size %llu\n%s", (unsigned long long) n,
               (unsigned long long) first, (unsigned long long) (first + n - 1),
               (unsigned long long) provsign_log_export_tree_size(x), provsign_log_export_checkpoint(x));
        status = 0;
out:
        provsign_log_export_free(x);
        provsign_log_query_free(q);
        provsign_close(conn);
        free(key);
        free(previous);
        return status;
}
