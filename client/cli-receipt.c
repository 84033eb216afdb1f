/* provsign receipt: offline checks of the receipts that `provsign sign`
 * returns. Needs no agent: the receipt, the log key and the math are all
 * there is to it (docs/formats.md "Receipts"). */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "receipt-json.h"

#include "cli.h"
#include "trust.h"

/* A PEM public key is a few hundred bytes; leave room for comments. */
#define LOG_KEY_FILE_MAX (64u * 1024u)

static int cmd_receipt_verify(const struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_verb receipt_verbs[] = {
        { "verify", cmd_receipt_verify, "verify a signature's receipt offline with the log key" },
};

int cmd_receipt(const struct cli_ctx *ctx, int argc, char **argv) {
        return cli_subcommand(ctx, "receipt", receipt_verbs, sizeof receipt_verbs / sizeof receipt_verbs[0], argc, argv);
}

static void verify_help(void) {
        printf("Usage: provsign receipt verify --log-key PEM-FILE [--json] FILE\n"
               "       provsign receipt verify --trust TRUST-FILE [--json] FILE\n"
               "\n"
               "Verifies offline, without the agent, that a signature was written to the\n"
               "agent's audit log. FILE ('-': standard input) is the output of\n"
               "'provsign sign --json' or the receipt that 'provsign sign --receipt'\n"
               "wrote. The checks, in order:\n"
               "  1. the checkpoint is signed by the log key under the checkpoint's origin\n"
               "  2. the receipt's tree_size is the checkpoint's tree size\n"
               "  3. the leaf and the inclusion proof at log_seq give the checkpoint's root\n"
               "  4. the leaf is a SIGN log entry at log_seq and log_time\n"
               "  5. (a whole sign output) the entry names the output's keyid and principal\n"
               "On success prints what the log entry proves, one fact per line.\n"
               "\n"
               "  -k, --log-key PEM-FILE   the log key ('provsign audit log-key'; keep a copy\n"
               "                           taken out of band rather than asking the agent\n"
               "                           you are checking)\n"
               "  -T, --trust TRUST-FILE   accept a receipt of any log listed in TRUST-FILE\n"
               "                           (docs/fleet.md \"Trust file\"): the key is the one\n"
               "                           listed for the checkpoint's origin\n"
               "  -j, --json               print {verified, log_seq, log_time, principal,\n"
               "                           keyid, digest, tree_size, origin}\n"
               "  -h, --help               show this help\n"
               "\n"
               "Exit status: 0 verified, 1 a check failed (named on stderr), 2 usage\n"
               "error, 5 a file unreadable or malformed.\n");
}

static void print_fact(const char *label, const char *value) {
        printf("%-11s %s\n", label, cli_safe(value));
}

static int print_verified(const struct client_receipt_doc *doc, const struct client_receipt_result *res) {
        const Provsign__AuditEntry *e = res->entry;
        char when[PROTO_TIME_LEN + 1], *digest;

        if (!proto_time_format_us(doc->rc.log_time_us, when))
                return CLI_EXIT_LOCAL; /* cannot happen: it was parsed from this form */
        digest = proto_digest_spec((int) e->digest_algorithm, e->digest.data, e->digest.len);
        if (!digest) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }

        print_fact("verified:", "yes");
        printf("%-11s %" PRIu64 "\n", "log_seq:", doc->rc.log_seq);
        print_fact("log_time:", when);
        print_fact("principal:", e->principal ? e->principal : "");
        print_fact("keyid:", e->keyid ? e->keyid : "");
        print_fact("digest:", digest);
        printf("%-11s %" PRIu64 "\n", "tree_size:", doc->rc.tree_size);
        print_fact("origin:", res->origin);
        free(digest);
        return CLI_EXIT_OK;
}

/* With --trust: the listed key of the receipt's checkpoint origin, into
 * *ret_pem (a copy). CLI_EXIT_OK or the exit code, said here. */
static int receipt_trusted_key(const char *trust_path, const char *path, const char *text, size_t len,
                               char **ret_pem) {
        static const char verb[] = "receipt verify";
        struct client_trust trust = {};
        struct client_receipt_doc doc = {};
        const struct client_trust_entry *e = NULL;
        char detail[320], *origin = NULL;
        int r = cli_read_trust(verb, trust_path, &trust);

        if (r != CLI_EXIT_OK)
                return r;
        if (client_receipt_doc_parse(text, len, &doc, detail, sizeof detail) < 0) {
                fprintf(stderr, "provsign: %s: %s: ", verb, cli_safe(path));
                fprintf(stderr, "%s\n", cli_safe(detail));
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = client_trust_for_checkpoint(&trust, doc.rc.checkpoint, &e, &origin);
        if (r == -ENOMEM) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
        } else if (r < 0) {
                fprintf(stderr, "provsign: %s: %s failed: the checkpoint is not a well-formed checkpoint note\n", verb,
                        client_receipt_check_name(CLIENT_RECEIPT_CHECKPOINT));
                r = CLI_EXIT_VERIFY_FAILED;
        } else if (!e) {
                fprintf(stderr, "provsign: %s: %s failed: origin \"%s\"", verb,
                        client_receipt_check_name(CLIENT_RECEIPT_CHECKPOINT), cli_safe(origin));
                fprintf(stderr, " is not in the trust file %s\n", cli_safe(trust_path));
                r = CLI_EXIT_VERIFY_FAILED;
        } else if (!(*ret_pem = strdup(e->pem))) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
        } else
                r = CLI_EXIT_OK;
out:
        free(origin);
        client_receipt_doc_done(&doc);
        client_trust_done(&trust);
        return r;
}

static int receipt_verify_run(const char *key_path, const char *trust_path, const char *path, bool json) {
        static const char verb[] = "receipt verify";
        struct client_receipt_doc doc = {};
        struct client_receipt_result res = {};
        char *pem = NULL, *text = NULL;
        size_t text_len;
        int r;

        if (key_path) {
                r = cli_read_file(verb, "log key", key_path, LOG_KEY_FILE_MAX, &pem, NULL);
                if (r != CLI_EXIT_OK)
                        goto out;
        }
        r = cli_read_file(verb, "receipt", path, CLIENT_RECEIPT_FILE_MAX, &text, &text_len);
        if (r != CLI_EXIT_OK)
                goto out;
        if (trust_path) {
                r = receipt_trusted_key(trust_path, path, text, text_len, &pem);
                if (r != CLI_EXIT_OK)
                        goto out;
                key_path = trust_path;
        }

        r = client_receipt_verify_text(text, text_len, pem, &doc, &res);
        if (r > 0) {
                fprintf(stderr, "provsign: %s: %s failed: %s\n", verb, client_receipt_check_name(r), cli_safe(res.detail));
                r = CLI_EXIT_VERIFY_FAILED;
                goto out;
        }
        if (r < 0) {
                /* The detail names the field (or the key's problem). */
                fprintf(stderr, "provsign: %s: %s: %s\n", verb,
                        r == -ENOKEY ? key_path : r == -EBADMSG ? path : "error", cli_safe(res.detail));
                r = CLI_EXIT_LOCAL;
                goto out;
        }

        if (json)
                r = cli_print_json(client_receipt_verified_json(&doc, &res));
        else
                r = print_verified(&doc, &res);
out:
        client_receipt_result_done(&res);
        client_receipt_doc_done(&doc);
        free(text);
        free(pem);
        return r;
}

static int cmd_receipt_verify(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "log-key", required_argument, NULL, 'k' },
                { "trust",   required_argument, NULL, 'T' },
                { "json",    no_argument,       NULL, 'j' },
                { "help",    no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "receipt verify";
        const char *key_path = NULL, *trust_path = NULL, *path;
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":k:T:jh", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        if (!*optarg)
                                return cli_usage_error(verb, "--log-key needs a non-empty path");
                        key_path = optarg;
                        break;
                case 'T':
                        if (!*optarg)
                                return cli_usage_error(verb, "--trust needs a non-empty path");
                        trust_path = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        verify_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }

        if (key_path && trust_path)
                return cli_usage_error(verb, "--log-key and --trust cannot be used together");
        if (!key_path && !trust_path)
                return cli_usage_error(verb, "missing --log-key PEM-FILE (or --trust TRUST-FILE)");
        if (optind >= argc)
                return cli_usage_error(verb, "missing FILE (a receipt, or the output of 'provsign sign --json')");
        path = argv[optind++];
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (strcmp(path, "-") == 0 && strcmp(key_path ? key_path : trust_path, "-") == 0)
                return cli_usage_error(verb, "FILE and the key cannot both be standard input");

        return receipt_verify_run(key_path, trust_path, path, json);
}
