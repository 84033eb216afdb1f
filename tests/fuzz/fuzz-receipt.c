/* Fuzzes the receipt JSON reader and the receipt checks
 * (client/receipt-json.h, client/receipt.h): the input is a file given to
 * `provsign receipt verify`, a receipt or a whole `sign --json` output,
 * verified with the corpus test key (tests/fuzz/fuzz-keys.h).
 *
 * Invariants:
 *   - client_receipt_verify_text returns -EBADMSG (malformed; detail says
 *     which field), 0 (verified) or the first failed check 1..5, and the
 *     detail is empty exactly when it returns 0;
 *   - a parsed document is coherent: leaf, checkpoint non-NULL; proof
 *     non-NULL exactly when it has hashes, at most PROTO_MERKLE_MAX_PROOF;
 *     a whole sign output has its keyid and principal;
 *   - JSON round trip: client_receipt_to_json() of a parsed receipt never
 *     fails, and its text parses back to the same receipt;
 *   - the checks without the log key (what libprovsign runs on every Sign
 *     reply) are weaker, never stricter: when the keyed verification passes
 *     check 1, the key-less one stops at the same check;
 *   - a verified receipt's verified_json report is built and freed. */

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "receipt-json.h"
#include "receipt.h"

#include "fuzz-keys.h"
#include "fuzz.h"

static void check_doc(const struct client_receipt_doc *doc) {
        FUZZ_CHECK(doc->rc.leaf && doc->rc.leaf == doc->leaf);
        FUZZ_CHECK(doc->rc.checkpoint && doc->rc.checkpoint == doc->checkpoint);
        FUZZ_CHECK(doc->rc.n_proof <= PROTO_MERKLE_MAX_PROOF);
        FUZZ_CHECK((doc->rc.n_proof > 0) == (doc->rc.proof != NULL));
        FUZZ_CHECK(!doc->whole || (doc->keyid && doc->principal));
        FUZZ_CHECK(doc->rc.log_time_us >= 0 && doc->rc.log_time_us < PROTO_TIME_US_END);
}

static void check_round_trip(const struct client_receipt_doc *doc) {
        struct client_receipt_doc back = {};
        char detail[256];
        json_t *j;
        char *text;

        j = client_receipt_to_json(&doc->rc);
        FUZZ_CHECK(j);
        text = json_dumps(j, JSON_COMPACT);
        FUZZ_CHECK(text);
        FUZZ_CHECK(client_receipt_doc_parse(text, strlen(text), &back, detail, sizeof detail) == 0);
        FUZZ_CHECK(!back.whole);
        FUZZ_CHECK(back.rc.log_seq == doc->rc.log_seq && back.rc.log_time_us == doc->rc.log_time_us);
        FUZZ_CHECK(back.rc.tree_size == doc->rc.tree_size);
        FUZZ_CHECK(back.rc.leaf_len == doc->rc.leaf_len &&
                   memcmp(back.rc.leaf, doc->rc.leaf, doc->rc.leaf_len) == 0);
        FUZZ_CHECK(back.rc.n_proof == doc->rc.n_proof);
        if (doc->rc.n_proof > 0)
                FUZZ_CHECK(memcmp(back.rc.proof, doc->rc.proof, doc->rc.n_proof * PROTO_MERKLE_HASH_LEN) == 0);
        FUZZ_CHECK(strcmp(back.rc.checkpoint, doc->rc.checkpoint) == 0);
        client_receipt_doc_done(&back);
        free(text);
        json_decref(j);
}

/* The key-less checks of libprovsign on the same receipt. */
static void check_keyless(const struct client_receipt_doc *doc, int keyed) {
        struct client_receipt_signer signer = { .keyid = doc->keyid, .principal = doc->principal };
        struct client_receipt_result res = {};
        int r;

        r = client_receipt_verify(&doc->rc, doc->whole ? &signer : NULL, NULL, &res);
        FUZZ_CHECK(r >= CLIENT_RECEIPT_VERIFIED && r <= CLIENT_RECEIPT_SIGNER);
        if (keyed != CLIENT_RECEIPT_CHECKPOINT)
                FUZZ_CHECK(r == keyed);
        client_receipt_result_done(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct client_receipt_doc doc = {};
        struct client_receipt_result res = {};
        int r;

        /* the CLI reads at most this much */
        if (size > CLIENT_RECEIPT_FILE_MAX)
                return 0;

        r = client_receipt_verify_text((const char *) data, size, fuzz_corpus_pem, &doc, &res);
        FUZZ_CHECK(memchr(res.detail, '\0', sizeof res.detail));
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG);
                FUZZ_CHECK(res.detail[0]);
                goto out;
        }
        FUZZ_CHECK(r >= CLIENT_RECEIPT_VERIFIED && r <= CLIENT_RECEIPT_SIGNER);
        FUZZ_CHECK((r == CLIENT_RECEIPT_VERIFIED) == (res.detail[0] == '\0'));
        FUZZ_CHECK(r != CLIENT_RECEIPT_SIGNER || doc.whole);

        check_doc(&doc);
        check_round_trip(&doc);
        check_keyless(&doc, r);

        if (r == CLIENT_RECEIPT_VERIFIED) {
                /* NULL only for strings that are not UTF-8 */
                json_decref(client_receipt_verified_json(&doc, &res));
        }
out:
        client_receipt_result_done(&res);
        client_receipt_doc_done(&doc);
        return 0;
}
