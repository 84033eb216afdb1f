/* provsign verify: offline verification of a DSSE envelope against the key
 * bundle (client/keyrule.c: the bundle's signature by the trusted log key,
 * the key and principal, the envelope's signature, the revocation rule with
 * the receipt), then the in-toto subjects against the artifacts given,
 * then the deploy policy (client/verify-policy.h) over the SLSA fields
 * proto/statement.h reads; --metrics-file counts the outcome
 * (cli-verify-metrics.c).
 * Also `provsign key bundle`, which fetches the bundle. Needs no agent
 * (verify); every buffer is freed before return. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "dsse.h"
#include "duration.h"
#include "hex.h"
#include "keyrule.h"
#include "names.h"
#include "receipt-json.h"
#include "statement.h"
#include "trust.h"
#include "verify-policy.h"

#include "cli.h"

#define LOG_KEY_FILE_MAX (64u * 1024u)

/* ---- provsign key bundle ------------------------------------------------- */

static void bundle_help(void) {
        printf("Usage: provsign key bundle [--principal P] [-o FILE]\n"
               "\n"
               "Fetches the agent's key bundle: every key it ever had (principal,\n"
               "generation, algorithm, state, times, revocation reason and\n"
               "compromised_since, public key) as a DSSE envelope signed by the log key\n"
               "(payloadType " PROTO_KEY_BUNDLE_TYPE ").\n"
               "Any caller may ask. 'provsign verify --bundle' checks envelopes against it.\n"
               "\n"
               "  -p, --principal P   only principal P's keys (enough to verify its\n"
               "                      signatures; a smaller bundle for a big fleet)\n"
               "  -o, --output FILE   write it to FILE (mode 0644 if new), not stdout\n"
               "  -h, --help          show this help\n");
}

struct bundle_opts {
        const char *principal, *out_path;
};

static int bundle_parse(int argc, char **argv, struct bundle_opts *o) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "output",    required_argument, NULL, 'o' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "key bundle";
        int c;

        while ((c = getopt_long(argc, argv, ":p:o:h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error(verb, "--principal needs a non-empty name");
                        o->principal = optarg;
                        break;
                case 'o':
                        if (!*optarg)
                                return cli_usage_error(verb, "--output needs a non-empty path");
                        o->out_path = optarg;
                        break;
                case 'h':
                        bundle_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        return cli_extra_args(verb, argc, argv);
}

/* Fetches the bundle and prints it, or writes it to o->out_path. */
static int bundle_run(const struct cli_ctx *ctx, const struct bundle_opts *o) {
        static const char verb[] = "key bundle";
        provsign_conn *conn = NULL;
        char *env = NULL, *line = NULL;
        int r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_get_key_bundle_for(conn, o->principal, &env);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, verb);
                goto out;
        }
        if (!o->out_path || strcmp(o->out_path, "-") == 0) {
                puts(env);
                r = CLI_EXIT_OK;
                goto out;
        }
        if (asprintf(&line, "%s\n", env) < 0) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = cli_write_file(verb, "key bundle", o->out_path, line, strlen(line));
out:
        free(line);
        free(env);
        provsign_close(conn);
        return r;
}

int cmd_key_bundle(const struct cli_ctx *ctx, int argc, char **argv) {
        struct bundle_opts o = { 0 };
        int r = bundle_parse(argc, argv, &o);
        if (r < 0)
                return CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                return r;
        return bundle_run(ctx, &o);
}

/* ---- provsign verify ------------------------------------------------------ */

static void verify_help(void) {
        printf("Usage: provsign verify --bundle BUNDLE --log-key PEM [OPTIONS] ENVELOPE\n"
               "       provsign verify --bundle BUNDLE --trust TRUST-FILE [OPTIONS] ENVELOPE\n"
               "\n"
               "Verifies a DSSE envelope from 'provsign attest' or 'provsign provenance'\n"
               "offline, without the agent. Everything must hold:\n"
               "  1. BUNDLE ('provsign key bundle') is signed by the log key PEM (a copy\n"
               "     you trust, taken out of band);\n"
               "  2. the envelope's key is in the bundle (and belongs to --principal);\n"
               "  3. the envelope's signature verifies with that key over the DSSE PAE\n"
               "     of its payloadType and payload;\n"
               "  4. a revoked key counts only with a receipt whose log time is before\n"
               "     the key's compromised_since; a receipt given is always checked\n"
               "     (checkpoint signed by the log key, inclusion proof, the log entry\n"
               "     is this signature's);\n"
               "  5. each --artifact's SHA-256 is a subject of the in-toto statement;\n"
               "  6. the SLSA provenance says what the flags below and the --policy\n"
               "     section of each artifact allow (docs/deploy-policy.md).\n"
               "Prints what it verified: principal, keyid, subjects, builder, log time.\n"
               "\n"
               "  -b, --bundle FILE       the key bundle envelope\n"
               "  -k, --log-key FILE      the trusted log key (PEM)\n"
               "  -T, --trust FILE        instead of --log-key: the logs trusted (one note\n"
               "                          verifier key per line, docs/fleet.md); the key\n"
               "                          is the one of the receipt checkpoint's origin\n"
               "                          (without a receipt: the listed key that signed\n"
               "                          the bundle), and the bundle must be signed by it\n"
               "  -r, --receipt FILE      the receipt written by attest/provenance\n"
               "  -A, --artifact PATH     an artifact that must be a subject (repeatable)\n"
               "  -p, --principal P       the key must belong to principal P\n"
               "      --source-uri URI    the source repository must be URI (repeatable)\n"
               "      --source-uri-prefix PREFIX\n"
               "                          ... or start with PREFIX (repeatable)\n"
               "      --source-ref GLOB   the source ref must match GLOB, e.g.\n"
               "                          'refs/heads/release/*' (repeatable)\n"
               "      --builder-id URI    runDetails.builder.id must be URI (repeatable)\n"
               "      --max-age DURATION  signed at most DURATION ago by the receipt's\n"
               "                          log time (30s, 5m, 12h, 90d; needs --receipt)\n"
               "      --require-receipt   fail without a verified receipt\n"
               "      --policy FILE       the allowed principals, sources, refs, builders\n"
               "                          and ages per artifact name pattern (INI)\n"
               "      --metrics-file FILE count this verification's outcome in FILE\n"
               "                          (Prometheus text, provsign_verifications_total)\n"
               "      --bundle-max-age DURATION\n"
               "                          the bundle was issued at most DURATION ago\n"
               "      --min-log-size N    the bundle was issued at log size N or later\n"
               "                          (with --receipt the bundle must always be at\n"
               "                          least the receipt's tree size: a bundle that\n"
               "                          has seen the signature, and any revocation\n"
               "                          before it)\n"
               "  -j, --json              print the result, and the checks, as JSON\n"
               "  -h, --help              show this help\n"
               "\n"
               "Exit status: 0 verified; 1 not verified (the reason on stderr, a policy\n"
               "failure named by its field); 2 usage error; 5 a file unreadable or\n"
               "malformed (the log key not a PEM public key, the policy FILE:LINE).\n");
}

/* What the command line asked for; strings borrowed from argv. */
struct verify_opts {
        const char *bundle_path, *key_path, *trust_path, *receipt_path, *principal, *env_path, *policy_path,
                *metrics_path;
        const char **artifacts;
        size_t n_art;
        struct client_policy_rule flags; /* --source-uri ... --require-receipt: a rule for every artifact */
        uint64_t bundle_max_age_s, min_log_size; /* 0: not asked */
        bool json;
};

/* One policy check, with the rule it came from. */
struct verify_check {
        struct client_policy_check c;
        const char *artifact;                  /* the subject name; NULL: the command line's rule */
        const struct client_policy_rule *rule; /* NULL with "policy" (no section matched) */
};

/* What was read and found. */
struct verify_state {
        char *bundle, *pem, *env, *receipt_text, *policy_text;
        size_t bundle_len, env_len, receipt_len, policy_len;
        struct client_receipt_doc doc;
        struct client_keyrule_result res;
        struct client_policy policy;
        struct client_trust trust;              /* --trust */
        const struct client_trust_entry *trusted; /* the listed log chosen (in trust) */
        struct proto_statement *st;            /* NULL unless an in-toto statement */
        char (*hex)[65];
        const struct proto_statement_subject **matched;
        struct verify_check *checks;
        size_t n_checks;
        const char *reason;                    /* why verification failed (--metrics-file) */
};

static void verify_state_done(struct verify_state *v) {
        free(v->checks);
        free(v->hex);
        free(v->matched);
        proto_statement_free(v->st);
        client_policy_done(&v->policy);
        client_keyrule_result_done(&v->res);
        client_receipt_doc_done(&v->doc);
        free(v->policy_text);
        free(v->receipt_text);
        free(v->env);
        free(v->pem);
        client_trust_done(&v->trust);
        free(v->bundle);
}

/* Prints "provsign: verify: WHAT: ..." and notes the reason. */
static int fail(struct verify_state *v, const char *reason, const char *what, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail(struct verify_state *v, const char *reason, const char *what, const char *fmt, ...) {
        char buf[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        fprintf(stderr, "provsign: verify: %s: %s\n", what, cli_safe(buf));
        v->reason = reason;
        return CLI_EXIT_VERIFY_FAILED;
}

static int oom(void) {
        fprintf(stderr, "provsign: out of memory\n");
        return CLI_EXIT_LOCAL;
}

static const char *time_or(int64_t us, char buf[static PROTO_TIME_LEN + 1], const char *none) {
        return us >= 0 && proto_time_format_us(us, buf) ? buf : none;
}

enum {
        ARG_SOURCE_URI = 0x100,
        ARG_SOURCE_URI_PREFIX,
        ARG_SOURCE_REF,
        ARG_BUILDER_ID,
        ARG_MAX_AGE,
        ARG_REQUIRE_RECEIPT,
        ARG_POLICY,
        ARG_METRICS_FILE,
        ARG_BUNDLE_MAX_AGE,
        ARG_MIN_LOG_SIZE,
};

/* One policy flag into o->flags. */
static int verify_policy_flag(struct verify_opts *o, int c, const char *arg) {
        struct client_policy_list *l = c == ARG_SOURCE_URI          ? &o->flags.source_uris
                                       : c == ARG_SOURCE_URI_PREFIX ? &o->flags.source_uri_prefixes
                                       : c == ARG_SOURCE_REF        ? &o->flags.source_refs
                                                                    : &o->flags.builder_ids;

        if (c == ARG_REQUIRE_RECEIPT) {
                o->flags.require_receipt = true;
                return CLI_EXIT_OK;
        }
        if (!*arg)
                return cli_usage_error("verify", "an empty value for a policy flag");
        if (c == ARG_MAX_AGE) {
                if (proto_duration_parse(arg, &o->flags.max_age_s) < 0)
                        return cli_usage_error("verify", "--max-age: bad duration \"%s\" (30s, 5m, 12h, 90d)", arg);
                o->flags.has_max_age = true;
                return CLI_EXIT_OK;
        }
        return client_policy_list_add(l, arg) < 0 ? oom() : CLI_EXIT_OK;
}

/* One option; CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int verify_option(struct verify_opts *o, int c, char **argv) {
        switch (c) {
        case 'b':
                o->bundle_path = optarg;
                break;
        case 'k':
                o->key_path = optarg;
                break;
        case 'T':
                o->trust_path = optarg;
                break;
        case 'r':
                o->receipt_path = optarg;
                break;
        case 'A':
                o->artifacts[o->n_art++] = optarg;
                break;
        case 'p':
                o->principal = optarg;
                break;
        case 'j':
                o->json = true;
                break;
        case ARG_POLICY:
                o->policy_path = optarg;
                break;
        case ARG_METRICS_FILE:
                if (!*optarg || strcmp(optarg, "-") == 0)
                        return cli_usage_error("verify", "--metrics-file needs a file path");
                o->metrics_path = optarg;
                break;
        case ARG_SOURCE_URI ... ARG_REQUIRE_RECEIPT:
                return verify_policy_flag(o, c, optarg);
        case ARG_BUNDLE_MAX_AGE:
                if (proto_duration_parse(optarg, &o->bundle_max_age_s) < 0 || o->bundle_max_age_s == 0)
                        return cli_usage_error("verify", "--bundle-max-age: bad duration \"%s\" (30s, 5m, 12h, 90d)",
                                               optarg);
                break;
        case ARG_MIN_LOG_SIZE: {
                char *end = NULL;
                errno = 0;
                unsigned long long n = strtoull(optarg, &end, 10);
                if (!*optarg || *end || errno || optarg[0] == '-' || n == 0)
                        return cli_usage_error("verify", "--min-log-size: not a positive number \"%s\"", optarg);
                o->min_log_size = n;
                break;
        }
        case 'h':
                verify_help();
                return -1;
        default:
                return cli_getopt_error("verify", c, argv);
        }
        return CLI_EXIT_OK;
}

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int verify_parse(int argc, char **argv, struct verify_opts *o) {
        static const struct option options[] = {
                { "bundle",            required_argument, NULL, 'b' },
                { "log-key",           required_argument, NULL, 'k' },
                { "trust",             required_argument, NULL, 'T' },
                { "receipt",           required_argument, NULL, 'r' },
                { "artifact",          required_argument, NULL, 'A' },
                { "principal",         required_argument, NULL, 'p' },
                { "source-uri",        required_argument, NULL, ARG_SOURCE_URI },
                { "source-uri-prefix", required_argument, NULL, ARG_SOURCE_URI_PREFIX },
                { "source-ref",        required_argument, NULL, ARG_SOURCE_REF },
                { "builder-id",        required_argument, NULL, ARG_BUILDER_ID },
                { "max-age",           required_argument, NULL, ARG_MAX_AGE },
                { "require-receipt",   no_argument,       NULL, ARG_REQUIRE_RECEIPT },
                { "policy",            required_argument, NULL, ARG_POLICY },
                { "metrics-file",      required_argument, NULL, ARG_METRICS_FILE },
                { "bundle-max-age",    required_argument, NULL, ARG_BUNDLE_MAX_AGE },
                { "min-log-size",      required_argument, NULL, ARG_MIN_LOG_SIZE },
                { "json",              no_argument,       NULL, 'j' },
                { "help",              no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "verify";
        int c, r;

        o->artifacts = calloc((size_t) argc, sizeof *o->artifacts);
        if (!o->artifacts)
                return oom();
        while ((c = getopt_long(argc, argv, ":b:k:T:r:A:p:jh", options, NULL)) >= 0) {
                r = verify_option(o, c, argv);
                if (r != CLI_EXIT_OK)
                        return r;
        }
        if (!o->bundle_path || !*o->bundle_path)
                return cli_usage_error(verb, "missing --bundle FILE (from 'provsign key bundle')");
        if (o->key_path && o->trust_path)
                return cli_usage_error(verb, "--log-key and --trust cannot be used together");
        if (o->trust_path ? !*o->trust_path : !o->key_path || !*o->key_path)
                return cli_usage_error(verb, "missing --log-key PEM-FILE (the trusted log key) or --trust TRUST-FILE");
        if (o->flags.has_max_age && !o->receipt_path)
                return cli_usage_error(verb, "--max-age needs --receipt FILE (the age is the receipt's log time)");
        if (o->policy_path && !*o->policy_path)
                return cli_usage_error(verb, "--policy needs a file path");
        if (optind >= argc)
                return cli_usage_error(verb, "missing ENVELOPE (a DSSE envelope file, '-' for standard input)");
        o->env_path = argv[optind++];
        return cli_extra_args(verb, argc, argv);
}

/* The policy file: read, then parsed (malformed: FILE:LINE, exit 5). */
static int verify_read_policy(const struct verify_opts *o, struct verify_state *v) {
        char msg[400];
        int r = cli_read_file("verify", "policy", o->policy_path, CLIENT_POLICY_FILE_MAX, &v->policy_text,
                              &v->policy_len);

        if (r != CLI_EXIT_OK)
                return r;
        r = client_policy_parse(v->policy_text, v->policy_len, &v->policy, msg, sizeof msg);
        if (r == -ENOMEM)
                return oom();
        if (r < 0) {
                fprintf(stderr, "provsign: verify: %s", cli_safe(o->policy_path));
                fprintf(stderr, "%s\n", cli_safe(msg));
                return CLI_EXIT_LOCAL;
        }
        return CLI_EXIT_OK;
}

static int verify_read(const struct verify_opts *o, struct verify_state *v) {
        static const char verb[] = "verify";
        char detail[320];
        int r = o->policy_path ? verify_read_policy(o, v) : CLI_EXIT_OK;

        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "key bundle", o->bundle_path, CLIENT_BUNDLE_MAX, &v->bundle, &v->bundle_len);
        if (r == CLI_EXIT_OK && o->key_path)
                r = cli_read_file(verb, "log key", o->key_path, LOG_KEY_FILE_MAX, &v->pem, NULL);
        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "envelope", o->env_path, PROTO_DSSE_MAX_ENVELOPE, &v->env, &v->env_len);
        if (r == CLI_EXIT_OK && o->receipt_path)
                r = cli_read_file(verb, "receipt", o->receipt_path, CLIENT_RECEIPT_FILE_MAX, &v->receipt_text,
                                  &v->receipt_len);
        if (r != CLI_EXIT_OK || !o->receipt_path)
                return r;
        if (client_receipt_doc_parse(v->receipt_text, v->receipt_len, &v->doc, detail, sizeof detail) < 0)
                return fail(v, "receipt", "invalid receipt", "%s: %s", o->receipt_path, detail);
        return CLI_EXIT_OK;
}

/* --trust: the log key is the one listed for the receipt checkpoint's
 * origin, or without a receipt the listed key that signed the bundle; the
 * bundle must then be signed by that same key (the key rule) and name that
 * origin (verify_trusted_origin). */
static int verify_pick_key(const struct verify_opts *o, struct verify_state *v) {
        const struct client_trust_entry *e = NULL;
        char *origin = NULL;
        int r;

        if (o->receipt_path) {
                r = client_trust_for_checkpoint(&v->trust, v->doc.rc.checkpoint, &e, &origin);
                if (r == -ENOMEM)
                        return oom();
                if (r < 0)
                        return fail(v, "receipt", "receipt invalid",
                                    "the checkpoint is not a well-formed checkpoint note");
                if (!e) {
                        r = fail(v, "receipt", "log not trusted",
                                 "the receipt's log origin \"%s\" is not in the trust file %s", origin, o->trust_path);
                        free(origin);
                        return r;
                }
                free(origin);
        } else {
                r = client_trust_for_bundle(&v->trust, v->bundle, v->bundle_len, &e);
                if (r == -ENOMEM)
                        return oom();
                if (r < 0)
                        return fail(v, "bundle", client_keyrule_name(CLIENT_KEYRULE_BUNDLE_MALFORMED),
                                    "the key bundle is not a DSSE envelope");
                if (!e)
                        return fail(v, "bundle", "log not trusted",
                                    "the key bundle is not signed by a log key in the trust file %s", o->trust_path);
        }
        v->trusted = e;
        v->pem = strdup(e->pem);
        return v->pem ? CLI_EXIT_OK : oom();
}

static int verify_trusted_origin(const struct verify_opts *o, struct verify_state *v) {
        if (!v->trusted || strcmp(v->res.bundle->origin, v->trusted->origin) == 0)
                return CLI_EXIT_OK;
        return fail(v, "bundle", client_keyrule_name(CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY),
                    "the key bundle names origin \"%s\", but its key is listed in %s for \"%s\"", v->res.bundle->origin,
                    o->trust_path, v->trusted->origin);
}

/* --metrics-file's reason for each failed key rule. */
static const char *keyrule_reason(int rule) {
        switch (rule) {
        case CLIENT_KEYRULE_BUNDLE_MALFORMED:
        case CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY:
                return "bundle";
        case CLIENT_KEYRULE_ENVELOPE_MALFORMED:
                return "envelope";
        case CLIENT_KEYRULE_KEY_UNKNOWN:
                return "key";
        case CLIENT_KEYRULE_WRONG_PRINCIPAL:
                return "principal";
        case CLIENT_KEYRULE_REVOKED_NO_RECEIPT:
        case CLIENT_KEYRULE_AFTER_COMPROMISE:
                return "revoked";
        case CLIENT_KEYRULE_RECEIPT_INVALID:
                return "receipt";
        default:
                return "signature";
        }
}

/* The key rule (bundle, key, envelope signature, revocation with the
 * receipt). */
static int verify_keyrule(const struct verify_opts *o, struct verify_state *v) {
        struct client_keyrule_input in = {
                .bundle = v->bundle,
                .bundle_len = v->bundle_len,
                .log_key_pem = v->pem,
                .envelope = v->env,
                .envelope_len = v->env_len,
                .principal = o->principal,
                .receipt = o->receipt_path ? &v->doc.rc : NULL,
        };
        int r = client_keyrule_check(&in, &v->res);

        if (r == -ENOMEM)
                return oom();
        if (r == CLIENT_KEYRULE_BAD_LOG_KEY) {
                fprintf(stderr, "provsign: verify: %s: %s\n", o->key_path ? o->key_path : o->trust_path,
                        v->res.detail);
                return CLI_EXIT_LOCAL;
        }
        if (r != 0)
                return fail(v, keyrule_reason(r), client_keyrule_name(r), "%s", v->res.detail);
        return CLI_EXIT_OK;
}

/* The bundle is fresh enough: an older bundle may predate a revocation. With
 * a receipt the bundle must have seen the signature (its log size at least
 * the receipt's tree size); --min-log-size and --bundle-max-age ask more. */
static int verify_bundle_fresh(const struct verify_opts *o, struct verify_state *v) {
        const struct proto_bundle *b = v->res.bundle;
        char t[PROTO_TIME_LEN + 1];
        struct timespec now;

        if (v->res.receipt_verified && b->log_size < v->doc.rc.tree_size)
                return fail(v, "bundle", "key bundle older than the receipt",
                            "the bundle was issued at log size %" PRIu64 ", before the receipt's checkpoint (size %" PRIu64
                            "); a newer bundle (provsign key bundle) must have seen the signature",
                            b->log_size, v->doc.rc.tree_size);
        if (o->min_log_size && b->log_size < o->min_log_size)
                return fail(v, "bundle", "key bundle too old",
                            "the bundle was issued at log size %" PRIu64 ", --min-log-size is %" PRIu64, b->log_size,
                            o->min_log_size);
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_us = (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
        if (o->bundle_max_age_s && now_us - b->issued_us > (int64_t) o->bundle_max_age_s * 1000000)
                return fail(v, "bundle", "key bundle too old", "the bundle was issued at %s, more than %" PRIu64
                            " s ago (--bundle-max-age)", time_or(b->issued_us, t, "?"), o->bundle_max_age_s);
        return CLI_EXIT_OK;
}

/* The subjects of an in-toto statement against the artifacts given. */
static int verify_subjects(const struct verify_opts *o, struct verify_state *v) {
        const struct proto_dsse_envelope *e = v->res.envelope;
        char detail[320];
        int r;

        if (strcmp(e->payload_type, PROTO_INTOTO_PAYLOAD_TYPE) == 0) {
                r = proto_statement_parse((const char *) e->payload, e->payload_len, &v->st, detail, sizeof detail);
                if (r == -ENOMEM)
                        return oom();
                if (r < 0)
                        return fail(v, "statement", "not an in-toto statement", "%s", detail);
        } else if (o->n_art > 0)
                return fail(v, "subject", "artifact not among the subjects",
                            "the payloadType is %s, not an in-toto statement", e->payload_type);
        v->hex = calloc(o->n_art ? o->n_art : 1, sizeof *v->hex);
        v->matched = calloc(o->n_art ? o->n_art : 1, sizeof *v->matched);
        if (!v->hex || !v->matched)
                return oom();
        for (size_t i = 0; i < o->n_art; i++) {
                r = cli_file_sha256("verify", "artifact", o->artifacts[i], v->hex[i]);
                if (r != CLI_EXIT_OK)
                        return r;
                v->matched[i] = proto_statement_subject_by_sha256(v->st, v->hex[i]);
                if (!v->matched[i])
                        return fail(v, "subject", "artifact not among the subjects",
                                    "%s (sha256:%s) is not a subject of the statement", o->artifacts[i], v->hex[i]);
        }
        return CLI_EXIT_OK;
}

/* ---- The policy: the flags' rule, then each artifact's section ------------- */

static bool rule_checked(const struct verify_state *v, const struct client_policy_rule *rule) {
        for (size_t i = 0; i < v->n_checks; i++)
                if (v->checks[i].rule == rule)
                        return true;
        return false;
}

static void add_checks(struct verify_state *v, const struct client_policy_rule *rule, const char *artifact,
                       const struct client_policy_facts *facts) {
        struct client_policy_check c[CLIENT_POLICY_MAX_CHECKS];
        size_t n = client_policy_check(rule, facts, c);

        for (size_t i = 0; i < n; i++)
                v->checks[v->n_checks++] = (struct verify_check) { .c = c[i], .artifact = artifact, .rule = rule };
}

/* The subjects the policy covers: the artifacts given, else all. */
static void policy_sections(const struct verify_opts *o, struct verify_state *v,
                            const struct client_policy_facts *facts) {
        size_t n = o->n_art ? o->n_art : v->st->n_subjects;

        for (size_t i = 0; i < n; i++) {
                const struct proto_statement_subject *s = o->n_art ? v->matched[i] : &v->st->subjects[i];
                const struct client_policy_rule *rule = client_policy_match(&v->policy, s->name);
                struct verify_check *c;

                if (rule && !rule_checked(v, rule)) {
                        add_checks(v, rule, s->name, facts);
                        continue;
                }
                if (rule)
                        continue;
                c = &v->checks[v->n_checks++];
                *c = (struct verify_check) { .c = { .field = "policy" }, .artifact = s->name };
                snprintf(c->c.value, sizeof c->c.value, "%s", s->name ? s->name : "(a subject without a name)");
                snprintf(c->c.allowed, sizeof c->c.allowed, "an artifact name matching a section of %s",
                         o->policy_path);
        }
}

/* The first failed check, as the failure's message. */
static int policy_failure(const struct verify_opts *o, struct verify_state *v, const struct verify_check *c) {
        char by[64];

        if (!c->rule)
                return fail(v, "policy", "policy", "artifact %s matches no section of %s", c->c.value, o->policy_path);
        snprintf(by, sizeof by, c->rule->line ? ":%u" : "the command line", c->rule->line);
        return fail(v, c->c.field, c->c.field, "%s is not allowed%s%s by %s%s (allowed: %s)", c->c.value,
                    c->artifact ? " for " : "", c->artifact ? c->artifact : "", c->rule->line ? o->policy_path : "",
                    by, c->c.allowed);
}

static int verify_policy(const struct verify_opts *o, struct verify_state *v) {
        bool flags = !client_policy_rule_empty(&o->flags);
        struct client_policy_facts facts;
        size_t n;

        if (!flags && !o->policy_path)
                return CLI_EXIT_OK;
        if (!v->st)
                return fail(v, "statement", "not an in-toto statement",
                            "the payloadType is %s: the policy needs an in-toto statement",
                            v->res.envelope->payload_type);
        facts = (struct client_policy_facts) {
                .principal = v->res.key->principal,
                .source_uri = v->st->source_uri,
                .source_ref = v->st->source_ref,
                .builder_id = v->st->builder_id,
                .receipt = v->res.receipt_verified,
                .log_time_us = v->doc.rc.log_time_us,
                .now_us = (int64_t) time(NULL) * 1000000,
        };
        n = (1 + (o->n_art ? o->n_art : v->st->n_subjects)) * CLIENT_POLICY_MAX_CHECKS;
        v->checks = calloc(n, sizeof *v->checks);
        if (!v->checks)
                return oom();
        if (flags)
                add_checks(v, &o->flags, NULL, &facts);
        if (o->policy_path)
                policy_sections(o, v, &facts);
        for (size_t i = 0; i < v->n_checks; i++)
                if (!v->checks[i].c.ok)
                        return policy_failure(o, v, &v->checks[i]);
        return CLI_EXIT_OK;
}

/* ---- Output ------------------------------------------------------------------ */

static json_t *name_or_null(const char *name) {
        return name ? json_string(name) : json_null();
}

static json_t *checks_json(const struct verify_opts *o, const struct verify_state *v) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < v->n_checks; i++) {
                const struct verify_check *c = &v->checks[i];
                char rule[PATH_MAX + 16];

                if (c->rule && c->rule->line)
                        snprintf(rule, sizeof rule, "%s:%u", o->policy_path, c->rule->line);
                else
                        snprintf(rule, sizeof rule, "%s", c->rule ? "command line" : o->policy_path);
                json_array_append_new(a, json_pack("{s:s, s:b, s:s, s:s, s:o, s:s}", "field", c->c.field, "ok",
                                                   (int) c->c.ok, "value", c->c.value, "allowed", c->c.allowed,
                                                   "artifact", name_or_null(c->artifact), "rule", rule));
        }
        return a;
}

static int verify_print_failure_json(const struct verify_opts *o, const struct verify_state *v) {
        return cli_print_json(json_pack("{s:b, s:s, s:o}", "verified", 0, "reason", v->reason ? v->reason : "signature",
                                        "checks", checks_json(o, v)));
}

static json_t *subjects_json(const struct verify_state *v) {
        json_t *subj = json_array();

        for (size_t i = 0; v->st && i < v->st->n_subjects; i++) {
                const struct proto_statement_subject *s = &v->st->subjects[i];

                json_array_append_new(subj,
                                      json_pack("{s:o, s:O}", "name", name_or_null(s->name), "digest", s->digest));
        }
        return subj;
}

static int verify_print_json(const struct verify_opts *o, const struct verify_state *v) {
        const struct proto_bundle_key *k = v->res.key;
        char t1[PROTO_TIME_LEN + 1], t2[PROTO_TIME_LEN + 1];
        const char *log_time = v->res.receipt_verified ? time_or(v->doc.rc.log_time_us, t1, "?") : NULL;
        json_t *arts = json_array(), *j;

        for (size_t i = 0; i < o->n_art; i++)
                json_array_append_new(arts, json_pack("{s:s, s:s, s:o}", "path", o->artifacts[i], "sha256", v->hex[i],
                                                      "subject", name_or_null(v->matched[i]->name)));
        j = json_pack("{s:b, s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:s?, s:s?, s:o, s:s, s:s, s:o}",
                      "verified", 1, "principal", k->principal, "keyid", k->keyid,
                      "generation", (int) k->generation, "algorithm", proto_key_algorithm_name(k->algorithm),
                      "state", proto_key_state_name(k->state), "payloadType", v->res.envelope->payload_type,
                      "subjects", subjects_json(v), "builder", v->st ? v->st->builder_id : NULL, "log_time", log_time,
                      "artifacts", arts, "origin", v->res.bundle->origin, "log_keyid", v->res.bundle->log_keyid,
                      "checks", checks_json(o, v));
        if (j && v->st && v->st->source_uri)
                json_object_set_new(j, "source", json_pack("{s:s, s:s?, s:s}", "uri", v->st->source_uri, "ref",
                                                           v->st->source_ref, "from", v->st->source_from));
        if (j && v->res.receipt_verified)
                json_object_set_new(j, "log_seq", json_integer((json_int_t) v->doc.rc.log_seq));
        if (j) {
                json_object_set_new(j, "bundle_issued", json_string(time_or(v->res.bundle->issued_us, t2, "?")));
                json_object_set_new(j, "bundle_log_size", json_integer((json_int_t) v->res.bundle->log_size));
        }
        if (j && k->state == PROVSIGN__KEY_STATE__REVOKED)
                json_object_set_new(j, "compromised_since", json_string(time_or(k->compromised_since_us, t2, "?")));
        return cli_print_json(j);
}

static void print_statement_text(const struct verify_state *v) {
        for (size_t i = 0; v->st && i < v->st->n_subjects; i++) {
                const struct proto_statement_subject *s = &v->st->subjects[i];

                printf("subject:     %s", cli_safe(s->name ? s->name : "(no name)"));
                printf(" sha256:%s\n", s->sha256 ? s->sha256 : "(none)");
        }
        if (!v->st)
                return;
        printf("builder:     %s\n", cli_safe(v->st->builder_id ? v->st->builder_id : "(none)"));
        if (v->st->source_uri) {
                printf("source:      %s", cli_safe(v->st->source_uri));
                printf(" %s\n", cli_safe(v->st->source_ref ? v->st->source_ref : "(no ref)"));
        }
        for (size_t i = 0; i < v->n_checks; i++) {
                printf("allowed:     %s = ", v->checks[i].c.field);
                printf("%s", cli_safe(v->checks[i].c.value));
                printf(" (%s)\n", cli_safe(v->checks[i].c.allowed));
        }
}

static void verify_print_text(const struct verify_opts *o, const struct verify_state *v) {
        const struct proto_bundle_key *k = v->res.key;
        char t1[PROTO_TIME_LEN + 1], t2[PROTO_TIME_LEN + 1];

        printf("verified:    yes\n");
        printf("principal:   %s\n", cli_safe(k->principal));
        printf("keyid:       %s\n", k->keyid);
        printf("key:         generation %" PRIu32 ", %s, %s", k->generation, proto_key_algorithm_name(k->algorithm),
               proto_key_state_name(k->state));
        if (k->state == PROVSIGN__KEY_STATE__REVOKED)
                printf(" (compromised since %s; signed before)", time_or(k->compromised_since_us, t2, "?"));
        printf("\n");
        printf("payloadType: %s\n", cli_safe(v->res.envelope->payload_type));
        printf("bundle:      issued %s at log size %" PRIu64 "\n", time_or(v->res.bundle->issued_us, t1, "?"),
               v->res.bundle->log_size);
        print_statement_text(v);
        if (v->res.receipt_verified)
                printf("log time:    %s (entry %" PRIu64 " of %" PRIu64 ", log %s)\n",
                       time_or(v->doc.rc.log_time_us, t1, "?"), v->doc.rc.log_seq, v->doc.rc.tree_size,
                       cli_safe(v->res.bundle->origin));
        else
                printf("log time:    not proven (no receipt)\n");
        for (size_t i = 0; i < o->n_art; i++) {
                const char *name = v->matched[i]->name;

                printf("artifact:    %s", cli_safe(o->artifacts[i]));
                printf(" = subject %s\n", cli_safe(name ? name : "(no name)"));
        }
}

/* --metrics-file: the outcome counted; a verification that failed keeps its
 * exit code whatever happens to the file. */
static int verify_count(const struct verify_opts *o, const struct verify_state *v, int r) {
        int m;

        if (!o->metrics_path)
                return r;
        if (r == CLI_EXIT_OK)
                m = cli_verify_metrics_count(o->metrics_path, "ok", "none");
        else if (r == CLI_EXIT_VERIFY_FAILED)
                m = cli_verify_metrics_count(o->metrics_path, "failed", v->reason ? v->reason : "signature");
        else
                m = cli_verify_metrics_count(o->metrics_path, "error", "local");
        return r != CLI_EXIT_OK ? r : m;
}

static int verify_run(const struct verify_opts *o) {
        struct verify_state v = {};
        int r = verify_read(o, &v);

        if (r == CLI_EXIT_OK && o->trust_path)
                r = cli_read_trust("verify", o->trust_path, &v.trust);
        if (r == CLI_EXIT_OK && o->trust_path)
                r = verify_pick_key(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_keyrule(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_trusted_origin(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_bundle_fresh(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_subjects(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_policy(o, &v);
        if (r == CLI_EXIT_OK && o->json)
                r = verify_print_json(o, &v);
        else if (r == CLI_EXIT_OK)
                verify_print_text(o, &v);
        else if (r == CLI_EXIT_VERIFY_FAILED && o->json)
                verify_print_failure_json(o, &v);
        r = verify_count(o, &v, r);
        verify_state_done(&v);
        return r;
}

int cmd_verify(const struct cli_ctx *ctx, int argc, char **argv) {
        struct verify_opts o = {};
        int r = verify_parse(argc, argv, &o);
        (void) ctx;

        if (r == CLI_EXIT_OK)
                r = verify_run(&o);
        free(o.artifacts);
        client_policy_rule_done(&o.flags);
        return r < 0 ? CLI_EXIT_OK : r;
}
