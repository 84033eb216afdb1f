#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "hex.h"
#include "keyid.h"

void proto_keyid_compute(const uint8_t *spki_der, size_t len, uint8_t out[PROTO_KEYID_LEN]) {
        SHA256(spki_der, len, out);
}

void proto_keyid_hex(const uint8_t *spki_der, size_t len, char out[PROTO_KEYID_HEX_LEN + 1]) {
        uint8_t id[PROTO_KEYID_LEN];
        proto_keyid_compute(spki_der, len, id);
        proto_hex_encode(id, sizeof id, out);
}

bool proto_keyid_hex_valid(const char *s) {
        if (strlen(s) != PROTO_KEYID_HEX_LEN)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return false;
        return true;
}

int proto_spki_pem(const uint8_t *der, size_t len, char **ret) {
        const uint8_t *p = der;
        if (len > LONG_MAX)
                return -EINVAL;
        EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey || p != der + len) {
                EVP_PKEY_free(pkey);
                return -EINVAL;
        }
        BIO *bio = BIO_new(BIO_s_mem());
        int r = -ENOMEM;
        if (!bio || !PEM_write_bio_PUBKEY(bio, pkey))
                goto out;
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        char *pem = strndup(data, (size_t) n);
        if (!pem)
                goto out;
        *ret = pem;
        r = 0;
out:
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        return r;
}
