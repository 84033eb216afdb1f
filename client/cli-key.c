/* provsign key: public keys, and for operators the key lifecycle: list,
 * rotate, revoke, destroy. The key verb has its own table of sub-verbs. */

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyid.h"
#include "names.h"
#include "timefmt.h"

#include "cli.h"

static int cmd_key_pubkey(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_key_list(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_key_rotate(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_key_revoke(const struct cli_ctx *ctx, int argc, char **argv);
static int cmd_key_destroy(const struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_verb key_verbs[] = {
        { "pubkey",  cmd_key_pubkey,  "print a public key (by principal or key id)" },
        { "list",    cmd_key_list,    "list keys and their states (operator role)" },
        { "rotate",  cmd_key_rotate,  "make a new active key for a principal (operator role)" },
        { "revoke",  cmd_key_revoke,  "revoke a key, with the time it was compromised (operator role)" },
        { "destroy", cmd_key_destroy, "remove a retired or revoked private key from the token (operator role)" },
        { "bundle",  cmd_key_bundle,  "the signed key bundle, for offline verifiers" },
};

int cmd_key(const struct cli_ctx *ctx, int argc, char **argv) {
        return cli_subcommand(ctx, "key", key_verbs, sizeof key_verbs / sizeof key_verbs[0], argc, argv);
}

/* Lower-cases and checks a key id argument in place. */
static bool keyid_arg(char *s) {
        for (char *p = s; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return proto_keyid_hex_valid(s);
}

/* Adds "name": RFC 3339 time with microseconds, or null for 0. */
static int set_time(json_t *j, const char *name, int64_t us) {
        char buf[PROTO_TIME_LEN + 1];
        json_t *v = us && proto_time_format_us(us, buf) ? json_string(buf) : json_null();
        return json_object_set_new(j, name, v);
}

static json_t *key_to_json(const provsign_key *k, bool with_pem) {
        const char *reason = provsign_key_reason(k);
        json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:b}",
                              "keyid", provsign_key_keyid(k),
                              "principal", provsign_key_principal(k),
                              "generation", (json_int_t) provsign_key_generation(k),
                              "algorithm", provsign_key_algorithm_to_string(provsign_key_algorithm(k)),
                              "state", provsign_key_state_to_string(provsign_key_state(k)),
                              "reason", reason ? json_string(reason) : json_null(),
                              "in_token", provsign_key_in_token(k));
        if (!j)
                return NULL;
        if (set_time(j, "created", provsign_key_created_us(k)) < 0 ||
            set_time(j, "retired", provsign_key_retired_us(k)) < 0 ||
            set_time(j, "revoked", provsign_key_revoked_us(k)) < 0 ||
            set_time(j, "compromised_since", provsign_key_compromised_since_us(k)) < 0 ||
            set_time(j, "destroyed", provsign_key_destroyed_us(k)) < 0 ||
            (with_pem && json_object_set_new(j, "public_key_pem", json_string(provsign_key_pem(k))) < 0)) {
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
               "                      state, created, retired, revoked, reason,\n"
               "                      compromised_since, destroyed, in_token,\n"
               "                      public_key_pem}\n"
               "  -h, --help          show this help\n");
}

static int pubkey_run(const struct cli_ctx *ctx, const char *principal, const char *keyid, bool json) {
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        int r;

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
                        if (!keyid_arg(optarg))
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

        return pubkey_run(ctx, principal, keyid, json);
}

static void list_help(void) {
        printf("Usage: provsign key list [--principal P] [--json]\n"
               "\n"
               "Lists every key ever made, with its state (needs the operator role):\n"
               "active (signs now), retired (replaced by a rotation; its signatures\n"
               "stay valid), revoked (never signs again; signatures logged at or after\n"
               "compromised_since are invalid), destroyed (private key gone from the\n"
               "token; the public key stays known). Times are UTC.\n"
               "\n"
               "  -p, --principal P   only the keys of principal P\n"
               "  -j, --json          print an array of {keyid, principal, generation,\n"
               "                      algorithm, state, created, retired, revoked,\n"
               "                      reason, compromised_since, destroyed, in_token}\n"
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

        printf("%-64s  %-*s  %3s  %-*s  %-*s  %-20s  %s\n", "KEYID", w_principal, "PRINCIPAL", "GEN", w_algorithm,
               "ALGORITHM", w_state, "STATE", "CREATED", "DETAILS");
        for (size_t i = 0; i < n; i++) {
                const provsign_key *k = provsign_key_list_get(list, i);
                char created[32], t[32], details[1200] = "";
                size_t off = 0;
                const struct {
                        const char *label;
                        int64_t us;
                } times[] = {
                        { "retired", provsign_key_retired_us(k) },
                        { "revoked", provsign_key_revoked_us(k) },
                        { "compromised-since", provsign_key_compromised_since_us(k) },
                        { "destroyed", provsign_key_destroyed_us(k) },
                };

                if (!cli_format_time(provsign_key_created_us(k), created))
                        strcpy(created, "-");
                for (size_t j = 0; j < sizeof times / sizeof times[0]; j++)
                        if (cli_format_time(times[j].us, t) && off < sizeof details)
                                off += (size_t) snprintf(details + off, sizeof details - off, "%s %s ", times[j].label,
                                                         t);
                /* cli_safe() has one buffer: one call per printf. */
                if (provsign_key_reason(k) && off < sizeof details)
                        snprintf(details + off, sizeof details - off, "reason \"%s\"", cli_safe(provsign_key_reason(k)));
                printf("%-64s  %-*s  %3u  %-*s  %-*s  %-20s  %s\n", provsign_key_keyid(k), w_principal,
                       cli_safe(provsign_key_principal(k)), provsign_key_generation(k), w_algorithm,
                       provsign_key_algorithm_to_string(provsign_key_algorithm(k)), w_state,
                       provsign_key_state_to_string(provsign_key_state(k)), created, details);
        }
}

static int list_run(const struct cli_ctx *ctx, const char *principal, bool json) {
        provsign_conn *conn = NULL;
        provsign_key_list *list = NULL;
        json_t *array = NULL;
        int r;

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

static int cmd_key_list(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        const char *principal = NULL;
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

        return list_run(ctx, principal, json);
}

/* ---- rotate, revoke, destroy ---- */

/* Prints what a key operation changed: JSON {key, active, log_seq} or one
 * line per key. */
static int print_change(const provsign_key_change *kc, bool json, const char *what) {
        const provsign_key *k = provsign_key_change_key(kc), *act = provsign_key_change_active(kc);
        if (json) {
                json_t *jk = k ? key_to_json(k, false) : json_null();
                json_t *ja = act ? key_to_json(act, false) : json_null();
                return cli_print_json(json_pack("{s:o, s:o, s:I}", "key", jk, "active", ja, "log_seq",
                                                (json_int_t) provsign_key_change_log_seq(kc)));
        }
        if (k)
                printf("%-9s %s  %s gen %u, now %s\n", what, provsign_key_keyid(k), cli_safe(provsign_key_principal(k)),
                       provsign_key_generation(k), provsign_key_state_to_string(provsign_key_state(k)));
        if (act)
                printf("active    %s  %s gen %u, %s\n", provsign_key_keyid(act), cli_safe(provsign_key_principal(act)),
                       provsign_key_generation(act), provsign_key_algorithm_to_string(provsign_key_algorithm(act)));
        else
                printf("active    none: signing answers NO_ACTIVE_KEY until an operator rotates\n");
        printf("logged    entry %llu\n", (unsigned long long) provsign_key_change_log_seq(kc));
        return CLI_EXIT_OK;
}

/* Connects, runs one key operation and prints its result. */
typedef int (*key_op_fn)(provsign_conn *conn, const void *args, provsign_key_change **ret);

static int run_key_op(const struct cli_ctx *ctx, const char *verb, key_op_fn fn, const void *args, bool json,
                      const char *what) {
        provsign_conn *conn = NULL;
        provsign_key_change *kc = NULL;
        int r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        r = fn(conn, args, &kc);
        r = r ? cli_call_failed(ctx, conn, r, verb) : print_change(kc, json, what);
        provsign_key_change_free(kc);
        provsign_close(conn);
        return r;
}

struct op_args {
        const char *principal;
        int algorithm;
        const char *keyid;
        const char *reason;
        int64_t since;
};

/* The options of key rotate, revoke and destroy. */
struct key_op_opts {
        struct op_args args;
        bool json;
};

static int op_rotate(provsign_conn *conn, const void *args, provsign_key_change **ret) {
        const struct op_args *a = args;
        return provsign_rotate_key(conn, a->principal, a->algorithm, ret);
}

static int op_revoke(provsign_conn *conn, const void *args, provsign_key_change **ret) {
        const struct op_args *a = args;
        return provsign_revoke_key(conn, a->keyid, a->reason, a->since, ret);
}

static int op_destroy(provsign_conn *conn, const void *args, provsign_key_change **ret) {
        const struct op_args *a = args;
        return provsign_destroy_key(conn, a->keyid, ret);
}

static void rotate_help(void) {
        printf("Usage: provsign key rotate --principal P [--algorithm ALG] [--json]\n"
               "\n"
               "Generates the principal's next key inside the token, makes it active and\n"
               "retires the old one (needs the operator role). Signing goes on: a request\n"
               "racing the rotation is signed with the old or the new key, never refused.\n"
               "\n"
               "  -p, --principal P   the principal\n"
               "  -a, --algorithm ALG ecdsa-p256, ecdsa-p384 or rsa-3072 (default: the\n"
               "                      principal's configured algorithm)\n"
               "  -j, --json          print {key, active, log_seq}\n"
               "  -h, --help          show this help\n");
}

static int rotate_parse(int argc, char **argv, struct key_op_opts *o) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "algorithm", required_argument, NULL, 'a' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        int c, r;
        while ((c = getopt_long(argc, argv, ":p:a:jh", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        o->args.principal = optarg;
                        break;
                case 'a':
                        o->args.algorithm = proto_key_algorithm_from_name(optarg);
                        if (o->args.algorithm < 0)
                                return cli_usage_error("key rotate",
                                                       "unknown algorithm '%s': ecdsa-p256, ecdsa-p384 or rsa-3072",
                                                       optarg);
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        rotate_help();
                        return -1;
                default:
                        return cli_getopt_error("key rotate", c, argv);
                }
        r = cli_extra_args("key rotate", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!o->args.principal || !*o->args.principal)
                return cli_usage_error("key rotate", "--principal is required");
        return CLI_EXIT_OK;
}

static int cmd_key_rotate(const struct cli_ctx *ctx, int argc, char **argv) {
        struct key_op_opts o = { 0 };
        int r = rotate_parse(argc, argv, &o);
        if (r < 0)
                return CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                return r;
        return run_key_op(ctx, "key rotate", op_rotate, &o.args, o.json, "retired");
}

static void revoke_help(void) {
        printf("Usage: provsign key revoke --key KEYID --reason TEXT [--compromised-since TIME] [--json]\n"
               "\n"
               "Revokes a key (needs the operator role): it never signs again, and\n"
               "verifiers reject its signatures unless a log receipt proves they were\n"
               "logged before TIME. Signatures made before a compromise stay valid.\n"
               "If it was a principal's active key, the principal has none (NO_ACTIVE_KEY)\n"
               "until `provsign key rotate`, unless the agent has auto_rotate_on_revoke.\n"
               "\n"
               "  -k, --key KEYID              the key (64 hex digits)\n"
               "  -r, --reason TEXT            why (kept in the log and the key bundle)\n"
               "  -c, --compromised-since TIME RFC 3339, e.g. 2026-11-25T09:00:00Z or\n"
               "                               2026-11-25T10:00:00+01:00 (default: now)\n"
               "  -j, --json                   print {key, active, log_seq}\n"
               "  -h, --help                   show this help\n");
}

static int revoke_parse(int argc, char **argv, struct key_op_opts *o) {
        static const struct option options[] = {
                { "key",               required_argument, NULL, 'k' },
                { "reason",            required_argument, NULL, 'r' },
                { "compromised-since", required_argument, NULL, 'c' },
                { "json",              no_argument,       NULL, 'j' },
                { "help",              no_argument,       NULL, 'h' },
                {}
        };
        int c, r;
        while ((c = getopt_long(argc, argv, ":k:r:c:jh", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        if (!keyid_arg(optarg))
                                return cli_usage_error("key revoke", "invalid key id '%s': expected 64 hex digits",
                                                       optarg);
                        o->args.keyid = optarg;
                        break;
                case 'r':
                        o->args.reason = optarg;
                        break;
                case 'c':
                        if (proto_time_parse_rfc3339_us(optarg, &o->args.since) < 0 || o->args.since == 0)
                                return cli_usage_error("key revoke",
                                                       "invalid time '%s': expected RFC 3339, e.g. 2026-11-25T09:00:00Z",
                                                       optarg);
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        revoke_help();
                        return -1;
                default:
                        return cli_getopt_error("key revoke", c, argv);
                }
        r = cli_extra_args("key revoke", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!o->args.keyid || !o->args.reason || !*o->args.reason)
                return cli_usage_error("key revoke", "--key and a non-empty --reason are required");
        return CLI_EXIT_OK;
}

static int cmd_key_revoke(const struct cli_ctx *ctx, int argc, char **argv) {
        struct key_op_opts o = { 0 };
        int r = revoke_parse(argc, argv, &o);
        if (r < 0)
                return CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                return r;
        return run_key_op(ctx, "key revoke", op_revoke, &o.args, o.json, "revoked");
}

static void destroy_help(void) {
        printf("Usage: provsign key destroy --key KEYID [--json]\n"
               "\n"
               "Removes a retired or revoked key's private object from the token (needs\n"
               "the operator role; refused for an active key). The public key stays in\n"
               "the log and the key bundle, so its signatures can still be verified.\n"
               "\n"
               "  -k, --key KEYID     the key (64 hex digits)\n"
               "  -j, --json          print {key, active, log_seq}\n"
               "  -h, --help          show this help\n");
}

static int destroy_parse(int argc, char **argv, struct key_op_opts *o) {
        static const struct option options[] = {
                { "key",  required_argument, NULL, 'k' },
                { "json", no_argument,       NULL, 'j' },
                { "help", no_argument,       NULL, 'h' },
                {}
        };
        int c, r;
        while ((c = getopt_long(argc, argv, ":k:jh", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        if (!keyid_arg(optarg))
                                return cli_usage_error("key destroy", "invalid key id '%s': expected 64 hex digits",
                                                       optarg);
                        o->args.keyid = optarg;
                        break;
                case 'j':
                        o->json = true;
                        break;
                case 'h':
                        destroy_help();
                        return -1;
                default:
                        return cli_getopt_error("key destroy", c, argv);
                }
        r = cli_extra_args("key destroy", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (!o->args.keyid)
                return cli_usage_error("key destroy", "--key is required");
        return CLI_EXIT_OK;
}

static int cmd_key_destroy(const struct cli_ctx *ctx, int argc, char **argv) {
        struct key_op_opts o = { 0 };
        int r = destroy_parse(argc, argv, &o);
        if (r < 0)
                return CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                return r;
        return run_key_op(ctx, "key destroy", op_destroy, &o.args, o.json, "destroyed");
}
