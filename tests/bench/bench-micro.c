/* The floor under one signature, measured on this machine:
 *
 *   bench-micro DIR SECONDS
 *
 * 1. fdatasync of a 200-byte append to a file in DIR (one record per sync,
 *    and eight records sharing one sync: what group commit buys);
 * 2. a bare round trip over a Unix stream socket (200 bytes out, 200 back,
 *    to a thread that echoes them with blocking calls).
 * Prints one JSON line with p50 latencies and rates. Figures only. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "latency.h"

#define RECORD 200

/* Appends `per` records per fdatasync for secs; returns records/s. */
static double syncs(const char *dir, int per, double secs, struct bench_lat *lat) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bench-micro-%d.dat", dir, per);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
                perror(path);
                exit(1);
        }
        uint8_t rec[RECORD * 8];
        memset(rec, 0x5a, sizeof rec);
        size_t n = 0;
        double start = bench_now(), end = start + secs;
        while (bench_now() < end) {
                double t0 = bench_now();
                if (write(fd, rec, (size_t) RECORD * (size_t) per) != RECORD * per || fdatasync(fd) < 0) {
                        perror("write/fdatasync");
                        exit(1);
                }
                bench_lat_add(lat, bench_now() - t0);
                n += (size_t) per;
        }
        double rate = (double) n / (bench_now() - start);
        close(fd);
        unlink(path);
        return rate;
}

static void *echo(void *arg) {
        int fd = *(int *) arg;
        uint8_t buf[RECORD];
        for (;;) {
                size_t got = 0;
                while (got < sizeof buf) {
                        ssize_t k = read(fd, buf + got, sizeof buf - got);
                        if (k <= 0)
                                return NULL;
                        got += (size_t) k;
                }
                if (write(fd, buf, sizeof buf) != (ssize_t) sizeof buf)
                        return NULL;
        }
}

static double round_trips(double secs, struct bench_lat *lat) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                perror("socketpair");
                exit(1);
        }
        pthread_t t;
        pthread_create(&t, NULL, echo, &sv[1]);
        uint8_t buf[RECORD];
        memset(buf, 0xa5, sizeof buf);
        size_t n = 0;
        double start = bench_now(), end = start + secs;
        while (bench_now() < end) {
                double t0 = bench_now();
                if (write(sv[0], buf, sizeof buf) != (ssize_t) sizeof buf)
                        exit(1);
                size_t got = 0;
                while (got < sizeof buf) {
                        ssize_t k = read(sv[0], buf + got, sizeof buf - got);
                        if (k <= 0)
                                exit(1);
                        got += (size_t) k;
                }
                bench_lat_add(lat, bench_now() - t0);
                n++;
        }
        double rate = (double) n / (bench_now() - start);
        close(sv[0]);
        pthread_join(t, NULL);
        close(sv[1]);
        return rate;
}

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: bench-micro DIR SECONDS\n");
                return 2;
        }
        double secs = atof(argv[2]);
        if (secs <= 0)
                return 2;
        struct bench_lat s1 = { 0 }, s8 = { 0 }, rt = { 0 };
        double r1 = syncs(argv[1], 1, secs, &s1);
        double r8 = syncs(argv[1], 8, secs, &s8);
        double rr = round_trips(secs, &rt);
        printf("{\"fdatasync_per_s\": %.0f, \"fdatasync_p50_us\": %.0f, \"records8_per_s\": %.0f, "
               "\"fdatasync8_p50_us\": %.0f, \"socket_rtt_per_s\": %.0f, \"socket_rtt_p50_us\": %.1f}\n",
               r1, bench_lat_p50_us(&s1), r8, bench_lat_p50_us(&s8), rr, bench_lat_p50_us(&rt));
        free(s1.v);
        free(s8.v);
        free(rt.v);
        return 0;
}
