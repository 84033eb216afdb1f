/* sign-many: provsign_sign_many() against a real agent, for
 * tests/integration/test-pipeline.sh. Signs COUNT random SHA-256 digests
 * for PRINCIPAL on one connection with WINDOW requests in flight and checks
 * every item that came back signed, independently of the library: the
 * signature verifies with OpenSSL against PUBKEY_PEM over its own digest
 * (a reply matched to the wrong digest fails), the receipt is there, its
 * leaf (the log entry) holds the digest, its checkpoint's signature
 * verifies with LOG_KEY_PEM, and no two items share a log position.
 *
 * Prints one line per item, "INDEX RESULT LOG_SEQ" (LOG_SEQ "-" when not
 * signed), then "signed N failed M". Exit status: 0 when every signed item
 * passed its checks and (without --partial) every item was signed; with
 * --partial failed items are allowed, but only as transport failures
 * (the agent went away), never as refusals or bad replies. 1 otherwise. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "provsign.h"

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        if (getdelim(&buf, &n, '\0', f) < 0) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        return buf;
}

static bool verify_sig(EVP_PKEY *pub, const uint8_t *digest, size_t digest_len, const uint8_t *sig, size_t sig_len) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
        bool ok = ctx && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
                  EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1;

        EVP_PKEY_CTX_free(ctx);
        return ok;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        bool partial = argc > 1 && strcmp(argv[1], "--partial") == 0;
        if (partial) {
                argc--;
                argv++;
        }
        if (argc != 7) {
                fprintf(stderr, "usage: sign-many [--partial] SOCKET PRINCIPAL COUNT WINDOW PUBKEY_PEM LOG_KEY_PEM\n");
                return 2;
        }
        size_t n = strtoul(argv[3], NULL, 10), window = strtoul(argv[4], NULL, 10);
        char *log_key = read_text(argv[6]);
        FILE *pf = fopen(argv[5], "re");
        EVP_PKEY *pub = pf ? PEM_read_PUBKEY(pf, NULL, NULL, NULL) : NULL;
        if (pf)
                fclose(pf);
        if (n == 0 || !pub || !log_key) {
                fprintf(stderr, "sign-many: bad count, public key or log key\n");
                return 2;
        }

        uint8_t (*digests)[32] = calloc(n, sizeof *digests);
        const void **dp = calloc(n, sizeof *dp);
        int *results = calloc(n, sizeof *results);
        provsign_signature **sigs = calloc(n, sizeof *sigs);
        uint64_t *seqs = calloc(n, sizeof *seqs);
        if (!digests || !dp || !results || !sigs || !seqs || RAND_bytes((uint8_t *) digests, (int) (n * 32)) != 1)
                return 2;
        for (size_t i = 0; i < n; i++)
                dp[i] = digests[i];

        provsign_conn *conn = NULL;
        int r = provsign_connect(argv[1], &conn);
        if (r < 0)
                fprintf(stderr, "sign-many: connect: %s\n", provsign_strerror(r));
        else
                r = provsign_sign_many(conn, argv[2], PROVSIGN_DIGEST_SHA256, dp, 32, n, "application/vnd.test", NULL,
                                       0, window, results, sigs);

        size_t signed_n = 0, failed = 0, bad = r < 0 && !conn;
        int first = 0;
        for (size_t i = 0; i < n && conn; i++) {
                if (results[i] != 0) {
                        printf("%zu %d -\n", i, results[i]);
                        failed++;
                        if (!first)
                                first = results[i];
                        if (sigs[i]) {
                                fprintf(stderr, "item %zu: failed (%d) but has a signature\n", i, results[i]);
                                bad++;
                        }
                        /* Refusals and bad replies are never fine here; a
                         * connection that went away is, with --partial. */
                        if (!partial || results[i] > 0 || results[i] == -EPROTO) {
                                fprintf(stderr, "item %zu: %s\n", i, provsign_strerror(results[i]));
                                bad++;
                        }
                        continue;
                }
                const provsign_signature *s = sigs[i];
                size_t der_len = 0, leaf_len = 0;
                const uint8_t *der = s ? provsign_signature_der(s, &der_len) : NULL;
                const uint8_t *leaf = s ? provsign_signature_leaf(s, &leaf_len) : NULL;
                uint64_t size = 0;
                if (!s || !verify_sig(pub, digests[i], 32, der, der_len)) {
                        fprintf(stderr, "item %zu: the signature does not verify over its digest\n", i);
                        bad++;
                } else if (!provsign_signature_has_receipt(s) || !leaf || !memmem(leaf, leaf_len, digests[i], 32)) {
                        fprintf(stderr, "item %zu: no receipt of its digest\n", i);
                        bad++;
                } else if (provsign_verify_checkpoint(provsign_signature_checkpoint(s), log_key, &size) != 0 ||
                           size != provsign_signature_tree_size(s) || provsign_signature_log_seq(s) >= size) {
                        fprintf(stderr, "item %zu: the checkpoint does not verify with the log key\n", i);
                        bad++;
                }
                if (s) {
                        seqs[signed_n++] = provsign_signature_log_seq(s);
                        printf("%zu 0 %llu\n", i, (unsigned long long) provsign_signature_log_seq(s));
                }
        }
        qsort(seqs, signed_n, sizeof *seqs, cmp_u64);
        for (size_t i = 1; i < signed_n; i++)
                if (seqs[i] == seqs[i - 1]) {
                        fprintf(stderr, "log position %llu given twice\n", (unsigned long long) seqs[i]);
                        bad++;
                }
        if (conn && r != first) {
                fprintf(stderr, "provsign_sign_many returned %d, its first failed item %d\n", r, first);
                bad++;
        }
        printf("signed %zu failed %zu\n", signed_n, failed);

        for (size_t i = 0; i < n; i++)
                provsign_signature_free(sigs[i]);
        provsign_close(conn);
        EVP_PKEY_free(pub);
        free(log_key);
        free(digests);
        free(dp);
        free(results);
        free(sigs);
        free(seqs);
        return bad ? 1 : 0;
}
