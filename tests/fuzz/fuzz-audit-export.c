/* Fuzzes the offline verifier of audit exports (client/audit-log.h): the
 * input is an export file given to `provsign audit verify`, fed line by
 * line as the CLI does, verified once with the corpus test key
 * (tests/fuzz/fuzz-keys.h) and once without a key (signature not checked,
 * so the Merkle range, consistency and key-state checks are reached with
 * any checkpoint).
 *
 * Invariants:
 *   - every call returns 0, 1 (failed) or -ENOMEM; once a call returned 1
 *     every later one does too, and the failure has a non-empty reason;
 *   - the key-less verification is weaker, never stricter: when the keyed
 *     one verifies, so does the key-less one;
 *   - a verified export's summary is built, counts as many entries as the
 *     export has entry lines, and its seqs span them. */

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "audit-log.h"

#include "fuzz-keys.h"
#include "fuzz.h"

static int run(const uint8_t *data, size_t size, const char *pem, uint64_t *ret_lines) {
        client_audit_verify *v = NULL;
        uint64_t lines = 0;
        int r;

        if (client_audit_verify_new(pem, NULL, &v) < 0)
                return -ENOMEM;
        r = 0;
        for (size_t off = 0; off < size && r == 0;) {
                const uint8_t *nl = memchr(data + off, '\n', size - off);
                size_t len = nl ? (size_t) (nl - (data + off)) : size - off;
                r = client_audit_verify_line(v, (const char *) data + off, len);
                FUZZ_CHECK(r == 0 || r == 1 || r == -ENOMEM);
                lines++;
                off += len + 1;
        }
        if (r == 0)
                r = client_audit_verify_finish(v);
        FUZZ_CHECK(r == 0 || r == 1 || r == -ENOMEM);
        if (r == 1) {
                bool has_seq;
                uint64_t seq;
                const char *reason;
                client_audit_verify_failure(v, &has_seq, &seq, &reason);
                FUZZ_CHECK(reason && reason[0]);
                FUZZ_CHECK(client_audit_verify_line(v, "{}", 2) == 1);
                FUZZ_CHECK(client_audit_verify_finish(v) == 1);
        }
        if (r == 0) {
                json_t *s = client_audit_verify_summary(v);
                if (s) {
                        json_int_t n = json_integer_value(json_object_get(s, "entries"));
                        json_int_t first = json_integer_value(json_object_get(s, "first_seq"));
                        json_int_t last = json_integer_value(json_object_get(s, "last_seq"));
                        /* all lines but the final object are entries */
                        FUZZ_CHECK(n >= 1 && (uint64_t) n + 1 == lines);
                        FUZZ_CHECK(last - first + 1 == n);
                        json_decref(s);
                }
        }
        client_audit_verify_free(v);
        *ret_lines = lines;
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint64_t l1, l2;
        int keyed = run(data, size, fuzz_corpus_pem, &l1);
        int keyless = run(data, size, NULL, &l2);
        if (keyed == 0 && keyless != -ENOMEM)
                FUZZ_CHECK(keyless == 0);
        return 0;
}
