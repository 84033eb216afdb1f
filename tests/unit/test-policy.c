/* The deploy policy of `provsign verify`: proto/statement.c (where the
 * SLSA v1 fields are read, and its negative cases) and
 * client/verify-policy.c (the INI policy file, section matching, and each
 * check allowing and refusing). The statements are the seeds of
 * tests/fuzz/corpus/statement/ (gen-corpus.py, written in Python, not by
 * provsign). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statement.h"
#include "verify-policy.h"

static char *seed(const char *name, size_t *len) {
        char path[4096];
        FILE *f;
        char *buf = calloc(1, 1 << 16);

        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/statement/%s", getenv("SRCDIR"), name);
        f = fopen(path, "rb");
        assert_non_null(f);
        assert_non_null(buf);
        *len = fread(buf, 1, (1 << 16) - 1, f);
        fclose(f);
        return buf;
}

static struct proto_statement *parse_seed(const char *name, int want) {
        struct proto_statement *st = NULL;
        char detail[200] = "";
        size_t len;
        char *text = seed(name, &len);
        int r = proto_statement_parse(text, len, &st, detail, sizeof detail);

        free(text);
        if (r != want)
                fail_msg("%s: %d (%s), wanted %d", name, r, detail, want);
        return st;
}

static void test_statement_sources(void **state) {
        struct proto_statement *st;

        st = parse_seed("github", 0);
        assert_string_equal(st->source_uri, "https://github.com/acme/widget");
        assert_string_equal(st->source_ref, "refs/heads/main");
        assert_string_equal(st->source_from, "externalParameters.source");
        assert_string_equal(st->builder_id, "https://github.com/actions/runner/github-hosted");
        assert_int_equal(st->n_subjects, 2);
        assert_string_equal(st->subjects[1].name, "dist/SHA256SUMS");
        assert_ptr_equal(proto_statement_subject_by_sha256(st, st->subjects[1].sha256), &st->subjects[1]);
        proto_statement_free(st);

        st = parse_seed("gitlab", 0);
        assert_string_equal(st->source_uri, "https://gitlab.example.com/acme/gadget");
        assert_string_equal(st->source_ref, "refs/tags/v2.0.1");
        proto_statement_free(st);

        st = parse_seed("github-workflow-only", 0);
        assert_string_equal(st->source_from, "externalParameters.workflow");
        assert_string_equal(st->source_ref, "refs/heads/main");
        proto_statement_free(st);

        st = parse_seed("dependency-only", 0);
        assert_string_equal(st->source_from, "resolvedDependencies");
        assert_string_equal(st->source_uri, "https://github.com/acme/widget");
        assert_string_equal(st->source_ref, "refs/heads/main");
        proto_statement_free(st);

        st = parse_seed("dependency-no-ref", 0);
        assert_string_equal(st->source_uri, "https://github.com/acme/widget");
        assert_null(st->source_ref);
        proto_statement_free(st);

        /* another predicate: subjects only, no SLSA fields */
        st = parse_seed("other-predicate", 0);
        assert_null(st->source_uri);
        assert_null(st->builder_id);
        proto_statement_free(st);
}

static void test_statement_negative(void **state) {
        static const char *const bad[] = {
                "two-sources", "ref-not-string", "builder-id-number", "builder-not-object", "deps-not-list",
                "no-subjects", "short-digest", "nul-in-name", "statement-v0.1", "duplicate-key", "not-json", "array",
        };
        struct proto_statement *st = (struct proto_statement *) 1;
        char big[64];

        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_null(parse_seed(bad[i], -EBADMSG));
        assert_int_equal(proto_statement_parse(NULL, 0, &st, big, sizeof big), -EINVAL);
        assert_ptr_equal(st, (struct proto_statement *) 1);
}

static const char policy_text[] = "; deploy\n"
                                  "[artifact \"dist/*.tar.gz\"]\n"
                                  "principals = ci-release\n"
                                  "source_uri = https://github.com/acme/widget\n"
                                  "source_refs = refs/heads/main, refs/heads/release/*\n"
                                  "builder_ids = https://github.com/actions/runner/github-hosted\n"
                                  "max_age = 1h\n"
                                  "[artifact dist/*]\n"
                                  "source_uri_prefix = https://github.com/acme/\n";

static void test_policy_parse_and_match(void **state) {
        struct client_policy p = {};
        char msg[300] = "";

        assert_int_equal(client_policy_parse(policy_text, strlen(policy_text), &p, msg, sizeof msg), 0);
        assert_int_equal(p.n, 2);
        assert_int_equal(p.rules[0].line, 2);
        assert_int_equal(p.rules[0].source_refs.n, 2);
        assert_string_equal(p.rules[0].source_refs.v[1], "refs/heads/release/*");
        assert_int_equal(p.rules[0].max_age_s, 3600);
        assert_string_equal(p.rules[1].pattern, "dist/*");
        /* first match wins; no match is NULL */
        assert_ptr_equal(client_policy_match(&p, "dist/widget.tar.gz"), &p.rules[0]);
        assert_ptr_equal(client_policy_match(&p, "dist/SHA256SUMS"), &p.rules[1]);
        assert_null(client_policy_match(&p, "other/x"));
        assert_null(client_policy_match(&p, NULL));
        client_policy_done(&p);
}

static void test_policy_checks(void **state) {
        struct client_policy p = {};
        struct client_policy_check c[CLIENT_POLICY_MAX_CHECKS];
        struct client_policy_facts f = {
                .principal = "ci-release",
                .source_uri = "https://github.com/acme/widget",
                .source_ref = "refs/heads/release/1.2",
                .builder_id = "https://github.com/actions/runner/github-hosted",
                .receipt = true,
                .log_time_us = 1000000000000000,
                .now_us = 1000000000000000 + 3600 * 1000000LL,
        };
        char msg[300];
        size_t n;

        assert_int_equal(client_policy_parse(policy_text, strlen(policy_text), &p, msg, sizeof msg), 0);
        n = client_policy_check(&p.rules[0], &f, c);
        assert_int_equal(n, 5);
        for (size_t i = 0; i < n; i++)
                assert_true(c[i].ok);
        /* one microsecond older than max_age: refused */
        f.now_us++;
        f.source_ref = "refs/heads/hotfix";
        f.builder_id = NULL;
        n = client_policy_check(&p.rules[0], &f, c);
        assert_string_equal(c[2].field, "source_ref");
        assert_false(c[2].ok);
        assert_string_equal(c[2].value, "refs/heads/hotfix");
        assert_string_equal(c[2].allowed, "refs/heads/main, refs/heads/release/*");
        assert_string_equal(c[3].field, "builder_id");
        assert_false(c[3].ok);
        assert_string_equal(c[3].value, "(none)");
        assert_string_equal(c[4].field, "max_age");
        assert_false(c[4].ok);
        /* no receipt: the age is unknown, which is refused */
        f.now_us--;
        f.receipt = false;
        client_policy_check(&p.rules[0], &f, c);
        assert_false(c[4].ok);
        /* the prefix rule */
        f.source_uri = "https://github.com/acmeevil/widget";
        n = client_policy_check(&p.rules[1], &f, c);
        assert_int_equal(n, 1);
        assert_false(c[0].ok);
        assert_string_equal(c[0].allowed, "prefix https://github.com/acme/");
        client_policy_done(&p);
}

static void expect_bad_n(const char *text, size_t len, const char *want) {
        struct client_policy p = {};
        char msg[400] = "";

        if (client_policy_parse(text, len, &p, msg, sizeof msg) != -EINVAL)
                fail_msg("\"%s\" parsed", text);
        if (strncmp(msg, want, strlen(want)) != 0)
                fail_msg("\"%s\": got \"%s\", wanted \"%s...\"", text, msg, want);
        client_policy_done(&p);
}

static void expect_bad(const char *text, const char *want) {
        expect_bad_n(text, strlen(text), want);
}

static void test_policy_negative(void **state) {
        static const char nul[] = "[artifact a]\nprincipals = a\0b\n";

        expect_bad("", ": no [artifact");
        expect_bad("[artifact a]\nprincipals = a\nsource_branch = b\n", ":3: unknown key \"source_branch\"");
        expect_bad("[artifact a]\nprincipals = a\nprincipals = b\n", ":3: duplicate key principals");
        expect_bad("[artifact a]\n[artifact b]\nprincipals = a\n", ":1: [artifact \"a\"] allows everything");
        expect_bad("[artifact a]\nprincipals = a\n[artifact a]\nbuilder_ids = b\n", ":3: duplicate section");
        expect_bad("[artifact a\"b]\nprincipals = a\n", ":1: unknown section");
        expect_bad("[artifact]\nprincipals = a\n", ":1: unknown section");
        expect_bad("[artifact a]\nmax_age = -1s\n", ":2: bad duration");
        expect_bad("[artifact a]\nrequire_receipt = maybe\n", ":2: bad boolean");
        expect_bad("[artifact a]\nprincipals = , \n", ":2: principals is empty");
        expect_bad("[artifact a]\nprincipals\n", ":2: expected \"key = value\"");
        expect_bad_n(nul, sizeof nul - 1, ":2: NUL byte");
        expect_bad("principals = a\n", ":1: \"principals\" outside a section");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_statement_sources),
                cmocka_unit_test(test_statement_negative),
                cmocka_unit_test(test_policy_parse_and_match),
                cmocka_unit_test(test_policy_checks),
                cmocka_unit_test(test_policy_negative),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
