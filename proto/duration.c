/* Durations: see duration.h. */
#include <errno.h>
#include <stdint.h>

#include "duration.h"

int proto_duration_parse(const char *s, uint64_t *ret_s) {
        uint64_t v = 0, mult;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        switch (*s) {
        case '\0':
        case 's':
                mult = 1;
                break;
        case 'm':
                mult = 60;
                break;
        case 'h':
                mult = 3600;
                break;
        case 'd':
                mult = 86400;
                break;
        default:
                return -EINVAL;
        }
        if (*s && s[1])
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret_s = v * mult;
        return 0;
}
