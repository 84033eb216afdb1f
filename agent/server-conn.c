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

void server_conn_begin(agent_conn *c, uint64_t request_id, bool concurrent) {
        c->reply_id = request_id;
        c->concurrent = concurrent;
}

uint64_t server_conn_request_id(const agent_conn *c) {
        return c->reply_id;
}

size_t server_conn_jobs(const agent_conn *c) {
        return c->njobs;
}

/* Every connection is registered once, edge-triggered, for input and
 * output: no epoll_ctl per request. Edges only say "something changed", so a
 * connection remembers whether its socket may still hold input (readable,
 * cleared when a read comes back short: the queue was empty) and is served
 * from that flag whenever it can take a request again.
 *
 * It can when: its groups are known, no reply is unsent (a client that does
 * not read its replies is sent nothing more to do), no stream is under way,
 * no one-at-a-time request is out (its reply comes first), a frame that
 * waits for the jobs to drain (SERVER_FRAME_WAIT) has them drained, and
 * fewer than max_inflight_per_connection pipelined jobs are out (counting
 * those answered at hsm_timeout that a worker still holds: a hung token
 * does not get more of them from this connection). Otherwise
 * the requests wait where they are: in the socket (the kernel's buffer, not
 * the agent's memory) or in the last chunk read. */
bool server_conn_can_take(const agent_server *s, const agent_conn *c) {
        return c->fd >= 0 && !c->resolving && c->wlen == 0 && !c->close_after_write && !c->stream && !c->exclusive &&
               !(c->waiting && c->njobs > 0) && c->njobs + c->nexpired < s->max_inflight;
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
        /* Never freed here: callers up the stack may still look at c. A conn
         * with jobs out is freed when the last one returns, others at the end
         * of the turn. */
        c->prev = NULL;
        c->next = NULL;
        if (c->njobs == 0 && c->nexpired == 0) {
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

/* Queues buf (a framed reply, taken) behind what c still has to send:
 * pipelined requests' replies may come while an earlier one is half out. */
static int conn_queue_out(agent_conn *c, uint8_t *buf, size_t len) {
        if (c->wlen == 0) {
                free(c->wbuf);
                c->wbuf = buf;
                c->wlen = len;
                c->woff = 0;
                return 0;
        }
        size_t pending = c->wlen - c->woff;
        uint8_t *nb = malloc(pending + len);
        if (!nb) {
                free(buf);
                return -ENOMEM;
        }
        memcpy(nb, c->wbuf + c->woff, pending);
        memcpy(nb + pending, buf, len);
        free(c->wbuf);
        free(buf);
        c->wbuf = nb;
        c->wlen = pending + len;
        c->woff = 0;
        return 0;
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
        if (conn_queue_out(c, buf, len) < 0)
                server_conn_close(s, c);
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
                /* A connection to close reads nothing more (server_conn_can_take),
                 * but its pipelined jobs still out are answered first: their
                 * Signs are logged, so their signatures must reach the client.
                 * The last one's reply comes back here. */
                if (c->close_after_write) {
                        if (c->njobs == 0)
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
                if (server_conn_can_take(s, c) && (c->rlen > 0 || c->readable))
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
        resp->request_id = c->reply_id;

        uint8_t *buf = NULL;
        size_t len = 0;
        int r = proto_frame_pack(&resp->base, &buf, &len);
        if (r < 0) {
                log_error("cannot encode a reply (%s); closing the connection", strerror(-r));
                server_conn_close(a->server, c);
                return;
        }
        if (conn_queue_out(c, buf, len) < 0) {
                log_error("cannot queue a reply (%s); closing the connection", strerror(ENOMEM));
                server_conn_close(a->server, c);
                return;
        }
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
                if (!server_conn_can_take(s, c))
                        continue;
                if (c->rlen > 0) {
                        /* The read timeout measures a client that is slow to send,
                         * not time its frames spent queued behind our replies. */
                        c->frame_start_ms = agent_monotonic_ms();
                        conn_process(a, c);
                }
                if (server_conn_can_take(s, c) && c->readable)
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
 * the frame callback (server_run), as many as c can take
 * (server_conn_can_take). The callback reads the frame in place: nothing
 * it does moves c->rbuf (a reply may close c, which frees nothing until
 * the end of the loop turn). */
static void conn_process(agent *a, agent_conn *c) {
        agent_server *s = a->server;
        size_t off = 0;
        while (server_conn_can_take(s, c) && off < c->rlen) {
                const uint8_t *p = c->rbuf + off;
                size_t avail = c->rlen - off, plen = 0;
                /* A reply to no decoded request (oversized) carries
                 * request_id 0; the callback sets each request's own. */
                server_conn_begin(c, 0, false);
                int r = proto_frame_peek(p, avail, PROTO_FRAME_MAX, &plen);
                if (r == 0)
                        break;
                if (r < 0) {
                        char msg[96];
                        snprintf(msg, sizeof msg, "frame of %u bytes exceeds the %u-byte limit; connection closed",
                                 proto_get_u32be(p), PROTO_FRAME_MAX);
                        refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, msg);
                        server_reply(a, c, NULL, PROVSIGN__STATUS__INVALID_ARGUMENT, true,
                                     "frame of %u bytes exceeds the %u-byte limit", proto_get_u32be(p),
                                     PROTO_FRAME_MAX);
                        break;
                }
                if (avail < PROTO_FRAME_HEADER + plen)
                        break;
                if (s->cb->frame(a, c, p + PROTO_FRAME_HEADER, plen) == SERVER_FRAME_WAIT) {
                        c->waiting = true;
                        break;
                }
                c->waiting = false;
                off += PROTO_FRAME_HEADER + plen;
        }
        if (off == 0)
                return;
        /* Take the frames handled out of the buffer; an idle connection
         * keeps no buffer. */
        c->rlen -= off;
        if (c->rlen == 0) {
                free(c->rbuf);
                c->rbuf = NULL;
                c->rcap = 0;
        } else
                memmove(c->rbuf, c->rbuf + off, c->rlen);
        c->frame_start_ms = c->rlen ? agent_monotonic_ms() : 0;
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
                if (k == 0 && c->njobs > 0)
                        /* The client sent its requests and shut its end
                         * (shutdown(SHUT_WR)): the EOF is read again, and the
                         * connection closed, once their replies are out. */
                        return;
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
                /* conn_process runs after every chunk and refuses an oversized
                 * header at once, and nothing is read while c cannot take a
                 * request, so the buffer stays below one maximal frame plus
                 * one chunk. */
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
                if (!server_conn_can_take(a->server, c) || !c->readable)
                        return;
        }
}
