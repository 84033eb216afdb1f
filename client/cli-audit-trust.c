/* provsign audit verify --trust FILE [--state FILE] DIR|EXPORT...: the
 * published tile directories and exports of a fleet of logs, each checked
 * with the key its checkpoint's origin has in the trust file
 * (docs/fleet.md), one line per origin. --state keeps the last verified checkpoint of every origin and
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

#include "audit-log.h"
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

/* One run over the logs given. done: origin -> the path verified for it in
 * this run; out: with --json, the objects of the logs verified. */
struct run {
        const struct client_trust *trust;
        const char *trust_path;
        json_t *prev_cps, *next_cps, *done, *out;
};

/* The listed key and the kept checkpoint of the origin of note: 0 with
 * *ret_e, *ret_origin (free()) and *ret_prev (NULL: first time); 1 with
 * why; -ENOMEM. */
static int pick(const struct run *run, const char *note, const struct client_trust_entry **ret_e, char **ret_origin,
                const char **ret_prev, char *why, size_t why_size) {
        char *origin = NULL;
        int r = client_trust_for_checkpoint(run->trust, note, ret_e, &origin);

        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                snprintf(why, why_size, "checkpoint: not a well-formed checkpoint note");
                return 1;
        }
        if (!*ret_e)
                snprintf(why, why_size, "origin \"%s\" is not in the trust file %s", origin, run->trust_path);
        else if (json_object_get(run->done, origin))
                snprintf(why, why_size, "origin \"%s\" is also the log of %s", origin,
                         json_string_value(json_object_get(run->done, origin)));
        else {
                *ret_prev = json_string_value(json_object_get(run->prev_cps, origin));
                *ret_origin = origin;
                return 0;
        }
        free(origin);
        return 1;
}

/* A log verified: its checkpoint kept for the state, its line printed (or
 * its object kept for --json). 0 or -ENOMEM. */
static int verified(const struct run *run, const char *path, const char *origin, const char *note, uint64_t size,
                    const uint8_t root[PROTO_MERKLE_HASH_LEN], const uint64_t *prev_size) {
        char hex[2 * PROTO_MERKLE_HASH_LEN + 1];

        proto_hex_encode(root, PROTO_MERKLE_HASH_LEN, hex);
        if (json_object_set_new(run->next_cps, origin, json_string(note)) < 0 ||
            json_object_set_new(run->done, origin, json_string(path)) < 0)
                return -ENOMEM;
        if (run->out)
                return json_array_append_new(
                               run->out,
                               json_pack("{s:s, s:s, s:I, s:s, s:o}", "origin", origin, "path", path, "tree_size",
                                         (json_int_t) size, "root", hex, "consistent_with_previous_size",
                                         prev_size ? json_integer((json_int_t) *prev_size) : json_null())) < 0
                               ? -ENOMEM
                               : 0;
        printf("%s size %" PRIu64 " root %s consistent ", cli_safe(origin), size, hex);
        if (prev_size)
                printf("yes (previous size %" PRIu64 ")\n", *prev_size);
        else
                printf("first time\n");
        return 0;
}

/* r of a log's verification, said on stderr, as an exit code. */
static int outcome(int r, const char *path, const char *detail) {
        if (r > 0) {
                fprintf(stderr, "FAILED: %s: ", cli_safe(path));
                fprintf(stderr, "%s\n", cli_safe(detail));
        } else if (r < 0) {
                fprintf(stderr, "provsign: %s: %s: ", verb, cli_safe(path));
                fprintf(stderr, "%s\n", *detail ? cli_safe(detail) : strerror(-r));
        }
        return r == 0 ? CLI_EXIT_OK : r > 0 ? CLI_EXIT_VERIFY_FAILED : CLI_EXIT_LOCAL;
}

/* One published tiles directory (audit-tiles.h). */
static int verify_dir(const struct run *run, const char *dir) {
        struct client_tiles_result res = { 0 };
        const struct client_trust_entry *e = NULL;
        char *note = NULL, *origin = NULL;
        const char *prev = NULL;
        int fd, r;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "provsign: %s: cannot open tiles directory %s: %m\n", verb, cli_safe(dir));
                return CLI_EXIT_LOCAL;
        }
        r = client_audit_tiles_read_checkpoint(fd, &res, &note);
        if (r == 0)
                r = pick(run, note, &e, &origin, &prev, res.detail, sizeof res.detail);
        if (r == 0)
                r = client_audit_tiles_verify_note(fd, note, e->pem, prev, &res);
        close(fd);
        if (r == 0)
                r = verified(run, dir, origin, note, res.size, res.root, res.has_previous ? &res.previous_size : NULL);
        r = outcome(r, dir, res.detail);
        free(note);
        free(origin);
        client_tiles_result_done(&res);
        return r;
}

/* An export: the key and previous checkpoint chosen when the verifier
 * reaches its checkpoint (client_audit_verify_choose_key). */
struct export_pick {
        const struct run *run;
        char *origin, *note;
};

static int export_choose(void *userdata, const char *origin, const char *note, const char **ret_pem,
                         const char **ret_previous, char *why, size_t why_size) {
        struct export_pick *x = userdata;
        const struct client_trust_entry *e = NULL;
        int r = pick(x->run, note, &e, &x->origin, ret_previous, why, why_size);

        (void) origin;
        if (r != 0)
                return r;
        *ret_pem = e->pem;
        x->note = strdup(note);
        return x->note ? 0 : -ENOMEM;
}

static int verify_export(const struct run *run, const char *path) {
        struct export_pick x = { .run = run };
        client_audit_verify *v = NULL;
        uint8_t root[PROTO_MERKLE_HASH_LEN], prev_root[PROTO_MERKLE_HASH_LEN];
        uint64_t size, prev_size;
        char *o = NULL;
        const char *prev, *why = "";
        bool has_seq;
        uint64_t seq;
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                fprintf(stderr, "provsign: %s: cannot read export %s: %m\n", verb, cli_safe(path));
                return CLI_EXIT_LOCAL;
        }
        r = client_audit_verify_new(NULL, NULL, &v);
        if (r == 0) {
                client_audit_verify_choose_key(v, export_choose, &x);
                r = cli_audit_verify_lines(v, f, path);
        }
        fclose(f);
        if (r == -EIO) {
                client_audit_verify_free(v);
                free(x.origin);
                free(x.note);
                return CLI_EXIT_LOCAL;
        }
        if (r == 0)
                r = client_audit_verify_finish(v);
        if (r > 0)
                client_audit_verify_failure(v, &has_seq, &seq, &why);
        if (r == 0 && (!x.note || !x.origin))
                r = -EINVAL; /* cannot happen: a verified export has a checkpoint */
        if (r == 0)
                r = client_checkpoint_note_parse(x.note, strlen(x.note), &o, &size, root);
        prev = r == 0 ? json_string_value(json_object_get(run->prev_cps, x.origin)) : NULL;
        if (r == 0 && prev) {
                free(o);
                o = NULL;
                r = client_checkpoint_note_parse(prev, strlen(prev), &o, &prev_size, prev_root);
        }
        if (r == 0)
                r = verified(run, path, x.origin, x.note, size, root, prev ? &prev_size : NULL);
        r = outcome(r, path, why);
        free(o);
        free(x.origin);
        free(x.note);
        client_audit_verify_free(v);
        return r;
}

int cli_audit_verify_trust(const char *trust_path, const char *state_path, char **paths, size_t n, bool json) {
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
        struct run run = {
                .trust = &trust,
                .trust_path = trust_path,
                .prev_cps = prev_cps,
                .next_cps = next_cps,
                .done = done,
                .out = json ? out : NULL,
        };
        for (size_t i = 0; r == CLI_EXIT_OK && i < n; i++) {
                struct stat st;
                int k = stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode) ? verify_dir(&run, paths[i])
                                                                        : verify_export(&run, paths[i]);

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
