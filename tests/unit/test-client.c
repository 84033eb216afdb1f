/* Unit tests for libprovsign: names and errors, socket selection, and the
 * reply parser against a scripted fake agent on the other end of a
 * socketpair (or a listening socket). The fake sends exactly the bytes a
 * test gives it — oversized headers, torn frames, garbage, refusals, replies
 * without a body — and the library must answer with -EPROTO or the status,
 * never crash, never leak (the suite runs clean under ASan/UBSan). */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "frame.h"
#include "keyid.h"
#include "provsign.pb-c.h"

#include "libprovsign-internal.h"
#include "provsign.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ROUNDS 4

/* ---- The fake agent ------------------------------------------------------ */

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

static bool read_exactly(int fd, uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return false;
                p += k;
                n -= (size_t) k;
        }
        return true;
}

static void write_all(int fd, const uint8_t *p, size_t n, bool dribble) {
        while (n > 0) {
                ssize_t k = send(fd, p, dribble ? 1 : n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return; /* the client gave up; fine */
                p += k;
                n -= (size_t) k;
        }
}

static Provsign__Request *read_request(int fd) {
        uint8_t header[4], *payload;
        Provsign__Request *req;
        uint32_t len;

        if (!read_exactly(fd, header, sizeof header))
                return NULL;
        len = proto_get_u32be(header);
        if (len > PROTO_FRAME_MAX)
                return NULL;
        payload = malloc(len + 1);
        if (!payload)
                return NULL;
        req = read_exactly(fd, payload, len) ? provsign__request__unpack(NULL, len, payload) : NULL;
        free(payload);
        return req;
}

/* No cmocka assertions on this thread: they longjmp. */
static void *fake_thread(void *userdata) {
        struct fake_agent *fa = userdata;

        if (fa->listen_fd >= 0) {
                fa->fd = accept4(fa->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fa->fd < 0)
                        return NULL;
        }

        for (size_t i = 0; i < fa->n_replies; i++) {
                if (!fa->skip_request) {
                        Provsign__Request *req = read_request(fa->fd);
                        if (!req)
                                break;
                        fa->requests[fa->n_requests++] = req;
                }
                write_all(fa->fd, fa->replies[i].buf, fa->replies[i].len, fa->dribble);
        }

        /* EOF after the script. */
        close(fa->fd);
        fa->fd = -1;
        return NULL;
}

static void fake_init(struct fake_agent *fa) {
        *fa = (struct fake_agent) { .fd = -1, .listen_fd = -1 };
}

static void fake_add_raw(struct fake_agent *fa, const void *p, size_t n) {
        assert_true(fa->n_replies < MAX_ROUNDS);
        fa->replies[fa->n_replies].buf = malloc(n + 1);
        assert_non_null(fa->replies[fa->n_replies].buf);
        if (n > 0)
                memcpy(fa->replies[fa->n_replies].buf, p, n);
        fa->replies[fa->n_replies].len = n;
        fa->n_replies++;
}

static void fake_add(struct fake_agent *fa, const Provsign__Response *resp) {
        uint8_t *buf;
        size_t len;

        assert_int_equal(proto_frame_pack(&resp->base, &buf, &len), 0);
        fake_add_raw(fa, buf, len);
        free(buf);
}

/* A frame whose payload is given as raw bytes. */
static void fake_add_payload(struct fake_agent *fa, const void *payload, size_t n) {
        uint8_t *buf = malloc(4 + n + 1);

        assert_non_null(buf);
        proto_put_u32be(buf, (uint32_t) n);
        memcpy(buf + 4, payload, n);
        fake_add_raw(fa, buf, 4 + n);
        free(buf);
}

static void fake_add_refusal(struct fake_agent *fa, int status, const char *message) {
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;

        resp.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp.status = (Provsign__Status) status;
        resp.message = (char *) message;
        fake_add(fa, &resp);
}

/* Starts the fake on one end of a socketpair; *conn gets the other. */
static void fake_start(struct fake_agent *fa, provsign_conn **conn) {
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fa->fd = sv[1];
        assert_int_equal(client_conn_from_fd(sv[0], conn), 0);
        assert_int_equal(pthread_create(&fa->thread, NULL, fake_thread, fa), 0);
}

static void fake_join(struct fake_agent *fa) {
        assert_int_equal(pthread_join(fa->thread, NULL), 0);
}

static void fake_done(struct fake_agent *fa) {
        for (size_t i = 0; i < fa->n_replies; i++)
                free(fa->replies[i].buf);
        for (size_t i = 0; i < fa->n_requests; i++)
                provsign__request__free_unpacked(fa->requests[i], NULL);
        if (fa->fd >= 0)
                close(fa->fd);
        if (fa->listen_fd >= 0)
                close(fa->listen_fd);
        fake_init(fa);
}

/* ---- Fixtures ------------------------------------------------------------ */

static const uint8_t digest32[32] = {
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20,
};

static const uint8_t fake_der_sig[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02 };

static const char keyid_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/* A real P-256 public key, its DER SPKI, key id and OpenSSL's PEM. */
struct test_key {
        uint8_t *der;
        size_t der_len;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        char *pem;
};

static void test_key_make(struct test_key *k) {
        EVP_PKEY *pkey = EVP_EC_gen("P-256");
        unsigned char *p = NULL;
        BIO *bio;
        char *data;
        long n;
        int len;

        assert_non_null(pkey);
        len = i2d_PUBKEY(pkey, &p);
        assert_true(len > 0);
        k->der = p;
        k->der_len = (size_t) len;
        proto_keyid_hex(k->der, k->der_len, k->keyid);

        bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
        n = BIO_get_mem_data(bio, &data);
        k->pem = strndup(data, (size_t) n);
        assert_non_null(k->pem);
        BIO_free(bio);
        EVP_PKEY_free(pkey);
}

static void test_key_done(struct test_key *k) {
        OPENSSL_free(k->der);
        free(k->pem);
}

static void key_info_set(Provsign__KeyInfo *ki, const struct test_key *k, const char *principal) {
        provsign__key_info__init(ki);
        ki->keyid = (char *) k->keyid;
        ki->principal = (char *) principal;
        ki->generation = 3;
        ki->algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        ki->state = PROVSIGN__KEY_STATE__ACTIVE;
        ki->created_us = INT64_C(1764092040000000);
        ki->public_key_der.data = k->der;
        ki->public_key_der.len = k->der_len;
}

static void sign_response_set(Provsign__Response *resp, Provsign__SignResponse *sr, const char *keyid, const char *principal) {
        provsign__response__init(resp);
        provsign__sign_response__init(sr);
        sr->keyid = (char *) keyid;
        sr->algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        sr->signature.data = (uint8_t *) fake_der_sig;
        sr->signature.len = sizeof fake_der_sig;
        sr->principal = (char *) principal;
        sr->generation = 7;
        resp->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp->status = PROVSIGN__STATUS__OK;
        resp->body_case = PROVSIGN__RESPONSE__BODY_SIGN;
        resp->sign = sr;
}

static int do_sign(provsign_conn *conn, provsign_signature **sig) {
        return provsign_sign(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                             NULL, NULL, 0, sig);
}

/* ---- Names and errors ---------------------------------------------------- */

static void test_status_names(void **state) {
        static const char *const names[] = {
                "OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", "KEY_REVOKED",
                "NO_ACTIVE_KEY", "RATE_LIMITED", "HSM_UNAVAILABLE", "UNAVAILABLE", "INTERNAL",
        };

        for (int i = 0; i < (int) ELEMENTSOF(names); i++)
                assert_string_equal(provsign_status_name(i), names[i]);
        assert_string_equal(provsign_status_name(PROVSIGN_PERMISSION_DENIED), "PERMISSION_DENIED");
        assert_string_equal(provsign_status_name(PROVSIGN_INTERNAL), "INTERNAL");
        assert_string_equal(provsign_status_name(10), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(-1), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(-EPROTO), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(INT_MAX), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(INT_MIN), "UNKNOWN_STATUS");
}

static void test_strerror(void **state) {
        const char *seen[PROVSIGN_INTERNAL + 1];

        assert_string_equal(provsign_strerror(0), "Success");
        for (int i = PROVSIGN_OK; i <= PROVSIGN_INTERNAL; i++) {
                const char *s = provsign_strerror(i);

                assert_non_null(s);
                assert_true(strlen(s) > 0);
                assert_string_not_equal(s, "Unknown agent status");
                for (int j = 0; j < i; j++)
                        assert_string_not_equal(s, seen[j]);
                seen[i] = s;
        }
        assert_string_equal(provsign_strerror(PROVSIGN_PERMISSION_DENIED), "Permission denied by agent policy");
        assert_string_equal(provsign_strerror(10), "Unknown agent status");
        assert_string_equal(provsign_strerror(INT_MAX), "Unknown agent status");

        assert_string_equal(provsign_strerror(-ENOENT), strerror(ENOENT));
        assert_string_equal(provsign_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
        assert_string_equal(provsign_strerror(-EACCES), strerror(EACCES));
        assert_string_equal(provsign_strerror(-EMSGSIZE), strerror(EMSGSIZE));
        assert_string_equal(provsign_strerror(-EPROTO), "Malformed or oversized reply from agent");
        assert_non_null(provsign_strerror(-ENOTCONN));
        assert_string_equal(provsign_strerror(-100000), "Unknown error");
        assert_string_equal(provsign_strerror(INT_MIN), "Unknown error");
}

static void test_enum_names(void **state) {
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_ECDSA_P256), "ecdsa-p256");
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_ECDSA_P384), "ecdsa-p384");
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_RSA_3072), "rsa-3072");
        assert_string_equal(provsign_key_algorithm_to_string(0), "unknown");
        assert_string_equal(provsign_key_algorithm_to_string(99), "unknown");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_ACTIVE), "active");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_RETIRED), "retired");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_REVOKED), "revoked");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_DESTROYED), "destroyed");
        assert_string_equal(provsign_key_state_to_string(0), "unknown");
        assert_string_equal(provsign_key_state_to_string(-3), "unknown");
        assert_string_equal(provsign_digest_algorithm_to_string(PROVSIGN_DIGEST_SHA256), "sha256");
        assert_string_equal(provsign_digest_algorithm_to_string(PROVSIGN_DIGEST_SHA384), "sha384");
        assert_string_equal(provsign_digest_algorithm_to_string(3), "unknown");
}

/* ---- Connecting ---------------------------------------------------------- */

static void test_default_socket(void **state) {
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);
        assert_string_equal(provsign_default_socket(), "/run/provsign/agent.sock");

        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", "/tmp/elsewhere.sock", 1), 0);
        assert_string_equal(provsign_default_socket(), "/tmp/elsewhere.sock");

        /* Set but empty is unset, not the empty path. */
        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", "", 1), 0);
        assert_string_equal(provsign_default_socket(), "/run/provsign/agent.sock");

        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);
}

static void test_connect_errors(void **state) {
        char dir[] = "/tmp/test-client-XXXXXX", path[PATH_MAX], longpath[200];
        provsign_conn *sentinel = (provsign_conn *) (uintptr_t) 0x1, *c = sentinel;
        int fd;

        assert_non_null(mkdtemp(dir));

        snprintf(path, sizeof path, "%s/missing.sock", dir);
        assert_int_equal(provsign_connect(path, &c), -ENOENT);
        assert_ptr_equal(c, sentinel);   /* out-parameter untouched on failure */

        /* NULL: the environment, then the default. */
        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", path, 1), 0);
        assert_int_equal(provsign_connect(NULL, &c), -ENOENT);
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);

        /* A file that is not a socket. */
        snprintf(path, sizeof path, "%s/file", dir);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(provsign_connect(path, &c), -ECONNREFUSED);
        assert_int_equal(unlink(path), 0);

        memset(longpath, 'x', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(provsign_connect(longpath, &c), -ENAMETOOLONG);
        assert_int_equal(provsign_connect("", &c), -EINVAL);
        assert_int_equal(provsign_connect(path, NULL), -EINVAL);
        assert_ptr_equal(c, sentinel);

        assert_int_equal(rmdir(dir), 0);

        /* NULL handles are harmless. */
        provsign_close(NULL);
        provsign_signature_free(NULL);
        provsign_key_free(NULL);
        provsign_key_list_free(NULL);
        provsign_agent_status_free(NULL);
        assert_string_equal(provsign_last_message(NULL), "");
        assert_int_equal(provsign_key_list_count(NULL), 0);
        assert_null(provsign_key_list_get(NULL, 0));
        assert_int_equal(client_conn_from_fd(-1, &c), -EBADF);
}

static void status_response_set(Provsign__Response *resp, Provsign__StatusResponse *st) {
        static char *principals[] = { (char *) "ci-release", (char *) "ci-nightly" };
        static char *roles[] = { (char *) "operator" };

        provsign__response__init(resp);
        provsign__status_response__init(st);
        st->agent_version = (char *) "0.1.0";
        st->protocol_version = 1;
        st->token_label = (char *) "provsign";
        st->n_principals = 2;
        st->principals = principals;
        st->uptime_seconds = 12345;
        st->n_caller_principals = 1;
        st->caller_principals = principals;
        st->n_caller_roles = 1;
        st->caller_roles = roles;
        resp->body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        resp->status_info = st;
}

/* The whole path through provsign_connect() and a listening socket, via
 * $PROVSIGN_AGENT_SOCK. */
static void test_connect_listener(void **state) {
        char dir[] = "/tmp/test-client-XXXXXX", path[PATH_MAX];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Provsign__Response resp;
        Provsign__StatusResponse body;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_agent_status *st = NULL;
        int r;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/agent.sock", dir);
        assert_true(strlen(path) < sizeof sa.sun_path);
        strcpy(sa.sun_path, path);

        fake_init(&fa);
        fa.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fa.listen_fd >= 0);
        assert_int_equal(bind(fa.listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fa.listen_fd, 1), 0);
        status_response_set(&resp, &body);
        fake_add(&fa, &resp);
        assert_int_equal(pthread_create(&fa.thread, NULL, fake_thread, &fa), 0);

        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", path, 1), 0);
        assert_int_equal(provsign_connect(NULL, &conn), 0);
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);

        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "0.1.0");
        provsign_agent_status_free(st);
        st = NULL;

        /* The fake hung up after one round: the next call fails to write
         * (-EPIPE) or reads EOF (-ECONNRESET), depending on timing. */
        r = provsign_status(conn, &st);
        assert_true(r == -EPIPE || r == -ECONNRESET);
        assert_null(st);
        /* ...and the connection is now unusable, without blocking. */
        assert_int_equal(provsign_status(conn, &st), -ENOTCONN);

        fake_join(&fa);
        assert_int_equal(fa.n_requests, 1);
        assert_int_equal(fa.requests[0]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_STATUS);

        provsign_close(conn);
        fake_done(&fa);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* ---- Malformed replies --------------------------------------------------- */

/* Runs one Sign against a fake scripted with raw bytes; returns the result. */
static int sign_against_raw(const void *bytes, size_t n, bool skip_request) {
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        int r;

        fake_init(&fa);
        fa.skip_request = skip_request;
        fake_add_raw(&fa, bytes, n);
        fake_start(&fa, &conn);

        r = do_sign(conn, &sig);
        assert_null(sig);
        assert_string_equal(provsign_last_message(conn), "");
        if (r < 0 && r != -EMSGSIZE)
                /* Framing failures leave the stream unusable. */
                assert_int_equal(do_sign(conn, &sig), -ENOTCONN);

        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        return r;
}

static void test_oversized_header(void **state) {
        static const uint8_t just_over[] = { 0x00, 0x01, 0x00, 0x01, 'x', 'y', 'z' };  /* 65537 */
        static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };

        assert_int_equal(sign_against_raw(just_over, sizeof just_over, false), -EPROTO);
        assert_int_equal(sign_against_raw(huge, sizeof huge, false), -EPROTO);
        /* Even before the request was read. */
        assert_int_equal(sign_against_raw(huge, sizeof huge, true), -EPROTO);
}

static void test_truncated(void **state) {
        static const uint8_t torn_frame[] = { 0x00, 0x00, 0x00, 100, 0x10, 0x02, 0x1a, 0x03, 'a', 'b' };
        static const uint8_t torn_header[] = { 0x00, 0x00 };

        assert_int_equal(sign_against_raw(torn_frame, sizeof torn_frame, false), -EPROTO);
        assert_int_equal(sign_against_raw(torn_header, sizeof torn_header, false), -EPROTO);
        /* Hung up without a byte of reply. */
        assert_int_equal(sign_against_raw(NULL, 0, false), -ECONNRESET);
}

static void test_garbage(void **state) {
        static const uint8_t garbage[][12] = {
                { 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
                { 0, 0, 0, 2, 0x0f, 0x00 },                            /* wire type 7 */
                { 0, 0, 0, 3, 0x10, 0xff, 0xff },                      /* torn varint */
                { 0, 0, 0, 4, 0x1a, 0x7f, 'h', 'i' },                  /* string past the end */
                { 0, 0, 0, 4, 0x52, 0x05, 0x0a, 0x01 },                /* torn sign body */
                { 'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', '2', '0', '0' },
        };
        static const uint8_t garbage_sizes[] = { 12, 6, 7, 8, 8, 12 };

        for (size_t i = 0; i < ELEMENTSOF(garbage); i++)
                assert_int_equal(sign_against_raw(garbage[i], garbage_sizes[i], false), -EPROTO);
}

static void test_unknown_status(void **state) {
        static const int bad[] = { 10, 42, -1, INT_MAX };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                struct fake_agent fa;
                provsign_conn *conn = NULL;
                provsign_signature *sig = NULL;

                resp.status = (Provsign__Status) bad[i];
                resp.message = (char *) "from the future";
                fake_init(&fa);
                fake_add(&fa, &resp);
                fake_start(&fa, &conn);
                assert_int_equal(do_sign(conn, &sig), -EPROTO);
                assert_null(sig);
                provsign_close(conn);
                fake_join(&fa);
                fake_done(&fa);
        }
}

/* An OK reply must carry the body that answers the request. */
static void test_ok_without_body(void **state) {
        Provsign__Response empty = PROVSIGN__RESPONSE__INIT;
        Provsign__Response wrong;
        Provsign__StatusResponse st;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        provsign_key *key = NULL;
        provsign_key_list *list = NULL;
        provsign_agent_status *ast = NULL;

        status_response_set(&wrong, &st);

        fake_init(&fa);
        fake_add(&fa, &empty);  /* sign */
        fake_add(&fa, &empty);  /* get_public_key */
        fake_add(&fa, &empty);  /* status */
        fake_add(&fa, &empty);  /* list_keys */
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), -EPROTO);
        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
        assert_int_equal(provsign_status(conn, &ast), -EPROTO);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), -EPROTO);
        assert_null(sig);
        assert_null(key);
        assert_null(ast);
        assert_null(list);
        provsign_close(conn);
        fake_join(&fa);
        /* A complete frame with the wrong meaning does not desynchronize
         * the stream: all four requests were answered on one connection. */
        assert_int_equal(fa.n_requests, 4);
        fake_done(&fa);

        /* The wrong body. */
        fake_init(&fa);
        fake_add(&fa, &wrong);
        fake_add(&fa, &wrong);
        fake_add(&fa, &wrong);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), -EPROTO);
        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), -EPROTO);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* ---- Refusals ------------------------------------------------------------ */

static void test_refusal(void **state) {
        static const char msg[] = "uid 1002 may not sign for principal \"ci-release\"";
        provsign_signature *sentinel = (provsign_signature *) (uintptr_t) 0x1, *sig = sentinel;
        Provsign__Response ok;
        Provsign__SignResponse sr;
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        sign_response_set(&ok, &sr, keyid_a, "ci-release");

        fake_init(&fa);
        fake_add_refusal(&fa, PROVSIGN__STATUS__PERMISSION_DENIED, msg);
        fake_add_refusal(&fa, PROVSIGN__STATUS__NO_ACTIVE_KEY, "");
        fake_add(&fa, &ok);
        fake_start(&fa, &conn);

        assert_int_equal(do_sign(conn, &sig), PROVSIGN_PERMISSION_DENIED);
        assert_string_equal(provsign_last_message(conn), msg);
        assert_ptr_equal(sig, sentinel);
        assert_string_equal(provsign_status_name(PROVSIGN_PERMISSION_DENIED), "PERMISSION_DENIED");

        /* No message from the agent: the status's description. */
        assert_int_equal(do_sign(conn, &sig), PROVSIGN_NO_ACTIVE_KEY);
        assert_string_equal(provsign_last_message(conn), provsign_strerror(PROVSIGN_NO_ACTIVE_KEY));

        /* A refusal does not spoil the connection; the message is cleared. */
        assert_int_equal(do_sign(conn, &sig), 0);
        assert_string_equal(provsign_last_message(conn), "");
        assert_ptr_not_equal(sig, sentinel);
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* Every status the agent may send is reported as itself. */
static void test_every_refusal(void **state) {
        for (int s = PROVSIGN_INVALID_ARGUMENT; s <= PROVSIGN_INTERNAL; s++) {
                struct fake_agent fa;
                provsign_conn *conn = NULL;
                provsign_agent_status *st = NULL;

                fake_init(&fa);
                fake_add_refusal(&fa, s, provsign_status_name(s));
                fake_start(&fa, &conn);
                assert_int_equal(provsign_status(conn, &st), s);
                assert_string_equal(provsign_last_message(conn), provsign_status_name(s));
                assert_null(st);
                provsign_close(conn);
                fake_join(&fa);
                fake_done(&fa);
        }
}

/* A reply of exactly PROTO_FRAME_MAX bytes is accepted. */
static void test_max_frame(void **state) {
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        size_t n;
        char *msg;

        /* status (2 bytes) + message tag, 3-byte length, text = 65536. */
        n = PROTO_FRAME_MAX - 2 - 1 - 3;
        msg = malloc(n + 1);
        assert_non_null(msg);
        memset(msg, 'm', n);
        msg[n] = '\0';
        resp.status = PROVSIGN__STATUS__RATE_LIMITED;
        resp.message = msg;
        assert_int_equal(protobuf_c_message_get_packed_size(&resp.base), PROTO_FRAME_MAX);

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), PROVSIGN_RATE_LIMITED);
        assert_string_equal(provsign_last_message(conn), msg);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        free(msg);
}

/* ---- Sign ---------------------------------------------------------------- */

static void test_sign_ok(void **state) {
        static const uint8_t unknown_field[] = { 0xf8, 0x06, 0x01 };  /* field 111, varint 1 */
        const struct provsign_annotation ann[] = {
                { "repo", "example/provsign" },
                { "run", NULL },
        };
        Provsign__Response resp;
        Provsign__SignResponse sr;
        const Provsign__SignRequest *req;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        const uint8_t *der;
        uint8_t *packed;
        size_t len, n;

        sign_response_set(&resp, &sr, keyid_a, "ci-release");

        fake_init(&fa);
        fa.dribble = true;      /* short reads everywhere */
        fake_add(&fa, &resp);
        /* The same reply with a field this client does not know. */
        n = protobuf_c_message_get_packed_size(&resp.base);
        packed = malloc(n + sizeof unknown_field);
        assert_non_null(packed);
        assert_int_equal(protobuf_c_message_pack(&resp.base, packed), n);
        memcpy(packed + n, unknown_field, sizeof unknown_field);
        fake_add_payload(&fa, packed, n + sizeof unknown_field);
        free(packed);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_sign(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                                       "application/vnd.in-toto+json", ann, ELEMENTSOF(ann), &sig), 0);
        assert_string_equal(provsign_signature_keyid(sig), keyid_a);
        assert_int_equal(provsign_signature_algorithm(sig), PROVSIGN_KEY_ECDSA_P256);
        assert_string_equal(provsign_signature_principal(sig), "ci-release");
        assert_int_equal(provsign_signature_generation(sig), 7);
        der = provsign_signature_der(sig, &len);
        assert_int_equal(len, sizeof fake_der_sig);
        assert_memory_equal(der, fake_der_sig, len);
        assert_ptr_equal(provsign_signature_der(sig, NULL), der);
        provsign_signature_free(sig);
        sig = NULL;

        /* Principal omitted: the agent picks; unknown fields are ignored. */
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                                       NULL, NULL, 0, &sig), 0);
        assert_string_equal(provsign_signature_principal(sig), "ci-release");
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);

        /* What the agent saw. */
        assert_int_equal(fa.n_requests, 2);
        assert_int_equal(fa.requests[0]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_SIGN);
        req = fa.requests[0]->sign;
        assert_string_equal(req->principal, "ci-release");
        assert_int_equal(req->digest_algorithm, PROVSIGN__DIGEST_ALGORITHM__SHA256);
        assert_int_equal(req->digest.len, sizeof digest32);
        assert_memory_equal(req->digest.data, digest32, sizeof digest32);
        assert_string_equal(req->payload_type, "application/vnd.in-toto+json");
        assert_int_equal(req->n_annotations, 2);
        assert_string_equal(req->annotations[0]->key, "repo");
        assert_string_equal(req->annotations[0]->value, "example/provsign");
        assert_string_equal(req->annotations[1]->key, "run");
        assert_string_equal(req->annotations[1]->value, "");
        assert_string_equal(fa.requests[1]->sign->principal, "");
        assert_string_equal(fa.requests[1]->sign->payload_type, "");
        fake_done(&fa);
}

static void test_sign_bad_replies(void **state) {
        Provsign__Response resp[4];
        Provsign__SignResponse sr[4];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;

        sign_response_set(&resp[0], &sr[0], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "ci-release");
        sign_response_set(&resp[1], &sr[1], keyid_a, "ci-release");
        sr[1].signature.len = 0;                         /* no signature */
        sign_response_set(&resp[2], &sr[2], keyid_a, "someone-else");
        sign_response_set(&resp[3], &sr[3], keyid_a, "");

        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++)
                fake_add(&fa, &resp[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++) {
                assert_int_equal(do_sign(conn, &sig), -EPROTO);
                assert_null(sig);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

static void test_sign_args(void **state) {
        static const uint8_t digest48[48] = {};
        const struct provsign_annotation no_key[] = { { NULL, "v" } };
        provsign_signature *sig = NULL;
        provsign_conn *conn = NULL;
        int sv[2];

        /* Nobody listens: argument errors must be caught before any I/O. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);

        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, NULL, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest48, 48, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA384, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, (enum provsign_digest_algorithm) 0, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, (enum provsign_digest_algorithm) 3, digest48, 48, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 1, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, no_key, 1, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 0, NULL), -EINVAL);
        assert_int_equal(provsign_sign(NULL, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, no_key, SIZE_MAX, &sig), -EMSGSIZE);
        assert_null(sig);

        /* With a well-formed request, the closed peer shows as a transport error. */
        assert_int_equal(do_sign(conn, &sig), -EPIPE);
        assert_int_equal(do_sign(conn, &sig), -ENOTCONN);
        provsign_close(conn);
}

static void test_sign_too_big(void **state) {
        Provsign__Response resp;
        Provsign__SignResponse sr;
        struct provsign_annotation ann;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *big;

        big = malloc(PROTO_FRAME_MAX + 1);
        assert_non_null(big);
        memset(big, 'v', PROTO_FRAME_MAX);
        big[PROTO_FRAME_MAX] = '\0';
        ann = (struct provsign_annotation) { "k", big };

        sign_response_set(&resp, &sr, keyid_a, "ci-release");
        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, &ann, 1, &sig), -EMSGSIZE);
        assert_null(sig);
        /* Nothing was sent: the connection is still good. */
        assert_int_equal(do_sign(conn, &sig), 0);
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.n_requests, 1);
        fake_done(&fa);
        free(big);
}

/* ---- Public keys --------------------------------------------------------- */

static void pubkey_response_set(Provsign__Response *resp, Provsign__GetPublicKeyResponse *gr, Provsign__KeyInfo *ki) {
        provsign__response__init(resp);
        provsign__get_public_key_response__init(gr);
        gr->key = ki;
        gr->public_key_pem = (char *) "ignored: the library derives the PEM from the DER";
        resp->body_case = PROVSIGN__RESPONSE__BODY_GET_PUBLIC_KEY;
        resp->get_public_key = gr;
}

static void test_get_public_key(void **state) {
        Provsign__Response resp;
        Provsign__GetPublicKeyResponse gr;
        Provsign__KeyInfo ki;
        struct test_key tk;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        const uint8_t *der;
        size_t len;

        test_key_make(&tk);
        key_info_set(&ki, &tk, "ci-release");
        pubkey_response_set(&resp, &gr, &ki);

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), 0);
        assert_string_equal(provsign_key_keyid(key), tk.keyid);
        assert_string_equal(provsign_key_principal(key), "ci-release");
        assert_int_equal(provsign_key_generation(key), 3);
        assert_int_equal(provsign_key_algorithm(key), PROVSIGN_KEY_ECDSA_P256);
        assert_int_equal(provsign_key_state(key), PROVSIGN_KEY_STATE_ACTIVE);
        assert_true(provsign_key_created_us(key) == INT64_C(1764092040000000));
        der = provsign_key_spki_der(key, &len);
        assert_int_equal(len, tk.der_len);
        assert_memory_equal(der, tk.der, len);
        assert_string_equal(provsign_key_pem(key), tk.pem);   /* byte for byte OpenSSL's */
        provsign_key_free(key);
        key = NULL;

        assert_int_equal(provsign_get_public_key(conn, NULL, tk.keyid, &key), 0);
        assert_string_equal(provsign_key_keyid(key), tk.keyid);
        provsign_key_free(key);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY);
        assert_string_equal(fa.requests[0]->get_public_key->principal, "ci-release");
        assert_string_equal(fa.requests[0]->get_public_key->keyid, "");
        assert_string_equal(fa.requests[1]->get_public_key->principal, "");
        assert_string_equal(fa.requests[1]->get_public_key->keyid, tk.keyid);
        fake_done(&fa);
        test_key_done(&tk);
}

static void test_get_public_key_bad_replies(void **state) {
        Provsign__Response resp[4];
        Provsign__GetPublicKeyResponse gr[4];
        Provsign__KeyInfo ki[4];
        struct test_key tk, other;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;

        test_key_make(&tk);
        test_key_make(&other);

        /* 0: the key id is not the SHA-256 of the DER. */
        key_info_set(&ki[0], &tk, "ci-release");
        ki[0].keyid = other.keyid;
        pubkey_response_set(&resp[0], &gr[0], &ki[0]);
        /* 1: no public key. */
        key_info_set(&ki[1], &tk, "ci-release");
        ki[1].public_key_der.len = 0;
        ki[1].public_key_der.data = NULL;
        pubkey_response_set(&resp[1], &gr[1], &ki[1]);
        /* 2: no KeyInfo at all. */
        pubkey_response_set(&resp[2], &gr[2], NULL);
        /* 3: another principal's key. */
        key_info_set(&ki[3], &tk, "ci-nightly");
        pubkey_response_set(&resp[3], &gr[3], &ki[3]);

        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++)
                fake_add(&fa, &resp[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++) {
                assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
                assert_null(key);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* Asked by id, answered with another (self-consistent) key. */
        key_info_set(&ki[0], &other, "ci-release");
        pubkey_response_set(&resp[0], &gr[0], &ki[0]);
        fake_init(&fa);
        fake_add(&fa, &resp[0]);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_public_key(conn, NULL, tk.keyid, &key), -EPROTO);
        assert_null(key);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        test_key_done(&tk);
        test_key_done(&other);
}

static void test_get_public_key_args(void **state) {
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);

        assert_int_equal(provsign_get_public_key(conn, NULL, NULL, &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "", "", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "p", keyid_a, &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, NULL, "abc", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, NULL,
                                                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "p", NULL, NULL), -EINVAL);
        assert_null(key);
        provsign_close(conn);
}

/* ---- Key list and status ------------------------------------------------- */

static void test_list_keys(void **state) {
        Provsign__Response resp, bad;
        Provsign__ListKeysResponse lr, lbad;
        Provsign__KeyInfo ki[3], *kp[3];
        struct test_key tk[3];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key_list *list = NULL;
        const provsign_key *k;
        size_t len;

        for (size_t i = 0; i < 3; i++) {
                test_key_make(&tk[i]);
                key_info_set(&ki[i], &tk[i], i == 2 ? "ci-nightly" : "ci-release");
                ki[i].generation = (uint32_t) i + 1;
                kp[i] = &ki[i];
        }
        ki[0].state = PROVSIGN__KEY_STATE__RETIRED;
        ki[1].created_us = 0;
        /* Lists may leave out the public key. */
        ki[2].public_key_der.len = 0;
        ki[2].public_key_der.data = NULL;

        provsign__response__init(&resp);
        provsign__list_keys_response__init(&lr);
        lr.n_keys = 3;
        lr.keys = kp;
        resp.body_case = PROVSIGN__RESPONSE__BODY_LIST_KEYS;
        resp.list_keys = &lr;

        bad = resp;
        lbad = lr;
        lbad.n_keys = 3;
        bad.list_keys = &lbad;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &bad);    /* answers a filter with another principal's key */
        fake_start(&fa, &conn);

        assert_int_equal(provsign_list_keys(conn, NULL, &list), 0);
        assert_int_equal(provsign_key_list_count(list), 3);
        k = provsign_key_list_get(list, 0);
        assert_string_equal(provsign_key_keyid(k), tk[0].keyid);
        assert_int_equal(provsign_key_state(k), PROVSIGN_KEY_STATE_RETIRED);
        assert_int_equal(provsign_key_generation(k), 1);
        assert_string_equal(provsign_key_pem(k), tk[0].pem);
        k = provsign_key_list_get(list, 1);
        assert_true(provsign_key_created_us(k) == 0);
        k = provsign_key_list_get(list, 2);
        assert_string_equal(provsign_key_principal(k), "ci-nightly");
        assert_null(provsign_key_spki_der(k, &len));
        assert_int_equal(len, 0);
        assert_null(provsign_key_pem(k));
        assert_null(provsign_key_list_get(list, 3));
        assert_null(provsign_key_list_get(list, SIZE_MAX));
        provsign_key_list_free(list);
        list = NULL;

        assert_int_equal(provsign_list_keys(conn, "ci-release", &list), -EPROTO);
        assert_null(list);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_LIST_KEYS);
        assert_string_equal(fa.requests[0]->list_keys->principal, "");
        assert_string_equal(fa.requests[1]->list_keys->principal, "ci-release");
        fake_done(&fa);

        /* An empty list is a list. */
        lr.n_keys = 0;
        lr.keys = NULL;
        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), 0);
        assert_int_equal(provsign_key_list_count(list), 0);
        assert_null(provsign_key_list_get(list, 0));
        provsign_key_list_free(list);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        for (size_t i = 0; i < 3; i++)
                test_key_done(&tk[i]);
}

static void test_status(void **state) {
        Provsign__Response resp, empty;
        Provsign__StatusResponse body, empty_body;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_agent_status *st = NULL;
        const char *const *v;

        status_response_set(&resp, &body);
        provsign__response__init(&empty);
        provsign__status_response__init(&empty_body);
        empty.body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        empty.status_info = &empty_body;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &empty);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "0.1.0");
        assert_int_equal(provsign_agent_status_protocol_version(st), 1);
        assert_string_equal(provsign_agent_status_token_label(st), "provsign");
        assert_int_equal(provsign_agent_status_uptime_seconds(st), 12345);
        v = provsign_agent_status_principals(st);
        assert_string_equal(v[0], "ci-release");
        assert_string_equal(v[1], "ci-nightly");
        assert_null(v[2]);
        v = provsign_agent_status_caller_principals(st);
        assert_string_equal(v[0], "ci-release");
        assert_null(v[1]);
        v = provsign_agent_status_caller_roles(st);
        assert_string_equal(v[0], "operator");
        assert_null(v[1]);
        provsign_agent_status_free(st);
        st = NULL;

        /* An agent that knows nothing yet: empty strings, empty arrays. */
        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "");
        assert_non_null(provsign_agent_status_principals(st));
        assert_null(provsign_agent_status_principals(st)[0]);
        assert_null(provsign_agent_status_caller_principals(st)[0]);
        assert_null(provsign_agent_status_caller_roles(st)[0]);
        provsign_agent_status_free(st);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[1]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[1]->body_case, PROVSIGN__REQUEST__BODY_STATUS);
        fake_done(&fa);
}

/* ---- PEM ----------------------------------------------------------------- */

static void test_pem_from_der(void **state) {
        static const size_t lengths[] = { 1, 2, 3, 47, 48, 49, 95, 96, 97, 422 };
        uint8_t data[422];
        char *pem = NULL;

        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (uint8_t) (i * 7 + 3);

        for (size_t i = 0; i < ELEMENTSOF(lengths); i++) {
                BIO *bio = BIO_new(BIO_s_mem());
                char *expected;
                long n;

                assert_non_null(bio);
                assert_true(PEM_write_bio(bio, "PUBLIC KEY", "", data, (long) lengths[i]) > 0);
                n = BIO_get_mem_data(bio, &expected);

                assert_int_equal(client_pem_from_der(data, lengths[i], &pem), 0);
                assert_int_equal(strlen(pem), (size_t) n);
                assert_memory_equal(pem, expected, (size_t) n);
                free(pem);
                BIO_free(bio);
        }

        pem = NULL;
        assert_int_equal(client_pem_from_der(data, 0, &pem), -EINVAL);
        assert_int_equal(client_pem_from_der(NULL, 3, &pem), -EINVAL);
        assert_null(pem);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_names),
                cmocka_unit_test(test_strerror),
                cmocka_unit_test(test_enum_names),
                cmocka_unit_test(test_default_socket),
                cmocka_unit_test(test_connect_errors),
                cmocka_unit_test(test_connect_listener),
                cmocka_unit_test(test_oversized_header),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_unknown_status),
                cmocka_unit_test(test_ok_without_body),
                cmocka_unit_test(test_refusal),
                cmocka_unit_test(test_every_refusal),
                cmocka_unit_test(test_max_frame),
                cmocka_unit_test(test_sign_ok),
                cmocka_unit_test(test_sign_bad_replies),
                cmocka_unit_test(test_sign_args),
                cmocka_unit_test(test_sign_too_big),
                cmocka_unit_test(test_get_public_key),
                cmocka_unit_test(test_get_public_key_bad_replies),
                cmocka_unit_test(test_get_public_key_args),
                cmocka_unit_test(test_list_keys),
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_pem_from_der),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
