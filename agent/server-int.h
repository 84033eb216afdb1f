/* The event loop's own parts, shared by its files (server.c: the loop and
 * the jobs; server-conn.c: a connection's bytes in and out;
 * server-listen.c: the socket and accepting; server-groups.c: the callers'
 * groups, looked up off the loop). Not for anything outside them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "server.h"

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
        bool resolving;          /* its groups are being looked up: nothing is dispatched until they are */
        agent_conn_job *jobs;    /* its jobs out: queued, running or waiting for the log */
        size_t njobs;
        size_t nexpired;         /* its jobs answered at hsm_timeout but not back yet (a worker or the
                                  * log still holds them): they count against max_inflight */
        bool exclusive;          /* the job out is a one-at-a-time request's: nothing more is read */
        bool waiting;            /* the next frame waits until no job is out (SERVER_FRAME_WAIT) */
        bool concurrent;         /* the request being handled may run alongside others (server_conn_begin) */
        uint64_t reply_id;       /* the request_id of the request being answered (0: none) */
        bool close_after_write;
        bool dead;               /* fd closed with jobs out; freed when the last one returns */
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
        agent_conn *ready;       /* able to take requests again, input waiting (server_run_ready) */
        agent_conn *flush;       /* a stream's next frame to send (see server_run_flush) */
        size_t n_conns;
        size_t jobs_out;         /* jobs of connections, every connection's */
        size_t expired_out;      /* jobs answered at hsm_timeout not back yet, closed connections' too */
        uint32_t max_inflight;   /* max_inflight_per_connection, as of this loop turn */
        bool stopping;
        unsigned token_reopens;  /* last seen keys_store_health() counts */
        bool token_down;
        size_t fd_budget;        /* connections that fit RLIMIT_NOFILE less FD_RESERVE */
        uint32_t capped_from;    /* the max_connections last reported as capped */
        bool accept_paused;      /* listen fd out of epoll until accept_resume_ms */
        uint64_t accept_resume_ms;
        uint64_t accept_warned_ms;
        uint64_t accept_failures; /* since the last warning */
        const server_callbacks *cb; /* set by server_run */
};

/* server-conn.c */
bool server_conn_can_take(const agent_server *s, const agent_conn *c);
void server_conn_mark_ready(agent_server *s, agent_conn *c);
void server_conn_free(agent_conn *c);
void server_conn_close(agent_server *s, agent_conn *c);
void server_bury_closed(agent_server *s);
void server_conn_flush(agent_server *s, agent_conn *c);
void server_conn_read(agent *a, agent_conn *c);
void server_run_ready(agent *a);
void server_run_flush(agent *a);

/* server-groups.c */
int server_groups_start(agent_server *s);
int server_groups_lookup(agent_server *s, uid_t uid);
void server_groups_done(agent_server *s);
void server_groups_refresh_all(agent_server *s);
void server_groups_stop(agent_server *s);

/* server-listen.c */
void server_accept_conns(agent *a);
void server_accept_resume(agent_server *s, uint64_t now);
