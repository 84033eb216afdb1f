/* in-toto Statement v1 and the SLSA v1 fields a policy reads: see
 * statement.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonval.h"
#include "statement.h"

__attribute__((format(printf, 3, 4)))
static int bad(char *detail, size_t size, const char *fmt, ...) {
        va_list ap;

        if (size > 0) {
                va_start(ap, fmt);
                vsnprintf(detail, size, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

/* An optional string field: absent is fine (*ret NULL), anything but a
 * bounded string is not. */
static int opt_string(const json_t *obj, const char *key, const char **ret) {
        const json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v)
                return 0;
        *ret = proto_json_string(v, PROTO_STATEMENT_MAX_FIELD);
        return *ret ? 0 : -EBADMSG;
}

/* An optional object: absent or an object. */
static int opt_object(const json_t *obj, const char *key, const json_t **ret) {
        const json_t *v = json_object_get(obj, key);

        *ret = v;
        return !v || json_is_object(v) ? 0 : -EBADMSG;
}

static bool is_hex64(const char *s) {
        if (strlen(s) != 64)
                return false;
        for (; *s; s++)
                if (!strchr("0123456789abcdefABCDEF", *s))
                        return false;
        return true;
}

static int parse_subjects(struct proto_statement *st, char *detail, size_t size) {
        const json_t *subj = json_object_get(st->root, "subject");
        size_t n = json_array_size(subj);

        if (!json_is_array(subj) || n == 0)
                return bad(detail, size, "no subject list");
        if (n > PROTO_STATEMENT_MAX_SUBJECTS) {
                bad(detail, size, "%zu subjects (at most %u)", n, PROTO_STATEMENT_MAX_SUBJECTS);
                return -EMSGSIZE;
        }
        st->subjects = calloc(n, sizeof *st->subjects);
        if (!st->subjects)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const json_t *s = json_array_get(subj, i);
                struct proto_statement_subject *out = &st->subjects[i];

                if (!json_is_object(s) || opt_string(s, "name", &out->name) < 0)
                        return bad(detail, size, "subject %zu is not an object with a string name", i);
                out->digest = json_object_get(s, "digest");
                if (!json_is_object(out->digest) || json_object_size(out->digest) == 0)
                        return bad(detail, size, "subject %zu has no digest", i);
                if (opt_string(out->digest, "sha256", &out->sha256) < 0 || (out->sha256 && !is_hex64(out->sha256)))
                        return bad(detail, size, "subject %zu: its sha256 digest is not 64 hex digits", i);
        }
        st->n_subjects = n;
        return 0;
}

/* "git+URI[@REF]" of the first resolved dependency that is one; *ret NULL
 * when none. */
static int git_dependency(const json_t *deps, const char **ret) {
        *ret = NULL;
        if (!deps)
                return 0;
        if (!json_is_array(deps))
                return -EBADMSG;
        for (size_t i = 0; i < json_array_size(deps); i++) {
                const json_t *d = json_array_get(deps, i);
                const char *uri;

                if (!json_is_object(d) || opt_string(d, "uri", &uri) < 0)
                        return -EBADMSG;
                if (uri && strncmp(uri, "git+", 4) == 0 && uri[4]) {
                        *ret = uri;
                        return 0;
                }
        }
        return 0;
}

/* Does dep ("git+URI[@REF]") name uri and ref? */
static bool dependency_agrees(const char *dep, const char *uri, const char *ref) {
        size_t n = strlen(uri);

        dep += 4;
        if (strncmp(dep, uri, n) != 0)
                return false;
        if (!ref)
                return dep[n] == '\0';
        return dep[n] == '@' && strcmp(dep + n + 1, ref) == 0;
}

/* source_uri and source_ref from externalParameters (source, then
 * workflow), checked against the git resolved dependency. */
static int parse_source(struct proto_statement *st, const json_t *bd, char *detail, size_t size) {
        static const char *const holders[] = { "source", "workflow" };
        static const char *const from[] = { "externalParameters.source", "externalParameters.workflow" };
        const json_t *ext, *holder;
        const char *dep;
        int r;

        if (opt_object(bd, "externalParameters", &ext) < 0)
                return bad(detail, size, "externalParameters is not an object");
        if (git_dependency(json_object_get(bd, "resolvedDependencies"), &dep) < 0)
                return bad(detail, size, "resolvedDependencies is not a list of objects with string uris");
        for (size_t i = 0; ext && i < sizeof holders / sizeof holders[0] && !st->source_uri; i++) {
                if (opt_object(ext, holders[i], &holder) < 0)
                        continue; /* a build parameter of another shape: not ours to read */
                r = opt_string(holder, "repository", &st->source_uri);
                if (r == 0 && st->source_uri)
                        r = opt_string(holder, "ref", &st->source_ref);
                if (r < 0)
                        return bad(detail, size, "externalParameters.%s: repository or ref is not a string",
                                   holders[i]);
                if (st->source_uri)
                        st->source_from = from[i];
        }
        if (st->source_uri) {
                if (dep && !dependency_agrees(dep, st->source_uri, st->source_ref))
                        return bad(detail, size, "%s names another source than resolvedDependencies", st->source_from);
                return 0;
        }
        if (!dep)
                return 0;
        /* the dependency alone: split at its last '@' (a ref has none) */
        {
                const char *at = strrchr(dep + 4, '@');

                st->owned_uri = strndup(dep + 4, at ? (size_t) (at - dep - 4) : strlen(dep + 4));
                if (!st->owned_uri)
                        return -ENOMEM;
                st->source_uri = st->owned_uri;
                st->source_ref = at && at[1] ? at + 1 : NULL;
                st->source_from = "resolvedDependencies";
        }
        return st->source_uri[0] ? 0 : bad(detail, size, "resolvedDependencies: empty git source uri");
}

static int parse_slsa(struct proto_statement *st, char *detail, size_t size) {
        const json_t *pred = json_object_get(st->root, "predicate"), *bd, *rd, *b;

        if (!json_is_object(pred))
                return bad(detail, size, "the SLSA predicate is not an object");
        if (opt_object(pred, "buildDefinition", &bd) < 0 || opt_object(pred, "runDetails", &rd) < 0 ||
            opt_object(rd, "builder", &b) < 0)
                return bad(detail, size, "buildDefinition, runDetails or runDetails.builder is not an object");
        if (opt_string(b, "id", &st->builder_id) < 0)
                return bad(detail, size, "runDetails.builder.id is not a string");
        return bd ? parse_source(st, bd, detail, size) : 0;
}

int proto_statement_parse(const char *json, size_t len, struct proto_statement **ret, char *detail,
                          size_t detail_size) {
        struct proto_statement *st;
        json_error_t jerr;
        const char *type;
        int r;

        if (!json || !ret)
                return -EINVAL;
        st = calloc(1, sizeof *st);
        if (!st)
                return -ENOMEM;
        st->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(st->root)) {
                r = bad(detail, detail_size, "the payload is not a JSON object");
                goto out;
        }
        type = proto_json_string(json_object_get(st->root, "_type"), PROTO_STATEMENT_MAX_FIELD);
        if (!type || strcmp(type, PROTO_STATEMENT_TYPE) != 0) {
                r = bad(detail, detail_size, "_type is not %s", PROTO_STATEMENT_TYPE);
                goto out;
        }
        r = parse_subjects(st, detail, detail_size);
        if (r == 0 && opt_string(st->root, "predicateType", &st->predicate_type) < 0)
                r = bad(detail, detail_size, "predicateType is not a string");
        if (r == 0 && st->predicate_type && strcmp(st->predicate_type, PROTO_SLSA_PROVENANCE_V1) == 0)
                r = parse_slsa(st, detail, detail_size);
out:
        if (r < 0) {
                proto_statement_free(st);
                return r;
        }
        *ret = st;
        return 0;
}

void proto_statement_free(struct proto_statement *st) {
        if (!st)
                return;
        free(st->subjects);
        free(st->owned_uri);
        json_decref(st->root);
        free(st);
}

const struct proto_statement_subject *proto_statement_subject_by_sha256(const struct proto_statement *st,
                                                                        const char *hex) {
        for (size_t i = 0; st && hex && i < st->n_subjects; i++)
                if (st->subjects[i].sha256 && strcasecmp(st->subjects[i].sha256, hex) == 0)
                        return &st->subjects[i];
        return NULL;
}
