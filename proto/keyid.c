#include <string.h>

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
