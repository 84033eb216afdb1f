/* provsign key: public keys and (operator) key listings. The key verb has
 * its own table of sub-verbs; rotate, revoke and destroy join it later. */

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyid.h"

#include "cli.h"

static int cmd_key_pubkey(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_key_list(const struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_verb key_verbs[] = {
        { "pubkey", cmd_key_pubkey, "print a public key (by principal or key id)" },
        { "list",   cmd_key_list,   "list keys and their states (operator role)" },
        { "bundle", cmd_key_bundle, "the signed key bundle, for offline verifiers" },
};

int cmd_key(const struct cli_ctx *ctx, int argc, char **argv) {
        return cli_subcommand(ctx, "key", key_verbs, sizeof key_verbs / sizeof key_verbs[0], argc, argv);
}

static json_t *key_to_json(const provsign_key *k, bool with_pem) {
        char created[32];
        bool have_created = cli_format_time(provsign_key_created_us(k), created);
        json_t *j;

        j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s?}",
                      "keyid", provsign_key_keyid(k),
                      "principal", provsign_key_principal(k),
                      "generation", (json_int_t) provsign_key_generation(k),
                      "algorithm", provsign_key_algorithm_to_string(provsign_key_algorithm(k)),
                      "state", provsign_key_state_to_string(provsign_key_state(k)),
                      "created", have_created ? created : NULL);
        if (j && with_pem && json_object_set_new(j, "public_key_pem", json_string(provsign_key_pem(k))) < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static void pubkey_help(void) {
        printf("Usage: provsign key pubkey (--principal P | --key KEYID) [--json]\n"
               "\n"
               "Prints a public key as PEM: the active key of principal P, or the key\n"
               "whose id (hex SHA-256 of its DER SubjectPublicKeyInfo) is KEYID.\n"
               "\n"
               "  -p, --principal P   the principal's active key\n"
               "  -k, --key KEYID     the key with this id (64 hex digits)\n"
               "  -j, --json          print {keyid, principal, generation, algorithm,\n"
               "                      state, created, public_key_pem}\n"
               "  -h, --help          show this help\n");
}

static int cmd_key_pubkey(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "key",       required_argument, NULL, 'k' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        const char *principal = NULL;
        char *keyid = NULL;
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":p:k:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error("key pubkey", "--principal needs a non-empty name");
                        principal = optarg;
                        break;
                case 'k':
                        /* Accept upper case; the wire form is lower case. */
                        for (char *p = optarg; *p; p++)
                                *p = (char) tolower((unsigned char) *p);
                        if (!proto_keyid_hex_valid(optarg))
                                return cli_usage_error("key pubkey", "invalid key id '%s': expected 64 hex digits", optarg);
                        keyid = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        pubkey_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error("key pubkey", c, argv);
                }

        r = cli_extra_args("key pubkey", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!principal == !keyid)
                return cli_usage_error("key pubkey", "exactly one of --principal and --key is required");

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;

        r = provsign_get_public_key(conn, principal, keyid, &key);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "key pubkey");
                goto out;
        }

        if (json)
                r = cli_print_json(key_to_json(key, true));
        else {
                fputs(provsign_key_pem(key), stdout);
                r = CLI_EXIT_OK;
        }
out:
        provsign_key_free(key);
        provsign_close(conn);
        return r;
}

static void list_help(void) {
        printf("Usage: provsign key list [--principal P] [--json]\n"
               "\n"
               "Lists keys with their states (needs the operator role).\n"
               "\n"
               "  -p, --principal P   only the keys of principal P\n"
               "  -j, --json          print an array of {keyid, principal, generation,\n"
               "                      algorithm, state, created}\n"
               "  -h, --help          show this help\n");
}

static int max_int(int a, int b) {
        return a > b ? a : b;
}

static void print_key_table(const provsign_key_list *list) {
        size_t n = provsign_key_list_count(list);
        int w_principal = (int) strlen("PRINCIPAL"), w_algorithm = (int) strlen("ALGORITHM"),
            w_state = (int) strlen("STATE");

        for (size_t i = 0; i < n; i++) {
                const provsign_key *k = provsign_key_list_get(list, i);

                w_principal = max_int(w_principal, (int) strlen(provsign_key_principal(k)));
                w_algorithm = max_int(w_algorithm, (int) strlen(provsign_key_algorithm_to_string(provsign_key_algorithm(k))));
                w_state = max_int(w_state, (int) strlen(provsign_key_state_to_string(provsign_key_state(k))));
        }

        printf("%-64s  %-*s  %3s  %-*s  %-*s  %s\n",
               "KEYID", w_principal, "PRINCIPAL", "GEN", w_algorithm, "ALGORITHM", w_state, "STATE", "CREATED");
        for (size_t i = 0; i < n; i++) {
                const provsign_key *k = provsign_key_list_get(list, i);
                char created[32];

                if (!cli_format_time(provsign_key_created_us(k), created))
                        strcpy(created, "-");
                printf("%-64s  %-*s  %3u  %-*s  %-*s  %s\n",
                       provsign_key_keyid(k),
                       w_principal, cli_safe(provsign_key_principal(k)),
                       provsign_key_generation(k),
                       w_algorithm, provsign_key_algorithm_to_string(provsign_key_algorithm(k)),
                       w_state, provsign_key_state_to_string(provsign_key_state(k)),
                       created);
        }
}

static int cmd_key_list(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        const char *principal = NULL;
        provsign_conn *conn = NULL;
        provsign_key_list *list = NULL;
        json_t *array = NULL;
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":p:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error("key list", "--principal needs a non-empty name");
                        principal = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        list_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error("key list", c, argv);
                }

        r = cli_extra_args("key list", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;

        r = provsign_list_keys(conn, principal, &list);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "key list");
                goto out;
        }

        if (!json) {
                print_key_table(list);
                r = CLI_EXIT_OK;
                goto out;
        }

        array = json_array();
        for (size_t i = 0; array && i < provsign_key_list_count(list); i++)
                if (json_array_append_new(array, key_to_json(provsign_key_list_get(list, i), false)) < 0) {
                        json_decref(array);
                        array = NULL;
                }
        r = cli_print_json(array);
out:
        provsign_key_list_free(list);
        provsign_close(conn);
        return r;
}
