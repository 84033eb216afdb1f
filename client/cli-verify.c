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
               "(payloadType " CLIENT_BUNDLE_TYPE ").\n"
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

static int artifact_sha256(const char *path, char hex[65]) {
        uint8_t buf[65536], d[32];
        EVP_MD_CTX *md;
        ssize_t k;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "provsign: verify: cannot read artifact %s: %m\n", path);
                return CLI_EXIT_LOCAL;
        }
        md = EVP_MD_CTX_new();
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(md);
                close(fd);
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((k = read(fd, buf, sizeof buf)) != 0) {
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        fprintf(stderr, "provsign: verify: cannot read artifact %s: %m\n", path);
                        EVP_MD_CTX_free(md);
                        close(fd);
                        return CLI_EXIT_LOCAL;
                }
                EVP_DigestUpdate(md, buf, (size_t) k);
        }
        EVP_DigestFinal_ex(md, d, NULL);
        EVP_MD_CTX_free(md);
        close(fd);
        proto_hex_encode(d, sizeof d, hex);
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

int cmd_verify(const struct cli_ctx *ctx, int argc, char **argv) {
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
        const char *bundle_path = NULL, *key_path = NULL, *receipt_path = NULL, *principal = NULL, *env_path;
        const char **artifacts = NULL;
        size_t n_art = 0, bundle_len, env_len, receipt_len = 0;
        char *bundle = NULL, *pem = NULL, *env = NULL, *receipt_text = NULL;
        struct client_receipt_doc doc = {};
        struct client_keyrule_result res = {};
        struct statement st = {};
        char (*hex)[65] = NULL;
        const json_t **matched = NULL;
        bool json = false, intoto;
        int c, r;

        artifacts = calloc((size_t) argc, sizeof *artifacts);
        if (!artifacts) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":b:k:r:A:p:jh", options, NULL)) >= 0)
                switch (c) {
                case 'b':
                        bundle_path = optarg;
                        break;
                case 'k':
                        key_path = optarg;
                        break;
                case 'r':
                        receipt_path = optarg;
                        break;
                case 'A':
                        artifacts[n_art++] = optarg;
                        break;
                case 'p':
                        principal = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        verify_help();
                        r = CLI_EXIT_OK;
                        goto out;
                default:
                        r = cli_getopt_error(verb, c, argv);
                        goto out;
                }
        if (!bundle_path || !*bundle_path) {
                r = cli_usage_error(verb, "missing --bundle FILE (from 'provsign key bundle')");
                goto out;
        }
        if (!key_path || !*key_path) {
                r = cli_usage_error(verb, "missing --log-key PEM-FILE (the trusted log key)");
                goto out;
        }
        if (optind >= argc) {
                r = cli_usage_error(verb, "missing ENVELOPE (a DSSE envelope file, '-' for standard input)");
                goto out;
        }
        env_path = argv[optind++];
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                goto out;

        r = cli_read_file(verb, "key bundle", bundle_path, CLIENT_BUNDLE_MAX, &bundle, &bundle_len);
        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "log key", key_path, LOG_KEY_FILE_MAX, &pem, NULL);
        if (r == CLI_EXIT_OK)
                r = cli_read_file(verb, "envelope", env_path, PROTO_DSSE_MAX_ENVELOPE, &env, &env_len);
        if (r == CLI_EXIT_OK && receipt_path)
                r = cli_read_file(verb, "receipt", receipt_path, CLIENT_RECEIPT_FILE_MAX, &receipt_text, &receipt_len);
        if (r != CLI_EXIT_OK)
                goto out;
        if (receipt_path) {
                char detail[320];

                if (client_receipt_doc_parse(receipt_text, receipt_len, &doc, detail, sizeof detail) < 0) {
                        r = fail("invalid receipt", "%s: %s", receipt_path, detail);
                        goto out;
                }
        }

        struct client_keyrule_input in = {
                .bundle = bundle,
                .bundle_len = bundle_len,
                .log_key_pem = pem,
                .envelope = env,
                .envelope_len = env_len,
                .principal = principal,
                .receipt = receipt_path ? &doc.rc : NULL,
        };
        r = client_keyrule_check(&in, &res);
        if (r == -ENOMEM) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        if (r == CLIENT_KEYRULE_BAD_LOG_KEY) {
                fprintf(stderr, "provsign: verify: %s: %s\n", key_path, res.detail);
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        if (r != 0) {
                r = fail(client_keyrule_name(r), "%s", res.detail);
                goto out;
        }

        /* The subjects, for an in-toto statement. */
        intoto = strcmp(res.envelope->payload_type, INTOTO_TYPE) == 0;
        if (intoto) {
                r = statement_parse(res.envelope, &st);
                if (r != CLI_EXIT_OK)
                        goto out;
        } else if (n_art > 0) {
                r = fail("artifact not among the subjects", "the payloadType is %s, not an in-toto statement",
                         res.envelope->payload_type);
                goto out;
        }
        hex = calloc(n_art ? n_art : 1, sizeof *hex);
        matched = calloc(n_art ? n_art : 1, sizeof *matched);
        if (!hex || !matched) {
                fprintf(stderr, "provsign: out of memory\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        for (size_t i = 0; i < n_art; i++) {
                r = artifact_sha256(artifacts[i], hex[i]);
                if (r != CLI_EXIT_OK)
                        goto out;
                matched[i] = subject_by_sha256(&st, hex[i]);
                if (!matched[i]) {
                        r = fail("artifact not among the subjects", "%s (sha256:%s) is not a subject of the statement",
                                 artifacts[i], hex[i]);
                        goto out;
                }
        }

        /* Everything holds: say what. */
        const struct client_bundle_key *k = res.key;
        char t1[PROTO_TIME_LEN + 1], t2[PROTO_TIME_LEN + 1];
        const char *log_time = res.receipt_verified ? time_or(doc.rc.log_time_us, t1, "?") : NULL;

        if (json) {
                json_t *subj = json_array(), *arts = json_array(), *o;

                for (size_t i = 0; intoto && i < json_array_size(st.subjects); i++) {
                        const json_t *s = json_array_get(st.subjects, i);
                        json_array_append_new(subj, json_pack("{s:O, s:O}", "name", json_object_get(s, "name") ?
                                                              json_object_get(s, "name") : json_null(),
                                                              "digest", json_object_get(s, "digest")));
                }
                for (size_t i = 0; i < n_art; i++)
                        json_array_append_new(arts, json_pack("{s:s, s:s, s:O}", "path", artifacts[i], "sha256", hex[i],
                                                              "subject", json_object_get(matched[i], "name") ?
                                                              json_object_get(matched[i], "name") : json_null()));
                o = json_pack("{s:b, s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:s?, s:s?, s:o, s:s, s:s}",
                              "verified", 1, "principal", k->principal, "keyid", k->keyid,
                              "generation", (int) k->generation, "algorithm", proto_key_algorithm_name(k->algorithm),
                              "state", proto_key_state_name(k->state), "payloadType", res.envelope->payload_type,
                              "subjects", subj, "builder", st.builder_id, "log_time", log_time, "artifacts", arts,
                              "origin", res.bundle->origin, "log_keyid", res.bundle->log_keyid);
                if (o && res.receipt_verified)
                        json_object_set_new(o, "log_seq", json_integer((json_int_t) doc.rc.log_seq));
                if (o && k->state == PROVSIGN__KEY_STATE__REVOKED)
                        json_object_set_new(o, "compromised_since", json_string(time_or(k->compromised_since_us, t2, "?")));
                r = cli_print_json(o);
                goto out;
        }

        printf("verified:    yes\n");
        printf("principal:   %s\n", cli_safe(k->principal));
        printf("keyid:       %s\n", k->keyid);
        printf("key:         generation %" PRIu32 ", %s, %s", k->generation, proto_key_algorithm_name(k->algorithm),
               proto_key_state_name(k->state));
        if (k->state == PROVSIGN__KEY_STATE__REVOKED)
                printf(" (compromised since %s; signed before)", time_or(k->compromised_since_us, t2, "?"));
        printf("\n");
        printf("payloadType: %s\n", cli_safe(res.envelope->payload_type));
        for (size_t i = 0; intoto && i < json_array_size(st.subjects); i++) {
                const json_t *s = json_array_get(st.subjects, i);
                const char *name = json_string_value(json_object_get(s, "name"));
                const char *d = json_string_value(json_object_get(json_object_get(s, "digest"), "sha256"));

                printf("subject:     %s", cli_safe(name ? name : "(no name)"));
                printf(" sha256:%s\n", d ? cli_safe(d) : "(none)");
        }
        if (intoto)
                printf("builder:     %s\n", cli_safe(st.builder_id ? st.builder_id : "(none)"));
        if (res.receipt_verified)
                printf("log time:    %s (entry %" PRIu64 " of %" PRIu64 ", log %s)\n", log_time, doc.rc.log_seq,
                       doc.rc.tree_size, cli_safe(res.bundle->origin));
        else
                printf("log time:    not proven (no receipt)\n");
        for (size_t i = 0; i < n_art; i++) {
                const char *name = json_string_value(json_object_get(matched[i], "name"));

                printf("artifact:    %s", cli_safe(artifacts[i]));
                printf(" = subject %s\n", cli_safe(name ? name : "(no name)"));
        }
        r = CLI_EXIT_OK;
out:
        free(hex);
        free(matched);
        json_decref(st.root);
        client_keyrule_result_done(&res);
        client_receipt_doc_done(&doc);
        free(receipt_text);
        free(env);
        free(pem);
        free(bundle);
        free(artifacts);
        return r;
}
