/* provsign sign: a signature over a precomputed digest, from the agent. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "receipt-json.h"

#include "cli.h"

static void sign_help(void) {
        printf("Usage: provsign sign [--principal P] --digest ALG:HEX [OPTIONS]\n"
               "\n"
               "Asks the agent to sign a digest that you computed (for example the\n"
               "SHA-256 of a provenance statement) and prints the signature in base64\n"
               "(DER for ECDSA keys). The agent logs the signature before it answers,\n"
               "and answers with a receipt that proves it: keep it beside the\n"
               "signature ('provsign receipt verify' checks it offline).\n"
               "\n"
               "  -p, --principal P        sign as principal P (may be omitted when you\n"
               "                           may sign for exactly one)\n"
               "  -d, --digest ALG:HEX     sha256:<64 hex digits> or sha384:<96 hex digits>\n"
               "  -t, --payload-type T     media type of what was hashed (logged)\n"
               "  -a, --annotation K=V     logged with the signature; repeatable\n"
               "  -r, --receipt FILE       also write the receipt to FILE as JSON\n"
               "                           (mode 0644 if new)\n"
               "  -j, --json               print {keyid, algorithm, sig, principal,\n"
               "                           generation, receipt}\n"
               "  -h, --help               show this help\n"
               "\n"
               "The receipt: {log_seq, log_time (RFC 3339 UTC, microseconds), leaf\n"
               "(base64 of the log entry), tree_size, inclusion_proof (base64 hashes,\n"
               "leaf to root), checkpoint (the signed note)}.\n");
}

/* The receipt of sig as the JSON object of `sign --json` and --receipt. */
json_t *cli_receipt_json(const provsign_signature *sig) {
        struct client_receipt rc = {};
        const uint8_t *proof;

        rc.log_seq = provsign_signature_log_seq(sig);
        rc.log_time_us = provsign_signature_log_time_us(sig);
        rc.leaf = provsign_signature_leaf(sig, &rc.leaf_len);
        rc.tree_size = provsign_signature_tree_size(sig);
        proof = provsign_signature_inclusion_proof(sig, &rc.n_proof);
        rc.proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof;
        rc.checkpoint = provsign_signature_checkpoint(sig);
        return client_receipt_to_json(&rc);
}

/* Writes the receipt, one line of JSON, to path. */
static int write_receipt(const char *path, json_t *receipt) {
        char *text, *line = NULL;
        int r;

        text = json_dumps(receipt, JSON_COMPACT);
        if (!text || asprintf(&line, "%s\n", text) < 0) {
                free(text);
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        r = cli_write_file("sign", "receipt", path, line, strlen(line));
        free(line);
        free(text);
        return r;
}

/* What the command line asked for; strings borrowed from argv. */
struct sign_opts {
        const char *principal, *payload_type, *receipt_path;
        struct provsign_annotation *ann;
        size_t n_ann;
        int alg;
        uint8_t digest[48];
        size_t digest_len;
        bool json;
};

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int sign_parse(int argc, char **argv, struct sign_opts *o) {
        static const struct option options[] = {
                { "principal",    required_argument, NULL, 'p' },
                { "digest",       required_argument, NULL, 'd' },
                { "payload-type", required_argument, NULL, 't' },
                { "annotation",   required_argument, NULL, 'a' },
                { "receipt",      required_argument, NULL, 'r' },
                { "json",         no_argument,       NULL, 'j' },
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        const char *digest_spec = NULL;
        int c, r;

        /* Annotations point into argv: at most one per remaining word. */
        o->ann = calloc((size_t) argc, sizeof *o->ann);
        if (!o->ann) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":p:d:t:a:r:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error("sign", "--principal needs a non-empty name");
                        o->principal = optarg;
                        break;
                case 'd':
                        digest_spec = optarg;
                        break;
                case 't':
                        o->payload_type = optarg;
                        break;
                case 'a':
                        r = cli_parse_annotation("sign", optarg, &o->ann[o->n_ann]);
                        if (r != CLI_EXIT_OK)
                                return r;
                        o->n_ann++;
                        break;
                case 'r':
                        if (!*optarg)
                                return cli_usage_error("sign", "--receipt needs a non-empty path");
                        o->receipt_path = optarg;
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        sign_help();
                        return -1;
                default:
                        return cli_getopt_error("sign", c, argv);
                }
        r = cli_extra_args("sign", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!digest_spec)
                return cli_usage_error("sign", "missing --digest");
        if (proto_digest_spec_parse(digest_spec, &o->alg, o->digest, &o->digest_len) < 0)
                return cli_usage_error("sign", "invalid digest '%s': expected sha256:<64 hex digits> or sha384:<96 hex digits>",
                                       digest_spec);
        return CLI_EXIT_OK;
}

/* Writes what sign reports: the receipt file first (when it cannot be
 * written, no signature is printed and the exit code says so), then the
 * signature, as base64 or as JSON with its receipt. */
static int sign_output(const struct sign_opts *o, const provsign_signature *sig) {
        json_t *receipt = NULL;
        size_t der_len;
        const uint8_t *der = provsign_signature_der(sig, &der_len);
        char *b64 = cli_base64(der, der_len);
        int r = CLI_EXIT_LOCAL;

        if (!b64) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        if (o->json || o->receipt_path) {
                receipt = cli_receipt_json(sig);
                if (!receipt) {
                        fprintf(stderr, "provsign: sign: cannot encode the receipt as JSON\n");
                        goto out;
                }
        }
        r = o->receipt_path ? write_receipt(o->receipt_path, receipt) : CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                goto out;
        if (o->json)
                r = cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}",
                                             "keyid", provsign_signature_keyid(sig),
                                             "algorithm", provsign_key_algorithm_to_string(provsign_signature_algorithm(sig)),
                                             "sig", b64,
                                             "principal", provsign_signature_principal(sig),
                                             "generation", (json_int_t) provsign_signature_generation(sig),
                                             "receipt", receipt));
        else
                puts(b64);
out:
        json_decref(receipt);
        free(b64);
        return r;
}

static int sign_run(const struct cli_ctx *ctx, const struct sign_opts *o) {
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        int r = cli_connect(ctx, &conn);

        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_sign(conn, o->principal, (enum provsign_digest_algorithm) o->alg, o->digest, o->digest_len,
                          o->payload_type, o->ann, o->n_ann, &sig);
        r = r != 0 ? cli_call_failed(ctx, conn, r, "sign") : sign_output(o, sig);
        provsign_signature_free(sig);
        provsign_close(conn);
        return r;
}

int cmd_sign(const struct cli_ctx *ctx, int argc, char **argv) {
        struct sign_opts o = {};
        int r = sign_parse(argc, argv, &o);

        if (r == CLI_EXIT_OK)
                r = sign_run(ctx, &o);
        free(o.ann);
        return r < 0 ? CLI_EXIT_OK : r;
}
