/* provsign audit export | verify | proof | find.
 *
 * Export, find and proof go through libprovsign (provsign_export_log,
 * provsign_find_log, provsign_get_log_proof), which streams the entries
 * one at a time: this file only writes them. Verify is offline
 * (audit-log.c). Each verb parses its options into a struct, then one
 * function acts on it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit-log.h"
#include "audit-tiles.h"
#include "cli.h"
#include "names.h"
#include "receipt-json.h"
#include "receipt.h"

int cmd_audit_export(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_verify(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_proof(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_find(const struct cli_ctx *ctx, int argc, char **argv);

static int parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

/* ---- Output of entries ---- */

enum format { FORMAT_JSONL, FORMAT_CSV };

/* One entry; proof (a filtered export's inclusion proof, stolen) goes in
 * its JSON object as "inclusion_proof". */
static int print_entry(enum format fmt, const uint8_t *leaf, size_t n, uint64_t *ret_seq, json_t *proof) {
        Provsign__AuditEntry *e = provsign__audit_entry__unpack(NULL, n, leaf);
        json_t *o = NULL;

        if (e) {
                *ret_seq = e->seq;
                o = client_audit_entry_json(e, leaf, n);
                provsign__audit_entry__free_unpacked(e, NULL);
        }
        if (o && proof && json_object_set(o, "inclusion_proof", proof) < 0) {
                json_decref(o);
                o = NULL;
        }
        json_decref(proof);
        if (!o)
                return -EPROTO;
        int r = 0;
        if (fmt == FORMAT_JSONL) {
                if (json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0)
                        r = -EIO;
                fputc('\n', stdout);
        } else
                r = client_audit_csv_row(stdout, o);
        json_decref(o);
        return r;
}

static json_t *b64_list(const uint8_t *h, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++) {
                char *s = cli_base64(h + i * PROVSIGN_HASH_LEN, PROVSIGN_HASH_LEN);
                if (!s || json_array_append_new(a, json_string(s)) < 0) {
                        json_decref(a);
                        a = NULL;
                }
                free(s);
        }
        return a;
}

/* The library's callback for export and find: one entry, one line. */
static int write_entry(uint64_t seq, const uint8_t *leaf, size_t len, void *userdata) {
        const enum format *fmt = userdata;
        uint64_t got;
        int r = print_entry(*fmt, leaf, len, &got, NULL);

        return r < 0 ? r : got == seq ? 0 : -EPROTO;
}

/* ---- Filters (export and find) ---- */

int cli_parse_time(const char *s, int64_t *ret) {
        char buf[PROTO_TIME_LEN + 1];
        /* Second precision "…:SSZ" is the same instant with .000000. */
        if (strlen(s) == 20 && s[19] == 'Z') {
                memcpy(buf, s, 19);
                memcpy(buf + 19, ".000000Z", 9);
                s = buf;
        }
        return proto_time_parse_us(s, ret);
}

struct filter_opts {
        int digest_alg;
        uint8_t digest[48];
        size_t digest_len;
        const char *principal, *keyid;
        int64_t since_us, until_us;
};

#define FILTER_OPTIONS \
        { "digest", required_argument, NULL, 'd' }, \
        { "principal", required_argument, NULL, 'P' }, \
        { "key", required_argument, NULL, 'K' }, \
        { "since", required_argument, NULL, 's' }, \
        { "until", required_argument, NULL, 'u' }
#define FILTER_SHORT "d:P:K:s:u:"
#define FILTER_HELP \
        "  -d, --digest ALG:HEX     entries whose digest, or an annotation value of the\n" \
        "                           form sha256:HEX, is ALG:HEX (sha256 or sha384)\n" \
        "  -P, --principal NAME     entries of principal NAME\n" \
        "  -K, --key KEYID          entries naming key KEYID (signatures, key events)\n" \
        "  -s, --since T            logged at or after T (RFC 3339 UTC, e.g.\n" \
        "                           2026-11-25T18:20:01Z or with microseconds)\n" \
        "  -u, --until T            logged at or before T\n"

/* One option c of FILTER_OPTIONS: 1 when it is one (and valid), 0 when c is
 * not a filter option, or minus the usage error's exit code. */
static int filter_opt(const char *verb, int c, const char *arg, struct filter_opts *f) {
        switch (c) {
        case 'd':
                if (proto_digest_spec_parse(arg, &f->digest_alg, f->digest, &f->digest_len) < 0)
                        return -cli_usage_error(verb, "invalid --digest '%s': expected sha256:HEX or sha384:HEX", arg);
                return 1;
        case 'P':
                f->principal = arg;
                return 1;
        case 'K':
                f->keyid = arg;
                return 1;
        case 's':
                if (cli_parse_time(arg, &f->since_us) < 0 || f->since_us == 0)
                        return -cli_usage_error(verb, "invalid --since '%s': expected RFC 3339 UTC", arg);
                return 1;
        case 'u':
                if (cli_parse_time(arg, &f->until_us) < 0 || f->until_us == 0)
                        return -cli_usage_error(verb, "invalid --until '%s': expected RFC 3339 UTC", arg);
                return 1;
        default:
                return 0;
        }
}

static bool filter_any(const struct filter_opts *f) {
        return f->digest_len || (f->principal && *f->principal) || (f->keyid && *f->keyid) || f->since_us ||
               f->until_us;
}

static int filter_query(provsign_log_query *q, const struct filter_opts *f) {
        int r = provsign_log_query_set_digest(q, f->digest_alg, f->digest, f->digest_len);

        if (r == 0)
                r = provsign_log_query_set_principal(q, f->principal);
        if (r == 0)
                r = provsign_log_query_set_keyid(q, f->keyid);
        if (r == 0)
                r = provsign_log_query_set_time(q, f->since_us, f->until_us);
        return r;
}

/* ---- audit export ---- */

static void export_help(void) {
        printf("Usage: provsign audit export [--from-seq SEQ] [--to-seq SEQ] [--previous-size M]\n"
               "                             [--digest ALG:HEX] [--principal NAME] [--key KEYID]\n"
               "                             [--since T] [--until T] [--format jsonl|csv]\n"
               "\n"
               "Streams the agent's audit log to stdout (auditor role). JSON Lines: one\n"
               "object per entry (seq, time, event, uid, gid, pid, exe, principal, keyid,\n"
               "digest, payload_type, annotations, status, leaf), then one final object\n"
               "with the signed checkpoint covering every exported entry, its tree_size,\n"
               "the left/right hashes tying the range to its root and, with\n"
               "--previous-size, the consistency proof from that size. Check it offline\n"
               "with 'provsign audit verify'. CSV has the entry columns only (for\n"
               "spreadsheets; it cannot be verified).\n"
               "\n"
               "With a filter (--digest, --principal, --key, --since, --until) the export\n"
               "is filtered: only the matching entries of the range, found through the\n"
               "agent's index. It starts with the checkpoint object (\"sparse\": true),\n"
               "each entry carries its \"inclusion_proof\" in the checkpoint's tree, and\n"
               "it ends with {\"end\": true, \"entries\": N}.\n"
               "\n"
               "  -f, --from-seq SEQ       first entry (default 0; also --from)\n"
               "  -t, --to-seq SEQ         last entry, inclusive (default: the newest; also --to)\n"
               "  -p, --previous-size M    include a consistency proof from tree size M\n"
               "                           (the size of the checkpoint you kept)\n"
               FILTER_HELP
               "  -F, --format jsonl|csv   output format (default jsonl)\n"
               "  -h, --help               show this help\n");
}

struct export_opts {
        uint64_t from_seq, to_seq, previous_size;
        bool to_set;
        enum format fmt;
        struct filter_opts filter;
};

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int export_parse(int argc, char **argv, struct export_opts *o) {
        static const struct option options[] = {
                { "from-seq", required_argument, NULL, 'f' },
                { "to-seq", required_argument, NULL, 't' },
                { "from", required_argument, NULL, 'f' },
                { "to", required_argument, NULL, 't' },
                { "previous-size", required_argument, NULL, 'p' },
                { "format", required_argument, NULL, 'F' },
                FILTER_OPTIONS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit export";
        int c, r;

        while ((c = getopt_long(argc, argv, ":f:t:p:F:h" FILTER_SHORT, options, NULL)) >= 0) {
                r = filter_opt(verb, c, optarg, &o->filter);
                if (r < 0)
                        return -r;
                if (r > 0)
                        continue;
                switch (c) {
                case 'f':
                        if (parse_u64(optarg, &o->from_seq) < 0)
                                return cli_usage_error(verb, "invalid --from '%s': expected a sequence number", optarg);
                        break;
                case 't':
                        if (parse_u64(optarg, &o->to_seq) < 0)
                                return cli_usage_error(verb, "invalid --to '%s': expected a sequence number", optarg);
                        o->to_set = true;
                        break;
                case 'p':
                        if (parse_u64(optarg, &o->previous_size) < 0 || o->previous_size == 0)
                                return cli_usage_error(verb, "invalid --previous-size '%s': expected a tree size of at least 1",
                                                       optarg);
                        break;
                case 'F':
                        if (strcmp(optarg, "jsonl") == 0)
                                o->fmt = FORMAT_JSONL;
                        else if (strcmp(optarg, "csv") == 0)
                                o->fmt = FORMAT_CSV;
                        else
                                return cli_usage_error(verb, "invalid --format '%s': expected jsonl or csv", optarg);
                        break;
                case 'h':
                        export_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (o->to_set && o->to_seq < o->from_seq)
                return cli_usage_error(verb, "--to %" PRIu64 " is before --from %" PRIu64, o->to_seq, o->from_seq);
        if (o->to_set && o->to_seq == 0) {
                /* to_seq 0 means "the newest" on the wire: only entry 0 is --to 0. */
                return cli_usage_error(verb, "--to 0: export entry 0 with --from 0 --to 0 is not supported; omit --to");
        }
        if (o->filter.until_us && o->filter.since_us > o->filter.until_us)
                return cli_usage_error(verb, "--since is after --until");
        return CLI_EXIT_OK;
}

/* The export's last JSON Lines object: the checkpoint and the hashes. */
static int export_print_end(const provsign_log_export *x) {
        size_t nl, nr, nc;
        uint64_t from_size;
        const uint8_t *left = provsign_log_export_left(x, &nl), *right = provsign_log_export_right(x, &nr),
                      *cp = provsign_log_export_consistency(x, &from_size, &nc);
        json_t *cons = json_null();

        if (from_size > 0)
                cons = json_pack("{s:I, s:o}", "from_size", (json_int_t) from_size, "proof", b64_list(cp, nc));
        return cli_print_json(json_pack("{s:s, s:I, s:o, s:o, s:o}", "checkpoint", provsign_log_export_checkpoint(x),
                                        "tree_size", (json_int_t) provsign_log_export_tree_size(x), "left",
                                        b64_list(left, nl), "right", b64_list(right, nr), "consistency", cons));
}

/* A filtered export's first JSON Lines object: the checkpoint (no range hashes). */
static int export_print_head(const provsign_log_export *x) {
        size_t nc;
        uint64_t from_size;
        const uint8_t *cp = provsign_log_export_consistency(x, &from_size, &nc);
        json_t *cons = json_null();

        if (from_size > 0)
                cons = json_pack("{s:I, s:o}", "from_size", (json_int_t) from_size, "proof", b64_list(cp, nc));
        return cli_print_json(json_pack("{s:s, s:I, s:b, s:o}", "checkpoint", provsign_log_export_checkpoint(x),
                                        "tree_size", (json_int_t) provsign_log_export_tree_size(x), "sparse", 1,
                                        "consistency", cons));
}

struct filtered_out {
        enum format fmt;
        bool head_printed;
};

/* The library's callback for a filtered export: the head before the first
 * entry, then each entry with its proof. */
static int write_proven_entry(const provsign_log_export *head, uint64_t seq, const uint8_t *leaf, size_t len,
                              const uint8_t *proof, size_t n_proof, void *userdata) {
        struct filtered_out *w = userdata;
        uint64_t got;

        if (!w->head_printed && w->fmt == FORMAT_JSONL && export_print_head(head) != CLI_EXIT_OK)
                return -EIO;
        w->head_printed = true;
        int r = print_entry(w->fmt, leaf, len, &got, w->fmt == FORMAT_JSONL ? b64_list(proof, n_proof) : NULL);

        return r < 0 ? r : got == seq ? 0 : -EPROTO;
}

static int export_filtered(provsign_conn *conn, provsign_log_query *q, enum format fmt, provsign_log_export **ret) {
        struct filtered_out w = { .fmt = fmt };
        int r = provsign_export_log_filtered(conn, q, write_proven_entry, &w, ret);

        if (r == 0 && fmt == FORMAT_JSONL && !w.head_printed && export_print_head(*ret) != CLI_EXIT_OK)
                r = -EIO;
        if (r == 0 && fmt == FORMAT_JSONL) {
                json_t *end = json_pack("{s:b, s:I}", "end", 1, "entries",
                                        (json_int_t) provsign_log_export_entries(*ret, NULL));
                if (cli_print_json(end) != CLI_EXIT_OK)
                        r = -EIO;
        }
        return r;
}

static int export_run(const struct cli_ctx *ctx, const struct export_opts *o) {
        static const char verb[] = "audit export";
        provsign_conn *conn = NULL;
        provsign_log_query *q = NULL;
        provsign_log_export *x = NULL;
        int r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_log_query_new(&q);
        if (r == 0)
                r = provsign_log_query_set_range(q, o->from_seq, o->to_seq);
        if (r == 0)
                r = provsign_log_query_set_previous_size(q, o->previous_size);
        if (r == 0 && o->fmt == FORMAT_CSV) {
                for (size_t i = 0; i < CLIENT_AUDIT_N_COLUMNS; i++)
                        printf("%s%s", i ? "," : "", client_audit_columns[i]);
                putchar('\n');
        }
        if (r == 0 && filter_any(&o->filter)) {
                r = filter_query(q, &o->filter);
                if (r == 0)
                        r = export_filtered(conn, q, o->fmt, &x);
        } else if (r == 0)
                r = provsign_export_log(conn, q, write_entry, (void *) &o->fmt, &x);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, verb);
                goto out;
        }
        r = o->fmt == FORMAT_JSONL && !filter_any(&o->filter) ? export_print_end(x) : CLI_EXIT_OK;
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "provsign: %s: cannot write the export: %m\n", verb);
                r = CLI_EXIT_LOCAL;
        }
out:
        provsign_log_export_free(x);
        provsign_log_query_free(q);
        provsign_close(conn);
        return r;
}

int cmd_audit_export(const struct cli_ctx *ctx, int argc, char **argv) {
        struct export_opts o = { .fmt = FORMAT_JSONL };
        int r = export_parse(argc, argv, &o);

        if (r != CLI_EXIT_OK)
                return r < 0 ? CLI_EXIT_OK : r;
        return export_run(ctx, &o);
}

/* ---- audit verify ---- */

static void verify_help(void) {
        printf("Usage: provsign audit verify --log-key PEM [--previous CHECKPOINT] [--json] FILE\n"
               "       provsign audit verify --tiles DIR --log-key PEM [--previous CHECKPOINT] [--json]\n"
               "       provsign audit verify --trust TRUST-FILE [--state STATE-FILE] [--json] DIR|FILE...\n"
               "\n"
               "Verifies an export from 'provsign audit export' offline (FILE '-' is\n"
               "standard input): every readable field equals the decoding of its leaf;\n"
               "the entries are consecutive; every sign entry's key is its principal's\n"
               "active key at that position (from the key events); the leaves hash into\n"
               "the checkpoint's root; the checkpoint is signed by the log key; and with\n"
               "--previous, the log is an extension of that older checkpoint (nothing\n"
               "removed or rewritten). A filtered export is checked entry by entry: each\n"
               "leaf's inclusion proof leads to the checkpoint's root. Prints a summary;\n"
               "on failure, the first sequence\n"
               "number that fails and why, and exits 1.\n"
               "\n"
               "With --tiles, checks a published tlog-tiles directory instead (the\n"
               "agent's publish_dir, or a mirror of it), reading only: DIR/checkpoint is\n"
               "signed by the log key, the tiles hash to its root, every full tile to\n"
               "the level above, and with --previous the tiles prove the tree extends\n"
               "that checkpoint. A damaged or missing tile is named.\n"
               "\n"
               "With --trust, checks a set of logs of a fleet, one per origin: each DIR\n"
               "as --tiles does, each FILE (an export) as above, with the key that\n"
               "TRUST-FILE lists for the origin of its checkpoint (docs/fleet.md \"Trust\n"
               "file\"), and prints one line per log: ORIGIN size N root HEX consistent\n"
               "yes|first time. With --state, each log must extend the checkpoint that\n"
               "STATE-FILE kept for its origin from the previous run (an export: made\n"
               "with --previous-size that size), and the verified checkpoints are\n"
               "written back. Exit 1 when any fails (named on stderr).\n"
               "\n"
               "  -k, --log-key PEM            the log's public key (a copy you keep)\n"
               "  -T, --trust TRUST-FILE       the logs trusted, one note verifier key per line\n"
               "  -s, --state STATE-FILE       with --trust: the last verified checkpoint per\n"
               "                               origin (created on the first run)\n"
               "  -p, --previous CHECKPOINT    a checkpoint note you kept from an earlier\n"
               "                               export (export with --previous-size its size)\n"
               "  -t, --tiles DIR              verify the published tiles in DIR\n"
               "  -j, --json                   print the summary as JSON\n"
               "  -h, --help                   show this help\n");
}

struct verify_opts {
        const char *key_path, *prev_path, *path, *tiles, *trust, *state;
        char **dirs;
        size_t n_dirs;
        bool json;
};

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int verify_parse(int argc, char **argv, struct verify_opts *o) {
        static const struct option options[] = {
                { "log-key", required_argument, NULL, 'k' },
                { "previous", required_argument, NULL, 'p' },
                { "tiles", required_argument, NULL, 't' },
                { "trust", required_argument, NULL, 'T' },
                { "state", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit verify";
        int c;

        while ((c = getopt_long(argc, argv, ":k:p:t:T:s:jh", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        o->key_path = optarg;
                        break;
                case 'p':
                        o->prev_path = optarg;
                        break;
                case 't':
                        o->tiles = optarg;
                        break;
                case 'T':
                        o->trust = optarg;
                        break;
                case 's':
                        o->state = optarg;
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        verify_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        if (o->trust) {
                if (o->key_path || o->prev_path || o->tiles)
                        return cli_usage_error(verb, "--trust cannot be used with --log-key, --previous or --tiles");
                if (!*o->trust || (o->state && !*o->state))
                        return cli_usage_error(verb, "--trust and --state need a file path");
                if (argc - optind < 1)
                        return cli_usage_error(verb, "--trust needs at least one DIR or FILE (tiles or an export)");
                o->dirs = argv + optind;
                o->n_dirs = (size_t) (argc - optind);
                return CLI_EXIT_OK;
        }
        if (o->state)
                return cli_usage_error(verb, "--state needs --trust");
        if (!o->key_path)
                return cli_usage_error(verb, "--log-key (or --trust) is required");
        if (o->tiles && argc - optind != 0)
                return cli_usage_error(verb, "--tiles DIR takes no FILE");
        if (o->tiles)
                return CLI_EXIT_OK;
        if (argc - optind != 1)
                return cli_usage_error(verb, "expected one FILE (the export; '-' for standard input)");
        o->path = argv[optind];
        return CLI_EXIT_OK;
}

/* Feeds the export's lines to v: 0 verified so far, 1 failed, -errno
 * (-EIO: a read error, said here). */
int cli_audit_verify_lines(client_audit_verify *v, FILE *f, const char *path) {
        char *line = NULL;
        size_t cap = 0;
        int k = 0;

        for (;;) {
                ssize_t n = getline(&line, &cap, f);
                if (n < 0)
                        break;
                if (n > 0 && line[n - 1] == '\n')
                        n--;
                k = client_audit_verify_line(v, line, (size_t) n);
                if (k != 0)
                        break;
        }
        free(line);
        if (ferror(f)) {
                fprintf(stderr, "provsign: audit verify: cannot read export %s: %m\n", path);
                return -EIO;
        }
        return k;
}

static int verify_print_failure(const client_audit_verify *v, bool json) {
        bool has_seq;
        uint64_t seq;
        const char *reason;

        client_audit_verify_failure(v, &has_seq, &seq, &reason);
        if (json) {
                json_t *o = json_pack("{s:b, s:o, s:s}", "verified", 0, "seq",
                                      has_seq ? json_integer((json_int_t) seq) : json_null(), "reason", reason);
                (void) cli_print_json(o);
        }
        if (has_seq)
                fprintf(stderr, "FAILED at seq %" PRIu64 ": %s\n", seq, reason);
        else
                fprintf(stderr, "FAILED: %s\n", reason);
        return CLI_EXIT_VERIFY_FAILED;
}

/* The summary's last lines (takes s). */
static int verify_print_checkpoint(json_t *s, bool with_previous) {
        printf("checkpoint: %s, tree size %" JSON_INTEGER_FORMAT "\n", cli_safe(json_string_value(json_object_get(s, "origin"))),
               json_integer_value(json_object_get(s, "checkpoint_size")));
        if (with_previous)
                printf("consistent with the previous checkpoint\n");
        json_decref(s);
        return CLI_EXIT_OK;
}

/* The summary of a filtered export (takes s). */
static int verify_print_sparse(json_t *s, bool with_previous) {
        json_int_t n = json_integer_value(json_object_get(s, "entries"));

        printf("verified: %" JSON_INTEGER_FORMAT " entries of a filtered export, each proven in the checkpoint's tree"
               " (key states not checked)\n", n);
        if (n > 0)
                printf("seqs: %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT "\n",
                       json_integer_value(json_object_get(s, "first_seq")),
                       json_integer_value(json_object_get(s, "last_seq")));
        return verify_print_checkpoint(s, with_previous);
}

static int verify_print_summary(const client_audit_verify *v, bool json, bool with_previous) {
        json_t *s = client_audit_verify_summary(v);

        if (json)
                return cli_print_json(s);
        if (!s) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        if (json_is_true(json_object_get(s, "sparse")))
                return verify_print_sparse(s, with_previous);
        printf("verified: %" JSON_INTEGER_FORMAT " entries (seq %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT ")\n",
               json_integer_value(json_object_get(s, "entries")), json_integer_value(json_object_get(s, "first_seq")),
               json_integer_value(json_object_get(s, "last_seq")));
        printf("principals: %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(s, "principals")));
        printf("keys: %" JSON_INTEGER_FORMAT " (%" JSON_INTEGER_FORMAT " unknown before the range)\n",
               json_integer_value(json_object_get(s, "keys")),
               json_integer_value(json_object_get(s, "keys_unknown_before_range")));
        json_t *t1 = json_object_get(s, "first_time"), *t2 = json_object_get(s, "last_time");
        printf("first: %s\nlast: %s\n", json_is_string(t1) ? json_string_value(t1) : "-",
               json_is_string(t2) ? json_string_value(t2) : "-");
        return verify_print_checkpoint(s, with_previous);
}

static int verify_run(const struct verify_opts *o) {
        static const char verb[] = "audit verify";
        char *pem = NULL, *prev = NULL;
        client_audit_verify *v = NULL;
        FILE *f = NULL;
        int r, k;

        r = cli_read_file(verb, "log key", o->key_path, 64 * 1024, &pem, NULL);
        if (r == CLI_EXIT_OK && o->prev_path)
                r = cli_read_file(verb, "previous checkpoint", o->prev_path, 64 * 1024, &prev, NULL);
        if (r != CLI_EXIT_OK)
                goto out;
        f = strcmp(o->path, "-") == 0 ? stdin : fopen(o->path, "re");
        if (!f) {
                fprintf(stderr, "provsign: %s: cannot read export %s: %m\n", verb, o->path);
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        k = client_audit_verify_new(pem, prev, &v);
        if (k == 0)
                k = cli_audit_verify_lines(v, f, o->path);
        if (k == 0)
                k = client_audit_verify_finish(v);
        if (k == -EIO)
                r = CLI_EXIT_LOCAL;
        else if (k < 0) {
                fprintf(stderr, "provsign: %s: %s\n", verb, strerror(-k));
                r = CLI_EXIT_LOCAL;
        } else if (k > 0)
                r = verify_print_failure(v, o->json);
        else
                r = verify_print_summary(v, o->json, prev != NULL);
out:
        if (f && f != stdin)
                fclose(f);
        client_audit_verify_free(v);
        free(pem);
        free(prev);
        return r;
}

/* The outcome of client_audit_tiles_verify() r, printed. */
static int verify_tiles_print(int r, const struct client_tiles_result *res, bool json) {
        char root[2 * PROTO_MERKLE_HASH_LEN + 1];

        if (r < 0) {
                fprintf(stderr, "provsign: audit verify: %s\n", *res->detail ? cli_safe(res->detail) : strerror(-r));
                return CLI_EXIT_LOCAL;
        }
        if (r > 0) {
                if (json)
                        (void) cli_print_json(json_pack("{s:b, s:s}", "verified", 0, "reason", res->detail));
                fprintf(stderr, "FAILED: %s\n", cli_safe(res->detail));
                return CLI_EXIT_VERIFY_FAILED;
        }
        for (size_t i = 0; i < PROTO_MERKLE_HASH_LEN; i++)
                snprintf(root + 2 * i, 3, "%02x", res->root[i]);
        if (json)
                return cli_print_json(json_pack(
                        "{s:b, s:s, s:I, s:s, s:o, s:o}", "verified", 1, "origin", res->origin, "tree_size",
                        (json_int_t) res->size, "root", root, "consistent_with_previous_size",
                        res->has_previous ? json_integer((json_int_t) res->previous_size) : json_null(),
                        "entry_bundles",
                        res->has_bundles ? json_pack("{s:I, s:I}", "verified", (json_int_t) res->bundles_checked,
                                                     "missing", (json_int_t) res->bundles_missing)
                                         : json_null()));
        printf("verified: %s size %" PRIu64 " root %s\n", cli_safe(res->origin), res->size, root);
        if (res->has_previous)
                printf("consistent with the previous checkpoint (size %" PRIu64 ")\n", res->previous_size);
        if (res->has_bundles)
                printf("entry bundles: %" PRIu64 " verified, %" PRIu64 " missing\n", res->bundles_checked,
                       res->bundles_missing);
        return CLI_EXIT_OK;
}

static int verify_tiles_run(const struct verify_opts *o) {
        static const char verb[] = "audit verify";
        struct client_tiles_result res = { 0 };
        char *pem = NULL, *prev = NULL;
        int fd = -1, r;

        r = cli_read_file(verb, "log key", o->key_path, 64 * 1024, &pem, NULL);
        if (r == CLI_EXIT_OK && o->prev_path)
                r = cli_read_file(verb, "previous checkpoint", o->prev_path, 64 * 1024, &prev, NULL);
        if (r == CLI_EXIT_OK) {
                fd = open(o->tiles, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        fprintf(stderr, "provsign: %s: cannot open tiles directory %s: %m\n", verb, cli_safe(o->tiles));
                        r = CLI_EXIT_LOCAL;
                }
        }
        if (r == CLI_EXIT_OK)
                r = verify_tiles_print(client_audit_tiles_verify(fd, pem, prev, &res), &res, o->json);
        if (fd >= 0)
                close(fd);
        client_tiles_result_done(&res);
        free(pem);
        free(prev);
        return r;
}

int cmd_audit_verify(const struct cli_ctx *ctx, int argc, char **argv) {
        struct verify_opts o = {};
        int r = verify_parse(argc, argv, &o);
        (void) ctx;

        if (r != CLI_EXIT_OK)
                return r < 0 ? CLI_EXIT_OK : r;
        if (o.trust)
                return cli_audit_verify_trust(o.trust, o.state, o.dirs, o.n_dirs, o.json);
        return o.tiles ? verify_tiles_run(&o) : verify_run(&o);
}

/* ---- audit proof ---- */

static int proof_run(const struct cli_ctx *ctx, uint64_t seq) {
        provsign_conn *conn = NULL;
        provsign_log_proof *p = NULL;
        size_t n_proof, leaf_len;
        int r = cli_connect(ctx, &conn);

        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_get_log_proof(conn, seq, &p);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "audit proof");
                goto out;
        }
        const uint8_t *proof = provsign_log_proof_inclusion_proof(p, &n_proof);
        const uint8_t *leaf = provsign_log_proof_leaf(p, &leaf_len);
        struct client_receipt cr = {
                .log_seq = provsign_log_proof_seq(p), .log_time_us = provsign_log_proof_time_us(p),
                .leaf = leaf, .leaf_len = leaf_len, .tree_size = provsign_log_proof_tree_size(p),
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof, .n_proof = n_proof,
                .checkpoint = provsign_log_proof_checkpoint(p),
        };
        r = cli_print_json(client_receipt_to_json(&cr));
out:
        provsign_log_proof_free(p);
        provsign_close(conn);
        return r;
}

static void proof_help(void) {
        printf("Usage: provsign audit proof --seq N [--json]\n"
               "\n"
               "Prints the inclusion proof of log entry N and the checkpoint it leads to,\n"
               "as a receipt JSON object (log_seq, log_time, leaf, tree_size,\n"
               "inclusion_proof, checkpoint): 'provsign receipt verify' checks it.\n"
               "\n"
               "  -s, --seq N    the entry\n"
               "  -j, --json     accepted: the output is JSON already\n"
               "  -h, --help     show this help\n");
}

int cmd_audit_proof(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "seq", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit proof";
        uint64_t seq = 0;
        bool have = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if (parse_u64(optarg, &seq) < 0)
                                return cli_usage_error(verb, "invalid --seq '%s': expected a sequence number", optarg);
                        have = true;
                        break;
                case 'j':
                        break; /* the output is JSON anyway */
                case 'h':
                        proof_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!have)
                return cli_usage_error(verb, "--seq is required");
        return proof_run(ctx, seq);
}

/* ---- audit find ---- */

static void find_help(void) {
        printf("Usage: provsign audit find (--digest ALG:HEX | --principal NAME | --key KEYID)...\n"
               "                           [--since T] [--until T] [--json]\n"
               "\n"
               "Prints the log entries (JSON Lines, as 'audit export') that match every\n"
               "filter given. The agent answers from its index (index.sqlite in its\n"
               "state directory), without reading the whole log.\n"
               "\n"
               FILTER_HELP
               "  -j, --json               accepted: the output is JSON Lines already\n"
               "  -h, --help               show this help\n");
}

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int find_parse(int argc, char **argv, struct filter_opts *o) {
        static const struct option options[] = {
                FILTER_OPTIONS,
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char verb[] = "audit find";
        int c, r;

        while ((c = getopt_long(argc, argv, ":jhp:" FILTER_SHORT, options, NULL)) >= 0) {
                r = filter_opt(verb, c == 'p' ? 'P' : c, optarg, o); /* -p: --principal before --previous came */
                if (r < 0)
                        return -r;
                if (r > 0)
                        continue;
                switch (c) {
                case 'j':
                        break; /* the output is JSON anyway */
                case 'h':
                        find_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!o->digest_len && !(o->principal && *o->principal) && !(o->keyid && *o->keyid))
                return cli_usage_error(verb, "name at least one of --digest, --principal and --key");
        if (o->until_us && o->since_us > o->until_us)
                return cli_usage_error(verb, "--since is after --until");
        return CLI_EXIT_OK;
}

static int find_run(const struct cli_ctx *ctx, const struct filter_opts *o) {
        static const enum format jsonl = FORMAT_JSONL;
        provsign_conn *conn = NULL;
        provsign_log_query *q = NULL;
        int r = cli_connect(ctx, &conn);

        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_log_query_new(&q);
        if (r == 0)
                r = filter_query(q, o);
        if (r == 0)
                r = provsign_find_log(conn, q, write_entry, (void *) &jsonl);
        if (r != 0)
                r = cli_call_failed(ctx, conn, r, "audit find");
        else
                r = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_LOCAL;
        provsign_log_query_free(q);
        provsign_close(conn);
        return r;
}

int cmd_audit_find(const struct cli_ctx *ctx, int argc, char **argv) {
        struct filter_opts o = {};
        int r = find_parse(argc, argv, &o);

        if (r != CLI_EXIT_OK)
                return r < 0 ? CLI_EXIT_OK : r;
        return find_run(ctx, &o);
}
