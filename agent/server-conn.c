/* A connection's bytes: reading and framing requests, writing replies
 * and streams, closing. Main thread only. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "refusals.h"
#include "server-int.h"

static void conn_process(agent *a, agent_conn *c);

size_t server_connections(const agent *a) {
        return a->server ? a->server->n_conns : 0;
}

const agent_caller *server_conn_caller(const agent_conn *c) {
        return &c->caller;
}

void server_conn_set_request_id(agent_conn *c, uint64_t request_id) {
        c->request_id = request_id;
}

uint64_t server_conn_request_id(const agent_conn *c) {
        return c->request_id;
}

/* Every connection is registered once, edge-triggered, for input and
 * output: no epoll_ctl per request. Edges only say "something changed", so a
 * connection remembers whether its socket may still hold input (readable,
 * cleared when a read comes back short: the queue was empty) and is served
 * from that flag whenever it is idle again. While a job is out, a reply is
 * unsent or a stream is under way nothing is read, exactly as before. */
bool server_conn_idle(const agent_conn *c) {
        return c->fd >= 0 && !c->busy && !c->resolving && c->wlen == 0 && !c->close_after_write && !c->stream;
}

/* Queues c to be served at the end of the loop turn (never from inside a
 * reply, which may run inside dispatch). */
void server_conn_mark_ready(agent_server *s, agent_conn *c) {
        if (c->queued)
                return;
        c->queued = true;
        c->next_ready = s->ready;
        s->ready = c;
}

static void conn_unqueue(agent_server *s, agent_conn *c) {
        if (!c->queued)
                return;
        for (agent_conn **pp = &s->ready; *pp; pp = &(*pp)->next_ready)
                if (*pp == c) {
                        *pp = c->next_ready;
                        break;
                }
        c->queued = false;
}

static void conn_queue_flush(agent_server *s, agent_conn *c) {
        if (c->flush_queued)
                return;
        c->flush_queued = true;
        c->next_flush = s->flush;
        s->flush = c;
}

static void conn_unqueue_flush(agent_server *s, agent_conn *c) {
        if (!c->flush_queued)
                return;
        for (agent_conn **pp = &s->flush; *pp; pp = &(*pp)->next_flush)
                if (*pp == c) {
                        *pp = c->next_flush;
                        break;
                }
        c->flush_queued = false;
}

void server_conn_free(agent_conn *c) {
        if (c->stream)
                c->stream->free(c->stream);
        agent_caller_done(&c->caller);
        free(c->rbuf);
        free(c->wbuf);
        free(c);
}

void server_conn_close(agent_server *s, agent_conn *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        c->dead = true;
        conn_unqueue(s, c);
        conn_unqueue_flush(s, c);
        /* Never freed here: callers up the stack may still look at c. A busy
         * conn is freed when its job returns, others at the end of the turn. */
        c->prev = NULL;
        c->next = NULL;
        if (!c->busy) {
                c->next = s->graveyard;
                s->graveyard = c;
        }
}

void server_bury_closed(agent_server *s) {
        while (s->graveyard) {
                agent_conn *c = s->graveyard;
                s->graveyard = c->next;
                server_conn_free(c);
        }
}

/* Queues the next frame of c's stream (the last one ends the stream). */
static void stream_fill(agent_server *s, agent_conn *c) {
        uint8_t *buf = NULL;
        size_t len = 0;
        bool last = false;
        int r = c->stream->next(c->stream, &buf, &len, &last);
        if (r < 0) {
                log_error("uid %u pid %d: a streamed reply failed (%s); closing", (unsigned) c->caller.uid,
                          (int) c->caller.pid, strerror(-r));
                server_conn_close(s, c);
                return;
        }
        if (last) {
                c->stream->free(c->stream);
                c->stream = NULL;
        }
        c->wbuf = buf;
        c->wlen = len;
        c->woff = 0;
}

void server_conn_flush(agent_server *s, agent_conn *c) {
        while (c->woff < c->wlen) {
                ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (k <= 0) {
                        server_conn_close(s, c);
                        return;
                }
                c->woff += (size_t) k;
                c->last_activity_ms = agent_monotonic_ms();
        }
        if (c->woff == c->wlen) {
                free(c->wbuf);
                c->wbuf = NULL;
                c->wlen = c->woff = 0;
                if (c->close_after_write) {
                        server_conn_close(s, c);
                        return;
                }
                /* One frame of a stream per loop turn. An edge-triggered
                 * socket that still takes more gives no new edge, so the
                 * next frame goes out from the flush list next turn (or on
                 * EPOLLOUT, once the socket was full). */
                if (c->stream) {
                        stream_fill(s, c);
                        if (c->fd >= 0)
                                conn_queue_flush(s, c);
                        return;
                }
                if (!c->busy && (c->rlen > 0 || c->readable))
                        server_conn_mark_ready(s, c);
        }
}

void server_reply(agent *a, agent_conn *c, Provsign__Response *body, int status, bool close_after,
                  const char *fmt, ...) {
        Provsign__Response plain = PROVSIGN__RESPONSE__INIT;
        Provsign__Response *resp = body && status == PROVSIGN__STATUS__OK ? body : &plain;
        char msg[512] = "";
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(msg, sizeof msg, fmt, ap);
                va_end(ap);
        }
        resp->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp->status = (Provsign__Status) status;
        resp->message = msg;
        resp->request_id = c->request_id;

        uint8_t *buf = NULL;
        size_t len = 0;
        int r = proto_frame_pack(&resp->base, &buf, &len);
        if (r < 0) {
                log_error("cannot encode a reply (%s); closing the connection", strerror(-r));
                server_conn_close(a->server, c);
                return;
        }
        /* One reply per request: nothing is buffered when a reply is made. */
        free(c->wbuf);
        c->wbuf = buf;
        c->wlen = len;
        c->woff = 0;
        c->close_after_write |= close_after;
        server_conn_flush(a->server, c);
}

void server_stream_start(agent *a, agent_conn *c, server_stream *st) {
        c->stream = st;
        stream_fill(a->server, c);
        if (c->fd >= 0)
                server_conn_flush(a->server, c);
}

/* Connections whose reply went out: serve the frames they sent meanwhile
 * (buffered, or still in the socket). */
void server_run_ready(agent *a) {
        agent_server *s = a->server;
        while (s->ready) {
                agent_conn *c = s->ready;
                s->ready = c->next_ready;
                c->queued = false;
                if (!server_conn_idle(c))
                        continue;
                if (c->rlen > 0) {
                        /* The read timeout measures a client that is slow to send,
                         * not time its frames spent queued behind our replies. */
                        c->frame_start_ms = agent_monotonic_ms();
                        conn_process(a, c);
                }
                if (server_conn_idle(c) && c->readable)
                        server_conn_read(a, c);
        }
}

/* Streams with their next frame queued and a socket that took the last one
 * whole: one frame each per loop turn, so a fast reader of a long export
 * does not hold the loop (what is queued meanwhile waits for the next turn). */
void server_run_flush(agent *a) {
        agent_server *s = a->server;
        agent_conn *list = s->flush;
        s->flush = NULL;
        while (list) {
                agent_conn *c = list;
                list = c->next_flush;
                c->flush_queued = false;
                if (c->fd >= 0 && c->wlen > c->woff)
                        server_conn_flush(s, c);
        }
}

/* Frame first, parse second: only complete frames within the limit reach
 * the frame callback (server_run); one request is handled at a time per connection. */
static void conn_process(agent *a, agent_conn *c) {
        while (!c->busy && !c->resolving && c->wlen == 0 && !c->close_after_write && !c->stream && c->fd >= 0) {
                size_t plen = 0;
                /* A reply to no decoded request (oversized, shutting down)
                 * carries request_id 0; requests_frame sets the frame's own. */
                c->request_id = 0;
                int r = proto_frame_peek(c->rbuf, c->rlen, PROTO_FRAME_MAX, &plen);
                if (r == 0)
                        return;
                if (r < 0) {
                        char msg[96];
                        snprintf(msg, sizeof msg, "frame of %u bytes exceeds the %u-byte limit; connection closed",
                                 proto_get_u32be(c->rbuf), PROTO_FRAME_MAX);
                        refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, msg);
                        server_reply(a, c, NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, true,
                                     "frame of %u bytes exceeds the %u-byte limit", proto_get_u32be(c->rbuf),
                                     PROTO_FRAME_MAX);
                        return;
                }
                if (c->rlen < PROTO_FRAME_HEADER + plen)
                        return;
                size_t total = PROTO_FRAME_HEADER + plen;
                /* dispatch may reply (and even close c) synchronously: take the
                 * frame out of the buffer first. */
                uint8_t *frame = c->rbuf;
                size_t rest = c->rlen - total;
                uint8_t *remain = NULL;
                if (rest > 0) {
                        remain = malloc(rest);
                        if (!remain) {
                                server_conn_close(a->server, c);
                                free(frame);
                                return;
                        }
                        memcpy(remain, frame + total, rest);
                }
                c->rbuf = remain;
                c->rlen = c->rcap = rest;
                c->frame_start_ms = rest ? agent_monotonic_ms() : 0;
                if (a->server->stopping) {
                        /* SIGTERM finishes what is in flight, and starts nothing new. */
                        free(frame);
                        server_reply(a, c, NULL, PROVSIGN__STATUS__UNAVAILABLE, true, "agent is shutting down");
                        return;
                }
                a->server->cb->frame(a, c, frame + PROTO_FRAME_HEADER, plen);
                free(frame);
        }
}

void server_conn_read(agent *a, agent_conn *c) {
        uint8_t chunk[READ_CHUNK];
        for (;;) {
                ssize_t k = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        c->readable = false;
                        return;
                }
                if (k <= 0) {
                        /* Not a refusal, and unlimited: debug only. */
                        if (c->rlen > 0)
                                log_debug("uid %u pid %d disconnected in the middle of a frame",
                                           (unsigned) c->caller.uid, (int) c->caller.pid);
                        server_conn_close(a->server, c);
                        return;
                }
                c->last_activity_ms = agent_monotonic_ms();
                if (c->rlen == 0)
                        c->frame_start_ms = c->last_activity_ms;
                /* server_conn_process runs after every chunk and refuses an oversized
                 * header at once, so the buffer stays below one maximal frame
                 * plus one chunk. */
                size_t want = c->rlen + (size_t) k;
                if (want > c->rcap) {
                        uint8_t *nb = realloc(c->rbuf, want);
                        if (!nb) {
                                server_conn_close(a->server, c);
                                return;
                        }
                        c->rbuf = nb;
                        c->rcap = want;
                }
                memcpy(c->rbuf + c->rlen, chunk, (size_t) k);
                c->rlen += (size_t) k;
                /* A short read emptied the socket; more input is a new edge.
                 * Not so after the peer shut its end: that edge came already,
                 * and the EOF must still be read (and the connection closed)
                 * once this request is answered. */
                if ((size_t) k < sizeof chunk && !c->peer_shut)
                        c->readable = false;
                conn_process(a, c);
                if (!server_conn_idle(c) || !c->readable)
                        return;
        }
}
