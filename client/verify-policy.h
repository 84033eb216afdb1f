/* Deploy-time policy for `provsign verify` (docs/deploy-policy.md): what a
 * verified statement must say about where and how an artifact was built.
 *
 * A rule lists what is allowed: principals (the signing key's), source URIs
 * (exact, or by prefix), source refs (fnmatch globs), builder ids, the
 * longest age (from the receipt's log time), and whether a receipt is
 * required. An empty list allows anything for that field. The command
 * line's flags make one rule for every artifact; a policy file (INI,
 * libinih, through proto/inireader.h) has one rule per artifact name
 * pattern, and an artifact takes the first section whose pattern matches
 * its subject name (fnmatch, no flags: '*' also matches '/'):
 *
 *     [artifact "widget-*.tar.gz"]
 *     principals = ci-release
 *     source_uri = https://github.com/acme/widget
 *     source_refs = refs/heads/main refs/tags/v*
 *     builder_ids = https://github.com/actions/runner/self-hosted
 *     max_age = 30d
 *     require_receipt = yes
 *
 * The statement fields (where they are read: proto/statement.h) go in
 * client_policy_facts; client_policy_check() returns one check per field
 * the rule constrains. Nothing here prints. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_POLICY_FILE_MAX (1024u * 1024u) /* bytes of a policy file */
#define CLIENT_POLICY_MAX_RULES 1024u
#define CLIENT_POLICY_MAX_CHECKS 6u           /* checks of one rule */

struct client_policy_list {
        char **v;     /* owned */
        size_t n;
};

struct client_policy_rule {
        char *pattern;     /* the artifact name glob; NULL: the command line's (every artifact) */
        unsigned line;     /* of its section header (0: the command line) */
        struct client_policy_list principals, source_uris, source_uri_prefixes, source_refs, builder_ids;
        uint64_t max_age_s;
        bool has_max_age, require_receipt;
};

struct client_policy {
        struct client_policy_rule *rules; /* in file order */
        size_t n;
};

/* client_policy_parse: the policy file text[0..len) into *ret (zeroed by
 * the caller; release with client_policy_done(), also after a failure). 0,
 * -EINVAL with ":LINE: message" (": message" when no line) in msg, to
 * follow the file's name, for a malformed file (unknown or
 * duplicate section or key, a bad duration or boolean, an empty section,
 * an empty file), -ENOMEM. */
int client_policy_parse(const char *text, size_t len, struct client_policy *ret, char *msg, size_t msg_size);

void client_policy_done(struct client_policy *p);

/* client_policy_rule_done: frees what a rule owns (not the rule). */
void client_policy_rule_done(struct client_policy_rule *r);

/* client_policy_rule_empty: true when the rule constrains nothing. */
bool client_policy_rule_empty(const struct client_policy_rule *r);

/* client_policy_list_add: appends a copy of s. 0, -ENOMEM. */
int client_policy_list_add(struct client_policy_list *l, const char *s);

/* client_policy_match: the first rule whose pattern matches name, or NULL
 * (name NULL matches nothing). */
const struct client_policy_rule *client_policy_match(const struct client_policy *p, const char *name);

/* What was verified, for the checks. Strings borrowed; NULL when absent. */
struct client_policy_facts {
        const char *principal, *source_uri, *source_ref, *builder_id;
        bool receipt;          /* a receipt was given and verified */
        int64_t log_time_us;   /* its log time */
        int64_t now_us;
};

struct client_policy_check {
        const char *field;     /* "principal", "source_uri", "source_ref", "builder_id", "receipt", "max_age" */
        bool ok;
        char value[256];       /* what the statement (or receipt) says; "(none)" when absent */
        char allowed[512];     /* what the rule allows */
};

/* client_policy_check: rule against facts; fills out[0..n) with one check
 * per constraint of the rule, in the order above, and returns n (<=
 * CLIENT_POLICY_MAX_CHECKS). */
size_t client_policy_check(const struct client_policy_rule *rule, const struct client_policy_facts *facts,
                           struct client_policy_check out[static CLIENT_POLICY_MAX_CHECKS]);
