/* provsign audit: the agent's audit log. A table of sub-verbs like `key`;
 * export, verify, find and proof live in cli-audit-log.c. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static int cmd_audit_checkpoint(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_audit_log_key(const struct cli_ctx *ctx, int argc, char **argv);
/* cli-audit-log.c */
int cmd_audit_export(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_verify(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_proof(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit_find(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_audit_purge(const struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_verb audit_verbs[] = {
        { "checkpoint", cmd_audit_checkpoint, "print the log's latest signed checkpoint" },
        { "log-key",    cmd_audit_log_key,    "print the log key and its note verifier key" },
        { "export",     cmd_audit_export,     "stream the log as JSON Lines (or CSV) with a checkpoint" },
        { "verify",     cmd_audit_verify,     "verify an export offline (and against an older checkpoint)" },
        { "proof",      cmd_audit_proof,      "print the inclusion proof of one entry" },
        { "find",       cmd_audit_find,       "find the entries of a digest or a principal" },
        { "purge",      cmd_audit_purge,      "remove old entries' bodies, keeping their leaf hashes (operator)" },
};

int cmd_audit(const struct cli_ctx *ctx, int argc, char **argv) {
        return cli_subcommand(ctx, "audit", audit_verbs, sizeof audit_verbs / sizeof audit_verbs[0], argc, argv);
}

/* The shared option loop of sub-verbs whose only option is --json: returns
 * -1 to go on (with *json set), else the exit code. */
static int parse_json_only(const char *verb, void (*help)(void), int argc, char **argv, bool *json) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c, r;

        while ((c = getopt_long(argc, argv, ":jh", options, NULL)) >= 0)
                switch (c) {
                case 'j':
                        *json = true;
                        break;
                case 'h':
                        help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        return r != CLI_EXIT_OK ? r : -1;
}

/* ---- audit checkpoint ---------------------------------------------------- */

static void checkpoint_help(void) {
        printf("Usage: provsign audit checkpoint [--from-size M] [--json]\n"
               "\n"
               "Prints the latest checkpoint of the agent's audit log exactly as the\n"
               "agent sent it: a C2SP signed note (origin, tree size, base64 root hash,\n"
               "a blank line, the log key's signature line). Verify it with the log key\n"
               "('provsign audit log-key', or better a copy you keep).\n"
               "\n"
               "  -f, --from-size M   also print the RFC 9162 consistency proof from the\n"
               "                      tree of M entries (an older checkpoint's or receipt's\n"
               "                      tree size) to this one: after the note, a line\n"
               "                      'consistency proof from M:' and one base64 hash per line\n"
               "  -j, --json          print {checkpoint, tree_size}, with --from-size also\n"
               "                      consistency: {from_size, proof: [base64 hashes]}\n"
               "  -h, --help          show this help\n");
}

static int parse_size(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        /* Decimal digits only: no sign, no blanks, no 0x. */
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

static json_t *proof_json(const uint8_t *proof, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++) {
                char *b64 = cli_base64(proof + i * PROVSIGN_HASH_LEN, PROVSIGN_HASH_LEN);

                if (!b64 || json_array_append_new(a, json_string(b64)) < 0) {
                        json_decref(a);
                        a = NULL;
                }
                free(b64);
        }
        return a;
}

/* The checkpoint as the agent sent it and, with a proof, "consistency
 * proof from M:" and one base64 hash per line. */
static int checkpoint_print_text(const char *note, uint64_t from_size, const uint8_t *proof, size_t n) {
        /* The library checked it is a note (UTF-8 without C0 controls but
         * newlines, ending in one); C1 controls are the agent's to send. */
        (void) cli_write_text(stdout, note);
        if (from_size == 0)
                return CLI_EXIT_OK;
        printf("consistency proof from %" PRIu64 ":\n", from_size);
        for (size_t i = 0; i < n; i++) {
                char *b64 = cli_base64(proof + i * PROVSIGN_HASH_LEN, PROVSIGN_HASH_LEN);

                if (!b64) {
                        fprintf(stderr, "provsign: out of memory\n");
                        return CLI_EXIT_LOCAL;
                }
                puts(b64);
                free(b64);
        }
        return CLI_EXIT_OK;
}

static int checkpoint_print_json(const char *note, uint64_t size, uint64_t from_size, const uint8_t *proof, size_t n) {
        json_t *j = json_pack("{s:s, s:I}", "checkpoint", note, "tree_size", (json_int_t) size);

        if (j && from_size > 0 &&
            json_object_set_new(j, "consistency", json_pack("{s:I, s:o}", "from_size", (json_int_t) from_size, "proof",
                                                            proof_json(proof, n))) < 0) {
                json_decref(j);
                j = NULL;
        }
        return cli_print_json(j);
}

static int checkpoint_run(const struct cli_ctx *ctx, uint64_t from_size, bool json) {
        provsign_conn *conn = NULL;
        char *note = NULL;
        uint8_t *proof = NULL;
        uint64_t size;
        size_t n = 0;
        int r = cli_connect(ctx, &conn);

        if (r != CLI_EXIT_OK)
                return r;
        if (from_size > 0)
                r = provsign_get_checkpoint_consistency(conn, from_size, &note, &size, &proof, &n);
        else
                r = provsign_get_checkpoint(conn, &note, &size);
        if (r != 0)
                r = cli_call_failed(ctx, conn, r, "audit checkpoint");
        else if (json)
                r = checkpoint_print_json(note, size, from_size, proof, n);
        else
                r = checkpoint_print_text(note, from_size, proof, n);
        free(proof);
        free(note);
        provsign_close(conn);
        return r;
}

static int cmd_audit_checkpoint(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "from-size", required_argument, NULL, 'f' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "audit checkpoint";
        uint64_t from_size = 0;
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":f:jh", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        if (parse_size(optarg, &from_size) < 0 || from_size == 0)
                                return cli_usage_error(verb, "invalid --from-size '%s': expected a tree size of at least 1",
                                                       optarg);
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        checkpoint_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        return checkpoint_run(ctx, from_size, json);
}

/* ---- audit log-key ------------------------------------------------------- */

static void log_key_help(void) {
        printf("Usage: provsign audit log-key [--json]\n"
               "\n"
               "Prints the public key that signs the audit log's checkpoints as PEM,\n"
               "then its C2SP note verifier key on one line:\n"
               "<origin>+<8 hex digits of the key hash>+<base64(0x02 || DER SPKI)>.\n"
               "This is the agent's word on its own key: keep a copy taken once, out\n"
               "of band, for 'provsign receipt verify --log-key'.\n"
               "\n"
               "  -j, --json   print {origin, keyid, public_key_pem, verifier_key}\n"
               "  -h, --help   show this help\n");
}

/* Fetches the log key and prints it (PEM and verifier key, or JSON). */
static int log_key_run(const struct cli_ctx *ctx, bool json) {
        provsign_conn *conn = NULL;
        provsign_log_key *key = NULL;
        int r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;

        r = provsign_get_log_key(conn, &key);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "audit log-key");
                goto out;
        }

        if (json)
                r = cli_print_json(json_pack("{s:s, s:s, s:s, s:s}",
                                             "origin", provsign_log_key_origin(key),
                                             "keyid", provsign_log_key_keyid(key),
                                             "public_key_pem", provsign_log_key_pem(key),
                                             "verifier_key", provsign_log_key_verifier_key(key)));
        else {
                /* The library made both from checked values: the origin is
                 * a note key name (no spaces, '+' or control characters). */
                fputs(provsign_log_key_pem(key), stdout);
                printf("%s\n", cli_safe(provsign_log_key_verifier_key(key)));
                r = CLI_EXIT_OK;
        }
out:
        provsign_log_key_free(key);
        provsign_close(conn);
        return r;
}

static int cmd_audit_log_key(const struct cli_ctx *ctx, int argc, char **argv) {
        bool json = false;
        int r = parse_json_only("audit log-key", log_key_help, argc, argv, &json);
        if (r >= 0)
                return r;
        return log_key_run(ctx, json);
}

/* ---- audit purge --------------------------------------------------------- */

static void purge_help(void) {
        printf("Usage: provsign audit purge --before T [--json]\n"
               "\n"
               "Retention by hand (operator role): the agent replaces the bodies of the\n"
               "log's entries logged before T by stubs that keep their Merkle leaf\n"
               "hashes, so every checkpoint, receipt and proof still verifies. Whole\n"
               "closed segments only; key events and purges are never purged. A PURGE\n"
               "entry records who purged up to which entry.\n"
               "\n"
               "  -b, --before T   RFC 3339 UTC, e.g. 2026-01-31T00:00:00Z (not in the future)\n"
               "  -j, --json       print {purged, through_seq, log_seq}\n"
               "  -h, --help       show this help\n");
}

static int cmd_audit_purge(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "before", required_argument, NULL, 'b' },
                { "json",   no_argument,       NULL, 'j' },
                { "help",   no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "audit purge";
        int64_t before = 0;
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":b:jh", options, NULL)) >= 0)
                switch (c) {
                case 'b':
                        if (cli_parse_time(optarg, &before) < 0 || before <= 0)
                                return cli_usage_error(verb, "invalid --before '%s': expected RFC 3339 UTC", optarg);
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        purge_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!before)
                return cli_usage_error(verb, "--before is required");
        provsign_conn *conn = NULL;
        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        uint64_t purged = 0, through = 0, seq = 0;
        r = provsign_audit_purge(conn, before, &purged, &through, &seq);
        if (r != 0)
                r = cli_call_failed(ctx, conn, r, verb);
        else if (json)
                r = cli_print_json(json_pack("{s:I, s:I, s:I}", "purged", (json_int_t) purged, "through_seq",
                                             (json_int_t) through, "log_seq", (json_int_t) seq));
        else if (purged)
                printf("purged %" PRIu64 " entries through seq %" PRIu64 " (PURGE entry %" PRIu64 ")\n", purged,
                       through, seq);
        else
                printf("nothing to purge: no closed segment is all older than that\n");
        provsign_close(conn);
        return r;
}
