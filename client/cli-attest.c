/* provsign attest: any payload signed as a DSSE envelope, with its receipt.
 * Also the output step shared with `provsign provenance`
 * (cli_attest_output). The payload never goes to the agent: libprovsign
 * sends only the digest of its DSSE PAE. Every buffer here is freed before
 * return. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void attest_help(void) {
        printf("Usage: provsign attest [--principal P] --type MEDIA-TYPE [OPTIONS] FILE\n"
               "\n"
               "Signs FILE ('-': standard input; at most 1 MiB) as a DSSE envelope\n"
               "(https://github.com/secure-systems-lab/dsse) and prints the envelope,\n"
               "one line of JSON:\n"
               "  {\"payloadType\":TYPE,\"payload\":BASE64,\"signatures\":[{\"keyid\":ID,\"sig\":BASE64}]}\n"
               "Only the digest of the envelope's PAE goes to the agent (SHA-256, or\n"
               "SHA-384 for ecdsa-p384 keys); the payload stays here. 'provsign verify'\n"
               "checks the envelope offline.\n"
               "\n"
               "  -p, --principal P        sign as principal P (may be omitted when you\n"
               "                           may sign for exactly one)\n"
               "  -t, --type MEDIA-TYPE    the payloadType, e.g. application/vnd.in-toto+json\n"
               "  -a, --annotation K=V     logged with the signature; repeatable\n"
               "  -r, --receipt FILE       write the receipt (JSON: keyid, principal,\n"
               "                           receipt) to FILE; keep it with the envelope: a\n"
               "                           verifier needs it once the key is revoked\n"
               "  -o, --output FILE        write the envelope to FILE, not stdout\n"
               "  -h, --help               show this help\n");
}

/* The receipt file: the form of `provsign sign --json` minus the
 * signature, which is in the envelope. */
static int write_receipt(const char *verb, const char *path, const provsign_signature *sig) {
        json_t *j = NULL, *receipt;
        char *text = NULL, *line = NULL;
        int r;

        /* json_pack's "o" takes the reference, also when it fails */
        receipt = cli_receipt_json(sig);
        if (receipt)
                j = json_pack("{s:s, s:s, s:o}", "keyid", provsign_signature_keyid(sig), "principal",
                              provsign_signature_principal(sig), "receipt", receipt);
        if (j)
                text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!text || asprintf(&line, "%s\n", text) < 0) {
                free(text);
                fprintf(stderr, "provsign: %s: cannot encode the receipt as JSON\n", verb);
                return CLI_EXIT_LOCAL;
        }
        r = cli_write_file(verb, "receipt", path, line, strlen(line));
        free(line);
        free(text);
        return r;
}

int cli_attest_output(const struct cli_ctx *ctx, const char *verb, const char *principal, const char *type,
                      const uint8_t *payload, size_t len, const struct provsign_annotation *ann, size_t n_ann,
                      const char *out_path, const char *receipt_path) {
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *env = NULL, *line = NULL;
        int r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_sign_dsse(conn, principal, type, payload, len, ann, n_ann, &env, &sig);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, verb);
                goto out;
        }
        /* The receipt first: when it cannot be written, no envelope is
         * printed and the exit code says so. */
        if (receipt_path) {
                r = write_receipt(verb, receipt_path, sig);
                if (r != CLI_EXIT_OK)
                        goto out;
        }
        if (!out_path || strcmp(out_path, "-") == 0) {
                puts(env);
                r = CLI_EXIT_OK;
                goto out;
        }
        if (asprintf(&line, "%s\n", env) < 0) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = cli_write_file(verb, "envelope", out_path, line, strlen(line));
out:
        free(line);
        free(env);
        provsign_signature_free(sig);
        provsign_close(conn);
        return r;
}

/* What the command line asked for; strings borrowed from argv. */
struct attest_opts {
        const char *principal, *type, *receipt_path, *out_path, *path;
        struct provsign_annotation *ann;
        size_t n_ann;
};

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int attest_parse(int argc, char **argv, struct attest_opts *o) {
        static const struct option options[] = {
                { "principal",  required_argument, NULL, 'p' },
                { "type",       required_argument, NULL, 't' },
                { "annotation", required_argument, NULL, 'a' },
                { "receipt",    required_argument, NULL, 'r' },
                { "output",     required_argument, NULL, 'o' },
                { "help",       no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "attest";
        int c, r;

        o->ann = calloc((size_t) argc, sizeof *o->ann);
        if (!o->ann) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":p:t:a:r:o:h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error(verb, "--principal needs a non-empty name");
                        o->principal = optarg;
                        break;
                case 't':
                        o->type = optarg;
                        break;
                case 'a':
                        r = cli_parse_annotation(verb, optarg, &o->ann[o->n_ann]);
                        if (r != CLI_EXIT_OK)
                                return r;
                        o->n_ann++;
                        break;
                case 'r':
                case 'o':
                        if (!*optarg)
                                return cli_usage_error(verb, "--%s needs a non-empty path", c == 'r' ? "receipt" : "output");
                        *(c == 'r' ? &o->receipt_path : &o->out_path) = optarg;
                        break;
                case 'h':
                        attest_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        if (!o->type || !*o->type)
                return cli_usage_error(verb, "missing --type MEDIA-TYPE (the envelope's payloadType)");
        if (optind >= argc)
                return cli_usage_error(verb, "missing FILE (the payload to sign)");
        o->path = argv[optind++];
        return cli_extra_args(verb, argc, argv);
}

static int attest_run(const struct cli_ctx *ctx, const struct attest_opts *o) {
        char *payload = NULL;
        size_t len;
        int r = cli_read_file("attest", "payload", o->path, PROVSIGN_DSSE_MAX_PAYLOAD, &payload, &len);

        if (r == CLI_EXIT_OK)
                r = cli_attest_output(ctx, "attest", o->principal, o->type, (const uint8_t *) payload, len, o->ann,
                                      o->n_ann, o->out_path, o->receipt_path);
        free(payload);
        return r;
}

int cmd_attest(const struct cli_ctx *ctx, int argc, char **argv) {
        struct attest_opts o = {};
        int r = attest_parse(argc, argv, &o);

        if (r == CLI_EXIT_OK)
                r = attest_run(ctx, &o);
        free(o.ann);
        return r < 0 ? CLI_EXIT_OK : r;
}
