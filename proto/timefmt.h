/* RFC 3339 UTC times with microseconds: how every provsign format writes a
 * log time (receipts, exports, key bundles). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Log times are RFC 3339 UTC with exactly six fractional digits and "Z"
 * ("2026-11-25T18:20:01.123456Z"). Representable: 1970-01-01T00:00:00Z up
 * to the end of year 9999, i.e. 0 <= us < PROTO_TIME_US_END. */
#define PROTO_TIME_US_END INT64_C(253402300800000000)
#define PROTO_TIME_LEN 27u

/* proto_time_format_us: writes the RFC 3339 form of us and a NUL to buf.
 * false (buf untouched) when us is outside the representable range. */
bool proto_time_format_us(int64_t us, char buf[static PROTO_TIME_LEN + 1]);

/* proto_time_parse_us: parses exactly the form proto_time_format_us()
 * writes (no other offsets, precisions or lower-case letters). 0 with *ret,
 * or -EINVAL. */
int proto_time_parse_us(const char *s, int64_t *ret);

/* proto_time_parse_rfc3339_us: any RFC 3339 date-time a person may type,
 * "YYYY-MM-DDTHH:MM:SS" with an optional fraction (1-9 digits, truncated to
 * microseconds) and "Z" or a "+HH:MM"/"-HH:MM" offset ('t'/'z' and a space
 * for 'T' accepted). 0 with *ret (UTC microseconds, >= 0), or -EINVAL. */
int proto_time_parse_rfc3339_us(const char *s, int64_t *ret);
