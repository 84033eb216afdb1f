/* The scripted fake agent of test-client: see fake-agent.h. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake-agent.h"
#include "frame.h"
#include "libprovsign-internal.h"

static bool read_exactly(int fd, uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return false;
                p += k;
                n -= (size_t) k;
        }
        return true;
}

static void write_all(int fd, const uint8_t *p, size_t n, bool dribble) {
        while (n > 0) {
                ssize_t k = send(fd, p, dribble ? 1 : n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return; /* the client gave up; fine */
                p += k;
                n -= (size_t) k;
        }
}

static Provsign__Request *read_request(int fd) {
        uint8_t header[4], *payload;
        Provsign__Request *req;
        uint32_t len;

        if (!read_exactly(fd, header, sizeof header))
                return NULL;
        len = proto_get_u32be(header);
        if (len > PROTO_FRAME_MAX)
                return NULL;
        payload = malloc(len + 1);
        if (!payload)
                return NULL;
        req = read_exactly(fd, payload, len) ? provsign__request__unpack(NULL, len, payload) : NULL;
        free(payload);
        return req;
}

/* No cmocka assertions on this thread: they longjmp. */
void *fake_thread(void *userdata) {
        struct fake_agent *fa = userdata;

        if (fa->listen_fd >= 0) {
                fa->fd = accept4(fa->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fa->fd < 0)
                        return NULL;
        }

        for (size_t i = 0; i < fa->n_replies; i++) {
                if (!fa->skip_request) {
                        Provsign__Request *req = read_request(fa->fd);
                        if (!req)
                                break;
                        fa->requests[fa->n_requests++] = req;
                }
                write_all(fa->fd, fa->replies[i].buf, fa->replies[i].len, fa->dribble);
        }

        /* EOF after the script. */
        close(fa->fd);
        fa->fd = -1;
        return NULL;
}

void fake_init(struct fake_agent *fa) {
        *fa = (struct fake_agent) { .fd = -1, .listen_fd = -1 };
}

void fake_add_raw(struct fake_agent *fa, const void *p, size_t n) {
        assert_true(fa->n_replies < MAX_ROUNDS);
        fa->replies[fa->n_replies].buf = malloc(n + 1);
        assert_non_null(fa->replies[fa->n_replies].buf);
        if (n > 0)
                memcpy(fa->replies[fa->n_replies].buf, p, n);
        fa->replies[fa->n_replies].len = n;
        fa->n_replies++;
}

void fake_add(struct fake_agent *fa, const Provsign__Response *resp) {
        uint8_t *buf;
        size_t len;

        assert_int_equal(proto_frame_pack(&resp->base, &buf, &len), 0);
        fake_add_raw(fa, buf, len);
        free(buf);
}

void fake_add_frames(struct fake_agent *fa, const Provsign__Response *resp, size_t n) {
        uint8_t *frames = NULL, *fb;
        size_t frames_len = 0, fl;

        for (size_t f = 0; f < n; f++) {
                assert_int_equal(proto_frame_pack(&resp[f].base, &fb, &fl), 0);
                frames = realloc(frames, frames_len + fl);
                assert_non_null(frames);
                memcpy(frames + frames_len, fb, fl);
                frames_len += fl;
                free(fb);
        }
        fake_add_raw(fa, frames, frames_len);
        free(frames);
}

/* A frame whose payload is given as raw bytes. */
void fake_add_payload(struct fake_agent *fa, const void *payload, size_t n) {
        uint8_t *buf = malloc(4 + n + 1);

        assert_non_null(buf);
        proto_put_u32be(buf, (uint32_t) n);
        memcpy(buf + 4, payload, n);
        fake_add_raw(fa, buf, 4 + n);
        free(buf);
}

void fake_add_refusal(struct fake_agent *fa, int status, const char *message) {
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;

        resp.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp.status = (Provsign__Status) status;
        resp.message = (char *) message;
        fake_add(fa, &resp);
}

/* Starts the fake on one end of a socketpair; *conn gets the other. */
void fake_start(struct fake_agent *fa, provsign_conn **conn) {
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fa->fd = sv[1];
        assert_int_equal(client_conn_from_fd(sv[0], conn), 0);
        assert_int_equal(pthread_create(&fa->thread, NULL, fake_thread, fa), 0);
}

void fake_join(struct fake_agent *fa) {
        assert_int_equal(pthread_join(fa->thread, NULL), 0);
}

void fake_done(struct fake_agent *fa) {
        for (size_t i = 0; i < fa->n_replies; i++)
                free(fa->replies[i].buf);
        for (size_t i = 0; i < fa->n_requests; i++)
                provsign__request__free_unpacked(fa->requests[i], NULL);
        if (fa->fd >= 0)
                close(fa->fd);
        if (fa->listen_fd >= 0)
                close(fa->listen_fd);
        fake_init(fa);
}
