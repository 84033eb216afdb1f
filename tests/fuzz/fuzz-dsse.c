/* Fuzzes DSSE envelopes (proto/dsse.h): the input is envelope JSON as
 * `provsign verify` reads it from a file, and the key bundle as the agent
 * sends it.
 *
 * Invariants:
 *   - proto_dsse_envelope_parse: 0, -EBADMSG or -EMSGSIZE; the out-parameter
 *     is untouched on failure;
 *   - on success: a non-empty payloadType without NUL of at most
 *     PROTO_DSSE_MAX_TYPE bytes, 1..PROTO_DSSE_MAX_SIGS signatures, each
 *     non-empty and at most PROTO_DSSE_MAX_SIG bytes; formatting the parts
 *     again gives an envelope that parses to the same parts (round trip), and
 *     the PAE of the parts has the length the spec says;
 *   - the PAE digest (SHA-256 and SHA-384) of the parts is the digest of the
 *     PAE bytes.
 * Seeds: tests/fuzz/corpus/dsse/, written by hand: envelopes as provsign
 * writes them (in-toto, empty payload without keyid, two signatures) and
 * malformed ones (non-canonical base64, no signatures, NUL in payloadType,
 * a duplicate key, an unknown key). Their signatures are not valid: the
 * harness checks parsing and formatting, not keys. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "dsse.h"
#include "provsign.pb-c.h"

#include "fuzz.h"

static void same(const struct proto_dsse_envelope *a, const struct proto_dsse_envelope *b) {
        FUZZ_CHECK(strcmp(a->payload_type, b->payload_type) == 0);
        FUZZ_CHECK(a->payload_len == b->payload_len && memcmp(a->payload, b->payload, a->payload_len) == 0);
        FUZZ_CHECK(a->n_sigs == b->n_sigs);
        for (size_t i = 0; i < a->n_sigs; i++) {
                FUZZ_CHECK(!a->sigs[i].keyid == !b->sigs[i].keyid);
                FUZZ_CHECK(!a->sigs[i].keyid || strcmp(a->sigs[i].keyid, b->sigs[i].keyid) == 0);
                FUZZ_CHECK(a->sigs[i].sig_len == b->sigs[i].sig_len &&
                           memcmp(a->sigs[i].sig, b->sigs[i].sig, a->sigs[i].sig_len) == 0);
        }
}

static void check_digest(int dalg, const EVP_MD *md, const struct proto_dsse_envelope *e, const uint8_t *pae,
                         size_t pae_len) {
        uint8_t d[PROTO_DSSE_MAX_DIGEST], want[EVP_MAX_MD_SIZE];
        unsigned int wlen = 0;
        int n = proto_dsse_pae_digest(dalg, e->payload_type, e->payload, e->payload_len, d);

        FUZZ_CHECK(EVP_Digest(pae, pae_len, want, &wlen, md, NULL) == 1);
        FUZZ_CHECK(n > 0 && (unsigned int) n == wlen && memcmp(d, want, wlen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct proto_dsse_envelope *e = (struct proto_dsse_envelope *) 1, *e2 = NULL;
        char *json = NULL, head[64];
        uint8_t *pae = NULL;
        size_t pae_len, tlen;
        int r;

        r = proto_dsse_envelope_parse((const char *) data, size, &e);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
                FUZZ_CHECK(e == (struct proto_dsse_envelope *) 1);
                return 0;
        }
        FUZZ_CHECK(r == 0 && e);
        tlen = strlen(e->payload_type);
        FUZZ_CHECK(tlen > 0 && tlen <= PROTO_DSSE_MAX_TYPE);
        FUZZ_CHECK(e->payload && e->payload_len <= PROTO_DSSE_MAX_PAYLOAD);
        FUZZ_CHECK(e->n_sigs >= 1 && e->n_sigs <= PROTO_DSSE_MAX_SIGS);
        for (size_t i = 0; i < e->n_sigs; i++)
                FUZZ_CHECK(e->sigs[i].sig_len >= 1 && e->sigs[i].sig_len <= PROTO_DSSE_MAX_SIG);

        FUZZ_CHECK(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, e->sigs, e->n_sigs, &json) ==
                   0);
        FUZZ_CHECK(proto_dsse_envelope_parse(json, strlen(json), &e2) == 0);
        same(e, e2);

        FUZZ_CHECK(proto_dsse_pae(e->payload_type, e->payload, e->payload_len, &pae, &pae_len) == 0);
        snprintf(head, sizeof head, "DSSEv1 %zu ", tlen);
        FUZZ_CHECK(pae_len > strlen(head) + tlen + e->payload_len);
        FUZZ_CHECK(memcmp(pae, head, strlen(head)) == 0);
        FUZZ_CHECK(memcmp(pae + strlen(head), e->payload_type, tlen) == 0);
        FUZZ_CHECK(e->payload_len == 0 || memcmp(pae + pae_len - e->payload_len, e->payload, e->payload_len) == 0);
        check_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, EVP_sha256(), e, pae, pae_len);
        check_digest(PROVSIGN__DIGEST_ALGORITHM__SHA384, EVP_sha384(), e, pae, pae_len);

        free(pae);
        free(json);
        proto_dsse_envelope_free(e2);
        proto_dsse_envelope_free(e);
        return 0;
}
