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
        printf("Usage: provsign sign [--principal P] --digest ALG:HEX... [OPTIONS]\n"
               "\n"
               "Asks the agent to sign a digest that you computed (for example the\n"
               "SHA-256 of a provenance statement) and prints the signature in base64\n"
               "(DER for ECDSA keys). The agent logs the signature before it answers,\n"
               "and answers with a receipt that proves it: keep it beside the\n"
               "signature ('provsign receipt verify' checks it offline).\n"
               "\n"
               "  -p, --principal P        sign as principal P (may be omitted when you\n"
               "                           may sign for exactly one)\n"
               "  -d, --digest ALG:HEX     sha256:<64 hex digits> or sha384:<96 hex digits>;\n"
               "                           repeatable: the digests (one algorithm, no\n"
               "                           repeats) are signed pipelined on one connection\n"
               "  -t, --payload-type T     media type of what was hashed (logged)\n"
               "  -a, --annotation K=V     logged with the signature; repeatable\n"
               "  -r, --receipt FILE       also write the receipt to FILE as JSON\n"
               "                           (mode 0644 if new; one --digest only)\n"
               "  -R, --receipt-dir DIR    also write each receipt to DIR/ALG-HEX.json,\n"
               "                           a new file (one that exists is never replaced:\n"
               "                           that digest fails, exit 5)\n"
               "  -j, --json               print {keyid, algorithm, sig, principal,\n"
               "                           generation, receipt}\n"
               "  -h, --help               show this help\n"
               "\n"
               "With several --digest, stdout has one line per signed digest, in the\n"
               "order given: 'ALG:HEX BASE64' (with --json, one object per line, with\n"
               "\"digest\": \"ALG:HEX\" added). A digest that fails gets a line on stderr\n"
               "(the status name first when the agent refused it) and no line on\n"
               "stdout; the others are still signed and printed. The exit status is\n"
               "that of the first digest (in the order given) that failed.\n"
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

/* Writes the receipt, one line of JSON, to path (never replacing a file
 * there unless replace). */
static int write_receipt(const char *path, json_t *receipt, bool replace) {
        char *text, *line = NULL;
        int r;

        text = json_dumps(receipt, JSON_COMPACT);
        if (!text || asprintf(&line, "%s\n", text) < 0) {
                free(text);
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        r = replace ? cli_write_file("sign", "receipt", path, line, strlen(line))
                    : cli_write_new_file("sign", "receipt", path, line, strlen(line));
        free(line);
        free(text);
        return r;
}

/* One --digest: its bytes and its canonical "ALG:HEX" spec. */
struct sign_digest {
        uint8_t bytes[48];
        char *spec;
};

/* What the command line asked for; strings borrowed from argv. */
struct sign_opts {
        const char *principal, *payload_type, *receipt_path, *receipt_dir;
        struct provsign_annotation *ann;
        size_t n_ann;
        int alg;
        struct sign_digest *digests;
        size_t n_digests;
        size_t digest_len;
        bool json;
};

/* Adds the --digest spec to o: CLI_EXIT_OK or a usage error. */
static int sign_add_digest(struct sign_opts *o, const char *spec) {
        struct sign_digest *d = &o->digests[o->n_digests];
        size_t len;
        int alg;

        if (proto_digest_spec_parse(spec, &alg, d->bytes, &len) < 0)
                return cli_usage_error("sign", "invalid digest '%s': expected sha256:<64 hex digits> or sha384:<96 hex digits>",
                                       spec);
        if (o->n_digests > 0 && alg != o->alg)
                return cli_usage_error("sign", "digest '%s': all --digest must use one algorithm (%s)", spec,
                                       proto_digest_name(o->alg));
        for (size_t i = 0; i < o->n_digests; i++)
                if (memcmp(o->digests[i].bytes, d->bytes, len) == 0)
                        return cli_usage_error("sign", "digest '%s' is given twice", spec);
        d->spec = proto_digest_spec(alg, d->bytes, len);
        if (!d->spec) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        o->alg = alg;
        o->digest_len = len;
        o->n_digests++;
        return CLI_EXIT_OK;
}

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int sign_parse(int argc, char **argv, struct sign_opts *o) {
        static const struct option options[] = {
                { "principal",    required_argument, NULL, 'p' },
                { "digest",       required_argument, NULL, 'd' },
                { "payload-type", required_argument, NULL, 't' },
                { "annotation",   required_argument, NULL, 'a' },
                { "receipt",      required_argument, NULL, 'r' },
                { "receipt-dir",  required_argument, NULL, 'R' },
                { "json",         no_argument,       NULL, 'j' },
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        int c, r;

        /* Annotations and digests: at most one per remaining word. */
        o->ann = calloc((size_t) argc, sizeof *o->ann);
        o->digests = calloc((size_t) argc, sizeof *o->digests);
        if (!o->ann || !o->digests) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":p:d:t:a:r:R:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error("sign", "--principal needs a non-empty name");
                        o->principal = optarg;
                        break;
                case 'd':
                        r = sign_add_digest(o, optarg);
                        if (r != CLI_EXIT_OK)
                                return r;
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
                case 'R':
                        if (!*optarg)
                                return cli_usage_error("sign", "--receipt-dir needs a non-empty path");
                        o->receipt_dir = optarg;
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
        if (o->n_digests == 0)
                return cli_usage_error("sign", "missing --digest");
        if (o->receipt_path && o->n_digests > 1)
                return cli_usage_error("sign", "--receipt takes one --digest; with several, use --receipt-dir");
        if (o->receipt_path && o->receipt_dir)
                return cli_usage_error("sign", "--receipt and --receipt-dir exclude each other");
        return CLI_EXIT_OK;
}

/* Writes what sign reports for digest d: the receipt file first (when it
 * cannot be written, no signature is printed and the exit code says so),
 * then the signature, as base64 or as JSON with its receipt; with several
 * digests (multi), each line names its digest. */
static int sign_output(const struct sign_opts *o, const struct sign_digest *d, bool multi,
                       const provsign_signature *sig) {
        json_t *receipt = NULL, *j;
        size_t der_len;
        const uint8_t *der = provsign_signature_der(sig, &der_len);
        char *b64 = cli_base64(der, der_len), *path = NULL;
        int r = CLI_EXIT_LOCAL;

        if (!b64) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        if (o->json || o->receipt_path || o->receipt_dir) {
                receipt = cli_receipt_json(sig);
                if (!receipt) {
                        fprintf(stderr, "provsign: sign: cannot encode the receipt as JSON\n");
                        goto out;
                }
        }
        if (o->receipt_dir) {
                /* "sha256:HEX" names the file "sha256-HEX.json". */
                if (asprintf(&path, "%s/%.*s-%s.json", o->receipt_dir, (int) strcspn(d->spec, ":"), d->spec,
                             d->spec + strcspn(d->spec, ":") + 1) < 0) {
                        path = NULL;
                        fprintf(stderr, "provsign: out of memory\n");
                        goto out;
                }
                r = write_receipt(path, receipt, false);
        } else
                r = o->receipt_path ? write_receipt(o->receipt_path, receipt, true) : CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                goto out;
        if (o->json) {
                j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}",
                              "keyid", provsign_signature_keyid(sig),
                              "algorithm", provsign_key_algorithm_to_string(provsign_signature_algorithm(sig)),
                              "sig", b64,
                              "principal", provsign_signature_principal(sig),
                              "generation", (json_int_t) provsign_signature_generation(sig),
                              "receipt", receipt);
                if (j && multi && json_object_set_new(j, "digest", json_string(d->spec)) < 0) {
                        json_decref(j);
                        j = NULL;
                }
                r = cli_print_json(j);
        } else if (multi)
                r = printf("%s %s\n", d->spec, b64) < 0 ? CLI_EXIT_LOCAL : CLI_EXIT_OK;
        else
                puts(b64);
out:
        json_decref(receipt);
        free(path);
        free(b64);
        return r;
}

/* The stderr line of digest d of several that failed with r; its exit
 * code. message: the agent's, for the first refused digest. */
static int sign_item_failed(const struct cli_ctx *ctx, const struct sign_digest *d, int r, const char *message) {
        if (r > 0)
                fprintf(stderr, "%s: %s: %s\n", provsign_status_name(r), d->spec,
                        cli_safe(message ? message : provsign_strerror(r)));
        else if (r == -ETIMEDOUT)
                fprintf(stderr, "provsign: sign %s: timed out waiting for agent at %s (after %s)\n", d->spec,
                        ctx->socket_path, ctx->timeout_text);
        else
                fprintf(stderr, "provsign: sign %s: %s (agent at %s)\n", d->spec, provsign_strerror(r),
                        ctx->socket_path);
        return cli_exit_code(r);
}

static int sign_run(const struct cli_ctx *ctx, const struct sign_opts *o) {
        provsign_conn *conn = NULL;
        provsign_signature **sigs = calloc(o->n_digests, sizeof *sigs);
        const void **digests = calloc(o->n_digests, sizeof *digests);
        int *results = calloc(o->n_digests, sizeof *results);
        bool multi = o->n_digests > 1, message_used = false;
        int r, exit_code = CLI_EXIT_OK;

        if (!sigs || !digests || !results) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                goto out;
        for (size_t i = 0; i < o->n_digests; i++)
                digests[i] = o->digests[i].bytes;
        r = provsign_sign_many(conn, o->principal, (enum provsign_digest_algorithm) o->alg, digests, o->digest_len,
                               o->n_digests, o->payload_type, o->ann, o->n_ann, 0, results, sigs);
        if (!multi) {
                r = r != 0 ? cli_call_failed(ctx, conn, r, "sign") : sign_output(o, &o->digests[0], false, sigs[0]);
                goto out;
        }
        /* Each digest's outcome, in the order given; the first failure's
         * exit code. */
        for (size_t i = 0; i < o->n_digests; i++) {
                int e;

                if (results[i] == 0)
                        e = sign_output(o, &o->digests[i], true, sigs[i]);
                else {
                        /* provsign_last_message(): the lowest refused digest's. */
                        const char *m = results[i] > 0 && !message_used ? provsign_last_message(conn) : NULL;

                        message_used |= results[i] > 0;
                        e = sign_item_failed(ctx, &o->digests[i], results[i], m && *m ? m : NULL);
                }
                if (exit_code == CLI_EXIT_OK)
                        exit_code = e;
        }
        r = exit_code;
out:
        if (sigs)
                for (size_t i = 0; i < o->n_digests; i++)
                        provsign_signature_free(sigs[i]);
        free(sigs);
        free(digests);
        free(results);
        provsign_close(conn);
        return r;
}

int cmd_sign(const struct cli_ctx *ctx, int argc, char **argv) {
        struct sign_opts o = {};
        int r = sign_parse(argc, argv, &o);

        if (r == CLI_EXIT_OK)
                r = sign_run(ctx, &o);
        free(o.ann);
        if (o.digests)
                for (size_t i = 0; i < o.n_digests; i++)
                        free(o.digests[i].spec);
        free(o.digests);
        return r < 0 ? CLI_EXIT_OK : r;
}
