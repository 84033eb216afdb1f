/* The event loop: one epoll loop on the main thread owns the listening
 * socket, every connection, the workers' completion fd, the log's wake fd
 * and the signals. It names no handler: what a frame, a log commit, a
 * SIGHUP or a tick means is the callbacks' business (server_run). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "metrics.h"
#include "refusals.h"
#include "server-int.h"
#include "watchdog.h"

static void conn_add_job(agent_server *s, agent_conn *c, agent_conn_job *job) {
        job->conn = c;
        job->conn_prev = NULL;
        job->conn_next = c->jobs;
        if (c->jobs)
                c->jobs->conn_prev = job;
        c->jobs = job;
        c->njobs++;
        c->exclusive |= job->exclusive;
        s->jobs_out++;
}

static void conn_remove_job(agent_server *s, agent_conn *c, agent_conn_job *job) {
        if (job->conn_prev)
                job->conn_prev->conn_next = job->conn_next;
        else
                c->jobs = job->conn_next;
        if (job->conn_next)
                job->conn_next->conn_prev = job->conn_prev;
        job->conn_prev = job->conn_next = NULL;
        c->njobs--;
        if (job->exclusive)
                c->exclusive = false;
        s->jobs_out--;
}

void server_submit(agent *a, agent_conn *c, agent_conn_job *job) {
        agent_server *s = a->server;
        /* Jobs given up at hsm_timeout that the token has not handed back,
         * as many as every connection could have out at once: it hangs, and
         * a new job would only queue behind them (memory for nothing;
         * connections that close and come back would grow the queue without
         * bound). Refused at once until the token hands them back. */
        size_t cap = server_connection_limit(a) * (size_t) s->max_inflight;
        if (s->expired_out >= cap) {
                char msg[160];
                snprintf(msg, sizeof msg, "the token hangs: %zu requests given up at hsm_timeout are still out",
                         s->expired_out);
                refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, msg);
                server_reply(a, c, NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, false, "%s", msg);
                job->conn = NULL;
                (void) job->complete(a, NULL, job);
                return;
        }
        job->request_id = c->reply_id;
        job->exclusive = !c->concurrent;
        /* Checked every DEADLINE_TICK_MS; one more tick of margin for a busy
         * loop turn, so the caller hears back within hsm_timeout. */
        job->deadline_ms = agent_monotonic_ms() + a->config->hsm_timeout_s * 1000u - 2 * DEADLINE_TICK_MS;
        conn_add_job(a->server, c, job);
        workers_submit(a->workers, &job->base);
}

void server_submit_background(agent *a, agent_conn_job *job) {
        job->conn = NULL;
        workers_submit(a->workers, &job->base);
}

/* An expired job is back (expire_jobs): its connection may take another
 * request in its place. */
static void conn_expired_back(agent_server *s, agent_conn *c, agent_conn_job *job) {
        job->conn = NULL;
        job->expired = false;
        c->nexpired--;
        s->expired_out--;
}

void server_resume_job(agent *a, agent_conn_job *job) {
        agent_server *s = a->server;
        agent_conn *c = job->conn;
        if (!c) {
                (void) job->complete(a, NULL, job);
                return;
        }
        if (job->expired) {
                /* Its caller was answered at the deadline: what it made is
                 * dropped (complete() with NULL frees it). */
                conn_expired_back(s, c, job);
                (void) job->complete(a, NULL, job);
                if (c->dead) {
                        if (c->njobs == 0 && c->nexpired == 0)
                                server_conn_free(c);
                } else if (server_conn_can_take(s, c) && (c->rlen > 0 || c->readable))
                        server_conn_mark_ready(s, c);
                return;
        }
        if (c->dead) {
                conn_remove_job(s, c, job);
                job->conn = NULL;
                (void) job->complete(a, NULL, job);
                if (c->njobs == 0 && c->nexpired == 0)
                        server_conn_free(c);
                return;
        }
        /* Not counted while complete() replies (so the reply lets c read
         * on); counted again if it keeps the job. */
        conn_remove_job(s, c, job);
        c->reply_id = job->request_id;
        if (!job->complete(a, c, job)) {
                /* Kept (waiting for the log). Had c closed meanwhile, it is
                 * already on its way to the graveyard: the job goes on
                 * without it (its complete() gets NULL). */
                if (c->fd >= 0)
                        conn_add_job(s, c, job);
                else
                        job->conn = NULL;
                return;
        }
        /* A reply queues c itself (server_conn_flush); this covers a complete()
         * that had nothing to send (and a connection to close once its last
         * job is back, with nothing left to write). */
        if (c->fd >= 0 && c->close_after_write && c->njobs == 0 && c->wlen == 0)
                server_conn_close(s, c);
        else if (server_conn_can_take(s, c) && (c->rlen > 0 || c->readable))
                server_conn_mark_ready(s, c);
}

bool server_stopping(const agent *a) {
        return a->server && a->server->stopping;
}

/* A job out longer than hsm_timeout (the token hangs, or the log cannot get
 * a checkpoint signed): its caller gets HSM_UNAVAILABLE now (with the
 * job's request id). The job is marked expired and cancelled: if no worker
 * started it, it never runs; if it is running or waiting for the log,
 * whatever it produces is dropped when it comes back (complete() with c ==
 * NULL frees it, exactly once). A Sign that the token finishes after the
 * deadline may still get its log entry, but its signature is never
 * returned to anyone. Until it is back it still takes its slot of the
 * connection's max_inflight_per_connection (c->nexpired), so a hung token
 * is not handed more jobs than that per connection, nor a slow one more at
 * once; a connection that closes meanwhile is freed when they are back. */
static size_t expire_jobs(agent *a) {
        agent_server *s = a->server;
        uint64_t now = agent_monotonic_ms();
        size_t n = 0;
        for (agent_conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                for (agent_conn_job *job = c->jobs, *jnext; job && c->fd >= 0; job = jnext) {
                        jnext = job->conn_next;
                        if (now < job->deadline_ms)
                                continue;
                        conn_remove_job(s, c, job);
                        job->expired = true;
                        c->nexpired++;
                        s->expired_out++;
                        workers_cancel(&job->base);
                        char msg[160];
                        snprintf(msg, sizeof msg, "the token did not answer within hsm_timeout (%llus)",
                                 (unsigned long long) a->config->hsm_timeout_s);
                        refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, msg);
                        c->reply_id = job->request_id;
                        server_reply(a, c, NULL, PROVSIGN__STATUS__HSM_UNAVAILABLE, false, "%s", msg);
                        n++;
                }
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

static void sweep_timeouts(agent *a) {
        char msg[128];
        const agent_config *cfg = a->config;
        uint64_t now = agent_monotonic_ms();
        for (agent_conn *c = a->server->conns, *next; c; c = next) {
                next = c->next;
                /* Jobs out, expired ones too: what it sent waits on us. */
                if (c->njobs || c->nexpired)
                        continue;
                if ((c->rlen > 0 || c->wlen > 0) && now - (c->rlen > 0 ? c->frame_start_ms : c->last_activity_ms) >
                                                            cfg->read_timeout_s * 1000u) {
                        snprintf(msg, sizeof msg, "read timeout (%llus) with %s; connection closed",
                                 (unsigned long long) cfg->read_timeout_s,
                                 c->rlen > 0 ? "a partial request" : "its reply unread");
                        refusals_record(a, &c->caller, "request", NULL, PROVSIGN__STATUS__UNAVAILABLE, msg);
                        server_conn_close(a->server, c);
                } else if (c->rlen == 0 && c->wlen == 0 && now - c->last_activity_ms > cfg->idle_timeout_s * 1000u) {
                        server_conn_close(a->server, c);
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
                        a->server->cb->reload(a);
                        server_groups_refresh_all(a->server);
                } else if (!a->server->stopping) {
                        log_notice("received %s; finishing in-flight requests", strsignal((int) si.ssi_signo));
                        a->server->stopping = true;
                        sd_notify(0, "STOPPING=1");
                        if (!a->server->accept_paused)
                                epoll_ctl(a->server->epfd, EPOLL_CTL_DEL, a->server->listen_fd, NULL);
                }
        }
}

int server_run(agent *a, const server_callbacks *cb) {
        agent_server *s = a->server;
        s->cb = cb;
        int r = setup_loop(a);
        if (r < 0)
                return agent_log_errno(LOG_ERR, r, "cannot set up the event loop");

        uint64_t watchdog_us = 0;
        if (sd_watchdog_enabled(0, &watchdog_us) <= 0)
                watchdog_us = 0;
        uint64_t last_sweep = agent_monotonic_ms(), last_ping = last_sweep, last_tick = last_sweep, stop_deadline = 0;

        for (;;) {
                /* max_inflight_per_connection may change on SIGHUP. */
                s->max_inflight = a->config->max_inflight_per_connection ? a->config->max_inflight_per_connection : 1;
                if (s->stopping) {
                        if (!stop_deadline)
                                stop_deadline = agent_monotonic_ms() + SHUTDOWN_GRACE_MS;
                        bool pending = s->jobs_out > 0;
                        for (agent_conn *c = s->conns; c && !pending; c = c->next)
                                pending = c->wlen > 0;
                        if (!pending || agent_monotonic_ms() > stop_deadline)
                                break;
                }
                struct epoll_event ev[64];
                int timeout = s->flush ? 0 : (s->jobs_out || s->accept_paused) ? (int) DEADLINE_TICK_MS : 500;
                int n = epoll_wait(s->epfd, ev, 64, timeout);
                if (n < 0 && errno != EINTR)
                        return agent_log_errno(LOG_ERR, -errno, "epoll_wait");
                for (int i = 0; i < n; i++) {
                        struct source *src = ev[i].data.ptr;
                        switch (src->kind) {
                        case SOURCE_LISTEN:
                                server_accept_conns(a);
                                break;
                        case SOURCE_WORKERS:
                                complete_jobs(a, workers_take_done(a->workers));
                                /* A worker that committed its own group
                                 * (audit_commit) wakes us only this way:
                                 * the replies that waited for it too. */
                                cb->log_progress(a);
                                break;
                        case SOURCE_SIGNAL:
                                handle_signals(a);
                                break;
                        case SOURCE_RESOLVER:
                                server_groups_done(s);
                                break;
                        case SOURCE_AUDIT:
                                audit_ack(a->audit);
                                /* Jobs whose entries this commit covers came back
                                 * without a wake of their own (audit_wake_pending). */
                                complete_jobs(a, workers_take_done(a->workers));
                                cb->log_progress(a);
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
                                 * server_conn_flush queues c for what came meanwhile. */
                                if ((ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->wlen > c->woff)
                                        server_conn_flush(s, c);
                                else if (server_conn_can_take(s, c) && c->readable)
                                        server_conn_read(a, c);
                                break;
                        }
                        }
                }
                uint64_t now = agent_monotonic_ms();
                server_accept_resume(s, now);
                if (now - last_tick >= DEADLINE_TICK_MS) {
                        /* Frames pipelined behind an expired job are served by
                         * server_run_ready below (its reply queued the connection). */
                        (void) expire_jobs(a);
                        watch_token(a);
                        last_tick = now;
                }
                server_run_flush(a);
                server_run_ready(a);
                if (now - last_sweep >= 1000) {
                        sweep_timeouts(a);
                        cb->tick(a);
                        last_sweep = now;
                }
                server_bury_closed(s);
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
                if (c && job->expired)
                        conn_expired_back(a->server, c, job);
                else if (c) {
                        conn_remove_job(a->server, c, job);
                        job->conn = NULL;
                }
                (void) job->complete(a, NULL, job);
                if (c && c->dead && c->njobs == 0 && c->nexpired == 0)
                        server_conn_free(c);
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
                if (c->njobs == 0 && c->nexpired == 0)
                        server_conn_free(c);
                else
                        c->dead = true;
        }
        if (s->listen_fd >= 0 && !s->from_systemd)
                close(s->listen_fd);
        if (s->socket_path)
                unlink(s->socket_path);
        free(s->socket_path);
        server_bury_closed(s);
        server_groups_stop(s);
        if (s->epfd >= 0)
                close(s->epfd);
        if (s->sigfd >= 0)
                close(s->sigfd);
        free(s);
}

