/* provsign audit verify --trust FILE [--state FILE] DIR...: the published
 * tile directories of a fleet of logs, each checked with the key its
 * checkpoint's origin has in the trust file (docs/fleet.md), one line per
 * origin. --state keeps the last verified checkpoint of every origin and
 * the next run proves each log an extension of it. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "audit-tiles.h"
#include "cli.h"
#include "hex.h"
#include "receipt.h"
#include "trust.h"

#define STATE_FILE_MAX (4u * 1024u * 1024u)
#define STATE_VERSION 1

static const char verb[] = "audit verify";

/* The state file: {"version": 1, "checkpoints": {ORIGIN: NOTE, ...}}; a
 * missing file is an empty state (the first run). */
static int state_read(const char *path, json_t **ret) {
        json_t *root = NULL, *cps;
        json_error_t err;
        char *text = NULL;
        size_t len;
        struct stat st;
        const char *origin;
        json_t *note;
        int r;

        if (!path || (lstat(path, &st) < 0 && errno == ENOENT)) {
                *ret = json_object();
                return *ret ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
        }
        r = cli_read_file(verb, "state file", path, STATE_FILE_MAX, &text, &len);
        if (r != CLI_EXIT_OK)
                return r;
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
        free(text);
        cps = json_object_get(root, "checkpoints");
        if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION ||
            !json_is_object(cps))
                goto bad;
        json_object_foreach(cps, origin, note) if (!json_is_string(note)) goto bad;
        *ret = json_incref(cps);
        json_decref(root);
        return CLI_EXIT_OK;
bad:
        fprintf(stderr, "provsign: %s: state file %s: not {\"version\": %d, \"checkpoints\": {ORIGIN: NOTE}}\n", verb,
                cli_safe(path), STATE_VERSION);
        json_decref(root);
        return CLI_EXIT_LOCAL;
}

static int state_write(const char *path, json_t *cps) {
        json_t *root = json_pack("{s:i, s:O}", "version", STATE_VERSION, "checkpoints", cps);
        char *text = root ? json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        int r;

        json_decref(root);
        if (!text) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        r = cli_write_file(verb, "state file", path, text, strlen(text));
        free(text);
        return r;
}

static int failed(struct client_tiles_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failed(struct client_tiles_result *res, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(res->detail, sizeof res->detail, fmt, ap);
        va_end(ap);
        return 1;
}

/* One directory: CLI_EXIT_OK (its line printed, or with out its object
 * appended, and its checkpoint put in next_cps), CLI_EXIT_VERIFY_FAILED or
 * CLI_EXIT_LOCAL (said on stderr). done: origin -> directory of this run. */
static int verify_dir(const struct client_trust *trust, const char *trust_path, const char *dir, json_t *prev_cps,
                      json_t *next_cps, json_t *done, json_t *out) {
        struct client_tiles_result res = { 0 };
        const struct client_trust_entry *e = NULL;
        char *note = NULL, *origin = NULL, root[2 * PROTO_MERKLE_HASH_LEN + 1];
        const char *prev;
        int fd, r;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "provsign: %s: cannot open tiles directory %s: %m\n", verb, cli_safe(dir));
                return CLI_EXIT_LOCAL;
        }
        r = client_audit_tiles_read_checkpoint(fd, &res, &note);
        if (r == 0) {
                r = client_trust_for_checkpoint(trust, note, &e, &origin);
                if (r < 0 && r != -ENOMEM)
                        r = failed(&res, "checkpoint: not a well-formed checkpoint note");
                else if (r == 0 && !e)
                        r = failed(&res, "origin \"%s\" is not in the trust file %s", origin, trust_path);
                else if (r == 0 && json_object_get(done, origin))
                        r = failed(&res, "origin \"%s\" is also the log of %s", origin,
                                   json_string_value(json_object_get(done, origin)));
        }
        if (r == 0) {
                prev = json_string_value(json_object_get(prev_cps, origin));
                r = client_audit_tiles_verify_note(fd, note, e->pem, prev, &res);
        }
        close(fd);
        if (r == 0) {
                proto_hex_encode(res.root, sizeof res.root, root);
                if (json_object_set_new(next_cps, origin, json_string(note)) < 0 ||
                    json_object_set_new(done, origin, json_string(dir)) < 0 ||
                    (out &&
                     json_array_append_new(
                             out, json_pack("{s:s, s:s, s:I, s:s, s:o}", "origin", origin, "path", dir, "tree_size",
                                            (json_int_t) res.size, "root", root, "consistent_with_previous_size",
                                            res.has_previous ? json_integer((json_int_t) res.previous_size)
                                                             : json_null())) < 0))
                        r = -ENOMEM;
        }
        if (r == 0 && !out) {
                printf("%s size %" PRIu64 " root %s consistent ", cli_safe(origin), res.size, root);
                if (res.has_previous)
                        printf("yes (previous size %" PRIu64 ")\n", res.previous_size);
                else
                        printf("first time\n");
        }
        if (r > 0) {
                fprintf(stderr, "FAILED: %s: ", cli_safe(dir));
                fprintf(stderr, "%s\n", cli_safe(res.detail));
        } else if (r < 0) {
                fprintf(stderr, "provsign: %s: %s: ", verb, cli_safe(dir));
                fprintf(stderr, "%s\n", *res.detail ? cli_safe(res.detail) : strerror(-r));
        }
        free(note);
        free(origin);
        client_tiles_result_done(&res);
        return r == 0 ? CLI_EXIT_OK : r > 0 ? CLI_EXIT_VERIFY_FAILED : CLI_EXIT_LOCAL;
}

int cli_audit_verify_trust(const char *trust_path, const char *state_path, char **dirs, size_t n, bool json) {
        struct client_trust trust = {};
        json_t *prev_cps = NULL, *next_cps = NULL, *done = json_object(), *out = json_array();
        int r, worst = CLI_EXIT_OK;

        r = cli_read_trust(verb, trust_path, &trust);
        if (r == CLI_EXIT_OK)
                r = state_read(state_path, &prev_cps);
        if (r == CLI_EXIT_OK && !(next_cps = json_deep_copy(prev_cps)))
                r = CLI_EXIT_LOCAL;
        if (r == CLI_EXIT_OK && (!done || !out))
                r = CLI_EXIT_LOCAL;
        for (size_t i = 0; r == CLI_EXIT_OK && i < n; i++) {
                int k = verify_dir(&trust, trust_path, dirs[i], prev_cps, next_cps, done, json ? out : NULL);

                if (k == CLI_EXIT_VERIFY_FAILED || (k == CLI_EXIT_LOCAL && worst == CLI_EXIT_OK))
                        worst = k;
        }
        if (r == CLI_EXIT_OK && json)
                r = cli_print_json(json_pack("{s:b, s:O}", "verified", worst == CLI_EXIT_OK, "logs", out));
        if (r == CLI_EXIT_OK && state_path && json_object_size(done) > 0)
                r = state_write(state_path, next_cps);
        if (r == CLI_EXIT_OK)
                r = worst;
        json_decref(prev_cps);
        json_decref(next_cps);
        json_decref(done);
        json_decref(out);
        client_trust_done(&trust);
        return r;
}
