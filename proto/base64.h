/* Standard base64 (RFC 4648 §4, padded) for every format that carries it:
 * checkpoint notes, receipts, CLI output. Encoding and decoding are
 * OpenSSL's; what is added here is strictness for untrusted input. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Length of the padded encoding of n bytes; a constant expression. */
#define PROTO_BASE64_LEN(n) (((n) + 2) / 3 * 4)

/* Inputs above this are refused (they never come in a 64 KiB frame or a
 * receipt file). */
#define PROTO_BASE64_MAX_INPUT (1024u * 1024u)

/* proto_base64_encode_to: writes PROTO_BASE64_LEN(n) characters and a NUL
 * to out. n <= PROTO_BASE64_MAX_INPUT. */
void proto_base64_encode_to(const uint8_t *in, size_t n, char *out);

/* proto_base64_encode: a new NUL-terminated string (caller frees), or NULL
 * when out of memory or n > PROTO_BASE64_MAX_INPUT. */
char *proto_base64_encode(const uint8_t *in, size_t n);

/* proto_base64_decode_to: strict decoding of untrusted in[0..n) into
 * out[0..out_size): only the canonical encoding (a multiple of 4 characters
 * of the RFC 4648 §4 alphabet, '=' only as the last one or two, unused bits
 * zero — checked by re-encoding), no whitespace. n may be 0. 0 and
 * *ret_len; -EBADMSG (also when out_size < 3 * n / 4); -ENOMEM. */
int proto_base64_decode_to(const char *in, size_t n, uint8_t *out, size_t out_size, size_t *ret_len);

/* proto_base64_decode: the same into a new buffer (caller frees; non-NULL
 * even for an empty result). */
int proto_base64_decode(const char *in, size_t n, uint8_t **ret, size_t *ret_len);
