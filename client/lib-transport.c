/* libprovsign: the client side of the provsign wire protocol
 * (proto/provsign.proto, framed per proto/frame.h).
 *
 * Every reply is untrusted input: frame first, parse second. The 4-byte
 * length is checked against PROTO_FRAME_MAX before a byte of payload is read
 * (cf. OpenSSH authfd.c MAX_AGENT_REPLY_LEN), the payload is unpacked by
 * protobuf-c, and then its meaning is checked (status in range, the oneof
 * body matching the request, key ids matching their keys) before anything
 * reaches the caller. Anything that fails is -EPROTO. After a transport or
 * framing failure the byte stream is at an unknown position, so the
 * connection is marked broken and later calls return -ENOTCONN rather than
 * reading a stale or partial frame as the next reply. */

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "frame.h"
#include "keyid.h"
#include "names.h"
#include "provsign.pb-c.h"

#include "libprovsign-internal.h"
#include "provsign.h"

#define PROVSIGN_DEFAULT_SOCKET "/run/provsign/agent.sock"

/* The public enums mirror proto/provsign.proto without exposing protobuf-c;
 * the numbers are ABI. */
#define ASSERT_SAME(a, b) static_assert((int) (a) == (int) (b), #a " != " #b)
ASSERT_SAME(PROVSIGN_OK, PROVSIGN__STATUS__OK);
ASSERT_SAME(PROVSIGN_INVALID_ARGUMENT, PROVSIGN__STATUS__INVALID_ARGUMENT);
ASSERT_SAME(PROVSIGN_PERMISSION_DENIED, PROVSIGN__STATUS__PERMISSION_DENIED);
ASSERT_SAME(PROVSIGN_NOT_FOUND, PROVSIGN__STATUS__NOT_FOUND);
ASSERT_SAME(PROVSIGN_KEY_REVOKED, PROVSIGN__STATUS__KEY_REVOKED);
ASSERT_SAME(PROVSIGN_NO_ACTIVE_KEY, PROVSIGN__STATUS__NO_ACTIVE_KEY);
ASSERT_SAME(PROVSIGN_RATE_LIMITED, PROVSIGN__STATUS__RATE_LIMITED);
ASSERT_SAME(PROVSIGN_HSM_UNAVAILABLE, PROVSIGN__STATUS__HSM_UNAVAILABLE);
ASSERT_SAME(PROVSIGN_UNAVAILABLE, PROVSIGN__STATUS__UNAVAILABLE);
ASSERT_SAME(PROVSIGN_INTERNAL, PROVSIGN__STATUS__INTERNAL);
ASSERT_SAME(PROVSIGN_DIGEST_SHA256, PROVSIGN__DIGEST_ALGORITHM__SHA256);
ASSERT_SAME(PROVSIGN_DIGEST_SHA384, PROVSIGN__DIGEST_ALGORITHM__SHA384);
ASSERT_SAME(PROVSIGN_KEY_ECDSA_P256, PROVSIGN__KEY_ALGORITHM__ECDSA_P256);
ASSERT_SAME(PROVSIGN_KEY_ECDSA_P384, PROVSIGN__KEY_ALGORITHM__ECDSA_P384);
ASSERT_SAME(PROVSIGN_KEY_RSA_3072, PROVSIGN__KEY_ALGORITHM__RSA_3072);
ASSERT_SAME(PROVSIGN_KEY_STATE_ACTIVE, PROVSIGN__KEY_STATE__ACTIVE);
ASSERT_SAME(PROVSIGN_KEY_STATE_RETIRED, PROVSIGN__KEY_STATE__RETIRED);
ASSERT_SAME(PROVSIGN_KEY_STATE_REVOKED, PROVSIGN__KEY_STATE__REVOKED);
ASSERT_SAME(PROVSIGN_KEY_STATE_DESTROYED, PROVSIGN__KEY_STATE__DESTROYED);
static_assert(PROVSIGN_HASH_LEN == PROTO_MERKLE_HASH_LEN, "PROVSIGN_HASH_LEN");
static_assert(PROVSIGN_MAX_INCLUSION_PROOF == PROTO_MERKLE_MAX_PROOF, "PROVSIGN_MAX_INCLUSION_PROOF");

/* ---- Names and errors ---------------------------------------------------- */

static const char *const status_descriptions[] = {
        [PROVSIGN_OK] = "Success",
        [PROVSIGN_INVALID_ARGUMENT] = "Invalid argument",
        [PROVSIGN_PERMISSION_DENIED] = "Permission denied by agent policy",
        [PROVSIGN_NOT_FOUND] = "No such key or principal",
        [PROVSIGN_KEY_REVOKED] = "Key is revoked",
        [PROVSIGN_NO_ACTIVE_KEY] = "Principal has no active key",
        [PROVSIGN_RATE_LIMITED] = "Rate limit exceeded",
        [PROVSIGN_HSM_UNAVAILABLE] = "Hardware security module unavailable",
        [PROVSIGN_UNAVAILABLE] = "Agent temporarily unavailable",
        [PROVSIGN_INTERNAL] = "Internal agent error",
};

static const char *status_description(int status) {
        if (status < 0 || (size_t) status >= sizeof status_descriptions / sizeof status_descriptions[0])
                return NULL;
        return status_descriptions[status];
}

_public_ const char *provsign_status_name(int status) {
        return proto_status_name(status);
}

_public_ const char *provsign_strerror(int r) {
        const char *s;

        if (r >= 0) {
                s = status_description(r);
                return s ? s : "Unknown agent status";
        }
        if (r == INT_MIN)
                return "Unknown error";
        /* The library's own meaning of -EPROTO is narrower than libc's text. */
        if (r == -EPROTO)
                return "Malformed or oversized reply from agent";
        if (r == -ENOTCONN)
                return "Connection to agent unusable after an earlier error";
        if (r == -ETIMEDOUT)
                return "Timed out waiting for the agent";
        s = strerrordesc_np(-r);
        return s ? s : "Unknown error";
}

_public_ const char *provsign_key_algorithm_to_string(int algorithm) {
        return proto_key_algorithm_name(algorithm);
}

_public_ const char *provsign_key_state_to_string(int state) {
        return proto_key_state_name(state);
}

_public_ const char *provsign_digest_algorithm_to_string(int digest_algorithm) {
        return proto_digest_name(digest_algorithm);
}

int client_pem_from_der(const uint8_t *der, size_t len, char **ret) {
        return proto_spki_pem_encode(der, len, ret);
}

/* ---- Connections --------------------------------------------------------- */

_public_ const char *provsign_default_socket(void) {
        const char *e;

        /* secure_getenv: a privileged process must not be steered to another
         * socket by whoever controls its environment. */
        e = secure_getenv("PROVSIGN_AGENT_SOCK");
        if (e && *e)
                return e;
        return PROVSIGN_DEFAULT_SOCKET;
}

int client_conn_from_fd(int fd, provsign_conn **ret) {
        provsign_conn *c;

        if (fd < 0)
                return -EBADF;
        if (!ret)
                return -EINVAL;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        c->timeout_ms = PROVSIGN_DEFAULT_TIMEOUT_MS;

        *ret = c;
        return 0;
}

/* After connect() was interrupted the connection completes in the
 * background: wait for it (at most timeout_ms, 0: no limit) and collect its
 * result (connect(2), EINTR). */
static int connect_finish(int fd, uint64_t timeout_ms) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        socklen_t sl;
        int err, k;

        for (;;) {
                k = poll(&pfd, 1, timeout_ms == 0 ? -1 : timeout_ms > INT_MAX ? INT_MAX : (int) timeout_ms);
                if (k > 0)
                        break;
                if (k == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }

        sl = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
                return -errno;
        return err > 0 ? -err : 0;
}

/* A connect(2) to an AF_UNIX socket whose listen backlog is full waits for
 * room for up to SO_SNDTIMEO, then fails with EAGAIN: the deadline. */
static int connect_deadline(int fd, const struct sockaddr_un *sa, size_t path_len, uint64_t timeout_ms) {
        struct timeval tv = { .tv_sec = (time_t) (timeout_ms / 1000), .tv_usec = (suseconds_t) (timeout_ms % 1000) * 1000 };
        int r;

        if (timeout_ms && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + path_len + 1)) == 0)
                r = 0;
        else if (errno == EINTR)
                r = connect_finish(fd, timeout_ms);
        else
                r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        /* Later writes are bounded by the call's deadline, not by this. */
        tv = (struct timeval) {};
        if (r == 0 && timeout_ms && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                r = -errno;
        return r;
}

_public_ int provsign_connect_timeout(const char *path, uint64_t timeout_ms, provsign_conn **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        provsign_conn *c = NULL;
        size_t l;
        int fd = -1, r;

        if (!ret || timeout_ms > PROVSIGN_MAX_TIMEOUT_MS)
                return -EINVAL;
        if (!path)
                path = provsign_default_socket();

        l = strlen(path);
        if (l == 0)
                return -EINVAL;
        if (l >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, l);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = connect_deadline(fd, &sa, l, timeout_ms);
        if (r < 0)
                goto out;

        r = client_conn_from_fd(fd, &c);
        if (r < 0)
                goto out;
        fd = -1;
        c->timeout_ms = timeout_ms;

        *ret = c;
        r = 0;
out:
        if (fd >= 0)
                close(fd);
        return r;
}

_public_ int provsign_connect(const char *path, provsign_conn **ret) {
        return provsign_connect_timeout(path, PROVSIGN_DEFAULT_TIMEOUT_MS, ret);
}

_public_ int provsign_set_timeout(provsign_conn *conn, uint64_t timeout_ms) {
        if (!conn || timeout_ms > PROVSIGN_MAX_TIMEOUT_MS)
                return -EINVAL;
        conn->timeout_ms = timeout_ms;
        return 0;
}

_public_ void provsign_close(provsign_conn *conn) {
        if (!conn)
                return;
        if (conn->fd >= 0)
                close(conn->fd);
        free(conn->message);
        free(conn);
}

_public_ const char *provsign_last_message(const provsign_conn *conn) {
        if (!conn || conn->refusal <= 0)
                return "";
        if (!conn->message)
                return status_description(conn->refusal);
        return conn->message;
}

/* ---- Transport ----------------------------------------------------------- */

/* Microseconds on the monotonic clock. */
static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void deadline_start(provsign_conn *c) {
        c->deadline_us = c->timeout_ms ? now_us() + c->timeout_ms * 1000u : 0;
}

/* Waits until fd is ready for events or the call's deadline passes
 * (-ETIMEDOUT). Without a deadline, the read or write itself waits. */
static int wait_ready(const provsign_conn *c, short events) {
        struct pollfd pfd = { .fd = c->fd, .events = events };

        if (!c->deadline_us)
                return 0;
        for (;;) {
                uint64_t now = now_us();
                int k;

                if (now >= c->deadline_us)
                        return -ETIMEDOUT;
                k = poll(&pfd, 1, (int) ((c->deadline_us - now + 999) / 1000 > INT_MAX ? INT_MAX
                                                                                         : (c->deadline_us - now + 999) / 1000));
                if (k > 0)
                        return 0;
                if (k < 0 && errno != EINTR)
                        return -errno;
        }
}

static int send_full(provsign_conn *c, const uint8_t *p, size_t n) {
        while (n > 0) {
                int r = wait_ready(c, POLLOUT);
                if (r < 0)
                        return r;
                /* MSG_NOSIGNAL: a vanished agent is -EPIPE, not a SIGPIPE
                 * that kills the caller. MSG_DONTWAIT: a full socket
                 * buffer goes back to the deadline's poll. */
                ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | (c->deadline_us ? MSG_DONTWAIT : 0));
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads until n bytes or end of file. Returns the number of bytes read (less
 * than n only at EOF) or -errno (-ETIMEDOUT past the deadline). */
static ssize_t read_full(provsign_conn *c, uint8_t *p, size_t n) {
        size_t got = 0;

        while (got < n) {
                int r = wait_ready(c, POLLIN);
                if (r < 0)
                        return r;
                ssize_t k = recv(c->fd, p + got, n - got, c->deadline_us ? MSG_DONTWAIT : 0);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        return (ssize_t) got;
}

/* Reads one framed Response. 0 with *ret set, or a negative errno; any
 * failure leaves the stream desynchronized. */
static int read_response(provsign_conn *c, Provsign__Response **ret) {
        uint8_t header[PROTO_FRAME_HEADER], *payload = NULL;
        Provsign__Response *resp;
        size_t len;
        ssize_t n;
        int r;

        n = read_full(c, header, sizeof header);
        if (n < 0)
                return (int) n;
        if (n == 0)
                return -ECONNRESET;     /* closed without answering */
        if ((size_t) n < sizeof header)
                return -EPROTO;         /* torn header */

        r = proto_frame_peek(header, sizeof header, PROTO_FRAME_MAX, &len);
        if (r <= 0)
                return -EPROTO;         /* oversized: not a byte of it is read */

        payload = malloc(len > 0 ? len : 1);
        if (!payload)
                return -ENOMEM;
        n = read_full(c, payload, len);
        if (n < 0) {
                r = (int) n;
                goto out;
        }
        if ((size_t) n < len) {
                r = -EPROTO;            /* truncated frame */
                goto out;
        }

        resp = provsign__response__unpack(NULL, len, payload);
        if (!resp) {
                r = -EPROTO;
                goto out;
        }

        *ret = resp;
        r = 0;
out:
        free(payload);
        return r;
}

/* A reply frame that was read whole: an unknown status is -EPROTO (the
 * stream is still in step), a refusal is stored and returned as its
 * positive status, OK hands the Response to the caller. */
static int reply_check(provsign_conn *c, Provsign__Response *resp, Provsign__Response **ret) {
        int r;

        if (!proto_status_known(resp->status)) {
                r = -EPROTO;
                goto out;
        }
        if (resp->status != PROVSIGN__STATUS__OK) {
                const char *m = str_or_empty(resp->message);

                r = (int) resp->status;
                c->refusal = r;
                /* On ENOMEM the refusal is still reported, with the generic
                 * text (provsign_last_message()). */
                if (*m)
                        c->message = strdup(m);
                goto out;
        }
        *ret = resp;
        return 0;
out:
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

static void conn_reset_refusal(provsign_conn *c) {
        free(c->message);
        c->message = NULL;
        c->refusal = 0;
}

int client_conn_transact(provsign_conn *c, Provsign__Request *req, Provsign__Response **ret) {
        Provsign__Response *resp = NULL;
        uint8_t *frame = NULL;
        size_t frame_len;
        int r, w;

        conn_reset_refusal(c);
        if (c->broken)
                return -ENOTCONN;

        req->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        r = proto_frame_pack(&req->base, &frame, &frame_len);
        if (r < 0)
                return r;

        /* The agent may answer and close before reading all of a request it
         * rejects; its reply is still queued for us, so read it before
         * reporting a failed write. */
        deadline_start(c);
        w = send_full(c, frame, frame_len);
        free(frame);
        if (w < 0 && w != -EPIPE && w != -ECONNRESET) {
                c->broken = true;
                return w;
        }

        r = read_response(c, &resp);
        if (r < 0 || w < 0)
                c->broken = true;
        if (r < 0)
                /* A bad reply says more than the failed write; plain EOF
                 * says less. */
                return w < 0 && r == -ECONNRESET ? w : r;
        return reply_check(c, resp, ret);
}

int client_conn_next(provsign_conn *c, Provsign__Response **ret) {
        Provsign__Response *resp = NULL;
        int r;

        conn_reset_refusal(c);
        if (c->broken)
                return -ENOTCONN;
        deadline_start(c);
        r = read_response(c, &resp);
        if (r < 0) {
                c->broken = true;
                return r;
        }
        return reply_check(c, resp, ret);
}

/* ---- Pipelining ---------------------------------------------------------- */

/* One client_conn_pipeline() call: requests [0, sent) are written (or
 * failed before they could be), the replies of those answered[] are in. */
struct pipeline {
        provsign_conn *c;
        size_t n, window;
        int (*prepare)(void *ud, size_t i, Provsign__Request *req);
        int (*ok)(void *ud, size_t i, const Provsign__Response *resp);
        void *ud;
        int *results;
        bool *answered;
        size_t sent, inflight, n_answered;
        size_t head;            /* no request before it is unanswered */
        size_t refused_at;      /* the lowest refused request (n: none) */
        uint64_t id_base;       /* request i carries id_base + i */
        bool ids_seen;          /* the agent echoes ids */
        bool in_order;          /* it does not (an OK reply with id 0): replies come in order */
        int conn_status;        /* a refusal of no request (id 0 from an agent that echoes ids) */
        char *conn_message;
        int held_status;        /* an id-0 refusal before either was known: whose, the next frame says */
        char *held_message;
        uint8_t *wbuf;          /* the frame being written */
        size_t wlen, woff;
        bool write_closed;      /* the agent stopped reading: collect what it answered */
        int write_err;
        uint8_t *rbuf;          /* PROTO_FRAME_HEADER + PROTO_FRAME_MAX */
        size_t rlen;
        uint64_t deadline_us;   /* of the next reply; 0: none */
};

static void pipeline_finish(struct pipeline *p, size_t i, int r, const char *message) {
        p->results[i] = r;
        p->answered[i] = true;
        p->n_answered++;
        if (r > 0 && i < p->refused_at) {
                p->refused_at = i;
                free(p->c->message);
                p->c->message = message && *message ? strdup(message) : NULL;
                p->c->refusal = r;
        }
}

/* Every request without its reply gets r (a negative errno, or the status
 * of a refusal of the connection); the connection is at an unknown
 * position (or closed) afterwards. */
static void pipeline_fail_rest(struct pipeline *p, int r) {
        for (size_t i = 0; i < p->n; i++)
                if (!p->answered[i])
                        pipeline_finish(p, i, r, p->conn_message);
        p->c->broken = true;
}

/* A refusal of the connection (id 0 from an agent that echoes ids): the
 * agent closes next, and what is still unanswered then gets it. Takes
 * message. */
static void pipeline_conn_refused(struct pipeline *p, int status, char *message) {
        p->conn_status = status;
        free(p->conn_message);
        p->conn_message = message;
}

/* The agent closed the connection: a refusal of the connection it sent
 * first (or a refusal with id 0 still held, which the close shows to be
 * one), else the failed write, else a plain reset. */
static int pipeline_eof_error(struct pipeline *p) {
        if (p->held_status) {
                pipeline_conn_refused(p, p->held_status, p->held_message);
                p->held_status = 0;
                p->held_message = NULL;
        }
        if (p->conn_status)
                return p->conn_status;
        return p->write_err ? p->write_err : -ECONNRESET;
}

/* Builds the frame of the next request; a request that cannot be made is
 * answered at once with the error. */
static void pipeline_fill(struct pipeline *p) {
        while (!p->wbuf && !p->write_closed && p->sent < p->n && p->inflight < p->window) {
                Provsign__Request req = PROVSIGN__REQUEST__INIT;
                size_t i = p->sent++;
                int r = p->prepare(p->ud, i, &req);

                if (r == 0) {
                        req.protocol_version = PROVSIGN_PROTOCOL_VERSION;
                        req.request_id = p->id_base + i;
                        r = proto_frame_pack(&req.base, &p->wbuf, &p->wlen);
                }
                if (r < 0) {
                        pipeline_finish(p, i, r, NULL);
                        continue;
                }
                p->woff = 0;
                p->inflight++;
        }
}

/* Requests [0, written) are out whole, the only ones the agent can have
 * answered: frames are made in order, one at a time, and the one being
 * written (p->wbuf) is the last made. */
static size_t pipeline_written(const struct pipeline *p) {
        return p->wbuf ? p->sent - 1 : p->sent;
}

/* The oldest request without its reply (by order, from an agent that
 * echoes no id), or p->sent if none. */
static size_t pipeline_oldest(struct pipeline *p) {
        while (p->head < p->sent && p->answered[p->head])
                p->head++;
        return p->head;
}

/* One reply: matched by its id (by order from an agent that echoes none).
 * 0, or -EPROTO for a reply that answers no request in flight.
 *
 * A refusal with id 0 before any reply told whether the agent echoes ids
 * is either the oldest request's (an agent from before request ids) or a
 * refusal of the connection (one that does, refusing a frame it could not
 * read, or shutting down): given to the oldest request it would take a
 * reply of the agent's that is still to come (a signature, logged, then
 * thrown away as a reply to nothing). So it is held until the next frame
 * says which (one with an id: the connection's; one without: the oldest
 * request's) or the agent closes (the connection's: every request still
 * unanswered gets it). With one request out it can only be that one's.
 *
 * 1 when the reply answered a request, 0 when it answered none (a refusal
 * of the connection, or one held), -EPROTO for a reply to nothing in
 * flight. A refusal of the connection comes once, before the close: a
 * second is no reply (else an agent could keep the call waiting forever,
 * each frame answering nothing). */
static int pipeline_deliver(struct pipeline *p, const Provsign__Response *resp) {
        size_t i;

        if (resp->request_id != 0) {
                uint64_t k = resp->request_id - p->id_base;

                if (p->in_order || resp->request_id < p->id_base || k >= pipeline_written(p) || p->answered[k])
                        return -EPROTO;
                i = (size_t) k;
                p->ids_seen = true;
                if (p->held_status) {
                        pipeline_conn_refused(p, p->held_status, p->held_message);
                        p->held_status = 0;
                        p->held_message = NULL;
                }
        } else if (p->ids_seen) {
                if (resp->status == PROVSIGN__STATUS__OK || !proto_status_known(resp->status) || p->conn_status)
                        return -EPROTO;
                pipeline_conn_refused(p, (int) resp->status,
                                      *str_or_empty(resp->message) ? strdup(resp->message) : NULL);
                return 0;
        } else {
                if (!p->in_order && !p->held_status && p->inflight > 1 && resp->status != PROVSIGN__STATUS__OK &&
                    proto_status_known(resp->status)) {
                        p->held_status = (int) resp->status;
                        p->held_message = *str_or_empty(resp->message) ? strdup(resp->message) : NULL;
                        return 0;
                }
                if (p->held_status) {
                        /* Two replies without ids: the agent answers in
                         * order, and the refusal held was the oldest's. */
                        p->in_order = true;
                        i = pipeline_oldest(p);
                        if (i >= pipeline_written(p))
                                return -EPROTO;
                        p->inflight--;
                        pipeline_finish(p, i, p->held_status, str_or_empty(p->held_message));
                        free(p->held_message);
                        p->held_status = 0;
                        p->held_message = NULL;
                }
                if (resp->status == PROVSIGN__STATUS__OK)
                        p->in_order = true;
                i = pipeline_oldest(p);
                if (i >= pipeline_written(p))
                        return -EPROTO;
        }

        p->inflight--;
        if (!proto_status_known(resp->status))
                pipeline_finish(p, i, -EPROTO, NULL);
        else if (resp->status != PROVSIGN__STATUS__OK)
                pipeline_finish(p, i, (int) resp->status, str_or_empty(resp->message));
        else
                pipeline_finish(p, i, p->ok(p->ud, i, resp), NULL);
        return 1;
}

/* Writes what the window allows, until the socket is full: requests go
 * out as soon as there is room, before more replies are taken in (a reply
 * may free a place in the window). 0, or a negative errno. */
static int pipeline_pump(struct pipeline *p) {
        for (;;) {
                ssize_t k;

                pipeline_fill(p);
                if (!p->wbuf)
                        return 0;
                k = send(p->c->fd, p->wbuf + p->woff, p->wlen - p->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        if (errno != EPIPE && errno != ECONNRESET)
                                return -errno;
                        /* The agent may have answered before it closed: read on. */
                        p->write_closed = true;
                        p->write_err = -errno;
                        k = (ssize_t) (p->wlen - p->woff);
                }
                p->woff += (size_t) k;
                if (p->woff == p->wlen) {
                        free(p->wbuf);
                        p->wbuf = NULL;
                }
        }
}

/* Takes every whole frame out of the read buffer. 0, or a negative errno
 * that ends the pipeline. */
static int pipeline_parse(struct pipeline *p) {
        for (;;) {
                Provsign__Response *resp;
                size_t len, total;
                int r;

                r = proto_frame_peek(p->rbuf, p->rlen, PROTO_FRAME_MAX, &len);
                if (r < 0)
                        return -EPROTO;         /* oversized */
                if (r == 0 || p->rlen < PROTO_FRAME_HEADER + len)
                        return 0;
                total = PROTO_FRAME_HEADER + len;
                resp = provsign__response__unpack(NULL, len, p->rbuf + PROTO_FRAME_HEADER);
                memmove(p->rbuf, p->rbuf + total, p->rlen - total);
                p->rlen -= total;
                if (!resp)
                        return -EPROTO;
                r = pipeline_deliver(p, resp);
                provsign__response__free_unpacked(resp, NULL);
                if (r < 0)
                        return r;
                /* Each reply that answers a request gives the next one the
                 * whole timeout; a frame that answers none gives nothing. */
                if (r > 0)
                        p->deadline_us = p->c->timeout_ms ? now_us() + p->c->timeout_ms * 1000u : 0;
                r = pipeline_pump(p);
                if (r < 0)
                        return r;
        }
}

/* 0, 1 at end of file, or a negative errno. */
static int pipeline_read(struct pipeline *p) {
        ssize_t k = recv(p->c->fd, p->rbuf + p->rlen, PROTO_FRAME_HEADER + PROTO_FRAME_MAX - p->rlen, MSG_DONTWAIT);

        if (k < 0) {
                if (errno == EINTR || errno == EAGAIN)
                        return 0;
                return errno == ECONNRESET ? 1 : -errno;
        }
        if (k == 0)
                return 1;
        p->rlen += (size_t) k;
        return pipeline_parse(p);
}

static int pipeline_run(struct pipeline *p) {
        p->deadline_us = p->c->timeout_ms ? now_us() + p->c->timeout_ms * 1000u : 0;
        for (;;) {
                struct pollfd pfd = { .fd = p->c->fd };
                int timeout = -1, k, r;

                r = pipeline_pump(p);
                if (r < 0)
                        return r;
                if (p->n_answered == p->n)
                        return 0;
                if (p->wbuf)
                        pfd.events |= POLLOUT;
                if (p->inflight > 0)
                        pfd.events |= POLLIN;
                if (!pfd.events)
                        return p->write_err ? p->write_err : -EPIPE;  /* nothing in flight, nothing writable */
                if (p->deadline_us) {
                        uint64_t now = now_us();

                        if (now >= p->deadline_us)
                                return -ETIMEDOUT;
                        timeout = (p->deadline_us - now + 999) / 1000 > INT_MAX ? INT_MAX
                                                                                : (int) ((p->deadline_us - now + 999) / 1000);
                }
                k = poll(&pfd, 1, timeout);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        continue;       /* the deadline is checked above */
                if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                        r = pipeline_read(p);
                        if (r == 1)
                                return pipeline_eof_error(p);
                        if (r < 0)
                                return r;
                }
        }
}

int client_conn_pipeline(provsign_conn *c, size_t n, size_t window,
                         int (*prepare)(void *ud, size_t i, Provsign__Request *req),
                         int (*ok)(void *ud, size_t i, const Provsign__Response *resp), void *ud, int *results) {
        struct pipeline p = {
                .c = c, .n = n, .window = window ? window : 1, .prepare = prepare, .ok = ok, .ud = ud,
                .results = results, .refused_at = n,
        };
        int r;

        conn_reset_refusal(c);
        if (n == 0)
                return 0;
        if (c->broken) {
                r = -ENOTCONN;
                goto fail_all;
        }
        p.answered = calloc(n, sizeof *p.answered);
        p.rbuf = malloc(PROTO_FRAME_HEADER + PROTO_FRAME_MAX);
        if (!p.answered || !p.rbuf) {
                r = -ENOMEM;
                goto fail_all;
        }
        /* Ids are unique on the connection, so that a late reply to an
         * earlier call can never pass for one of this call's. */
        if (c->next_request_id == 0)
                c->next_request_id = 1;
        p.id_base = c->next_request_id;
        c->next_request_id += n;

        /* A positive r: the agent refused the connection and closed it. */
        r = pipeline_run(&p);
        if (r != 0)
                pipeline_fail_rest(&p, r);
        else if (p.inflight > 0 || p.wbuf)
                c->broken = true;       /* cannot happen: every request was answered */
        r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = results[i];
        free(p.wbuf);
        free(p.rbuf);
        free(p.answered);
        free(p.conn_message);
        free(p.held_message);
        return r;

fail_all:
        for (size_t i = 0; i < n; i++)
                results[i] = r;
        free(p.answered);
        free(p.rbuf);
        return r;
}
