/* The listening socket (from systemd or made here), the descriptor budget
 * and accepting connections. Main thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "frame.h"
#include "log.h"
#include "refusals.h"
#include "server-int.h"


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
        int rw = server_groups_start(s);
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

void server_accept_resume(agent_server *s, uint64_t now) {
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

void server_accept_conns(agent *a) {
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
                        server_conn_free(c);
                        continue;
                }
                if (conns_of_uid(s, c->caller.uid) >= cfg->max_connections_per_uid) {
                        const char *why = "too many connections from this uid (max_connections_per_uid)";
                        refusals_record(a, &c->caller, "connect", NULL, PROVSIGN__STATUS__UNAVAILABLE, why);
                        refuse_connection(fd, why);
                        server_conn_free(c);
                        continue;
                }
                c->last_activity_ms = agent_monotonic_ms();
                c->readable = true;
                c->resolving = true;
                struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
                if (server_groups_lookup(s, c->caller.uid) < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
                        close(fd);
                        server_conn_free(c);
                        continue;
                }
                c->next = s->conns;
                if (s->conns)
                        s->conns->prev = c;
                s->conns = c;
                s->n_conns++;
        }
}
