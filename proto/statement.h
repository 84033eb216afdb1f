/* The in-toto Statement v1 (https://github.com/in-toto/attestation,
 * spec/v1/statement.md) carried in a DSSE payload of type
 * application/vnd.in-toto+json, and the fields of a SLSA Provenance v1
 * predicate (https://slsa.dev/spec/v1.0/provenance) that a deploy policy
 * checks (`provsign verify --source-uri/--source-ref/--builder-id/--policy`,
 * docs/deploy-policy.md).
 *
 * Where each policy field is read, in a SLSA v1 predicate:
 *
 *   builder_id  predicate.runDetails.builder.id
 *   source_uri  predicate.buildDefinition.externalParameters.source.repository
 *               (what `provsign provenance` writes for GitHub and GitLab);
 *               else externalParameters.workflow.repository (GitHub's own
 *               workflow buildType); else the first resolvedDependencies
 *               entry whose uri starts "git+": "git+URI@REF" (split at the
 *               last '@'; no '@': no ref)
 *   source_ref  .ref beside the source_uri read (the same object), or the
 *               "@REF" of the resolved dependency
 *
 * When the source comes from externalParameters and a "git+" resolved
 * dependency exists too, the two must agree (its uri is "git+URI@REF", or
 * "git+URI" without a ref): a statement naming two sources is malformed,
 * not a choice for the verifier.
 *
 * Absent fields are NULL (a statement of another predicateType has none).
 * A field present with the wrong JSON type, an empty string, a NUL byte or
 * over PROTO_STATEMENT_MAX_FIELD bytes makes the statement malformed. The
 * parser takes untrusted text (the payload of an envelope whose signature
 * holds, but from any principal); it is fuzzed (tests/fuzz/fuzz-statement.c).
 *
 * Errors: -EBADMSG malformed (detail says what), -EMSGSIZE over a limit,
 * -ENOMEM, -EINVAL bad caller arguments. The out-parameter is written only
 * on success. */
#pragma once

#include <stddef.h>

#include <jansson.h>

#define PROTO_INTOTO_PAYLOAD_TYPE "application/vnd.in-toto+json"
#define PROTO_STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define PROTO_SLSA_PROVENANCE_V1 "https://slsa.dev/provenance/v1"

#define PROTO_STATEMENT_MAX_SUBJECTS 4096u /* subjects of one statement */
#define PROTO_STATEMENT_MAX_FIELD 4096u    /* bytes of a name, URI, ref, builder id */

struct proto_statement_subject {
        const char *name;      /* NULL when the subject has none */
        const char *sha256;    /* the "sha256" digest (lowercase hex, 64), NULL when none */
        const json_t *digest;  /* the digest object */
};

/* Everything borrowed from root; proto_statement_free() frees it all. */
struct proto_statement {
        json_t *root;
        struct proto_statement_subject *subjects;
        size_t n_subjects;                 /* >= 1 */
        const char *predicate_type;        /* NULL when absent */
        const char *builder_id;            /* SLSA v1 only; as above */
        const char *source_uri;
        const char *source_ref;
        const char *source_from;           /* where source_uri was read, for messages */
        char *owned_uri;                   /* private: source_uri split off a dependency */
};

/* proto_statement_parse: the statement in json[0..len). 0 with *ret (free
 * with proto_statement_free), or an error above with a one-line reason in
 * detail (detail_size bytes, may be 0). */
int proto_statement_parse(const char *json, size_t len, struct proto_statement **ret, char *detail,
                          size_t detail_size);

void proto_statement_free(struct proto_statement *st);

/* proto_statement_subject_by_sha256: the subject whose sha256 digest is hex
 * (case-insensitive), or NULL. */
const struct proto_statement_subject *proto_statement_subject_by_sha256(const struct proto_statement *st,
                                                                        const char *hex);
