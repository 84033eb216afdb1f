/* Internals of libprovsign shared by its files (lib-transport.c,
 * lib-sign.c, lib-keys.c, lib-log.c, lib-status.c) and reached by the tests
 * through client_testable_dep (a static library of the same sources). Not
 * installed, not exported: the version script exports provsign_* only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyid.h"
#include "merkle.h"
#include "provsign.pb-c.h"
#include "provsign.h"

#define _public_ __attribute__((visibility("default")))


struct provsign_conn {
        int fd;
        bool broken;    /* a transport/framing error desynchronized the stream */
        int refusal;    /* the last call's refusal status, else 0 */
        uint64_t timeout_ms;    /* each call's deadline from its start; 0: none */
        uint64_t deadline_us;   /* the current call's, CLOCK_MONOTONIC; 0: none */
        char *message;  /* the agent's message with it (NULL: none, or ENOMEM) */
        uint64_t next_request_id;       /* pipelining: the next id to hand out (from 1) */
};

struct provsign_signature {
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        int algorithm;
        uint8_t *der;
        size_t der_len;
        char *principal;
        uint32_t generation;

        /* The receipt (docs/formats.md "Receipts"), already checked for
         * consistency with itself and with this signature. */
        bool has_receipt;
        uint64_t log_seq;
        int64_t log_time_us;
        uint8_t *leaf;                          /* the exact AuditEntry bytes */
        size_t leaf_len;
        uint64_t tree_size;
        uint8_t (*proof)[PROTO_MERKLE_HASH_LEN]; /* NULL when n_proof is 0 */
        size_t n_proof;
        char *checkpoint;
};

struct provsign_log_key {
        char *origin;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        uint8_t *der;
        size_t der_len;
        char *pem;              /* derived from der */
        char *verifier_key;     /* derived from origin and der */
};

struct provsign_key {
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        char *principal;
        uint32_t generation;
        int algorithm;
        int state;
        int64_t created_us;
        int64_t retired_us, revoked_us, compromised_since_us, destroyed_us;
        char *reason;   /* NULL unless revoked */
        bool in_token;
        uint8_t *der;   /* NULL when the agent sent no public key */
        size_t der_len;
        char *pem;      /* derived from der; NULL with it */
};

struct provsign_key_list {
        struct provsign_key *keys;
        size_t n;
};

struct provsign_agent_status {
        char *agent_version;
        uint32_t protocol_version;
        char *token_label;
        uint64_t uptime_seconds;
        char *log_origin;
        uint64_t log_size, log_syncs;
        int log_failed;
        char **principals;       /* NULL-terminated */
        char **caller_principals;
        char **caller_roles;
};

/* protobuf-c gives proto3 strings a default of "" but treat NULL alike:
 * the reply is untrusted and a NULL must never reach strcmp(). */
static inline const char *str_or_empty(const char *s) {
        return s ? s : "";
}

/* client_conn_transact: one request, its (first) reply. Returns 0 with *ret
 * an OK Response (the caller validates its body and frees it), a positive
 * status after storing the agent's message (provsign_last_message()), or a
 * negative errno; a transport or framing failure marks conn broken. */
int client_conn_transact(provsign_conn *c, Provsign__Request *req, Provsign__Response **ret);

/* client_conn_next: the next frame of a streamed reply (export, find, key
 * bundle parts), checked as client_conn_transact() checks the first. */
int client_conn_next(provsign_conn *c, Provsign__Response **ret);

/* client_conn_pipeline: n requests on one connection, pipelined
 * (docs/formats.md "Request ids"): up to window of them written before
 * their replies are read, each with its own request_id, each reply matched
 * to its request by that id (or, from an agent that echoes no ids, by
 * order). prepare(ud, i, req) fills in request i; the library sets its
 * request_id and protocol version and frames it. ok(ud, i, resp) takes the
 * OK reply to request i (still the library's to free) and returns 0 or a
 * negative errno. Every results[i] is set: 0, a positive status (the agent
 * refused request i; the message of the lowest such i is kept for
 * provsign_last_message()), or a negative errno (its request could not be
 * made, or the connection failed or timed out before its reply: the
 * connection is then broken). Each reply must come within the
 * connection's timeout of the previous one (of the start, for the first).
 * Returns 0 when every result is 0, else the result of the lowest failed
 * i. */
int client_conn_pipeline(provsign_conn *c, size_t n, size_t window,
                         int (*prepare)(void *ud, size_t i, Provsign__Request *req),
                         int (*ok)(void *ud, size_t i, const Provsign__Response *resp), void *ud, int *results);

/* Key helpers of lib-keys.c, for the key lifecycle and DSSE. */
void client_key_done(struct provsign_key *k);
int client_key_from_info(const Provsign__KeyInfo *ki, bool need_der, struct provsign_key *k);

/* client_conn_from_fd: wraps an already connected SOCK_STREAM socket in a
 * provsign_conn (tests hand it one end of a socketpair). On success the
 * connection owns fd and *ret is set; on failure (-EBADF for a negative
 * fd, -EINVAL for NULL ret, -ENOMEM) fd stays the caller's. */
int client_conn_from_fd(int fd, provsign_conn **ret);

/* client_pem_from_der: "-----BEGIN PUBLIC KEY-----" PEM of a DER
 * SubjectPublicKeyInfo, 64-column base64 lines and a trailing newline, the
 * same text as OpenSSL's PEM_write_PUBKEY(). On success *ret is a new string
 * the caller frees with free(). -EINVAL for len 0 or over 64 KiB, -ENOMEM. */
int client_pem_from_der(const uint8_t *der, size_t len, char **ret);
