/* The export verifier's key-state checks (client/audit-log.h), on logs built
 * here entry by entry: rotation retires the previous key, revocation and
 * destruction end a key's signing, a principal signs only with its own
 * active key, and partial exports report keys first seen signing as
 * "unknown before range". The checkpoint is a well-formed note over the
 * real Merkle root, verified without a key (the signature checks are the
 * integration test's, on a real agent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "audit-log.h"
#include "base64.h"
#include "merkle.h"
#include "note.h"

#define KA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define KC "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define KN "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

struct log {
        proto_merkle_tree *tree;
        char **lines;
        size_t n;
};

static void add(struct log *l, int event, const char *principal, const char *keyid, const char *previous) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        Provsign__Caller c = PROVSIGN__CALLER__INIT;
        uint8_t digest[32] = { 1, 2, 3 };
        e.seq = l->n;
        e.time_us = 1764094801000000 + (int64_t) l->n;
        e.event = event;
        e.principal = (char *) principal;
        e.keyid = (char *) keyid;
        e.previous_keyid = (char *) (previous ? previous : "");
        if (event == PROVSIGN__AUDIT_EVENT__SIGN) {
                c.uid = 1000;
                e.caller = &c;
                e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
                e.digest.data = digest;
                e.digest.len = sizeof digest;
        }
        size_t n = protobuf_c_message_get_packed_size(&e.base);
        uint8_t *buf = malloc(n);
        assert_non_null(buf);
        protobuf_c_message_pack(&e.base, buf);
        uint8_t h[32];
        assert_int_equal(proto_merkle_leaf_hash(buf, n, h), 0);
        assert_int_equal(proto_merkle_tree_append(l->tree, h), 0);
        json_t *o = client_audit_entry_json(&e, buf, n);
        assert_non_null(o);
        l->lines = realloc(l->lines, (l->n + 1) * sizeof *l->lines);
        l->lines[l->n++] = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        free(buf);
}

/* The final object for [from, n) with a note that is well-formed but
 * signed by nobody: the verifier runs without a key here. */
static char *final_line(struct log *l, uint64_t from) {
        uint8_t root[32], left[64][32], right[64][32], sig[70] = { 0x30, 0x44 };
        size_t nl, nr;
        char *body = NULL, *note = NULL;
        assert_int_equal(proto_merkle_tree_root(l->tree, root), 0);
        assert_int_equal(proto_merkle_tree_range_proof(l->tree, from, l->n, l->n, left, &nl, right, &nr), 0);
        assert_int_equal(proto_checkpoint_format("test/log", l->n, root, &body), 0);
        uint8_t kh[4] = { 1, 2, 3, 4 };
        assert_int_equal(proto_note_assemble(body, "test/log", kh, sig, sizeof sig, &note), 0);
        json_t *jl = json_array(), *jr = json_array();
        for (size_t i = 0; i < nl + nr; i++) {
                char *b = proto_base64_encode(i < nl ? left[i] : right[i - nl], 32);
                json_array_append_new(i < nl ? jl : jr, json_string(b));
                free(b);
        }
        json_t *o = json_pack("{s:s, s:I, s:o, s:o, s:n}", "checkpoint", note, "tree_size", (json_int_t) l->n, "left",
                              jl, "right", jr, "consistency");
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        free(body);
        free(note);
        return s;
}

/* Verifies lines [from, n) plus the final object; returns 0 or 1 and the
 * failure. */
static int verify(struct log *l, uint64_t from, uint64_t *ret_seq, char *reason, size_t rlen,
                  json_t **ret_summary) {
        client_audit_verify *v;
        assert_int_equal(client_audit_verify_new(NULL, NULL, &v), 0);
        int r = 0;
        for (size_t i = from; i < l->n && r == 0; i++)
                r = client_audit_verify_line(v, l->lines[i], strlen(l->lines[i]));
        char *fin = final_line(l, from);
        if (r == 0)
                r = client_audit_verify_line(v, fin, strlen(fin));
        if (r == 0)
                r = client_audit_verify_finish(v);
        free(fin);
        if (r == 1) {
                bool has;
                const char *why;
                client_audit_verify_failure(v, &has, ret_seq, &why);
                snprintf(reason, rlen, "%s", why);
        } else if (ret_summary)
                *ret_summary = client_audit_verify_summary(v);
        client_audit_verify_free(v);
        return r;
}

static struct log *log_new(void) {
        struct log *l = calloc(1, sizeof *l);
        assert_int_equal(proto_merkle_tree_new(&l->tree), 0);
        return l;
}

static void log_free(struct log *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->lines[i]);
        free(l->lines);
        proto_merkle_tree_free(l->tree);
        free(l);
}

enum { CREATE = PROVSIGN__AUDIT_EVENT__KEY_CREATE, ROTATE = PROVSIGN__AUDIT_EVENT__KEY_ROTATE,
       REVOKE = PROVSIGN__AUDIT_EVENT__KEY_REVOKE, DESTROY = PROVSIGN__AUDIT_EVENT__KEY_DESTROY,
       SIGN = PROVSIGN__AUDIT_EVENT__SIGN };

static void test_lifecycle_verifies(void **state) {
        struct log *l = log_new();
        json_t *s = NULL;
        uint64_t seq;
        char why[512];
        add(l, CREATE, "log", KN, NULL);
        add(l, CREATE, "p", KA, NULL);
        add(l, SIGN, "p", KA, NULL);
        add(l, ROTATE, "p", KB, KA);
        add(l, SIGN, "p", KB, NULL);
        add(l, REVOKE, "p", KA, NULL);
        add(l, DESTROY, "p", KA, NULL);
        add(l, ROTATE, "p", KC, KB);
        add(l, SIGN, "p", KC, NULL);
        assert_int_equal(verify(l, 0, &seq, why, sizeof why, &s), 0);
        assert_int_equal(json_integer_value(json_object_get(s, "entries")), 9);
        assert_int_equal(json_integer_value(json_object_get(s, "keys")), 4);
        assert_int_equal(json_integer_value(json_object_get(s, "principals")), 1);
        json_decref(s);
        log_free(l);
}

static void expect_fail(struct log *l, uint64_t from, uint64_t want_seq, const char *want_reason) {
        uint64_t seq = 0;
        char why[512];
        assert_int_equal(verify(l, from, &seq, why, sizeof why, NULL), 1);
        assert_int_equal(seq, want_seq);
        assert_string_equal(why, want_reason);
}

static void test_retired_key(void **state) {
        struct log *l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, ROTATE, "p", KB, KA);
        add(l, SIGN, "p", KA, NULL);
        expect_fail(l, 0, 2, "signed by p with key " KA ", which was retired at seq 1 (not the principal's active key)");
        log_free(l);
}

static void test_revoked_and_destroyed_keys(void **state) {
        struct log *l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, REVOKE, "p", KA, NULL);
        add(l, SIGN, "p", KA, NULL);
        expect_fail(l, 0, 2, "signed by p with key " KA ", which was revoked at seq 1 (not the principal's active key)");
        log_free(l);
        l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, DESTROY, "p", KA, NULL);
        add(l, SIGN, "p", KA, NULL);
        expect_fail(l, 0, 2, "signed by p with key " KA ", which was destroyed at seq 1 (not the principal's active key)");
        log_free(l);
}

static void test_other_principals_key(void **state) {
        struct log *l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, CREATE, "q", KB, NULL);
        add(l, SIGN, "q", KA, NULL);
        expect_fail(l, 0, 2, "signed for q with key " KA ", which belongs to p");
        log_free(l);
}

static void test_adopted_key_is_retired(void **state) {
        /* A key created while another is active (adopted from the token) is retired. */
        struct log *l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, CREATE, "p", KB, NULL);
        add(l, SIGN, "p", KA, NULL);
        add(l, SIGN, "p", KB, NULL);
        expect_fail(l, 0, 3, "signed by p with key " KB ", which was retired at seq 1 (not the principal's active key)");
        log_free(l);
}

static void test_unknown_key_full_export(void **state) {
        struct log *l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, SIGN, "p", KB, NULL);
        expect_fail(l, 0, 1, "signed by p with key " KB
                    ", which is not a key of the principal (no KEY_CREATE or KEY_ROTATE before it)");
        log_free(l);
}

static void test_partial_export(void **state) {
        struct log *l = log_new();
        json_t *s = NULL;
        uint64_t seq;
        char why[512];
        add(l, CREATE, "p", KA, NULL);
        add(l, CREATE, "q", KC, NULL);
        add(l, SIGN, "p", KA, NULL);
        add(l, SIGN, "q", KC, NULL);
        add(l, SIGN, "p", KA, NULL);
        /* from 2: both keys are unknown before the range, taken as active */
        assert_int_equal(verify(l, 2, &seq, why, sizeof why, &s), 0);
        assert_int_equal(json_integer_value(json_object_get(s, "keys_unknown_before_range")), 2);
        json_decref(s);
        /* a rotation inside the range still retires the key first seen signing */
        add(l, ROTATE, "p", KB, KA);
        add(l, SIGN, "p", KA, NULL);
        expect_fail(l, 2, 6, "signed by p with key " KA ", which was retired at seq 5 (not the principal's active key)");
        log_free(l);
        /* after a key event of the principal in range, an unknown key is a failure */
        l = log_new();
        add(l, CREATE, "p", KA, NULL);
        add(l, SIGN, "p", KA, NULL);
        add(l, ROTATE, "p", KB, KA);
        add(l, SIGN, "p", KC, NULL);
        expect_fail(l, 1, 3, "signed by p with key " KC ", which is not a key of the principal (the principal has key "
                    "events in the range, none names it)");
        log_free(l);
}

/* CSV export: a signer's payload_type or annotation that a spreadsheet
 * would run as a formula comes out as text (a leading single quote). */
static void test_csv_neutralises_formulas(void **state) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        Provsign__Caller c = PROVSIGN__CALLER__INIT;
        Provsign__Annotation a = PROVSIGN__ANNOTATION__INIT, *ap = &a;
        uint8_t digest[32] = { 1 }, buf[1024];
        char *out = NULL;
        size_t len = 0;
        (void) state;

        e.seq = 7;
        e.time_us = 1764094801000000;
        e.event = PROVSIGN__AUDIT_EVENT__SIGN;
        e.principal = (char *) "+ci";
        e.keyid = (char *) KA;
        c.uid = 1000;
        c.exe = (char *) "@/usr/bin/evil";
        e.caller = &c;
        e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        e.digest.data = digest;
        e.digest.len = sizeof digest;
        e.payload_type = (char *) "=HYPERLINK(\"https://evil.example/\",\"x\")";
        a.key = (char *) "k";
        a.value = (char *) "-1+1";
        e.n_annotations = 1;
        e.annotations = &ap;
        size_t n = protobuf_c_message_get_packed_size(&e.base);
        assert_true(n <= sizeof buf);
        protobuf_c_message_pack(&e.base, buf);
        json_t *o = client_audit_entry_json(&e, buf, n);
        assert_non_null(o);
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        assert_int_equal(client_audit_csv_row(f, o), 0);
        fclose(f);
        json_decref(o);
        assert_non_null(strstr(out, ",\"'=HYPERLINK(\"\"https://evil.example/\"\",\"\"x\"\")\","));
        assert_non_null(strstr(out, ",\"'+ci\","));
        assert_null(strstr(out, ",=HYPERLINK"));
        assert_null(strstr(out, ",\"=HYPERLINK"));
        /* cells that start otherwise are as before: no quote added */
        assert_non_null(strstr(out, "7,"));
        assert_null(strstr(out, "'7"));
        free(out);

        /* each formula lead character, and tab and CR */
        static const char *const leads[] = { "=1", "+1", "-1", "@x", "\tx", "\rx" };
        for (size_t i = 0; i < sizeof leads / sizeof leads[0]; i++) {
                json_t *row = json_pack("{s:s}", "payload_type", leads[i]);
                f = open_memstream(&out, &len);
                assert_int_equal(client_audit_csv_row(f, row), 0);
                fclose(f);
                assert_non_null(strstr(out, ",\"'"));
                free(out);
                json_decref(row);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lifecycle_verifies),
                cmocka_unit_test(test_retired_key),
                cmocka_unit_test(test_revoked_and_destroyed_keys),
                cmocka_unit_test(test_other_principals_key),
                cmocka_unit_test(test_adopted_key_is_retired),
                cmocka_unit_test(test_unknown_key_full_export),
                cmocka_unit_test(test_partial_export),
                cmocka_unit_test(test_csv_neutralises_formulas),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
