/* Fuzzes libprovsign's reply parsing: the agent's answers are untrusted.
 * The input's first byte picks a call (every request type of the public
 * API: status, keys, sign, DSSE, key bundle, checkpoint, log key, the key
 * lifecycle, export, find, proof; and three signs pipelined); the rest is the byte stream a hostile
 * agent sends back, any number of frames, then end of file. The call runs
 * on one end of a socketpair with the stream queued on the other.
 *
 * Invariants: the call returns 0, a known refusal status (1..9) or a
 * negative errno, never crashes or leaks (ASan); provsign_strerror() has
 * a text for it; a refusal leaves a message; on success every accessor of
 * the result is usable and holds what the header promises (key ids of 64
 * lowercase hex digits, non-NULL strings and bytes, proofs within
 * PROVSIGN_MAX_INCLUSION_PROOF); streamed entries arrive consecutively. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyid.h"
#include "libprovsign-internal.h"
#include "provsign.h"

#include "fuzz.h"

/* The stream must fit the socket's buffer: it is queued before the call. */
#define REPLY_MAX (96u * 1024u)

static const uint8_t digest[32] = { 0xbf, 0x2a }; /* any: the receipt check compares it */

static void check_result(provsign_conn *c, int r) {
        FUZZ_CHECK(provsign_strerror(r));
        FUZZ_CHECK(r <= 0 || (r >= PROVSIGN_INVALID_ARGUMENT && r <= PROVSIGN_INTERNAL));
        FUZZ_CHECK(r <= 0 || *provsign_last_message(c));
}

static void check_key(const provsign_key *k) {
        size_t n;

        FUZZ_CHECK(proto_keyid_hex_valid(provsign_key_keyid(k)));
        FUZZ_CHECK(provsign_key_principal(k));
        const uint8_t *der = provsign_key_spki_der(k, &n);
        FUZZ_CHECK(!der == !provsign_key_pem(k));
        FUZZ_CHECK(!der || n > 0);
}

static void check_sig(const provsign_signature *s) {
        size_t n;

        FUZZ_CHECK(proto_keyid_hex_valid(provsign_signature_keyid(s)));
        FUZZ_CHECK(provsign_signature_der(s, &n) && n > 0);
        FUZZ_CHECK(provsign_signature_has_receipt(s));
        FUZZ_CHECK(provsign_signature_leaf(s, &n) && n > 0);
        provsign_signature_inclusion_proof(s, &n);
        FUZZ_CHECK(n <= PROVSIGN_MAX_INCLUSION_PROOF);
        FUZZ_CHECK(provsign_signature_tree_size(s) > provsign_signature_log_seq(s));
        FUZZ_CHECK(provsign_signature_checkpoint(s));
}

struct stream {
        uint64_t next;
        bool any;
        bool stop_after_one;
};

static int on_entry(uint64_t seq, const uint8_t *leaf, size_t len, void *userdata) {
        struct stream *st = userdata;

        FUZZ_CHECK(leaf && len > 0);
        st->any = true;
        st->next = seq + 1;
        return st->stop_after_one ? -ECANCELED : 0;
}

static int on_export_entry(uint64_t seq, const uint8_t *leaf, size_t len, void *userdata) {
        struct stream *st = userdata;

        FUZZ_CHECK(seq == st->next);    /* export: consecutive from the first asked */
        return on_entry(seq, leaf, len, userdata);
}

static int call_sign(provsign_conn *c) {
        provsign_signature *s = NULL;
        struct provsign_annotation a = { "k", "v" };
        int r = provsign_sign(c, "ci-release", PROVSIGN_DIGEST_SHA256, digest, sizeof digest, "text/plain", &a, 1, &s);

        if (r == 0)
                check_sig(s);
        provsign_signature_free(s);
        return r;
}

static int call_dsse(provsign_conn *c) {
        provsign_signature *s = NULL;
        char *env = NULL;
        int r = provsign_sign_dsse(c, NULL, "application/vnd.in-toto+json", "{}", 2, NULL, 0, &env, &s);

        if (r == 0) {
                FUZZ_CHECK(env && *env);
                check_sig(s);
        }
        free(env);
        provsign_signature_free(s);
        return r;
}

static int call_keys(provsign_conn *c, int which) {
        provsign_key *k = NULL;
        provsign_key_list *l = NULL;
        int r;

        if (which == 0)
                r = provsign_get_public_key(c, "ci-release", NULL, &k);
        else if (which == 1)
                r = provsign_get_public_key(c, NULL, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &k);
        else
                r = provsign_list_keys(c, which == 2 ? NULL : "ci-release", &l);
        if (r == 0 && k) {
                check_key(k);
                FUZZ_CHECK(provsign_key_spki_der(k, NULL));
        }
        for (size_t i = 0; r == 0 && i < provsign_key_list_count(l); i++)
                check_key(provsign_key_list_get(l, i));
        provsign_key_free(k);
        provsign_key_list_free(l);
        return r;
}

static int call_lifecycle(provsign_conn *c, int which) {
        static const char id[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        provsign_key_change *kc = NULL;
        int r = which == 0   ? provsign_rotate_key(c, "ci-release", 0, &kc)
                : which == 1 ? provsign_revoke_key(c, id, "stolen", 0, &kc)
                             : provsign_destroy_key(c, id, &kc);

        if (r == 0) {
                if (provsign_key_change_key(kc))
                        check_key(provsign_key_change_key(kc));
                if (provsign_key_change_active(kc))
                        check_key(provsign_key_change_active(kc));
        }
        provsign_key_change_free(kc);
        return r;
}

static int call_status(provsign_conn *c) {
        provsign_agent_status *st = NULL;
        int r = provsign_status(c, &st);

        if (r == 0) {
                FUZZ_CHECK(provsign_agent_status_agent_version(st) && provsign_agent_status_token_label(st));
                for (const char *const *p = provsign_agent_status_principals(st); *p; p++)
                        FUZZ_CHECK(strlen(*p) < REPLY_MAX);
                for (const char *const *p = provsign_agent_status_caller_roles(st); *p; p++)
                        FUZZ_CHECK(strlen(*p) < REPLY_MAX);
        }
        provsign_agent_status_free(st);
        return r;
}

static int call_checkpoint(provsign_conn *c, bool consistency) {
        char *note = NULL;
        uint8_t *proof = NULL;
        uint64_t size = 0;
        size_t n = 0;
        int r = consistency ? provsign_get_checkpoint_consistency(c, 2, &note, &size, &proof, &n)
                            : provsign_get_checkpoint(c, &note, &size);

        if (r == 0) {
                FUZZ_CHECK(note && *note);
                FUZZ_CHECK(!consistency || (proof && n <= PROVSIGN_MAX_INCLUSION_PROOF && size >= 2));
        }
        free(note);
        free(proof);
        return r;
}

static int call_log_key(provsign_conn *c) {
        provsign_log_key *k = NULL;
        size_t n;
        int r = provsign_get_log_key(c, &k);

        if (r == 0) {
                FUZZ_CHECK(proto_keyid_hex_valid(provsign_log_key_keyid(k)));
                FUZZ_CHECK(provsign_log_key_spki_der(k, &n) && n > 0);
                FUZZ_CHECK(provsign_log_key_pem(k) && provsign_log_key_verifier_key(k) && provsign_log_key_origin(k));
        }
        provsign_log_key_free(k);
        return r;
}

static int call_bundle(provsign_conn *c) {
        char *env = NULL;
        int r = provsign_get_key_bundle_for(c, "ci-release", &env);

        FUZZ_CHECK(r != 0 || (env && *env));
        free(env);
        return r;
}

static int call_export(provsign_conn *c, bool stop) {
        provsign_log_query *q = NULL;
        provsign_log_export *x = NULL;
        struct stream st = { .next = 0, .stop_after_one = stop };
        uint64_t first;
        size_t n;
        int r = provsign_log_query_new(&q);

        FUZZ_CHECK(r == 0);
        r = provsign_export_log(c, q, on_export_entry, &st, &x);
        if (r == 0) {
                FUZZ_CHECK(provsign_log_export_checkpoint(x));
                FUZZ_CHECK(provsign_log_export_entries(x, &first) == st.next && first == 0);
                FUZZ_CHECK(provsign_log_export_left(x, &n) && n <= PROVSIGN_MAX_INCLUSION_PROOF);
                FUZZ_CHECK(provsign_log_export_right(x, &n) && n <= PROVSIGN_MAX_INCLUSION_PROOF);
                FUZZ_CHECK(provsign_log_export_tree_size(x) >= st.next);
        }
        FUZZ_CHECK(!(stop && st.any) || r == -ECANCELED);
        provsign_log_export_free(x);
        provsign_log_query_free(q);
        return r;
}

static int call_find(provsign_conn *c) {
        provsign_log_query *q = NULL;
        struct stream st = {};
        int r = provsign_log_query_new(&q);

        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(provsign_log_query_set_principal(q, "ci-release") == 0);
        r = provsign_find_log(c, q, on_entry, &st);
        provsign_log_query_free(q);
        return r;
}

static int call_proof(provsign_conn *c) {
        provsign_log_proof *p = NULL;
        size_t n;
        int r = provsign_get_log_proof(c, 1, &p);

        if (r == 0) {
                FUZZ_CHECK(provsign_log_proof_seq(p) == 1 && provsign_log_proof_tree_size(p) > 1);
                FUZZ_CHECK(provsign_log_proof_leaf(p, &n) && n > 0);
                provsign_log_proof_inclusion_proof(p, &n);
                FUZZ_CHECK(n <= PROVSIGN_MAX_INCLUSION_PROOF);
                FUZZ_CHECK(provsign_log_proof_checkpoint(p));
        }
        provsign_log_proof_free(p);
        return r;
}

/* Three digests pipelined (the same one: the receipt check compares it);
 * replies matched by request id or by order. */
static int call_sign_many(provsign_conn *c) {
        const void *digests[3] = { digest, digest, digest };
        provsign_signature *sigs[3];
        int results[3], first = 0;
        int r = provsign_sign_many(c, "ci-release", PROVSIGN_DIGEST_SHA256, digests, sizeof digest, 3, NULL, NULL, 0,
                                   2, results, sigs);

        for (size_t i = 0; i < 3; i++) {
                FUZZ_CHECK(provsign_strerror(results[i]));
                FUZZ_CHECK(results[i] <= PROVSIGN_INTERNAL);
                FUZZ_CHECK(!sigs[i] == (results[i] != 0));
                if (sigs[i])
                        check_sig(sigs[i]);
                if (!first)
                        first = results[i];
                provsign_signature_free(sigs[i]);
        }
        FUZZ_CHECK(r == first);
        return r;
}

enum { N_CALLS = 20 };

static int call(provsign_conn *c, unsigned which) {
        switch (which) {
        case 0: return call_status(c);
        case 1: return call_sign(c);
        case 2: return call_dsse(c);
        case 3: case 4: case 5: case 6: return call_keys(c, (int) which - 3);
        case 7: case 8: case 9: return call_lifecycle(c, (int) which - 7);
        case 10: return call_bundle(c);
        case 11: return call_checkpoint(c, false);
        case 12: return call_checkpoint(c, true);
        case 13: return call_log_key(c);
        case 14: return call_export(c, false);
        case 15: return call_export(c, true);
        case 16: return call_find(c);
        case 17: return call_proof(c);
        case 18: return call_sign_many(c);
        case 19: return call_status(c); /* reserved */
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        provsign_conn *c = NULL;
        int sv[2], r;

        if (size < 1 || size - 1 > REPLY_MAX)
                return 0;
        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        int buf = 4 * REPLY_MAX;
        (void) setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        (void) setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        (void) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        for (size_t off = 1; off < size;) {
                ssize_t k = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
                FUZZ_CHECK(k > 0);
                off += (size_t) k;
        }
        FUZZ_CHECK(shutdown(sv[1], SHUT_WR) == 0);
        FUZZ_CHECK(client_conn_from_fd(sv[0], &c) == 0);
        /* A deadline, though end of file always comes first: a hang is a bug. */
        FUZZ_CHECK(provsign_set_timeout(c, 5000) == 0);

        r = call(c, data[0] % N_CALLS);
        check_result(c, r);
        /* After any result, the connection refuses or answers from what is
         * left of the stream: never a crash. */
        check_result(c, call_status(c));
        provsign_close(c);
        close(sv[1]);
        return 0;
}
