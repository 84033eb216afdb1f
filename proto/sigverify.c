/* Keys and digest signatures: see sigverify.h. */
#include <errno.h>
#include <limits.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "keyid.h"
#include "provsign.pb-c.h"
#include "sigverify.h"

EVP_PKEY *proto_pkey_from_pem(const char *pem) {
        EVP_PKEY *pkey = NULL;
        BIO *bio = BIO_new_mem_buf(pem, -1);

        if (bio)
                pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        ERR_clear_error();
        return pkey;
}

bool proto_pkey_keyid(EVP_PKEY *pkey, char out[PROTO_KEYID_HEX_LEN + 1]) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pkey, &der);

        if (len <= 0)
                return false;
        proto_keyid_hex(der, (size_t) len, out);
        OPENSSL_free(der);
        return true;
}

int proto_verify_digest(EVP_PKEY *pkey, int digest_alg, const uint8_t *digest, size_t len, const uint8_t *sig,
                        size_t sig_len) {
        const EVP_MD *md = digest_alg == PROVSIGN__DIGEST_ALGORITHM__SHA384 ? EVP_sha384() : EVP_sha256();
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
        int r = 0;

        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_verify_init(ctx) != 1)
                goto out;
        if (EVP_PKEY_is_a(pkey, "RSA") &&
            (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 || EVP_PKEY_CTX_set_signature_md(ctx, md) != 1))
                goto out;
        r = EVP_PKEY_verify(ctx, sig, sig_len, digest, len) == 1;
out:
        ERR_clear_error();
        EVP_PKEY_CTX_free(ctx);
        return r;
}

int proto_verify_digest_spki(const uint8_t *der, size_t der_len, int digest_alg, const uint8_t *digest, size_t len,
                             const uint8_t *sig, size_t sig_len) {
        const unsigned char *p = der;
        EVP_PKEY *pkey;
        int r = 0;

        if (der_len > LONG_MAX)
                return 0;
        pkey = d2i_PUBKEY(NULL, &p, (long) der_len);
        if (pkey && p == der + der_len)
                r = proto_verify_digest(pkey, digest_alg, digest, len, sig, sig_len);
        ERR_clear_error();
        EVP_PKEY_free(pkey);
        return r;
}
