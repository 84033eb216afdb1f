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
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dsse.h"
#include "frame.h"
#include "keyid.h"
#include "merkle.h"
#include "names.h"
#include "note.h"
#include "provsign.pb-c.h"

#include "libprovsign-internal.h"
#include "provsign.h"
#include "receipt.h"

#define _public_ __attribute__((visibility("default")))

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

struct provsign_conn {
        int fd;
        bool broken;    /* a transport/framing error desynchronized the stream */
        int refusal;    /* the last call's refusal status, else 0 */
        char *message;  /* the agent's message with it (NULL: none, or ENOMEM) */
};

struct provsign_signature {
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        int algorithm;
        uint8_t *der;
        size_t der_len;
        char *principal;
        uint32_t generation;

        /* The receipt (DESIGN.md "The audit log"), already checked for
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
        char **principals;       /* NULL-terminated */
        char **caller_principals;
        char **caller_roles;
};

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

/* ---- Helpers ------------------------------------------------------------- */

/* protobuf-c gives proto3 strings a default of "" but treat NULL alike:
 * the reply is untrusted and a NULL must never reach strcmp(). */
static const char *str_or_empty(const char *s) {
        return s ? s : "";
}

static void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static int strv_copy(char *const *src, size_t n, char ***ret) {
        char **v;

        /* n is bounded by the 64 KiB frame, so n + 1 cannot overflow. */
        v = calloc(n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                v[i] = strdup(str_or_empty(src[i]));
                if (!v[i]) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

int client_pem_from_der(const uint8_t *der, size_t len, char **ret) {
        static const char head[] = "-----BEGIN PUBLIC KEY-----\n";
        static const char tail[] = "-----END PUBLIC KEY-----\n";
        size_t n_lines, cap;
        char *pem, *p;

        if (!der || len == 0 || len > PROTO_FRAME_MAX || !ret)
                return -EINVAL;

        /* 48 input bytes make one 64-column line, as PEM_write_PUBKEY(). */
        n_lines = (len + 47) / 48;
        cap = (sizeof head - 1) + 4 * ((len + 2) / 3) + n_lines + (sizeof tail - 1) + 1;
        pem = malloc(cap);
        if (!pem)
                return -ENOMEM;

        p = stpcpy(pem, head);
        for (size_t off = 0; off < len; off += 48) {
                size_t chunk = len - off < 48 ? len - off : 48;

                p += EVP_EncodeBlock((unsigned char *) p, der + off, (int) chunk);
                *p++ = '\n';
        }
        stpcpy(p, tail);

        *ret = pem;
        return 0;
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

        *ret = c;
        return 0;
}

/* After connect() was interrupted the connection completes in the
 * background: wait for it and collect its result (connect(2), EINTR). */
static int connect_finish(int fd) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        socklen_t sl;
        int err;

        for (;;) {
                if (poll(&pfd, 1, -1) >= 0)
                        break;
                if (errno != EINTR)
                        return -errno;
        }

        sl = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
                return -errno;
        return err > 0 ? -err : 0;
}

_public_ int provsign_connect(const char *path, provsign_conn **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        provsign_conn *c = NULL;
        size_t l;
        int fd = -1, r;

        if (!ret)
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

        if (connect(fd, (const struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1)) < 0) {
                r = -errno;
                if (r == -EINTR)
                        r = connect_finish(fd);
                if (r < 0)
                        goto out;
        }

        r = client_conn_from_fd(fd, &c);
        if (r < 0)
                goto out;
        fd = -1;

        *ret = c;
        r = 0;
out:
        if (fd >= 0)
                close(fd);
        return r;
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

static int send_full(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                /* MSG_NOSIGNAL: a vanished agent is -EPIPE, not a SIGPIPE
                 * that kills the caller. */
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads until n bytes or end of file. Returns the number of bytes read (less
 * than n only at EOF) or -errno. */
static ssize_t read_full(int fd, uint8_t *p, size_t n) {
        size_t got = 0;

        while (got < n) {
                ssize_t k = read(fd, p + got, n - got);
                if (k < 0) {
                        if (errno == EINTR)
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
static int read_response(int fd, Provsign__Response **ret) {
        uint8_t header[PROTO_FRAME_HEADER], *payload = NULL;
        Provsign__Response *resp;
        size_t len;
        ssize_t n;
        int r;

        n = read_full(fd, header, sizeof header);
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
        n = read_full(fd, payload, len);
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

/* One request, one reply. Returns 0 with *ret an OK Response (the caller
 * validates its body and frees it), a positive status after storing the
 * agent's message, or a negative errno. */
static int conn_transact(provsign_conn *c, Provsign__Request *req, Provsign__Response **ret) {
        Provsign__Response *resp = NULL;
        uint8_t *frame = NULL;
        size_t frame_len;
        int r, w;

        free(c->message);
        c->message = NULL;
        c->refusal = 0;

        if (c->broken)
                return -ENOTCONN;

        req->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        r = proto_frame_pack(&req->base, &frame, &frame_len);
        if (r < 0)
                return r;

        /* The agent may answer and close before reading all of a request it
         * rejects; its reply is still queued for us, so read it before
         * reporting a failed write. */
        w = send_full(c->fd, frame, frame_len);
        free(frame);
        if (w < 0 && w != -EPIPE && w != -ECONNRESET) {
                c->broken = true;
                return w;
        }

        r = read_response(c->fd, &resp);
        if (r < 0 || w < 0)
                c->broken = true;
        if (r < 0)
                /* A bad reply says more than the failed write; plain EOF
                 * says less. */
                return w < 0 && r == -ECONNRESET ? w : r;

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
        resp = NULL;
        r = 0;
out:
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        return r;
}

/* ---- Keys ---------------------------------------------------------------- */

static void key_done(struct provsign_key *k) {
        free(k->principal);
        free(k->reason);
        free(k->der);
        free(k->pem);
}

/* Copies a KeyInfo from the wire into k, checking what can be checked: the
 * key id format and, when the public key is present, that the id is its
 * SHA-256 (DESIGN.md "Keys"). need_der: the reply must include it. */
static int key_from_info(const Provsign__KeyInfo *ki, bool need_der, struct provsign_key *k) {
        struct provsign_key t = {};
        int r;

        if (!ki || !proto_keyid_hex_valid(str_or_empty(ki->keyid)))
                return -EPROTO;

        if (ki->public_key_der.len > 0) {
                char id[PROTO_KEYID_HEX_LEN + 1];

                if (!ki->public_key_der.data || ki->public_key_der.len > PROTO_FRAME_MAX)
                        return -EPROTO;
                proto_keyid_hex(ki->public_key_der.data, ki->public_key_der.len, id);
                if (strcmp(id, ki->keyid) != 0)
                        return -EPROTO;
        } else if (need_der)
                return -EPROTO;

        memcpy(t.keyid, ki->keyid, sizeof t.keyid);
        t.generation = ki->generation;
        t.algorithm = (int) ki->algorithm;
        t.state = (int) ki->state;
        t.created_us = ki->created_us;
        t.retired_us = ki->retired_us;
        t.revoked_us = ki->revoked_us;
        t.compromised_since_us = ki->compromised_since_us;
        t.destroyed_us = ki->destroyed_us;
        t.in_token = ki->in_token;

        t.principal = strdup(str_or_empty(ki->principal));
        if (!t.principal) {
                r = -ENOMEM;
                goto fail;
        }
        if (ki->reason && ki->reason[0] && !(t.reason = strdup(ki->reason))) {
                r = -ENOMEM;
                goto fail;
        }

        if (ki->public_key_der.len > 0) {
                t.der = malloc(ki->public_key_der.len);
                if (!t.der) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(t.der, ki->public_key_der.data, ki->public_key_der.len);
                t.der_len = ki->public_key_der.len;

                r = client_pem_from_der(t.der, t.der_len, &t.pem);
                if (r < 0)
                        goto fail;
        }

        *k = t;
        return 0;
fail:
        key_done(&t);
        return r;
}

_public_ int provsign_get_public_key(provsign_conn *conn, const char *principal, const char *keyid, provsign_key **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetPublicKeyRequest gr = PROVSIGN__GET_PUBLIC_KEY_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        struct provsign_key *k = NULL;
        bool by_principal = principal && *principal, by_keyid = keyid && *keyid;
        int r;

        if (!conn || !ret || by_principal == by_keyid)
                return -EINVAL;
        if (by_keyid && !proto_keyid_hex_valid(keyid))
                return -EINVAL;

        gr.principal = (char *) (by_principal ? principal : "");
        gr.keyid = (char *) (by_keyid ? keyid : "");
        req.body_case = PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY;
        req.get_public_key = &gr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        if (resp->body_case != PROVSIGN__RESPONSE__BODY_GET_PUBLIC_KEY || !resp->get_public_key) {
                r = -EPROTO;
                goto out;
        }

        k = calloc(1, sizeof *k);
        if (!k) {
                r = -ENOMEM;
                goto out;
        }
        r = key_from_info(resp->get_public_key->key, true, k);
        if (r < 0) {
                free(k);
                k = NULL;
                goto out;
        }

        /* The key must be the one asked for. */
        if ((by_keyid && strcmp(k->keyid, keyid) != 0) ||
            (by_principal && strcmp(k->principal, principal) != 0)) {
                r = -EPROTO;
                goto out;
        }

        *ret = k;
        k = NULL;
        r = 0;
out:
        provsign_key_free(k);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_key_keyid(const provsign_key *key) {
        return key->keyid;
}

_public_ const char *provsign_key_principal(const provsign_key *key) {
        return key->principal;
}

_public_ uint32_t provsign_key_generation(const provsign_key *key) {
        return key->generation;
}

_public_ int provsign_key_algorithm(const provsign_key *key) {
        return key->algorithm;
}

_public_ int provsign_key_state(const provsign_key *key) {
        return key->state;
}

_public_ int64_t provsign_key_created_us(const provsign_key *key) {
        return key->created_us;
}

_public_ int64_t provsign_key_retired_us(const provsign_key *key) {
        return key->retired_us;
}

_public_ int64_t provsign_key_revoked_us(const provsign_key *key) {
        return key->revoked_us;
}

_public_ int64_t provsign_key_compromised_since_us(const provsign_key *key) {
        return key->compromised_since_us;
}

_public_ int64_t provsign_key_destroyed_us(const provsign_key *key) {
        return key->destroyed_us;
}

_public_ const char *provsign_key_reason(const provsign_key *key) {
        return key->reason;
}

_public_ int provsign_key_in_token(const provsign_key *key) {
        return key->in_token;
}

_public_ const uint8_t *provsign_key_spki_der(const provsign_key *key, size_t *ret_len) {
        if (ret_len)
                *ret_len = key->der_len;
        return key->der;
}

_public_ const char *provsign_key_pem(const provsign_key *key) {
        return key->pem;
}

_public_ void provsign_key_free(provsign_key *key) {
        if (!key)
                return;
        key_done(key);
        free(key);
}

_public_ int provsign_list_keys(provsign_conn *conn, const char *principal, provsign_key_list **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__ListKeysRequest lr = PROVSIGN__LIST_KEYS_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__ListKeysResponse *body;
        provsign_key_list *list = NULL;
        int r;

        if (!conn || !ret)
                return -EINVAL;

        lr.principal = (char *) (principal ? principal : "");
        req.body_case = PROVSIGN__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &lr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->list_keys;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_LIST_KEYS || !body ||
            (body->n_keys > 0 && !body->keys)) {
                r = -EPROTO;
                goto out;
        }

        list = calloc(1, sizeof *list);
        if (!list) {
                r = -ENOMEM;
                goto out;
        }
        if (body->n_keys > 0) {
                /* n_keys is bounded by the 64 KiB frame. */
                list->keys = calloc(body->n_keys, sizeof *list->keys);
                if (!list->keys) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < body->n_keys; i++) {
                r = key_from_info(body->keys[i], false, &list->keys[i]);
                if (r < 0)
                        goto out;
                list->n++;

                /* A filtered list holds only that principal's keys. */
                if (principal && *principal && strcmp(list->keys[i].principal, principal) != 0) {
                        r = -EPROTO;
                        goto out;
                }
        }

        *ret = list;
        list = NULL;
        r = 0;
out:
        provsign_key_list_free(list);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ size_t provsign_key_list_count(const provsign_key_list *list) {
        return list ? list->n : 0;
}

_public_ const provsign_key *provsign_key_list_get(const provsign_key_list *list, size_t i) {
        if (!list || i >= list->n)
                return NULL;
        return &list->keys[i];
}

_public_ void provsign_key_list_free(provsign_key_list *list) {
        if (!list)
                return;
        for (size_t i = 0; i < list->n; i++)
                key_done(&list->keys[i]);
        free(list->keys);
        free(list);
}

/* ---- Sign ---------------------------------------------------------------- */

/* Copies the receipt of a Sign reply into sig after checking it: the shape
 * (every proof entry one 32-byte hash, at most PROTO_MERKLE_MAX_PROOF of
 * them, a leaf, a note, a representable time) and then its meaning, with
 * the checks of `provsign receipt verify` that need no log key: the note
 * is a checkpoint of tree_size, leaf and proof reproduce its root at
 * log_seq, and the leaf is the SIGN entry of this very signature (key,
 * principal, digest). A receipt that fails is -EPROTO: it would prove
 * nothing to anyone, and the caller is better told now than at audit. */
static int receipt_from_reply(const Provsign__SignResponse *body, int digest_alg, const void *digest,
                              size_t digest_len, provsign_signature *sig) {
        const Provsign__Receipt *rr = body->receipt;
        struct client_receipt_result res = {};
        struct client_receipt rc = {};
        struct client_receipt_signer signer = {
                .keyid = body->keyid,
                .principal = body->principal,
                .digest_algorithm = digest_alg,
                .digest = digest,
                .digest_len = digest_len,
        };
        int r;

        if (!rr)
                return -EPROTO;
        if (rr->n_inclusion_proof > PROTO_MERKLE_MAX_PROOF || (rr->n_inclusion_proof > 0 && !rr->inclusion_proof))
                return -EPROTO;
        for (size_t i = 0; i < rr->n_inclusion_proof; i++)
                if (rr->inclusion_proof[i].len != PROTO_MERKLE_HASH_LEN || !rr->inclusion_proof[i].data)
                        return -EPROTO;
        if (rr->leaf.len == 0 || !rr->leaf.data)
                return -EPROTO;
        if (!*str_or_empty(rr->checkpoint) || strlen(rr->checkpoint) > PROTO_NOTE_MAX_SIZE)
                return -EPROTO;
        /* A time the CLI can write as RFC 3339; sizes JSON can carry. */
        if (rr->log_time_us < 0 || rr->log_time_us >= PROTO_TIME_US_END || rr->tree_size > INT64_MAX)
                return -EPROTO;

        if (rr->n_inclusion_proof > 0) {
                sig->proof = calloc(rr->n_inclusion_proof, sizeof *sig->proof);
                if (!sig->proof)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < rr->n_inclusion_proof; i++)
                memcpy(sig->proof[i], rr->inclusion_proof[i].data, PROTO_MERKLE_HASH_LEN);
        sig->n_proof = rr->n_inclusion_proof;
        sig->leaf = malloc(rr->leaf.len);
        sig->checkpoint = strdup(rr->checkpoint);
        if (!sig->leaf || !sig->checkpoint)
                return -ENOMEM;
        memcpy(sig->leaf, rr->leaf.data, rr->leaf.len);
        sig->leaf_len = rr->leaf.len;
        sig->log_seq = rr->log_seq;
        sig->log_time_us = rr->log_time_us;
        sig->tree_size = rr->tree_size;

        rc = (struct client_receipt) {
                .log_seq = sig->log_seq,
                .log_time_us = sig->log_time_us,
                .leaf = sig->leaf,
                .leaf_len = sig->leaf_len,
                .tree_size = sig->tree_size,
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) sig->proof,
                .n_proof = sig->n_proof,
                .checkpoint = sig->checkpoint,
        };
        r = client_receipt_verify(&rc, &signer, NULL, &res);
        client_receipt_result_done(&res);
        if (r < 0)
                return r;
        if (r > 0)
                return -EPROTO;

        sig->has_receipt = true;
        return 0;
}

_public_ int provsign_sign(provsign_conn *conn,
                           const char *principal,
                           enum provsign_digest_algorithm digest_alg,
                           const void *digest,
                           size_t digest_len,
                           const char *payload_type,
                           const struct provsign_annotation *annotations,
                           size_t n_annotations,
                           provsign_signature **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__SignRequest sr = PROVSIGN__SIGN_REQUEST__INIT;
        Provsign__Annotation *ann = NULL, **annp = NULL;
        Provsign__Response *resp = NULL;
        const Provsign__SignResponse *body;
        provsign_signature *sig = NULL;
        size_t want;
        int r;

        if (!conn || !ret || !digest)
                return -EINVAL;
        want = proto_digest_length((int) digest_alg);
        if (want == 0 || digest_len != want)
                return -EINVAL;
        if (n_annotations > 0 && !annotations)
                return -EINVAL;
        /* Each annotation takes at least 2 bytes on the wire: more than this
         * can never fit a frame, and the bound keeps the allocations below
         * from overflowing. */
        if (n_annotations > PROTO_FRAME_MAX / 2)
                return -EMSGSIZE;

        if (n_annotations > 0) {
                ann = calloc(n_annotations, sizeof *ann);
                annp = calloc(n_annotations, sizeof *annp);
                if (!ann || !annp) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < n_annotations; i++) {
                if (!annotations[i].key) {
                        r = -EINVAL;
                        goto out;
                }
                provsign__annotation__init(&ann[i]);
                ann[i].key = (char *) annotations[i].key;
                ann[i].value = (char *) (annotations[i].value ? annotations[i].value : "");
                annp[i] = &ann[i];
        }

        sr.principal = (char *) (principal ? principal : "");
        sr.digest_algorithm = (Provsign__DigestAlgorithm) digest_alg;
        sr.digest.data = (uint8_t *) digest;
        sr.digest.len = digest_len;
        sr.payload_type = (char *) (payload_type ? payload_type : "");
        sr.n_annotations = n_annotations;
        sr.annotations = annp;
        req.body_case = PROVSIGN__REQUEST__BODY_SIGN;
        req.sign = &sr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                goto out;

        body = resp->sign;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_SIGN || !body ||
            !proto_keyid_hex_valid(str_or_empty(body->keyid)) ||
            body->signature.len == 0 || !body->signature.data ||
            !*str_or_empty(body->principal) ||
            (principal && *principal && strcmp(body->principal, principal) != 0)) {
                r = -EPROTO;
                goto out;
        }

        sig = calloc(1, sizeof *sig);
        if (!sig) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(sig->keyid, body->keyid, sizeof sig->keyid);
        sig->algorithm = (int) body->algorithm;
        sig->generation = body->generation;
        sig->principal = strdup(body->principal);
        sig->der = malloc(body->signature.len);
        if (!sig->principal || !sig->der) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(sig->der, body->signature.data, body->signature.len);
        sig->der_len = body->signature.len;

        r = receipt_from_reply(body, (int) digest_alg, digest, digest_len, sig);
        if (r < 0)
                goto out;

        *ret = sig;
        sig = NULL;
        r = 0;
out:
        provsign_signature_free(sig);
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        free(annp);
        free(ann);
        return r;
}

_public_ const char *provsign_signature_keyid(const provsign_signature *sig) {
        return sig->keyid;
}

_public_ int provsign_signature_algorithm(const provsign_signature *sig) {
        return sig->algorithm;
}

_public_ const uint8_t *provsign_signature_der(const provsign_signature *sig, size_t *ret_len) {
        if (ret_len)
                *ret_len = sig->der_len;
        return sig->der;
}

_public_ const char *provsign_signature_principal(const provsign_signature *sig) {
        return sig->principal;
}

_public_ uint32_t provsign_signature_generation(const provsign_signature *sig) {
        return sig->generation;
}

_public_ int provsign_signature_has_receipt(const provsign_signature *sig) {
        return sig->has_receipt;
}

_public_ uint64_t provsign_signature_log_seq(const provsign_signature *sig) {
        return sig->log_seq;
}

_public_ int64_t provsign_signature_log_time_us(const provsign_signature *sig) {
        return sig->log_time_us;
}

_public_ const uint8_t *provsign_signature_leaf(const provsign_signature *sig, size_t *ret_len) {
        if (ret_len)
                *ret_len = sig->leaf_len;
        return sig->leaf;
}

_public_ uint64_t provsign_signature_tree_size(const provsign_signature *sig) {
        return sig->tree_size;
}

_public_ const uint8_t *provsign_signature_inclusion_proof(const provsign_signature *sig, size_t *ret_n) {
        if (ret_n)
                *ret_n = sig->n_proof;
        return sig->n_proof > 0 ? sig->proof[0] : NULL;
}

_public_ const char *provsign_signature_checkpoint(const provsign_signature *sig) {
        return sig->checkpoint;
}

_public_ void provsign_signature_free(provsign_signature *sig) {
        if (!sig)
                return;
        free(sig->principal);
        free(sig->der);
        free(sig->leaf);
        free(sig->proof);
        free(sig->checkpoint);
        free(sig);
}

/* ---- Key lifecycle (operator role) -------------------------------------- */

struct provsign_key_change {
        struct provsign_key *key;       /* NULL when the agent named none */
        struct provsign_key *active;
        uint64_t log_seq;
};

_public_ void provsign_key_change_free(provsign_key_change *kc) {
        if (!kc)
                return;
        provsign_key_free(kc->key);
        provsign_key_free(kc->active);
        free(kc);
}

static int key_change_copy(const Provsign__KeyInfo *ki, struct provsign_key **ret) {
        if (!ki)
                return 0;
        struct provsign_key *k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        int r = key_from_info(ki, false, k);
        if (r < 0) {
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int key_change_transact(provsign_conn *conn, Provsign__Request *req, provsign_key_change **ret) {
        Provsign__Response *resp = NULL;
        provsign_key_change *kc = NULL;
        int r = conn_transact(conn, req, &resp);
        if (r != 0)
                return r;
        const Provsign__KeyChangeResponse *body = resp->key_change;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_KEY_CHANGE || !body) {
                r = -EPROTO;
                goto out;
        }
        kc = calloc(1, sizeof *kc);
        if (!kc) {
                r = -ENOMEM;
                goto out;
        }
        kc->log_seq = body->log_seq;
        r = key_change_copy(body->key, &kc->key);
        if (r >= 0)
                r = key_change_copy(body->active, &kc->active);
        if (r < 0)
                goto out;
        if (ret) {
                *ret = kc;
                kc = NULL;
        }
        r = 0;
out:
        provsign_key_change_free(kc);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ int provsign_rotate_key(provsign_conn *conn, const char *principal, int algorithm, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__RotateKeyRequest rr = PROVSIGN__ROTATE_KEY_REQUEST__INIT;
        if (!conn || !principal || !*principal || algorithm < 0)
                return -EINVAL;
        rr.principal = (char *) principal;
        rr.algorithm = (Provsign__KeyAlgorithm) algorithm;
        req.body_case = PROVSIGN__REQUEST__BODY_ROTATE_KEY;
        req.rotate_key = &rr;
        return key_change_transact(conn, &req, ret);
}

_public_ int provsign_revoke_key(provsign_conn *conn, const char *keyid, const char *reason,
                                 int64_t compromised_since_us, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__RevokeKeyRequest rr = PROVSIGN__REVOKE_KEY_REQUEST__INIT;
        if (!conn || !keyid || !proto_keyid_hex_valid(keyid) || !reason || !*reason || compromised_since_us < 0)
                return -EINVAL;
        rr.keyid = (char *) keyid;
        rr.reason = (char *) reason;
        rr.compromised_since_us = compromised_since_us;
        req.body_case = PROVSIGN__REQUEST__BODY_REVOKE_KEY;
        req.revoke_key = &rr;
        return key_change_transact(conn, &req, ret);
}

_public_ int provsign_destroy_key(provsign_conn *conn, const char *keyid, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__DestroyKeyRequest dr = PROVSIGN__DESTROY_KEY_REQUEST__INIT;
        if (!conn || !keyid || !proto_keyid_hex_valid(keyid))
                return -EINVAL;
        dr.keyid = (char *) keyid;
        req.body_case = PROVSIGN__REQUEST__BODY_DESTROY_KEY;
        req.destroy_key = &dr;
        return key_change_transact(conn, &req, ret);
}

_public_ const provsign_key *provsign_key_change_key(const provsign_key_change *kc) {
        return kc->key;
}

_public_ const provsign_key *provsign_key_change_active(const provsign_key_change *kc) {
        return kc->active;
}

_public_ uint64_t provsign_key_change_log_seq(const provsign_key_change *kc) {
        return kc->log_seq;
}

/* ---- The audit log: checkpoint and log key ------------------------------- */

/* GetCheckpoint, with a consistency proof when from_size > 0. The note must
 * be a checkpoint of the size the reply states (its signature needs the
 * log key, which the caller verifies with), the proof must answer the
 * question asked (from_size echoed, at most PROTO_MERKLE_MAX_PROOF hashes of
 * 32 bytes, from_size <= tree_size); anything else is -EPROTO. */
static int get_checkpoint(provsign_conn *conn, uint64_t from_size, char **ret_note, uint64_t *ret_size,
                          uint8_t **ret_proof, size_t *ret_n) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetCheckpointRequest cr = PROVSIGN__GET_CHECKPOINT_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__GetCheckpointResponse *body;
        uint8_t root[PROTO_MERKLE_HASH_LEN], *proof = NULL;
        char *origin = NULL, *note = NULL;
        uint64_t size;
        size_t n;
        int r;

        cr.from_size = from_size;
        req.body_case = PROVSIGN__REQUEST__BODY_GET_CHECKPOINT;
        req.get_checkpoint = &cr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->checkpoint;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_CHECKPOINT || !body || !*str_or_empty(body->checkpoint)) {
                r = -EPROTO;
                goto out;
        }
        r = client_checkpoint_note_parse(body->checkpoint, strlen(body->checkpoint), &origin, &size, root);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || size != body->tree_size) {
                r = -EPROTO;
                goto out;
        }

        /* Without from_size no proof was asked for, and none is taken. */
        n = from_size > 0 ? body->n_consistency_proof : 0;
        if (from_size > 0 && (body->from_size != from_size || from_size > size))
                r = -EPROTO;
        if (n > PROTO_MERKLE_MAX_PROOF || (n > 0 && !body->consistency_proof))
                r = -EPROTO;
        for (size_t i = 0; r == 0 && i < n; i++)
                if (body->consistency_proof[i].len != PROTO_MERKLE_HASH_LEN || !body->consistency_proof[i].data)
                        r = -EPROTO;
        if (r < 0)
                goto out;

        note = strdup(body->checkpoint);
        proof = malloc(n > 0 ? n * PROTO_MERKLE_HASH_LEN : 1);
        if (!note || !proof) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                memcpy(proof + i * PROTO_MERKLE_HASH_LEN, body->consistency_proof[i].data, PROTO_MERKLE_HASH_LEN);

        *ret_note = note;
        note = NULL;
        if (ret_size)
                *ret_size = size;
        if (ret_proof) {
                *ret_proof = proof;
                proof = NULL;
        }
        if (ret_n)
                *ret_n = n;
        r = 0;
out:
        free(proof);
        free(note);
        free(origin);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ int provsign_get_checkpoint(provsign_conn *conn, char **ret_note, uint64_t *ret_size) {
        if (!conn || !ret_note)
                return -EINVAL;
        return get_checkpoint(conn, 0, ret_note, ret_size, NULL, NULL);
}

_public_ int provsign_get_checkpoint_consistency(provsign_conn *conn, uint64_t from_size, char **ret_note,
                                                 uint64_t *ret_size, uint8_t **ret_proof, size_t *ret_n) {
        if (!conn || !ret_note || !ret_proof || !ret_n || from_size == 0)
                return -EINVAL;
        return get_checkpoint(conn, from_size, ret_note, ret_size, ret_proof, ret_n);
}

_public_ int provsign_get_log_key(provsign_conn *conn, provsign_log_key **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetLogKeyRequest lr = PROVSIGN__GET_LOG_KEY_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__GetLogKeyResponse *body;
        provsign_log_key *k = NULL;
        char id[PROTO_KEYID_HEX_LEN + 1];
        int r;

        if (!conn || !ret)
                return -EINVAL;

        req.body_case = PROVSIGN__REQUEST__BODY_GET_LOG_KEY;
        req.get_log_key = &lr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->log_key;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_LOG_KEY || !body ||
            !*str_or_empty(body->origin) ||
            body->public_key_der.len == 0 || !body->public_key_der.data ||
            body->public_key_der.len > PROTO_FRAME_MAX ||
            !proto_keyid_hex_valid(str_or_empty(body->keyid))) {
                r = -EPROTO;
                goto out;
        }
        /* The key id is the SHA-256 of the DER, as for every key. */
        proto_keyid_hex(body->public_key_der.data, body->public_key_der.len, id);
        if (strcmp(id, body->keyid) != 0) {
                r = -EPROTO;
                goto out;
        }

        k = calloc(1, sizeof *k);
        if (!k) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(k->keyid, id, sizeof k->keyid);
        k->origin = strdup(body->origin);
        k->der = malloc(body->public_key_der.len);
        if (!k->origin || !k->der) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(k->der, body->public_key_der.data, body->public_key_der.len);
        k->der_len = body->public_key_der.len;

        r = client_pem_from_der(k->der, k->der_len, &k->pem);
        if (r < 0)
                goto out;

        /* Made here from what was checked, like the PEM; this also checks
         * that the origin is a key name and the key an ECDSA key that can
         * sign notes (-EINVAL). An agent that states another string
         * contradicts itself. */
        r = proto_note_verifier_key(k->origin, k->der, k->der_len, &k->verifier_key);
        if (r == -EINVAL)
                r = -EPROTO;
        if (r < 0)
                goto out;
        if (*str_or_empty(body->verifier_key) && strcmp(body->verifier_key, k->verifier_key) != 0) {
                r = -EPROTO;
                goto out;
        }

        *ret = k;
        k = NULL;
        r = 0;
out:
        provsign_log_key_free(k);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_log_key_origin(const provsign_log_key *key) {
        return key->origin;
}

_public_ const char *provsign_log_key_keyid(const provsign_log_key *key) {
        return key->keyid;
}

_public_ const uint8_t *provsign_log_key_spki_der(const provsign_log_key *key, size_t *ret_len) {
        if (ret_len)
                *ret_len = key->der_len;
        return key->der;
}

_public_ const char *provsign_log_key_pem(const provsign_log_key *key) {
        return key->pem;
}

_public_ const char *provsign_log_key_verifier_key(const provsign_log_key *key) {
        return key->verifier_key;
}

_public_ void provsign_log_key_free(provsign_log_key *key) {
        if (!key)
                return;
        free(key->origin);
        free(key->der);
        free(key->pem);
        free(key->verifier_key);
        free(key);
}

/* ---- Agent status -------------------------------------------------------- */

_public_ int provsign_status(provsign_conn *conn, provsign_agent_status **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__StatusRequest sr = PROVSIGN__STATUS_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__StatusResponse *body;
        provsign_agent_status *st = NULL;
        int r;

        if (!conn || !ret)
                return -EINVAL;

        req.body_case = PROVSIGN__REQUEST__BODY_STATUS;
        req.status = &sr;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->status_info;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_STATUS_INFO || !body ||
            (body->n_principals > 0 && !body->principals) ||
            (body->n_caller_principals > 0 && !body->caller_principals) ||
            (body->n_caller_roles > 0 && !body->caller_roles)) {
                r = -EPROTO;
                goto out;
        }

        st = calloc(1, sizeof *st);
        if (!st) {
                r = -ENOMEM;
                goto out;
        }
        st->protocol_version = body->protocol_version;
        st->uptime_seconds = body->uptime_seconds;
        st->log_size = body->log_size;
        st->log_syncs = body->log_syncs;
        st->agent_version = strdup(str_or_empty(body->agent_version));
        st->token_label = strdup(str_or_empty(body->token_label));
        st->log_origin = strdup(str_or_empty(body->log_origin));
        if (!st->agent_version || !st->token_label || !st->log_origin) {
                r = -ENOMEM;
                goto out;
        }
        r = strv_copy(body->principals, body->n_principals, &st->principals);
        if (r < 0)
                goto out;
        r = strv_copy(body->caller_principals, body->n_caller_principals, &st->caller_principals);
        if (r < 0)
                goto out;
        r = strv_copy(body->caller_roles, body->n_caller_roles, &st->caller_roles);
        if (r < 0)
                goto out;

        *ret = st;
        st = NULL;
        r = 0;
out:
        provsign_agent_status_free(st);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_agent_status_agent_version(const provsign_agent_status *st) {
        return st->agent_version;
}

_public_ uint32_t provsign_agent_status_protocol_version(const provsign_agent_status *st) {
        return st->protocol_version;
}

_public_ const char *provsign_agent_status_token_label(const provsign_agent_status *st) {
        return st->token_label;
}

_public_ uint64_t provsign_agent_status_uptime_seconds(const provsign_agent_status *st) {
        return st->uptime_seconds;
}

_public_ const char *provsign_agent_status_log_origin(const provsign_agent_status *st) {
        return st->log_origin;
}

_public_ uint64_t provsign_agent_status_log_size(const provsign_agent_status *st) {
        return st->log_size;
}

_public_ uint64_t provsign_agent_status_log_syncs(const provsign_agent_status *st) {
        return st->log_syncs;
}

_public_ const char *const *provsign_agent_status_principals(const provsign_agent_status *st) {
        return (const char *const *) st->principals;
}

_public_ const char *const *provsign_agent_status_caller_principals(const provsign_agent_status *st) {
        return (const char *const *) st->caller_principals;
}

_public_ const char *const *provsign_agent_status_caller_roles(const provsign_agent_status *st) {
        return (const char *const *) st->caller_roles;
}

_public_ void provsign_agent_status_free(provsign_agent_status *st) {
        if (!st)
                return;
        free(st->agent_version);
        free(st->token_label);
        free(st->log_origin);
        strv_free(st->principals);
        strv_free(st->caller_principals);
        strv_free(st->caller_roles);
        free(st);
}

/* ---- DSSE envelopes ------------------------------------------------------ */

/* The DSSE issue: the payload never leaves the caller; the agent signs the
 * digest of its PAE (proto/dsse.h), with the digest its key algorithm
 * takes. */

/* The only principal this caller may sign for, as the agent says, or NULL
 * (none or several: the Sign request then omits it and the agent's answer,
 * refusal included, is the caller's). */
static int sole_principal(provsign_conn *conn, char **ret) {
        provsign_agent_status *st = NULL;
        const char *const *p;
        int r;

        *ret = NULL;
        r = provsign_status(conn, &st);
        if (r != 0)
                return r;
        p = provsign_agent_status_caller_principals(st);
        if (p[0] && !p[1]) {
                *ret = strdup(p[0]);
                if (!*ret)
                        r = -ENOMEM;
        }
        provsign_agent_status_free(st);
        return r;
}

/* Verifies sig (over digest) with the DER SPKI der: ECDSA (DER signature)
 * or RSASSA-PKCS1-v1_5 with the digest's hash. 0, -EPROTO when it does not
 * hold or the key cannot be read, -ENOMEM. */
static int verify_with_spki(const uint8_t *der, size_t der_len, int dalg, const uint8_t *digest, size_t digest_len,
                            const uint8_t *sig, size_t sig_len) {
        const unsigned char *p = der;
        EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey;
        int r = -EPROTO;

        pkey = d2i_PUBKEY(NULL, &p, (long) der_len);
        if (!pkey || p != der + der_len)
                goto out;
        ctx = EVP_PKEY_CTX_new(pkey, NULL);
        if (!ctx) {
                r = -ENOMEM;
                goto out;
        }
        if (EVP_PKEY_verify_init(ctx) != 1)
                goto out;
        if (EVP_PKEY_is_a(pkey, "RSA") &&
            (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
             EVP_PKEY_CTX_set_signature_md(ctx, dalg == PROVSIGN__DIGEST_ALGORITHM__SHA384 ? EVP_sha384() : EVP_sha256()) != 1))
                goto out;
        if (EVP_PKEY_verify(ctx, sig, sig_len, digest, digest_len) == 1)
                r = 0;
out:
        ERR_clear_error();
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        return r;
}

/* The digest algorithm of principal's active key; on a refusal (no such
 * principal, no active key, ...) SHA-256, so that the Sign request is made
 * and the agent's refusal of it, logged there, is what the caller sees. */
static int active_digest(provsign_conn *conn, const char *principal, int *ret) {
        provsign_key *key = NULL;
        int r, d;

        *ret = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        if (!principal)
                return 0;
        r = provsign_get_public_key(conn, principal, NULL, &key);
        if (r > 0)
                return 0;
        if (r < 0)
                return r;
        d = proto_key_algorithm_digest(key->algorithm);
        provsign_key_free(key);
        if (d == 0)
                return -EPROTO; /* an algorithm this library cannot hash for */
        *ret = d;
        return 0;
}

_public_ int provsign_sign_dsse(provsign_conn *conn,
                                const char *principal,
                                const char *payload_type,
                                const void *payload,
                                size_t payload_len,
                                const struct provsign_annotation *annotations,
                                size_t n_annotations,
                                char **ret_envelope,
                                provsign_signature **ret_sig) {
        provsign_signature *sig = NULL;
        provsign_key *key = NULL;
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        char *who = NULL, *json = NULL;
        int r, dalg, n;

        if (!conn || !ret_envelope || !payload_type || !*payload_type || (!payload && payload_len > 0))
                return -EINVAL;
        if (strlen(payload_type) > PROTO_DSSE_MAX_TYPE)
                return -EINVAL;
        if (payload_len > PROVSIGN_DSSE_MAX_PAYLOAD)
                return -EMSGSIZE;

        if (principal && *principal) {
                who = strdup(principal);
                if (!who)
                        return -ENOMEM;
        } else {
                r = sole_principal(conn, &who);
                if (r != 0)
                        return r;
        }

        /* Two rounds at most: a rotation to another algorithm between the
         * key query and the Sign makes the agent refuse the digest
         * (INVALID_ARGUMENT); the second round asks again. */
        for (int round = 0; round < 2; round++) {
                int again;

                r = active_digest(conn, who, &dalg);
                if (r < 0)
                        goto out;
                n = proto_dsse_pae_digest(dalg, payload_type, payload, payload_len, digest);
                if (n < 0) {
                        r = n == -ENOMEM ? -ENOMEM : -EINVAL;
                        goto out;
                }
                r = provsign_sign(conn, who, (enum provsign_digest_algorithm) dalg, digest, (size_t) n, payload_type,
                                  annotations, n_annotations, &sig);
                if (r != PROVSIGN_INVALID_ARGUMENT || round > 0 || !who)
                        break;
                /* Only worth a second round when the key's digest changed. */
                again = dalg;
                r = active_digest(conn, who, &again);
                if (r < 0)
                        goto out;
                if (again == dalg) {
                        r = PROVSIGN_INVALID_ARGUMENT;
                        break;
                }
        }
        if (r != 0)
                goto out;
        if (proto_key_algorithm_digest(sig->algorithm) != dalg) {
                r = -EPROTO;
                goto out;
        }

        /* The envelope goes to verifiers nobody here controls: check the
         * signature now, with the key the agent names. */
        r = provsign_get_public_key(conn, NULL, sig->keyid, &key);
        if (r > 0)
                r = -EPROTO;
        if (r < 0)
                goto out;
        r = verify_with_spki(key->der, key->der_len, dalg, digest, (size_t) n, sig->der, sig->der_len);
        if (r < 0)
                goto out;

        struct proto_dsse_sig ds = { .keyid = sig->keyid, .sig = sig->der, .sig_len = sig->der_len };
        r = proto_dsse_envelope_format(payload_type, payload, payload_len, &ds, 1, &json);
        if (r < 0) {
                r = r == -ENOMEM ? -ENOMEM : -EINVAL;
                goto out;
        }

        *ret_envelope = json;
        json = NULL;
        if (ret_sig) {
                *ret_sig = sig;
                sig = NULL;
        }
        r = 0;
out:
        free(json);
        free(who);
        provsign_key_free(key);
        provsign_signature_free(sig);
        return r;
}

_public_ int provsign_get_key_bundle(provsign_conn *conn, char **ret_envelope) {
        return provsign_get_key_bundle_for(conn, NULL, ret_envelope);
}

_public_ int provsign_get_key_bundle_for(provsign_conn *conn, const char *principal, char **ret_envelope) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetKeyBundleRequest br = PROVSIGN__GET_KEY_BUNDLE_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        struct proto_dsse_envelope *env = NULL;
        char *text = NULL;
        size_t len = 0;
        bool more = false;      /* parts still to come: leaving now desynchronizes conn */
        int r;

        if (!conn || !ret_envelope)
                return -EINVAL;

        br.principal = (char *) (principal ? principal : "");
        br.in_parts = true;
        req.body_case = PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE;
        req.get_key_bundle = &br;

        r = conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;
        /* The envelope's parts, one per frame, until more is false. */
        for (;;) {
                const char *part;
                size_t n;
                char *grown;

                if (resp->status != PROVSIGN__STATUS__OK || resp->body_case != PROVSIGN__RESPONSE__BODY_KEY_BUNDLE ||
                    !resp->key_bundle) {
                        r = -EPROTO;
                        goto out;
                }
                more = resp->key_bundle->more;
                part = str_or_empty(resp->key_bundle->envelope);
                n = strlen(part);
                if (n == 0 && more) {
                        r = -EPROTO;    /* an empty part that is not the last: no progress */
                        goto out;
                }
                if (n > PROTO_KEY_BUNDLE_MAX - len) {
                        r = -EMSGSIZE;
                        goto out;
                }
                grown = realloc(text, len + n + 1);
                if (!grown) {
                        r = -ENOMEM;
                        goto out;
                }
                text = grown;
                memcpy(text + len, part, n + 1);
                len += n;
                if (!more)
                        break;
                provsign__response__free_unpacked(resp, NULL);
                resp = NULL;
                r = read_response(conn->fd, &resp);
                if (r < 0)
                        goto out;
        }
        r = proto_dsse_envelope_parse(text ? text : "", len, &env);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || strcmp(env->payload_type, PROVSIGN_KEY_BUNDLE_TYPE) != 0) {
                r = -EPROTO;
                goto out;
        }
        *ret_envelope = text;
        text = NULL;
        r = 0;
out:
        if (r < 0 && more)
                conn->broken = true;
        free(text);
        proto_dsse_envelope_free(env);
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        return r;
}
