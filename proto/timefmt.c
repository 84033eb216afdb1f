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

static int fixed_digits(const char *s, size_t n) {
        int v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

int proto_time_parse_rfc3339_us(const char *s, int64_t *ret) {
        if (!s || strlen(s) < 20)
                return -EINVAL;
        int year = fixed_digits(s, 4), mon = fixed_digits(s + 5, 2), day = fixed_digits(s + 8, 2);
        int hour = fixed_digits(s + 11, 2), min = fixed_digits(s + 14, 2), sec = fixed_digits(s + 17, 2);
        if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || min < 0 ||
            min > 59 || sec < 0 || sec > 60 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
            (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
                return -EINVAL;
        const char *p = s + 19;
        int64_t frac_us = 0;
        if (*p == '.') {
                size_t n = 0;
                int64_t scale = 100000;
                for (p++; *p >= '0' && *p <= '9'; p++, n++) {
                        frac_us += (*p - '0') * scale;
                        scale /= 10;
                }
                if (n == 0 || n > 9)
                        return -EINVAL;
        }
        int64_t offset_s = 0;
        if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
                ;
        else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
                int oh = fixed_digits(p + 1, 2), om = fixed_digits(p + 4, 2);
                if (oh < 0 || oh > 23 || om < 0 || om > 59)
                        return -EINVAL;
                offset_s = (int64_t) (oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        } else
                return -EINVAL;
        struct tm tm = { .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day, .tm_hour = hour,
                         .tm_min = min, .tm_sec = sec == 60 ? 59 : sec };
        time_t t = timegm(&tm);
        if (t == (time_t) -1 || tm.tm_mday != day) /* February 30th */
                return -EINVAL;
        int64_t us = ((int64_t) t - offset_s) * 1000000 + frac_us;
        if (us < 0 || us >= PROTO_TIME_US_END)
                return -EINVAL;
        *ret = us;
        return 0;
}
