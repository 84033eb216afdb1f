#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base64.h"

void proto_base64_encode_to(const uint8_t *in, size_t n, char *out) {
        EVP_EncodeBlock((unsigned char *) out, in, (int) n);
}

char *proto_base64_encode(const uint8_t *in, size_t n) {
        if (n > PROTO_BASE64_MAX_INPUT)
                return NULL;
        char *out = malloc(PROTO_BASE64_LEN(n) + 1);
        if (out)
                proto_base64_encode_to(in, n, out);
        return out;
}

static bool b64_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int proto_base64_decode_to(const char *in, size_t n, uint8_t *out, size_t out_size, size_t *ret_len) {
        size_t pad = 0, dlen;
        int k, r;

        if (n % 4 != 0 || n > PROTO_BASE64_LEN(PROTO_BASE64_MAX_INPUT))
                return -EBADMSG;
        if (n == 0) {
                *ret_len = 0;
                return 0;
        }
        if (in[n - 1] == '=')
                pad = in[n - 2] == '=' ? 2 : 1;
        for (size_t i = 0; i < n - pad; i++)
                if (!b64_char(in[i]))
                        return -EBADMSG;
        if (out_size < n / 4 * 3)
                return -EBADMSG;
        /* EVP_DecodeBlock would skip surrounding whitespace and counts the
         * padding as zero bytes: the checks above and below handle both. */
        k = EVP_DecodeBlock(out, (const unsigned char *) in, (int) n);
        if (k < 0 || (size_t) k != n / 4 * 3)
                return -EBADMSG;
        dlen = (size_t) k - pad;

        char *check = malloc(n + 1);
        if (!check)
                return -ENOMEM;
        proto_base64_encode_to(out, dlen, check);
        r = memcmp(check, in, n) == 0 ? 0 : -EBADMSG;
        free(check);
        if (r < 0)
                return r;
        *ret_len = dlen;
        return 0;
}

int proto_base64_decode(const char *in, size_t n, uint8_t **ret, size_t *ret_len) {
        uint8_t *out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        size_t len;
        int r = proto_base64_decode_to(in, n, out, n / 4 * 3, &len);
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        *ret_len = len;
        return 0;
}
