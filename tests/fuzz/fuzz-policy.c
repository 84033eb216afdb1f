/* Fuzzes the deploy policy parser (client/verify-policy.h): the input is a
 * policy file as `provsign verify --policy` reads it (INI through libinih
 * and proto/inireader.h).
 *
 * Invariants:
 *   - client_policy_parse: 0, or -EINVAL with a message ":LINE: ..." or
 *     ": ..." (NUL-terminated), and nothing leaks after client_policy_done;
 *   - on success: 1..CLIENT_POLICY_MAX_RULES rules, each with a non-empty
 *     pattern and a header line, each constraining something, no two with
 *     the same pattern, every list entry non-empty;
 *   - client_policy_match gives a rule of the policy or NULL, and the
 *     checks of each rule against fixed facts are at most
 *     CLIENT_POLICY_MAX_CHECKS, each with a field and NUL-terminated texts.
 * Seeds: tests/fuzz/corpus/policy/ (gen-corpus.py policies()). */

#include <errno.h>
#include <string.h>

#include "verify-policy.h"

#include "fuzz.h"

static void check_list(const struct client_policy_list *l) {
        for (size_t i = 0; i < l->n; i++)
                FUZZ_CHECK(l->v[i] && l->v[i][0]);
}

static void check_rule(const struct client_policy *p, const struct client_policy_rule *r) {
        struct client_policy_facts f = {
                .principal = "ci-release",
                .source_uri = "https://github.com/acme/widget",
                .source_ref = "refs/heads/main",
                .builder_id = "https://github.com/actions/runner/github-hosted",
                .receipt = true,
                .log_time_us = 1700000000000000,
                .now_us = 1700000100000000,
        };
        struct client_policy_check c[CLIENT_POLICY_MAX_CHECKS];
        const struct client_policy_rule *m;
        size_t n;

        FUZZ_CHECK(r->pattern && r->pattern[0] && r->line >= 1);
        FUZZ_CHECK(!client_policy_rule_empty(r));
        check_list(&r->principals);
        check_list(&r->source_uris);
        check_list(&r->source_uri_prefixes);
        check_list(&r->source_refs);
        check_list(&r->builder_ids);
        m = client_policy_match(p, r->pattern);
        FUZZ_CHECK(!m || (m >= p->rules && m < p->rules + p->n));
        n = client_policy_check(r, &f, c);
        FUZZ_CHECK(n >= 1 && n <= CLIENT_POLICY_MAX_CHECKS);
        for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(c[i].field && memchr(c[i].value, '\0', sizeof c[i].value) &&
                           memchr(c[i].allowed, '\0', sizeof c[i].allowed));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct client_policy p = {};
        char msg[400];
        int r;

        msg[0] = '\0';
        r = client_policy_parse((const char *) data, size, &p, msg, sizeof msg);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(memchr(msg, '\0', sizeof msg) && msg[0] == ':');
                client_policy_done(&p);
                return 0;
        }
        FUZZ_CHECK(r == 0 && p.n >= 1 && p.n <= CLIENT_POLICY_MAX_RULES);
        for (size_t i = 0; i < p.n; i++) {
                check_rule(&p, &p.rules[i]);
                for (size_t j = 0; j < i; j++)
                        FUZZ_CHECK(strcmp(p.rules[i].pattern, p.rules[j].pattern) != 0);
        }
        client_policy_done(&p);
        return 0;
}
