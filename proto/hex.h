/* Lowercase hex, as key ids and digests are written everywhere. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* proto_hex_encode: writes 2*len lowercase hex digits and a NUL to out
 * (which must hold 2*len+1 bytes). */
void proto_hex_encode(const uint8_t *in, size_t len, char *out);

/* proto_hex_decode: decodes an even-length hex string of at most 2*max
 * digits into out. 0 with *ret_len set, or -EINVAL on odd length, a
 * non-hex character or more than max bytes. */
int proto_hex_decode(const char *hex, uint8_t *out, size_t max, size_t *ret_len);
