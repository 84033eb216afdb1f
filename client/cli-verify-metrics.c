/* provsign verify --metrics-file: the verification SLI as Prometheus text
 * (docs/metrics.md "Verification"), for node_exporter's textfile collector
 * or any scraper of files:
 *
 *   # HELP provsign_verifications_total ...
 *   # TYPE provsign_verifications_total counter
 *   provsign_verifications_total{outcome="ok",reason="none"} 41
 *   provsign_verifications_total{outcome="failed",reason="source_ref"} 1
 *   ...
 *
 * Every series of the fixed table below is written, zeros included, so a
 * rate() or an alert on tamper detections has a series from the start and
 * labels cannot grow. Each verify reads the counts, adds one, and writes the
 * whole file through a new file renamed over it (cli_write_file), under an
 * exclusive flock() of FILE.lock so that concurrent deploy jobs do not lose
 * counts. A file that holds anything else is refused (exit 5), never
 * overwritten: the path may be a mistake. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli.h"

#define METRIC "provsign_verifications_total"
#define METRICS_FILE_MAX (64u * 1024u)

/* The bounded label set. docs/metrics.md lists what each reason means. */
static const struct {
        const char *outcome, *reason;
} series[] = {
        { "ok", "none" },
        { "failed", "bundle" },
        { "failed", "envelope" },
        { "failed", "key" },
        { "failed", "principal" },
        { "failed", "signature" },
        { "failed", "revoked" },
        { "failed", "receipt" },
        { "failed", "statement" },
        { "failed", "subject" },
        { "failed", "policy" },
        { "failed", "source_uri" },
        { "failed", "source_ref" },
        { "failed", "builder_id" },
        { "failed", "max_age" },
        { "error", "local" },
};
#define N_SERIES (sizeof series / sizeof series[0])

static int series_index(const char *outcome, const char *reason) {
        for (size_t i = 0; i < N_SERIES; i++)
                if (strcmp(series[i].outcome, outcome) == 0 && strcmp(series[i].reason, reason) == 0)
                        return (int) i;
        return -1;
}

/* One sample line of ours into counts; false for anything else. */
static bool parse_sample(const char *line, uint64_t counts[N_SERIES]) {
        char outcome[16], reason[32], value[32], *end;
        int n = 0, i;

        if (sscanf(line, METRIC "{outcome=\"%15[a-z]\",reason=\"%31[a-z_]\"} %31[0-9]%n", outcome, reason, value,
                   &n) != 3 ||
            line[n] != '\0')
                return false;
        i = series_index(outcome, reason);
        if (i < 0)
                return false;
        errno = 0;
        counts[i] = strtoull(value, &end, 10);
        return errno == 0 && *end == '\0';
}

/* The counts in path (all zero when it does not exist). */
static int read_counts(const char *path, uint64_t counts[N_SERIES]) {
        char *text = NULL, *save = NULL;
        unsigned line = 0;
        int r;

        if (access(path, F_OK) < 0 && errno == ENOENT)
                return CLI_EXIT_OK;
        r = cli_read_file("verify", "metrics file", path, METRICS_FILE_MAX, &text, NULL);
        if (r != CLI_EXIT_OK)
                return r;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                line++;
                if (l[0] == '#' || parse_sample(l, counts))
                        continue;
                fprintf(stderr, "provsign: verify: %s:%u: not a provsign verification metrics file (not overwritten)\n",
                        path, line);
                r = CLI_EXIT_LOCAL;
                break;
        }
        free(text);
        return r;
}

static int write_counts(const char *path, const uint64_t counts[N_SERIES]) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        int r;

        if (!f) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        fprintf(f, "# HELP " METRIC " Verifications by provsign verify, by outcome (ok, failed, error) and reason.\n"
                   "# TYPE " METRIC " counter\n");
        for (size_t i = 0; i < N_SERIES; i++)
                fprintf(f, METRIC "{outcome=\"%s\",reason=\"%s\"} %" PRIu64 "\n", series[i].outcome, series[i].reason,
                        counts[i]);
        if (fclose(f) != 0 || !buf) {
                free(buf);
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        r = cli_write_file("verify", "metrics file", path, buf, size);
        free(buf);
        return r;
}

int cli_verify_metrics_count(const char *path, const char *outcome, const char *reason) {
        uint64_t counts[N_SERIES] = {};
        char *lock_path = NULL;
        int i = series_index(outcome, reason), fd = -1, r;

        if (i < 0)
                i = series_index("error", "local"); /* a reason missing from the table is a bug; still count it */
        if (asprintf(&lock_path, "%s.lock", path) < 0) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || flock(fd, LOCK_EX) < 0) {
                fprintf(stderr, "provsign: verify: cannot lock %s: %s\n", lock_path, strerror(errno));
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = read_counts(path, counts);
        if (r == CLI_EXIT_OK) {
                counts[i]++;
                r = write_counts(path, counts);
        }
out:
        if (fd >= 0)
                close(fd); /* releases the lock */
        free(lock_path);
        return r;
}
