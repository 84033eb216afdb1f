/* The socket side of the agent: one epoll loop on the main thread owns the
 * listening socket, every connection, the workers' completion fd and the
 * signals. It never calls the token, and names no request handler: it
 * calls back (server_callbacks) with each complete frame. */
#pragma once

#include <stdbool.h>

#include "agent.h"
#include "peer.h"
#include "provsign.pb-c.h"

typedef struct agent_conn agent_conn;

/* A job on behalf of one connection. A one-at-a-time request's job keeps
 * the connection from reading anything more until it is finished; a
 * pipelined one (server_conn_begin) lets it read on, up to
 * max_inflight_per_connection jobs out at once. When the worker is done,
 * complete() runs on the main thread and either sends exactly one reply
 * with server_reply() and
 * returns true (the job is finished and freed), or keeps the job (returns
 * false: e.g. waiting for its audit entry to be durable) and later calls
 * server_resume_job() to run complete() again. If the connection died
 * meanwhile, complete() is called with c == NULL to free the job only. */
typedef struct agent_conn_job agent_conn_job;
struct agent_conn_job {
        agent_job base;
        bool (*complete)(agent *a, agent_conn *c, agent_conn_job *job);
        agent_conn *conn;        /* NULL for a background job (no reply) */
        agent_conn_job *next_parked;
        uint64_t wait_seq;       /* parked until the log has committed this entry */
        /* The server's (set by server_submit): */
        uint64_t request_id;     /* echoed in its reply */
        uint64_t deadline_ms;    /* hsm_timeout: its caller gets HSM_UNAVAILABLE then */
        bool expired;            /* answered at hsm_timeout; still counted against conn until it is back */
        bool exclusive;          /* its connection reads nothing more until it is answered */
        agent_conn_job *conn_prev, *conn_next; /* its connection's jobs */
};

/* server_open: takes the socket from systemd (sd_listen_fds) or creates
 * cfg->socket (0660, group socket_group, a stale socket replaced). 0, or a
 * negative errno with *ret_error set. */
int server_open(agent *a, char **ret_error);

/* server_connection_limit: max_connections, or fewer where it does not fit
 * the descriptor limit less the descriptors kept for the token and the log
 * (said once per configured value, with a warning). */
size_t server_connection_limit(agent *a);

/* What the frame callback says about a frame. */
enum {
        SERVER_FRAME_TAKEN = 0,  /* handled: answered, or a job is out for it */
        SERVER_FRAME_WAIT = 1,   /* not now: give it again once c has no job out */
};

/* What the loop calls back, on the main thread. */
typedef struct server_callbacks {
        /* frame: one complete request frame of c (the payload, without its
         * length; valid during the call); also after SIGTERM, when it starts
         * nothing new (server_stopping). It answers through server_reply(),
         * server_stream_start() or server_submit(), now or later, and returns
         * SERVER_FRAME_TAKEN; or it answers nothing and returns
         * SERVER_FRAME_WAIT (a one-at-a-time request while pipelined ones
         * are out). Before answering it calls server_conn_begin(). */
        int (*frame)(agent *a, agent_conn *c, const uint8_t *payload, size_t len);
        /* log_progress: the audit log committed entries, or failed. */
        void (*log_progress)(agent *a);
        /* reload: SIGHUP (every connection's groups are looked up again
         * after it). */
        void (*reload)(agent *a);
        /* tick: about once a second. */
        void (*tick)(agent *a);
} server_callbacks;

/* server_run: serves until SIGTERM/SIGINT, then finishes in-flight
 * requests; cb (borrowed until it returns) says what a frame, a commit, a
 * SIGHUP and a tick mean. 0 or a negative errno. */
int server_run(agent *a, const server_callbacks *cb);

/* server_stopping: SIGTERM came: the frame callback refuses every request
 * (UNAVAILABLE, with the request's id) while the jobs in flight finish. */
bool server_stopping(const agent *a);

/* server_connections: client connections open now. */
size_t server_connections(const agent *a);

/* server_submit_background: hands a job nobody waits on (a scheduled key
 * rotation) to the worker pool; its complete() is called with c == NULL. */
void server_submit_background(agent *a, agent_conn_job *job);

/* server_resume_job: runs a kept job's complete() again. */
void server_resume_job(agent *a, agent_conn_job *job);

/* server_abandon_jobs: at shutdown, frees jobs that came back after the
 * loop ended (their connections get no reply). */
void server_abandon_jobs(agent *a, agent_job *list);

/* server_free: closes every connection and the socket it created. */
void server_free(agent_server *s);

const agent_caller *server_conn_caller(const agent_conn *c);

/* server_conn_begin: the frame callback is answering a request of c with
 * this request_id (0: the client sent none), echoed in every frame of its
 * reply, now or from its job. concurrent: the request may run alongside
 * others of c (a pipelined Sign): its job, if any, lets c read on;
 * otherwise c reads nothing more until it is answered. */
void server_conn_begin(agent_conn *c, uint64_t request_id, bool concurrent);

/* server_conn_request_id: the request_id of the request c is answering
 * (a stream's maker copies it into server_stream.request_id). */
uint64_t server_conn_request_id(const agent_conn *c);

/* server_conn_jobs: c's jobs out. */
size_t server_conn_jobs(const agent_conn *c);

/* server_reply: sends one Response on c: protocol version, status and
 * message (printf-style, may be NULL for OK) filled in here; body may carry
 * a oneof (ignored unless status is OK). close_after: c reads nothing more,
 * and closes once the reply is written and its jobs still out have been
 * answered too. */
void server_reply(agent *a, agent_conn *c, Provsign__Response *body, int status, bool close_after,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A reply of several frames (export, find): after each frame is written,
 * next() makes the next one, on the main thread, one frame per loop turn,
 * so a fast reader cannot hog the loop and a slow one only leaves its
 * frames in the socket (read_timeout closes a connection that stops
 * reading). next() returns 0 with a new framed buffer (*ret_frame, freed
 * by the server) and *ret_last set on the final frame, or a negative errno
 * (the connection is closed). The connection reads no request until the
 * last frame is out. free() releases the stream: after the last frame, or
 * when the connection closes first. */
typedef struct server_stream server_stream;
struct server_stream {
        int (*next)(server_stream *s, uint8_t **ret_frame, size_t *ret_len, bool *ret_last);
        void (*free)(server_stream *s);
        uint64_t request_id;     /* set by its maker (server_conn_request_id); echoed in every frame */
};

/* server_stream_start: starts streaming st on c (which takes it). */
void server_stream_start(agent *a, agent_conn *c, server_stream *st);

/* server_submit: hands job to the worker pool on behalf of c (the request
 * of server_conn_begin): its reply carries that request's id, and its
 * caller hears back within hsm_timeout. While the token holds as many jobs
 * given up at hsm_timeout as every connection could have out at once, the
 * job is not queued: c is answered HSM_UNAVAILABLE at once and complete()
 * is called with c == NULL (to free the job). */
void server_submit(agent *a, agent_conn *c, agent_conn_job *job);

