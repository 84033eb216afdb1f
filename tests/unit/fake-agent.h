/* The scripted fake agent of tests/unit/test-client.c: the other end of a
 * socketpair (or of a listening socket), on its own thread. It reads one
 * request per scripted reply (unless skip_request) and sends exactly the
 * bytes a test gives it — oversized headers, torn frames, garbage,
 * refusals, replies without a body — then closes: end of file after the
 * script. The requests it read are kept for the test to look at after
 * fake_join(). Assertions (cmocka) run on the test's thread only. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "provsign.pb-c.h"
#include "provsign.h"

#define MAX_ROUNDS 4

struct fake_agent {
        int fd;                         /* the agent's end */
        int listen_fd;                  /* >= 0: accept() one connection first */
        pthread_t thread;
        bool skip_request;              /* reply without reading a request */
        bool dribble;                   /* send the replies one byte at a time */
        struct {
                uint8_t *buf;
                size_t len;
        } replies[MAX_ROUNDS];
        size_t n_replies;
        /* Observed by the thread, read by the test after fake_join(). */
        Provsign__Request *requests[MAX_ROUNDS];
        size_t n_requests;
};

/* fake_init: an empty script, no sockets. */
void fake_init(struct fake_agent *fa);

/* fake_add_raw: the next reply, n bytes sent as they are. */
void fake_add_raw(struct fake_agent *fa, const void *p, size_t n);

/* fake_add: the next reply, resp framed. */
void fake_add(struct fake_agent *fa, const Provsign__Response *resp);

/* fake_add_frames: the next reply, the n responses framed one after the
 * other (a streamed answer to one request). */
void fake_add_frames(struct fake_agent *fa, const Provsign__Response *resp, size_t n);

/* fake_add_payload: the next reply, a frame whose payload is given as raw
 * bytes. */
void fake_add_payload(struct fake_agent *fa, const void *payload, size_t n);

/* fake_add_refusal: the next reply, a Response with status and message. */
void fake_add_refusal(struct fake_agent *fa, int status, const char *message);

/* fake_start: starts the fake on one end of a socketpair; *conn gets the
 * other (set listen_fd before to have it accept() one connection there
 * instead). */
void fake_start(struct fake_agent *fa, provsign_conn **conn);

/* fake_thread: the fake's thread, for a test that starts it itself on a
 * listening socket (fa->listen_fd). */
void *fake_thread(void *userdata);

/* fake_join: waits for the script to end. */
void fake_join(struct fake_agent *fa);

/* fake_done: frees the script and the requests read, closes what is
 * open; fa is empty again. */
void fake_done(struct fake_agent *fa);
