/* Fuzzes the in-toto statement parser (proto/statement.h): the input is a
 * DSSE payload of type application/vnd.in-toto+json, as `provsign verify`
 * reads it once the envelope's signature holds (any principal's key can
 * sign anything), and the SLSA v1 fields a deploy policy checks.
 *
 * Invariants:
 *   - proto_statement_parse: 0, -EBADMSG or -EMSGSIZE; the out-parameter
 *     is untouched on failure, and the detail is a NUL-terminated line;
 *   - on success: 1..PROTO_STATEMENT_MAX_SUBJECTS subjects, each with a
 *     digest object; a sha256 is 64 hex digits; names, builder id, source
 *     URI and ref are non-empty, NUL-free and bounded; a ref or a source
 *     origin only with a source URI; the SLSA fields only for the SLSA v1
 *     predicateType; a source read from externalParameters agrees with
 *     the git resolved dependency when there is one;
 *   - every subject is found again by its sha256 (upper case too).
 * Seeds: tests/fuzz/corpus/statement/ (gen-corpus.py statements()):
 * statements as `provsign provenance` writes them under GitHub and GitLab,
 * GitHub's own workflow shape, a dependency-only source, and malformed
 * ones (two sources, wrong types, no subjects, a short digest). */

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "statement.h"

#include "fuzz.h"

static void check_field(const char *s) {
        if (!s)
                return;
        FUZZ_CHECK(s[0] != '\0' && strlen(s) <= PROTO_STATEMENT_MAX_FIELD);
}

static void check_subjects(const struct proto_statement *st) {
        FUZZ_CHECK(st->n_subjects >= 1 && st->n_subjects <= PROTO_STATEMENT_MAX_SUBJECTS);
        for (size_t i = 0; i < st->n_subjects; i++) {
                const struct proto_statement_subject *s = &st->subjects[i];
                char upper[65];

                FUZZ_CHECK(json_is_object(s->digest));
                check_field(s->name);
                if (!s->sha256)
                        continue;
                FUZZ_CHECK(strlen(s->sha256) == 64 && strspn(s->sha256, "0123456789abcdefABCDEF") == 64);
                for (size_t k = 0; k < 65; k++)
                        upper[k] = (char) toupper((unsigned char) s->sha256[k]);
                FUZZ_CHECK(proto_statement_subject_by_sha256(st, s->sha256) != NULL);
                FUZZ_CHECK(strcasecmp(proto_statement_subject_by_sha256(st, upper)->sha256, s->sha256) == 0);
        }
}

/* A source read from externalParameters agrees with the git dependency. */
static void check_dependency(const struct proto_statement *st) {
        const json_t *deps = json_object_get(json_object_get(json_object_get(st->root, "predicate"), "buildDefinition"),
                                             "resolvedDependencies");
        char want[2 * PROTO_STATEMENT_MAX_FIELD + 8];

        if (!st->source_uri || strncmp(st->source_from, "externalParameters", 18) != 0)
                return;
        snprintf(want, sizeof want, "git+%s%s%s", st->source_uri, st->source_ref ? "@" : "",
                 st->source_ref ? st->source_ref : "");
        for (size_t i = 0; i < json_array_size(deps); i++) {
                const char *uri = json_string_value(json_object_get(json_array_get(deps, i), "uri"));

                if (uri && strncmp(uri, "git+", 4) == 0 && uri[4]) {
                        FUZZ_CHECK(strcmp(uri, want) == 0);
                        return;
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct proto_statement *st = (struct proto_statement *) 1;
        char detail[200];
        bool slsa;
        int r;

        detail[0] = '\0';
        r = proto_statement_parse((const char *) data, size, &st, detail, sizeof detail);
        FUZZ_CHECK(memchr(detail, '\0', sizeof detail) != NULL);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
                FUZZ_CHECK(st == (struct proto_statement *) 1);
                return 0;
        }
        FUZZ_CHECK(r == 0 && st && st->root);
        check_subjects(st);
        check_field(st->predicate_type);
        check_field(st->builder_id);
        check_field(st->source_uri);
        check_field(st->source_ref);
        FUZZ_CHECK(!st->source_ref || st->source_uri);
        FUZZ_CHECK(!st->source_uri == !st->source_from);
        slsa = st->predicate_type && strcmp(st->predicate_type, PROTO_SLSA_PROVENANCE_V1) == 0;
        FUZZ_CHECK(slsa || (!st->builder_id && !st->source_uri));
        check_dependency(st);
        proto_statement_free(st);
        return 0;
}
