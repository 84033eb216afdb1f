#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "frame.h"
#include "keyops.h"
#include "log.h"
#include "metrics.h"
#include "refusals.h"
#include "server.h"
#include "watchdog.h"

#define READ_CHUNK 4096u
#define SHUTDOWN_GRACE_MS 10000u
#define DEADLINE_TICK_MS 100u
/* Descriptors kept back from connections: the token (SoftHSM2 opens its
 * object files, a network HSM its sockets), the log (segments, its
 * directory, tiles, the index), epoll, signalfd, eventfds, journald. */
#define FD_RESERVE 128u
/* accept4 failed for want of descriptors (or memory): the listening socket
 * is left alone this long instead of spinning on it (it stays readable). */
#define ACCEPT_PAUSE_MS 250u
#define ACCEPT_WARN_EVERY_MS 10000u

enum source_kind { SOURCE_LISTEN, SOURCE_WORKERS, SOURCE_SIGNAL, SOURCE_AUDIT, SOURCE_RESOLVER, SOURCE_CONN };

/* Threads for supplementary group look-ups (NSS: LDAP or sssd may take
 * seconds), so the event loop never waits on them. Not the token workers:
 * a hung token must not hold up accepting connections either. */
#define RESOLVER_THREADS 2u

struct source {
        enum source_kind kind;
};

struct agent_conn {
        struct source src;
        int fd;
        agent_caller caller;
        uint8_t *rbuf;           /* partial frame; NULL when idle */
        size_t rlen, rcap;
        uint8_t *wbuf;           /* reply not yet written */
        size_t wlen, woff;
        bool busy;               /* a job is out for this connection */
        bool resolving;          /* its groups are being looked up: nothing is dispatched until they are */
        agent_conn_job *job;     /* that job (NULL when not busy) */
        uint64_t job_deadline_ms; /* hsm_timeout: answer HSM_UNAVAILABLE then */
        bool close_after_write;
        bool dead;               /* fd closed while busy; freed when the job returns */
        bool readable;           /* the socket may hold bytes we have not read */
        bool peer_shut;          /* RDHUP/HUP seen: an EOF waits behind the data */
        bool queued;             /* on the server's ready list */
        uint64_t last_activity_ms;
        uint64_t frame_start_ms; /* when the first byte of the pending frame came */
        server_stream *stream;   /* a multi-frame reply in progress, or NULL */
        bool flush_queued;       /* on the server's flush list (streams) */
        agent_conn *prev, *next;
        agent_conn *next_ready;
        agent_conn *next_flush;
};

struct agent_server {
        int listen_fd;
        bool from_systemd;
        char *socket_path;       /* set when we created it (unlinked at exit) */
        int epfd;
        int sigfd;
        struct source listen_src, workers_src, signal_src, audit_src, resolver_src;
        agent_workers *resolver; /* group look-ups (RESOLVER_THREADS) */
        uint64_t groups_gen;     /* bumped at every reload: groups looked up before are stale */
        agent_conn *conns;
        agent_conn *graveyard;   /* closed, freed at the end of the loop turn */
        agent_conn *ready;       /* idle again with input waiting (see run_ready) */
        agent_conn *flush;       /* a stream's next frame to send (see run_flush) */
        size_t n_conns;
        size_t busy_conns;
        bool stopping;
        unsigned token_reopens;  /* last seen keys_store_health() counts */
        bool token_down;
        size_t fd_budget;        /* connections that fit RLIMIT_NOFILE less FD_RESERVE */
        uint32_t capped_from;    /* the max_connections last reported as capped */
        bool accept_paused;      /* listen fd out of epoll until accept_resume_ms */
        uint64_t accept_resume_ms;
        uint64_t accept_warned_ms;
        uint64_t accept_failures; /* since the last warning */
};

uint64_t agent_now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t agent_monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

size_t server_connections(const agent *a) {
        return a->server ? a->server->n_conns : 0;
}

uint64_t agent_monotonic_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

const agent_caller *server_conn_caller(const agent_conn *c) {
        return &c->caller;
}


/* Creates the socket at path. A socket file nobody listens on (a crashed
 * agent's) is replaced; a live one or any other file is left alone. */
static int listen_on_path(const agent_config *cfg, int *ret_fd, char **ret_error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(cfg->socket) >= sizeof sa.sun_path)
                return agent_errorf(ret_error, -ENAMETOOLONG, "%s: socket path too long: %s", cfg->path, cfg->socket);
        strcpy(sa.sun_path, cfg->socket);

        struct stat st;
        if (lstat(cfg->socket, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return agent_errorf(ret_error, -EEXIST, "%s exists and is not a socket", cfg->socket);
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return -errno;
                int c = connect(probe, (struct sockaddr *) &sa, sizeof sa);
                close(probe);
                if (c == 0)
                        return agent_errorf(ret_error, -EADDRINUSE, "another agent is listening on %s", cfg->socket);
                if (unlink(cfg->socket) < 0 && errno != ENOENT)
                        return agent_errorf(ret_error, -errno, "cannot remove stale socket %s: %s", cfg->socket,
                                      strerror(errno));
        }

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* Bind under a umask that never lets the socket exist wider than 0660. */
        mode_t old = umask(0117);
        int b = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        int berr = errno;
        umask(old);
        if (b < 0) {
                close(fd);
                return agent_errorf(ret_error, -berr, "cannot bind %s: %s", cfg->socket, strerror(berr));
        }
        if (cfg->socket_group && chown(cfg->socket, (uid_t) -1, cfg->socket_gid) < 0) {
                int e = errno;
                close(fd);
                unlink(cfg->socket);
                return agent_errorf(ret_error, -e, "cannot give %s to group %s: %s (the agent's user must be a member of socket_group)",
                              cfg->socket, cfg->socket_group, strerror(e));
        }
        if (chmod(cfg->socket, 0660) < 0 || listen(fd, SOMAXCONN) < 0) {
                int e = errno;
                close(fd);
                unlink(cfg->socket);
                return agent_errorf(ret_error, -e, "cannot listen on %s: %s", cfg->socket, strerror(e));
        }
        *ret_fd = fd;
        return 0;
}

/* How many connections fit the descriptor limit (main.c raised the soft
 * limit to the hard one): each takes one descriptor, and FD_RESERVE stay
 * for the token and the log, which must never be the ones to run out. */
static int fd_budget(size_t *ret, char **ret_error) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return agent_errorf(ret_error, -errno, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SIZE_MAX / 2) {
                *ret = SIZE_MAX / 2;
                return 0;
        }
        if (rl.rlim_cur < 2 * FD_RESERVE)
                return agent_errorf(ret_error, -EMFILE,
                                    "the descriptor limit (RLIMIT_NOFILE %llu) is too low: the agent keeps %u for the "
                                    "token and the log and needs as many for connections (LimitNOFILE= in the unit)",
                                    (unsigned long long) rl.rlim_cur, FD_RESERVE);
        *ret = (size_t) rl.rlim_cur - FD_RESERVE;
        return 0;
}

size_t server_connection_limit(agent *a) {
        agent_server *s = a->server;
        uint32_t want = a->config->max_connections;
        if (want <= s->fd_budget)
                return want;
        if (s->capped_from != want) {
                s->capped_from = want;
                log_warning("max_connections = %u does not fit the descriptor limit (RLIMIT_NOFILE) less %u kept for "
                            "the token and the log: serving at most %zu connections (raise LimitNOFILE=)",
                            want, FD_RESERVE, s->fd_budget);
        }
        return s->fd_budget;
}

int server_open(agent *a, char **ret_error) {
        agent_server *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->listen_fd = s->epfd = s->sigfd = -1;
        s->listen_src.kind = SOURCE_LISTEN;
        s->workers_src.kind = SOURCE_WORKERS;
        s->signal_src.kind = SOURCE_SIGNAL;
        s->audit_src.kind = SOURCE_AUDIT;
        s->resolver_src.kind = SOURCE_RESOLVER;
        a->server = s;
        int rw = workers_start(RESOLVER_THREADS, &s->resolver);
        if (rw < 0)
                return agent_errorf(ret_error, rw, "cannot start the group look-up threads: %s", strerror(-rw));
        int rb = fd_budget(&s->fd_budget, ret_error);
        if (rb < 0)
                return rb;
        (void) server_connection_limit(a);

        int n = sd_listen_fds(1);
        if (n < 0)
                return agent_errorf(ret_error, n, "sd_listen_fds: %s", strerror(-n));
        if (n > 1)
                return agent_errorf(ret_error, -EINVAL, "systemd passed %d sockets; expected one", n);
        if (n == 1) {
                if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
                        return agent_errorf(ret_error, -EINVAL, "the socket systemd passed is not a listening AF_UNIX stream");
                s->listen_fd = SD_LISTEN_FDS_START;
                s->from_systemd = true;
                int fl = fcntl(s->listen_fd, F_GETFL);
                fcntl(s->listen_fd, F_SETFL, fl | O_NONBLOCK);
                fcntl(s->listen_fd, F_SETFD, FD_CLOEXEC);
                return 0;
        }
        int r = listen_on_path(a->config, &s->listen_fd, ret_error);
        if (r < 0)
                return r;
        s->socket_path = strdup(a->config->socket);
        return 0;
}

/* Every connection is registered once, edge-triggered, for input and
 * output: no epoll_ctl per request. Edges only say "something changed", so a
 * connection remembers whether its socket may still hold input (readable,
 * cleared when a read comes back short: the queue was empty) and is served
 * from that flag whenever it is idle again. While a job is out, a reply is
 * unsent or a stream is under way nothing is read, exactly as before. */
static bool conn_idle(const agent_conn *c) {
        return c->fd >= 0 && !c->busy && !c->resolving && c->wlen == 0 && !c->close_after_write && !c->stream;
}

/* ---- Supplementary groups, looked up off the loop ----
 *
 * A new connection reads nothing until its uid's groups are known; after
 * every reload (SIGHUP: the group database may have changed with the
 * policy) every open connection's groups are looked up again and, until
 * they are, it is dispatched nothing more, so a user who left a
 * principal's group stops signing for it on connections opened before. */
typedef struct groups_job {
        agent_job base;
        uid_t uid;
        uint64_t gen;            /* s->groups_gen when asked */
        gid_t *groups;
        int n_groups;
        int r;
} groups_job;

static void groups_run(agent_job *j) {
        groups_job *g = (groups_job *) j;
        g->r = agent_groups_of_uid(g->uid, &g->groups, &g->n_groups);
}

static int groups_lookup(agent_server *s, uid_t uid) {
        groups_job *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->base.run = groups_run;
        g->uid = uid;
        g->gen = s->groups_gen;
        workers_submit(s->resolver, &g->base);
        return 0;
}

static void groups_job_free(groups_job *g) {
        free(g->groups);
        free(g);
}

static void conn_close(agent_server *s, agent_conn *c);
static void conn_mark_ready(agent_server *s, agent_conn *c);

/* On the main thread: hands a look-up's groups to every connection of its
 * uid that waits for them. A look-up from before the last reload is
 * dropped: a newer one for the same uid is on its way. */
static void groups_done(agent_server *s) {
        agent_job *list = workers_take_done(s->resolver);
        while (list) {
                groups_job *g = (groups_job *) list;
                list = list->next;
                if (g->gen != s->groups_gen) {
                        groups_job_free(g);
                        continue;
                }
                for (agent_conn *c = s->conns, *next; c; c = next) {
                        next = c->next;
                        if (!c->resolving || c->caller.uid != g->uid)
                                continue;
                        gid_t *copy = g->n_groups ? malloc((size_t) g->n_groups * sizeof *copy) : NULL;
                        if (g->r < 0 || (g->n_groups && !copy)) {
                                log_error("cannot look up the groups of uid %u: %s; closing its connection",
                                          (unsigned) g->uid, strerror(g->r < 0 ? -g->r : ENOMEM));
                                free(copy);
                                conn_close(s, c);
                                continue;
                        }
                        if (copy)
                                memcpy(copy, g->groups, (size_t) g->n_groups * sizeof *copy);
                        agent_caller_set_groups(&c->caller, copy, g->n_groups);
                        c->resolving = false;
                        if (conn_idle(c) && (c->rlen > 0 || c->readable))
                                conn_mark_ready(s, c);
                }
                groups_job_free(g);
        }
}

/* After a reload: every open connection's groups are stale. One look-up
 * per distinct uid. */
static void groups_refresh_all(agent_server *s) {
        s->groups_gen++;
        for (agent_conn *c = s->conns; c; c = c->next) {
                bool asked = false;
                for (agent_conn *d = s->conns; d != c && !asked; d = d->next)
                        asked = d->caller.uid == c->caller.uid;
                c->resolving = true;
                if (!asked && groups_lookup(s, c->caller.uid) < 0)
                        log_error("cannot look up the groups of uid %u again: out of memory", (unsigned) c->caller.uid);
        }
}

/* Queues c to be served at the end of the loop turn (never from inside a
 * reply, which may run inside dispatch). */
static void conn_mark_ready(agent_server *s, agent_conn *c) {
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

static void conn_free(agent_conn *c) {
        if (c->stream)
                c->stream->free(c->stream);
        agent_caller_done(&c->caller);
        free(c->rbuf);
        free(c->wbuf);
        free(c);
}

static void conn_close(agent_server *s, agent_conn *c) {
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

static void bury_closed(agent_server *s) {
        while (s->graveyard) {
                agent_conn *c = s->graveyard;
                s->graveyard = c->next;
                conn_free(c);
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
                conn_close(s, c);
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

static void conn_flush(agent_server *s, agent_conn *c) {
        while (c->woff < c->wlen) {
                ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (k <= 0) {
                        conn_close(s, c);
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
                        conn_close(s, c);
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
                        conn_mark_ready(s, c);
        }
}

static void conn_process(agent *a, agent_conn *c);

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

        uint8_t *buf = NULL;
        size_t len = 0;
        int r = proto_frame_pack(&resp->base, &buf, &len);
        if (r < 0) {
                log_error("cannot encode a reply (%s); closing the connection", strerror(-r));
                conn_close(a->server, c);
                return;
        }
        /* One reply per request: nothing is buffered when a reply is made. */
        free(c->wbuf);
        c->wbuf = buf;
        c->wlen = len;
        c->woff = 0;
        c->close_after_write |= close_after;
        conn_flush(a->server, c);
}

void server_stream_start(agent *a, agent_conn *c, server_stream *st) {
        c->stream = st;
        stream_fill(a->server, c);
        if (c->fd >= 0)
                conn_flush(a->server, c);
}

void server_submit(agent *a, agent_conn *c, agent_conn_job *job) {
        job->conn = c;
        c->job = job;
        /* Checked every DEADLINE_TICK_MS; one more tick of margin for a busy
         * loop turn, so the caller hears back within hsm_timeout. */
        c->job_deadline_ms = agent_monotonic_ms() + a->config->hsm_timeout_s * 1000u - 2 * DEADLINE_TICK_MS;
        c->busy = true;
        a->server->busy_conns++;
        workers_submit(a->workers, &job->base);
}

void server_submit_background(agent *a, agent_conn_job *job) {
        job->conn = NULL;
        workers_submit(a->workers, &job->base);
}

void server_resume_job(agent *a, agent_conn_job *job) {
        agent_conn *c = job->conn;
        if (!c) {
                /* Its caller was answered at the deadline (expire_jobs). */
                (void) job->complete(a, NULL, job);
                return;
        }
        if (c->dead) {
                c->busy = false;
                a->server->busy_conns--;
                (void) job->complete(a, NULL, job);
                conn_free(c);
                return;
        }
        /* Not busy while complete() replies (so the reply re-arms reading);
         * busy again if it keeps the job. */
        c->busy = false;
        c->job = NULL;
        a->server->busy_conns--;
        if (!job->complete(a, c, job)) {
                c->busy = true;
                c->job = job;
                a->server->busy_conns++;
                return;
        }
        /* A reply queues c itself (conn_flush); this covers a complete()
         * that had nothing to send. */
        if (conn_idle(c) && (c->rlen > 0 || c->readable))
                conn_mark_ready(a->server, c);
}

/* A job out longer than hsm_timeout (the token hangs, or the log cannot get
 * a checkpoint signed): its caller gets HSM_UNAVAILABLE now and the
 * connection is free again. The job is detached (conn NULL) and cancelled:
 * if no worker started it, it never runs; if it is running or waiting for
 * the log, whatever it produces is dropped when it comes back (complete()
 * with c == NULL frees it, exactly once). A Sign that the token finishes
 * after the deadline may still get its log entry, but its signature is
 * never returned to anyone. */
static size_t expire_jobs(agent *a) {
        agent_server *s = a->server;
        uint64_t now = agent_monotonic_ms();
        size_t n = 0;
        for (agent_conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                if (!c->busy || !c->job || now < c->job_deadline_ms)
                        continue;
                agent_conn_job *job = c->job;
                job->conn = NULL;
                workers_cancel(&job->base);
                c->job = NULL;
                c->busy = false;
                s->busy_conns--;
                char msg[160];
                snprintf(msg, sizeof msg, "the token did not answer within hsm_timeout (%llus)",
                         (unsigned long long) a->config->hsm_timeout_s);
                refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, msg);
                server_reply(a, c, NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, false, "%s", msg);
                n++;
        }
        return n;
}

/* Logs token outages and recoveries as keys/ sees them. */
static void watch_token(agent *a) {
        agent_server *s = a->server;
        unsigned reopens = 0;
        bool down = keys_store_health(a->store, &reopens) < 0;
        if (down && !s->token_down)
                metrics_add(METRICS_TOKEN_OUTAGES, 1);
        if (down && !s->token_down)
                log_error("token \"%s\" is unavailable; Sign requests get HSM_UNAVAILABLE until it is back",
                          a->config->token_label);
        if (reopens != s->token_reopens)
                log_notice("token \"%s\" re-opened (sessions, login and keys redone; %u re-opens so far)",
                           a->config->token_label, reopens);
        s->token_down = down;
        s->token_reopens = reopens;
}

static void complete_jobs(agent *a, agent_job *list) {
        while (list) {
                agent_job *next = list->next;
                server_resume_job(a, (agent_conn_job *) list);
                list = next;
        }
}

static void conn_read(agent *a, agent_conn *c);

/* Connections whose reply went out: serve the frames they sent meanwhile
 * (buffered, or still in the socket). */
static void run_ready(agent *a) {
        agent_server *s = a->server;
        while (s->ready) {
                agent_conn *c = s->ready;
                s->ready = c->next_ready;
                c->queued = false;
                if (!conn_idle(c))
                        continue;
                if (c->rlen > 0) {
                        /* The read timeout measures a client that is slow to send,
                         * not time its frames spent queued behind our replies. */
                        c->frame_start_ms = agent_monotonic_ms();
                        conn_process(a, c);
                }
                if (conn_idle(c) && c->readable)
                        conn_read(a, c);
        }
}

/* Streams with their next frame queued and a socket that took the last one
 * whole: one frame each per loop turn, so a fast reader of a long export
 * does not hold the loop (what is queued meanwhile waits for the next turn). */
static void run_flush(agent *a) {
        agent_server *s = a->server;
        agent_conn *list = s->flush;
        s->flush = NULL;
        while (list) {
                agent_conn *c = list;
                list = c->next_flush;
                c->flush_queued = false;
                if (c->fd >= 0 && c->wlen > c->woff)
                        conn_flush(s, c);
        }
}

static size_t conns_of_uid(const agent_server *s, uid_t uid) {
        size_t n = 0;
        for (const agent_conn *c = s->conns; c; c = c->next)
                n += c->caller.uid == uid;
        return n;
}

/* Refuses a connection over a limit with a proper Response, best effort. */
static void refuse_connection(int fd, const char *why) {
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        resp.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp.status = PROVSIGN__STATUS__UNAVAILABLE;
        resp.message = (char *) why;
        uint8_t *buf;
        size_t len;
        if (proto_frame_pack(&resp.base, &buf, &len) == 0) {
                (void) !send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                free(buf);
        }
        close(fd);
}

/* accept4 failed with the socket still readable (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM): with a level-triggered listen fd, trying again at once spins the
 * loop at a full core and writes a line per turn. Take the socket out of
 * epoll for ACCEPT_PAUSE_MS instead (the kernel queues new connections in
 * the backlog meanwhile), and say so at most every ACCEPT_WARN_EVERY_MS. */
static void accept_pause(agent_server *s, int err) {
        uint64_t now = agent_monotonic_ms();
        s->accept_failures++;
        if (!s->accept_warned_ms || now - s->accept_warned_ms >= ACCEPT_WARN_EVERY_MS) {
                log_warning("accept: %s; not accepting for %ums at a time (%llu pauses since the last message)",
                            strerror(err), ACCEPT_PAUSE_MS, (unsigned long long) s->accept_failures);
                s->accept_warned_ms = now;
                s->accept_failures = 0;
        }
        if (epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL) == 0) {
                s->accept_paused = true;
                s->accept_resume_ms = now + ACCEPT_PAUSE_MS;
        }
}

static void accept_resume(agent_server *s, uint64_t now) {
        if (!s->accept_paused || now < s->accept_resume_ms)
                return;
        s->accept_paused = false;
        if (s->stopping)
                return;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = &s->listen_src };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0) {
                log_error("cannot watch the listening socket again: %s", strerror(errno));
                s->accept_paused = true;
                s->accept_resume_ms = now + ACCEPT_PAUSE_MS;
        }
}

static void accept_conns(agent *a) {
        agent_server *s = a->server;
        for (;;) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                accept_pause(s, errno);
                        return;
                }
                agent_conn *c = calloc(1, sizeof *c);
                if (!c) {
                        close(fd);
                        continue;
                }
                c->src.kind = SOURCE_CONN;
                c->fd = fd;
                /* Identify the peer before reading a byte. */
                int r = agent_caller_from_fd(fd, &c->caller);
                if (r < 0) {
                        /* (a refusal of "no uid": rate-limited like the others) */
                        agent_caller unknown = { .uid = (uid_t) -1, .gid = (gid_t) -1 };
                        char why[96];
                        snprintf(why, sizeof why, "no peer credentials (%s): connection dropped", strerror(-r));
                        refusals_record(a, &unknown, "connect", NULL, PROVSIGN__STATUS__PERMISSION_DENIED, why);
                        close(fd);
                        free(c);
                        continue;
                }
                const agent_config *cfg = a->config;
                if (s->n_conns >= server_connection_limit(a) || s->stopping) {
                        const char *why = s->stopping ? "agent is shutting down" : "too many connections (max_connections)";
                        refusals_record(a, &c->caller, "connect", NULL, PROVSIGN__STATUS__UNAVAILABLE, why);
                        refuse_connection(fd, why);
                        conn_free(c);
                        continue;
                }
                if (conns_of_uid(s, c->caller.uid) >= cfg->max_connections_per_uid) {
                        const char *why = "too many connections from this uid (max_connections_per_uid)";
                        refusals_record(a, &c->caller, "connect", NULL, PROVSIGN__STATUS__UNAVAILABLE, why);
                        refuse_connection(fd, why);
                        conn_free(c);
                        continue;
                }
                c->last_activity_ms = agent_monotonic_ms();
                c->readable = true;
                c->resolving = true;
                struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
                if (groups_lookup(s, c->caller.uid) < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
                        close(fd);
                        conn_free(c);
                        continue;
                }
                c->next = s->conns;
                if (s->conns)
                        s->conns->prev = c;
                s->conns = c;
                s->n_conns++;
        }
}

/* Frame first, parse second: only complete frames within the limit reach
 * dispatch_frame(); one request is handled at a time per connection. */
static void conn_process(agent *a, agent_conn *c) {
        while (!c->busy && !c->resolving && c->wlen == 0 && !c->close_after_write && !c->stream && c->fd >= 0) {
                size_t plen = 0;
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
                                conn_close(a->server, c);
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
                dispatch_frame(a, c, frame + PROTO_FRAME_HEADER, plen);
                free(frame);
        }
}

static void conn_read(agent *a, agent_conn *c) {
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
                        conn_close(a->server, c);
                        return;
                }
                c->last_activity_ms = agent_monotonic_ms();
                if (c->rlen == 0)
                        c->frame_start_ms = c->last_activity_ms;
                /* conn_process runs after every chunk and refuses an oversized
                 * header at once, so the buffer stays below one maximal frame
                 * plus one chunk. */
                size_t want = c->rlen + (size_t) k;
                if (want > c->rcap) {
                        uint8_t *nb = realloc(c->rbuf, want);
                        if (!nb) {
                                conn_close(a->server, c);
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
                if (!conn_idle(c) || !c->readable)
                        return;
        }
}

static void sweep_timeouts(agent *a) {
        char msg[128];
        const agent_config *cfg = a->config;
        uint64_t now = agent_monotonic_ms();
        for (agent_conn *c = a->server->conns, *next; c; c = next) {
                next = c->next;
                if (c->busy)
                        continue;
                if ((c->rlen > 0 || c->wlen > 0) && now - (c->rlen > 0 ? c->frame_start_ms : c->last_activity_ms) >
                                                            cfg->read_timeout_s * 1000u) {
                        snprintf(msg, sizeof msg, "read timeout (%llus) with %s; connection closed",
                                 (unsigned long long) cfg->read_timeout_s,
                                 c->rlen > 0 ? "a partial request" : "its reply unread");
                        refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__UNAVAILABLE, msg);
                        conn_close(a->server, c);
                } else if (c->rlen == 0 && c->wlen == 0 && now - c->last_activity_ms > cfg->idle_timeout_s * 1000u) {
                        conn_close(a->server, c);
                }
        }
}

static bool audit_wake_pending_hook(void *ctx) {
        return audit_wake_pending(ctx);
}

static int setup_loop(agent *a) {
        agent_server *s = a->server;
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
                return -errno;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (s->sigfd < 0)
                return -errno;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = &s->listen_src };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0)
                return -errno;
        e.data.ptr = &s->workers_src;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, workers_fd(a->workers), &e) < 0)
                return -errno;
        e.data.ptr = &s->signal_src;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &e) < 0)
                return -errno;
        e.data.ptr = &s->audit_src;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, audit_fd(a->audit), &e) < 0)
                return -errno;
        e.data.ptr = &s->resolver_src;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, workers_fd(s->resolver), &e) < 0)
                return -errno;
        workers_set_wake_hook(a->workers, audit_wake_pending_hook, a->audit);
        return 0;
}

static void handle_signals(agent *a) {
        struct signalfd_siginfo si;
        while (read(a->server->sigfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                        (void) agent_reload(a);
                        groups_refresh_all(a->server);
                } else if (!a->server->stopping) {
                        log_notice("received %s; finishing in-flight requests", strsignal((int) si.ssi_signo));
                        a->server->stopping = true;
                        sd_notify(0, "STOPPING=1");
                        if (!a->server->accept_paused)
                                epoll_ctl(a->server->epfd, EPOLL_CTL_DEL, a->server->listen_fd, NULL);
                }
        }
}

int server_run(agent *a) {
        agent_server *s = a->server;
        int r = setup_loop(a);
        if (r < 0)
                return agent_log_errno(LOG_ERR, r, "cannot set up the event loop");

        uint64_t watchdog_us = 0;
        if (sd_watchdog_enabled(0, &watchdog_us) <= 0)
                watchdog_us = 0;
        uint64_t last_sweep = agent_monotonic_ms(), last_ping = last_sweep, last_tick = last_sweep, stop_deadline = 0;

        for (;;) {
                if (s->stopping) {
                        if (!stop_deadline)
                                stop_deadline = agent_monotonic_ms() + SHUTDOWN_GRACE_MS;
                        bool pending = s->busy_conns > 0;
                        for (agent_conn *c = s->conns; c && !pending; c = c->next)
                                pending = c->wlen > 0;
                        if (!pending || agent_monotonic_ms() > stop_deadline)
                                break;
                }
                struct epoll_event ev[64];
                int timeout = s->flush ? 0 : (s->busy_conns || s->accept_paused) ? (int) DEADLINE_TICK_MS : 500;
                int n = epoll_wait(s->epfd, ev, 64, timeout);
                if (n < 0 && errno != EINTR)
                        return agent_log_errno(LOG_ERR, -errno, "epoll_wait");
                for (int i = 0; i < n; i++) {
                        struct source *src = ev[i].data.ptr;
                        switch (src->kind) {
                        case SOURCE_LISTEN:
                                accept_conns(a);
                                break;
                        case SOURCE_WORKERS:
                                complete_jobs(a, workers_take_done(a->workers));
                                break;
                        case SOURCE_SIGNAL:
                                handle_signals(a);
                                break;
                        case SOURCE_RESOLVER:
                                groups_done(s);
                                break;
                        case SOURCE_AUDIT:
                                audit_ack(a->audit);
                                /* Jobs whose entries this commit covers came back
                                 * without a wake of their own (audit_wake_pending). */
                                complete_jobs(a, workers_take_done(a->workers));
                                dispatch_audit_progress(a);
                                break;
                        case SOURCE_CONN: {
                                agent_conn *c = (agent_conn *) src;
                                if (c->fd < 0)
                                        break;
                                if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                                        c->readable = true;
                                if (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                                        c->peer_shut = true;
                                /* A reply that did not fit continues; once it is out,
                                 * conn_flush queues c for what came meanwhile. */
                                if ((ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->wlen > c->woff)
                                        conn_flush(s, c);
                                else if (conn_idle(c) && c->readable)
                                        conn_read(a, c);
                                break;
                        }
                        }
                }
                uint64_t now = agent_monotonic_ms();
                accept_resume(s, now);
                if (now - last_tick >= DEADLINE_TICK_MS) {
                        /* Frames pipelined behind an expired job are served by
                         * run_ready below (its reply queued the connection). */
                        (void) expire_jobs(a);
                        watch_token(a);
                        last_tick = now;
                }
                run_flush(a);
                run_ready(a);
                if (now - last_sweep >= 1000) {
                        sweep_timeouts(a);
                        refusals_tick(a, false);
                        keyops_tick(a);
                        last_sweep = now;
                }
                bury_closed(s);
                if (watchdog_us && (now - last_ping) * 1000u >= watchdog_us / 2) {
                        agent_watchdog_ping(a);
                        last_ping = now;
                }
        }
        return 0;
}

void server_abandon_jobs(agent *a, agent_job *list) {
        while (list) {
                agent_job *next = list->next;
                agent_conn_job *job = (agent_conn_job *) list;
                agent_conn *c = job->conn;
                if (!c) {
                        (void) job->complete(a, NULL, job);
                        list = next;
                        continue;
                }
                c->busy = false;
                c->job = NULL;
                a->server->busy_conns--;
                (void) job->complete(a, NULL, job);
                if (c->dead)
                        conn_free(c);
                list = next;
        }
}

void server_free(agent_server *s) {
        if (!s)
                return;
        while (s->conns) {
                agent_conn *c = s->conns;
                s->conns = c->next;
                if (c->fd >= 0)
                        close(c->fd);
                if (!c->busy)
                        conn_free(c);
                else
                        c->dead = true;
        }
        if (s->listen_fd >= 0 && !s->from_systemd)
                close(s->listen_fd);
        if (s->socket_path)
                unlink(s->socket_path);
        free(s->socket_path);
        bury_closed(s);
        for (agent_job *j = workers_stop(s->resolver), *next; j; j = next) {
                next = j->next;
                groups_job_free((groups_job *) j);
        }
        if (s->epfd >= 0)
                close(s->epfd);
        if (s->sigfd >= 0)
                close(s->sigfd);
        free(s);
}
