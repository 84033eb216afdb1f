/* Durations as people write them in configs and on command lines: "30s",
 * "5m", "12h", "90d", or a bare number of seconds. */
#pragma once

#include <stdint.h>

/* proto_duration_parse: s as above into *ret_s (seconds). 0, -EINVAL for
 * anything else (a sign, blanks, another unit, an empty string), -ERANGE
 * when it does not fit 64 bits. */
int proto_duration_parse(const char *s, uint64_t *ret_s);
