#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

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

int proto_spki_pem_encode(const uint8_t *der, size_t len, char **ret) {
        static const char head[] = "-----BEGIN PUBLIC KEY-----\n";
        static const char tail[] = "-----END PUBLIC KEY-----\n";
        size_t n_lines, cap;
        char *pem, *p;

        if (!der || len == 0 || len > PROTO_SPKI_MAX || !ret)
                return -EINVAL;

        /* 48 input bytes make one 64-column line, as PEM_write_PUBKEY(). */
        n_lines = (len + 47) / 48;
        cap = (sizeof head - 1) + 4 * ((len + 2) / 3) + n_lines + (sizeof tail - 1) + 1;
        pem = malloc(cap);
        if (!pem)
                return -ENOMEM;

        p = stpcpy(pem, head);
        for (size_t off = 0; off < len; off += 48) {
                size_t chunk = len - off < 48 ? len - off : 48;

                p += EVP_EncodeBlock((unsigned char *) p, der + off, (int) chunk);
                *p++ = '\n';
        }
        stpcpy(p, tail);

        *ret = pem;
        return 0;
}

int proto_spki_pem(const uint8_t *der, size_t len, char **ret) {
        const uint8_t *p = der;
        EVP_PKEY *pkey;

        if (!der || len == 0 || len > PROTO_SPKI_MAX)
                return -EINVAL;
        pkey = d2i_PUBKEY(NULL, &p, (long) len);
        EVP_PKEY_free(pkey);
        if (!pkey || p != der + len)
                return -EINVAL;
        return proto_spki_pem_encode(der, len, ret);
}
