/* provsign sign: a signature over a precomputed digest, from the agent. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

#include "cli.h"

static void sign_help(void) {
        printf("Usage: provsign sign [--principal P] --digest ALG:HEX [OPTIONS]\n"
               "\n"
               "Asks the agent to sign a digest that you computed (for example the\n"
               "SHA-256 of a provenance statement) and prints the signature in base64\n"
               "(DER for ECDSA keys).\n"
               "\n"
               "  -p, --principal P        sign as principal P (may be omitted when you\n"
               "                           may sign for exactly one)\n"
               "  -d, --digest ALG:HEX     sha256:<64 hex digits> or sha384:<96 hex digits>\n"
               "  -t, --payload-type T     media type of what was hashed (logged)\n"
               "  -a, --annotation K=V     logged with the signature; repeatable\n"
               "  -j, --json               print {keyid, algorithm, sig, principal, generation}\n"
               "  -h, --help               show this help\n");
}

int cmd_sign(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "principal",    required_argument, NULL, 'p' },
                { "digest",       required_argument, NULL, 'd' },
                { "payload-type", required_argument, NULL, 't' },
                { "annotation",   required_argument, NULL, 'a' },
                { "json",         no_argument,       NULL, 'j' },
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        const char *principal = NULL, *digest_spec = NULL, *payload_type = NULL;
        struct provsign_annotation *ann = NULL;
        size_t n_ann = 0;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        uint8_t digest[48];
        size_t digest_len;
        char *b64 = NULL;
        bool json = false;
        int c, r, alg;

        /* Annotations point into argv: at most one per remaining word. */
        ann = calloc((size_t) argc, sizeof *ann);
        if (!ann) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }

        while ((c = getopt_long(argc, argv, ":p:d:t:a:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg) {
                                r = cli_usage_error("sign", "--principal needs a non-empty name");
                                goto out;
                        }
                        principal = optarg;
                        break;
                case 'd':
                        digest_spec = optarg;
                        break;
                case 't':
                        payload_type = optarg;
                        break;
                case 'a': {
                        char *eq = strchr(optarg, '=');

                        if (!eq || eq == optarg) {
                                r = cli_usage_error("sign", "invalid annotation '%s': expected KEY=VALUE", optarg);
                                goto out;
                        }
                        /* argv is ours to modify; split KEY=VALUE in place. */
                        *eq = '\0';
                        ann[n_ann++] = (struct provsign_annotation) { .key = optarg, .value = eq + 1 };
                        break;
                }
                case 'j':
                        json = true;
                        break;
                case 'h':
                        sign_help();
                        r = CLI_EXIT_OK;
                        goto out;
                default:
                        r = cli_getopt_error("sign", c, argv);
                        goto out;
                }

        r = cli_extra_args("sign", argc, argv);
        if (r != CLI_EXIT_OK)
                goto out;
        if (!digest_spec) {
                r = cli_usage_error("sign", "missing --digest");
                goto out;
        }
        if (proto_digest_spec_parse(digest_spec, &alg, digest, &digest_len) < 0) {
                r = cli_usage_error("sign", "invalid digest '%s': expected sha256:<64 hex digits> or sha384:<96 hex digits>",
                                    digest_spec);
                goto out;
        }

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                goto out;

        r = provsign_sign(conn, principal, (enum provsign_digest_algorithm) alg, digest, digest_len,
                          payload_type, ann, n_ann, &sig);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "sign");
                goto out;
        }

        size_t der_len;
        const uint8_t *der = provsign_signature_der(sig, &der_len);
        b64 = cli_base64(der, der_len);
        if (!b64) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }

        if (json)
                r = cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I}",
                                             "keyid", provsign_signature_keyid(sig),
                                             "algorithm", provsign_key_algorithm_to_string(provsign_signature_algorithm(sig)),
                                             "sig", b64,
                                             "principal", provsign_signature_principal(sig),
                                             "generation", (json_int_t) provsign_signature_generation(sig)));
        else {
                puts(b64);
                r = CLI_EXIT_OK;
        }
out:
        free(b64);
        provsign_signature_free(sig);
        provsign_close(conn);
        free(ann);
        return r;
}
