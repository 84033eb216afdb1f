#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "timefmt.h"

bool proto_time_format_us(int64_t us, char buf[static PROTO_TIME_LEN + 1]) {
        char tmp[64];
        struct tm tm;
        time_t t;

        if (us < 0 || us >= PROTO_TIME_US_END)
                return false;
        t = (time_t) (us / 1000000);
        if (!gmtime_r(&t, &tm))
                return false;
        if (snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     us % 1000000) != (int) PROTO_TIME_LEN)
                return false;
        memcpy(buf, tmp, PROTO_TIME_LEN + 1);
        return true;
}

static int digits(const char *s, size_t n) {
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

int proto_time_parse_us(const char *s, int64_t *ret) {
        /* "YYYY-MM-DDTHH:MM:SS.ffffffZ": the fixed punctuation, then digits
         * everywhere else. */
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
        char check[PROTO_TIME_LEN + 1];
        struct tm tm = {};
        int frac;
        time_t t;
        int64_t us;

        if (!s || strlen(s) != PROTO_TIME_LEN)
                return -EINVAL;
        for (size_t i = 0; i < PROTO_TIME_LEN; i++)
                if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
                        return -EINVAL;

        tm.tm_year = digits(s, 4) - 1900;
        tm.tm_mon = digits(s + 5, 2) - 1;
        tm.tm_mday = digits(s + 8, 2);
        tm.tm_hour = digits(s + 11, 2);
        tm.tm_min = digits(s + 14, 2);
        tm.tm_sec = digits(s + 17, 2);
        frac = digits(s + 20, 6);

        t = timegm(&tm);
        if (t == (time_t) -1 || t < 0)
                return -EINVAL;
        us = (int64_t) t * 1000000 + frac;

        /* timegm() normalizes February 30th and 25 o'clock; only a time that
         * prints back as itself is the one that was written. */
        if (!proto_time_format_us(us, check) || strcmp(check, s) != 0)
                return -EINVAL;
        *ret = us;
        return 0;
}
