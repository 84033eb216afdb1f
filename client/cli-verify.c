/* provsign verify: offline verification of a DSSE envelope against the key
 * bundle (client/keyrule.c: the bundle's signature by the trusted log key,
 * the key and principal, the envelope's signature, the revocation rule with
 * the receipt), then the in-toto subjects against the artifacts given.
 * Also `provsign key bundle`, which fetches the bundle. Needs no agent
 * (verify); every buffer is freed before return. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "dsse.h"
#include "hex.h"
#include "keyrule.h"
#include "names.h"
#include "receipt-json.h"

#include "cli.h"

#define LOG_KEY_FILE_MAX (64u * 1024u)
#define INTOTO_TYPE "application/vnd.in-toto+json"
#define STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define SLSA_TYPE "https://slsa.dev/provenance/v1"

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

int cmd_key_bundle(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "principal", required_argument, NULL, 'p' },
                { "output",    required_argument, NULL, 'o' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "key bundle";
        const char *out_path = NULL, *principal = NULL;
        provsign_conn *conn = NULL;
        char *env = NULL, *line = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, ":p:o:h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        if (!*optarg)
                                return cli_usage_error(verb, "--principal needs a non-empty name");
                        principal = optarg;
                        break;
                case 'o':
                        if (!*optarg)
                                return cli_usage_error(verb, "--output needs a non-empty path");
                        out_path = optarg;
                        break;
                case 'h':
                        bundle_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        r = provsign_get_key_bundle_for(conn, principal, &env);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, verb);
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
        r = cli_write_file(verb, "key bundle", out_path, line, strlen(line));
out:
        free(line);
        free(env);
        provsign_close(conn);
        return r;
}

/* ---- provsign verify ------------------------------------------------------ */

static void verify_help(void) {
        printf("Usage: provsign verify --bundle BUNDLE --log-key PEM [OPTIONS] ENVELOPE\n"
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
               "  5. each --artifact's SHA-256 is a subject of the in-toto statement.\n"
               "Prints what it verified: principal, keyid, subjects, builder, log time.\n"
               "\n"
               "  -b, --bundle FILE       the key bundle envelope\n"
               "  -k, --log-key FILE      the trusted log key (PEM)\n"
               "  -r, --receipt FILE      the receipt written by attest/provenance\n"
               "  -A, --artifact PATH     an artifact that must be a subject (repeatable)\n"
               "  -p, --principal P       the key must belong to principal P\n"
               "  -j, --json              print the result as JSON\n"
               "  -h, --help              show this help\n"
               "\n"
               "Exit status: 0 verified; 1 not verified (the reason on stderr); 2 usage\n"
               "error; 5 a file unreadable or the log key not a PEM public key.\n");
}

/* What the statement says, borrowed from its JSON. */
struct statement {
        json_t *root;
        const json_t *subjects;  /* array */
        const char *predicate_type;
        const char *builder_id;
};

static int fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *what, const char *fmt, ...) {
        char buf[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        fprintf(stderr, "provsign: verify: %s: %s\n", what, cli_safe(buf));
        return CLI_EXIT_VERIFY_FAILED;
}

/* The in-toto statement of the payload: _type, subjects with digests. */
static int statement_parse(const struct proto_dsse_envelope *env, struct statement *st) {
        const json_t *pred, *rd, *b;
        json_error_t jerr;

        st->root = json_loadb((const char *) env->payload, env->payload_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(st->root))
                return fail("not an in-toto statement", "the payload is not a JSON object");
        if (!json_is_string(json_object_get(st->root, "_type")) ||
            strcmp(json_string_value(json_object_get(st->root, "_type")), STATEMENT_TYPE) != 0)
                return fail("not an in-toto statement", "_type is not %s", STATEMENT_TYPE);
        st->subjects = json_object_get(st->root, "subject");
        if (!json_is_array(st->subjects) || json_array_size(st->subjects) == 0)
                return fail("not an in-toto statement", "no subject list");
        for (size_t i = 0; i < json_array_size(st->subjects); i++) {
                const json_t *s = json_array_get(st->subjects, i);
                if (!json_is_object(s) || !json_is_object(json_object_get(s, "digest")))
                        return fail("not an in-toto statement", "subject %zu has no digest", i);
        }
        st->predicate_type = json_string_value(json_object_get(st->root, "predicateType"));
        pred = json_object_get(st->root, "predicate");
        rd = json_object_get(pred, "runDetails");
        b = json_object_get(rd, "builder");
        st->builder_id = json_string_value(json_object_get(b, "id"));
        return CLI_EXIT_OK;
}

/* The subject whose sha256 digest is hex, or NULL. */
static const json_t *subject_by_sha256(const struct statement *st, const char *hex) {
        for (size_t i = 0; i < json_array_size(st->subjects); i++) {
                const json_t *s = json_array_get(st->subjects, i);
                const char *d = json_string_value(json_object_get(json_object_get(s, "digest"), "sha256"));

                if (d && strcasecmp(d, hex) == 0)
                        return s;
        }
        return NULL;
}

static const char *time_or(int64_t us, char buf[static PROTO_TIME_LEN + 1], const char *none) {
        return us >= 0 && proto_time_format_us(us, buf) ? buf : none;
}

/* What the command line asked for; strings borrowed from argv. */
struct verify_opts {
        const char *bundle_path, *key_path, *receipt_path, *principal, *env_path;
        const char **artifacts;
        size_t n_art;
        bool json;
};

/* What was read and found. */
struct verify_state {
        char *bundle, *pem, *env, *receipt_text;
        size_t bundle_len, env_len, receipt_len;
        struct client_receipt_doc doc;
        struct client_keyrule_result res;
        struct statement st;
        bool intoto;
        char (*hex)[65];
        const json_t **matched;
};

static void verify_state_done(struct verify_state *v) {
        free(v->hex);
        free(v->matched);
        json_decref(v->st.root);
        client_keyrule_result_done(&v->res);
        client_receipt_doc_done(&v->doc);
        free(v->receipt_text);
        free(v->env);
        free(v->pem);
        free(v->bundle);
}

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int verify_parse(int argc, char **argv, struct verify_opts *o) {
        static const struct option options[] = {
                { "bundle",    required_argument, NULL, 'b' },
                { "log-key",   required_argument, NULL, 'k' },
                { "receipt",   required_argument, NULL, 'r' },
                { "artifact",  required_argument, NULL, 'A' },
                { "principal", required_argument, NULL, 'p' },
                { "json",      no_argument,       NULL, 'j' },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "verify";
        int c;

        o->artifacts = calloc((size_t) argc, sizeof *o->artifacts);
        if (!o->artifacts) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":b:k:r:A:p:jh", options, NULL)) >= 0)
                switch (c) {
                case 'b':
                        o->bundle_path = optarg;
                        break;
                case 'k':
                        o->key_path = optarg;
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
                case 'h':
                        verify_help();
                        return -1;
                default:
                        return cli_getopt_error(verb, c, argv);
                }
        if (!o->bundle_path || !*o->bundle_path)
                return cli_usage_error(verb, "missing --bundle FILE (from 'provsign key bundle')");
        if (!o->key_path || !*o->key_path)
                return cli_usage_error(verb, "missing --log-key PEM-FILE (the trusted log key)");
        if (optind >= argc)
                return cli_usage_error(verb, "missing ENVELOPE (a DSSE envelope file, '-' for standard input)");
        o->env_path = argv[optind++];
        return cli_extra_args(verb, argc, argv);
}

static int verify_read(const struct verify_opts *o, struct verify_state *v) {
        static const char verb[] = "verify";
        char detail[320];
        int r;

        r = cli_read_file(verb, "key bundle", o->bundle_path, CLIENT_BUNDLE_MAX, &v->bundle, &v->bundle_len);
        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "log key", o->key_path, LOG_KEY_FILE_MAX, &v->pem, NULL);
        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "envelope", o->env_path, PROTO_DSSE_MAX_ENVELOPE, &v->env, &v->env_len);
        if (r == CLI_EXIT_OK && o->receipt_path)
                r = cli_read_file(verb, "receipt", o->receipt_path, CLIENT_RECEIPT_FILE_MAX, &v->receipt_text,
                                  &v->receipt_len);
        if (r != CLI_EXIT_OK || !o->receipt_path)
                return r;
        if (client_receipt_doc_parse(v->receipt_text, v->receipt_len, &v->doc, detail, sizeof detail) < 0)
                return fail("invalid receipt", "%s: %s", o->receipt_path, detail);
        return CLI_EXIT_OK;
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

        if (r == -ENOMEM) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        if (r == CLIENT_KEYRULE_BAD_LOG_KEY) {
                fprintf(stderr, "provsign: verify: %s: %s\n", o->key_path, v->res.detail);
                return CLI_EXIT_LOCAL;
        }
        if (r != 0)
                return fail(client_keyrule_name(r), "%s", v->res.detail);
        return CLI_EXIT_OK;
}

/* The subjects of an in-toto statement against the artifacts given. */
static int verify_subjects(const struct verify_opts *o, struct verify_state *v) {
        int r;

        v->intoto = strcmp(v->res.envelope->payload_type, INTOTO_TYPE) == 0;
        if (v->intoto) {
                r = statement_parse(v->res.envelope, &v->st);
                if (r != CLI_EXIT_OK)
                        return r;
        } else if (o->n_art > 0)
                return fail("artifact not among the subjects", "the payloadType is %s, not an in-toto statement",
                            v->res.envelope->payload_type);
        v->hex = calloc(o->n_art ? o->n_art : 1, sizeof *v->hex);
        v->matched = calloc(o->n_art ? o->n_art : 1, sizeof *v->matched);
        if (!v->hex || !v->matched) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        for (size_t i = 0; i < o->n_art; i++) {
                r = cli_file_sha256("verify", "artifact", o->artifacts[i], v->hex[i]);
                if (r != CLI_EXIT_OK)
                        return r;
                v->matched[i] = subject_by_sha256(&v->st, v->hex[i]);
                if (!v->matched[i])
                        return fail("artifact not among the subjects", "%s (sha256:%s) is not a subject of the statement",
                                    o->artifacts[i], v->hex[i]);
        }
        return CLI_EXIT_OK;
}

static json_t *name_or_null(const json_t *o) {
        json_t *n = json_object_get(o, "name");

        return n ? n : json_null();
}

static int verify_print_json(const struct verify_opts *o, const struct verify_state *v) {
        const struct proto_bundle_key *k = v->res.key;
        char t1[PROTO_TIME_LEN + 1], t2[PROTO_TIME_LEN + 1];
        const char *log_time = v->res.receipt_verified ? time_or(v->doc.rc.log_time_us, t1, "?") : NULL;
        json_t *subj = json_array(), *arts = json_array(), *j;

        for (size_t i = 0; v->intoto && i < json_array_size(v->st.subjects); i++) {
                const json_t *s = json_array_get(v->st.subjects, i);

                json_array_append_new(subj, json_pack("{s:O, s:O}", "name", name_or_null(s), "digest",
                                                      json_object_get(s, "digest")));
        }
        for (size_t i = 0; i < o->n_art; i++)
                json_array_append_new(arts, json_pack("{s:s, s:s, s:O}", "path", o->artifacts[i], "sha256", v->hex[i],
                                                      "subject", name_or_null(v->matched[i])));
        j = json_pack("{s:b, s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:s?, s:s?, s:o, s:s, s:s}",
                      "verified", 1, "principal", k->principal, "keyid", k->keyid,
                      "generation", (int) k->generation, "algorithm", proto_key_algorithm_name(k->algorithm),
                      "state", proto_key_state_name(k->state), "payloadType", v->res.envelope->payload_type,
                      "subjects", subj, "builder", v->st.builder_id, "log_time", log_time, "artifacts", arts,
                      "origin", v->res.bundle->origin, "log_keyid", v->res.bundle->log_keyid);
        if (j && v->res.receipt_verified)
                json_object_set_new(j, "log_seq", json_integer((json_int_t) v->doc.rc.log_seq));
        if (j && k->state == PROVSIGN__KEY_STATE__REVOKED)
                json_object_set_new(j, "compromised_since", json_string(time_or(k->compromised_since_us, t2, "?")));
        return cli_print_json(j);
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
        for (size_t i = 0; v->intoto && i < json_array_size(v->st.subjects); i++) {
                const json_t *s = json_array_get(v->st.subjects, i);
                const char *name = json_string_value(json_object_get(s, "name"));
                const char *d = json_string_value(json_object_get(json_object_get(s, "digest"), "sha256"));

                printf("subject:     %s", cli_safe(name ? name : "(no name)"));
                printf(" sha256:%s\n", d ? cli_safe(d) : "(none)");
        }
        if (v->intoto)
                printf("builder:     %s\n", cli_safe(v->st.builder_id ? v->st.builder_id : "(none)"));
        if (v->res.receipt_verified)
                printf("log time:    %s (entry %" PRIu64 " of %" PRIu64 ", log %s)\n",
                       time_or(v->doc.rc.log_time_us, t1, "?"), v->doc.rc.log_seq, v->doc.rc.tree_size,
                       cli_safe(v->res.bundle->origin));
        else
                printf("log time:    not proven (no receipt)\n");
        for (size_t i = 0; i < o->n_art; i++) {
                const char *name = json_string_value(json_object_get(v->matched[i], "name"));

                printf("artifact:    %s", cli_safe(o->artifacts[i]));
                printf(" = subject %s\n", cli_safe(name ? name : "(no name)"));
        }
}

static int verify_run(const struct verify_opts *o) {
        struct verify_state v = {};
        int r = verify_read(o, &v);

        if (r == CLI_EXIT_OK)
                r = verify_keyrule(o, &v);
        if (r == CLI_EXIT_OK)
                r = verify_subjects(o, &v);
        if (r == CLI_EXIT_OK && o->json)
                r = verify_print_json(o, &v);
        else if (r == CLI_EXIT_OK)
                verify_print_text(o, &v);
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
        return r < 0 ? CLI_EXIT_OK : r;
}
