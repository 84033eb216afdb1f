/* Writes a large, valid audit log for the export benchmark and the slow
 * reader test: the log key and a key for principal ci-release are created
 * in the token (as the agent would), then a KEY_CREATE entry and N SIGN
 * entries (distinct digests, two annotations each) go through the real
 * writer (audit_append, group commit). Start an agent on the same token
 * and state_dir afterwards: it continues the log.
 *
 *   gen-audit-log [--duplicate-keys] TOKEN_DIR STATE_DIR N [PRINCIPAL]
 *
 * --duplicate-keys: every SIGN entry also carries a second "build" pair
 * ("build" = "dup-<i>"), as logs written before the agent refused
 * duplicate annotation keys at Sign may hold (test-audit-export).
 *
 * TOKEN_DIR from tests/lib/make-token; PRINCIPAL (default ci-release) must
 * have no key in the token yet.
 *
 * The signatures themselves are not made (only logged): this is a log
 * generator, not a signer. Prints nothing but errors. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "config.h"
#include "hex.h"

int main(int argc, char **argv) {
        bool duplicate_keys = argc > 1 && strcmp(argv[1], "--duplicate-keys") == 0;
        if (duplicate_keys) {
                argv++;
                argc--;
        }
        if (argc != 4 && argc != 5) {
                fprintf(stderr, "usage: gen-audit-log [--duplicate-keys] TOKEN_DIR STATE_DIR N [PRINCIPAL]\n");
                return 2;
        }
        const char *principal = argc == 5 ? argv[4] : "ci-release";
        /* the agent's label for generation 1: namespace = the origin's host part */
        char label[KEYS_LABEL_MAX], ns[KEYS_NAMESPACE_MAX + 1];
        if (keys_namespace_from_origin("provsign.test/it", ns) < 0 ||
            keys_label_format(label, sizeof label, ns, principal, 1) < 0)
                return 2;
        unsigned long n = strtoul(argv[3], NULL, 10);
        char path[512], pin[128] = { 0 };
        snprintf(path, sizeof path, "%s/softhsm2.conf", argv[1]);
        setenv("SOFTHSM2_CONF", path, 1);
        snprintf(path, sizeof path, "%s/pin", argv[1]);
        FILE *f = fopen(path, "r");
        if (!f)
                return 5;
        size_t pin_len = fread(pin, 1, sizeof pin - 1, f);
        fclose(f);
        keys_store *store = NULL;
        char *err = NULL;
        if (keys_store_open("/usr/lib/softhsm/libsofthsm2.so", "provsign", pin, pin_len, &store, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        agent_config cfg = { .path = (char *) "gen", .state_dir = argv[2], .log_origin = (char *) "provsign.test/it" };
        agent_audit *a = NULL;
        if (audit_open(&cfg, store, NULL, NULL, &a, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        keys_key *k = NULL;
        if (keys_generate(store, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, label, &k, &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__KEY_CREATE;
        e.principal = (char *) principal;
        e.keyid = (char *) keys_key_id_hex(k);
        e.generation = 1;
        e.algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        e.public_key_der.data = (uint8_t *) spki;
        e.public_key_der.len = spki_len;
        uint64_t seq;
        if (audit_append(a, &e, &seq, NULL, NULL) < 0)
                return 1;

        uint8_t digest[32] = { 0 }, src[32] = { 0xab };
        char srcval[7 + 64 + 1] = "sha256:", build[32];
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        caller.uid = 64911;
        caller.gid = 64911;
        caller.pid = 4242;
        caller.exe = (char *) "/usr/bin/provsign";
        Provsign__Annotation a1 = PROVSIGN__ANNOTATION__INIT, a2 = PROVSIGN__ANNOTATION__INIT,
                             a3 = PROVSIGN__ANNOTATION__INIT;
        Provsign__Annotation *anns[] = { &a1, &a2, &a3 };
        char dup[32];
        a3.key = (char *) "build";
        a3.value = dup;
        a1.key = (char *) "build";
        a1.value = build;
        a2.key = (char *) "source";
        a2.value = srcval;
        for (unsigned long i = 0; i < n; i++) {
                memcpy(digest, &i, sizeof i);
                memcpy(src + 1, &i, sizeof i);
                proto_hex_encode(src, sizeof src, srcval + 7);
                snprintf(build, sizeof build, "%lu", i);
                snprintf(dup, sizeof dup, "dup-%lu", i);
                Provsign__AuditEntry s = PROVSIGN__AUDIT_ENTRY__INIT;
                s.event = PROVSIGN__AUDIT_EVENT__SIGN;
                s.caller = &caller;
                s.principal = (char *) principal;
                s.keyid = (char *) keys_key_id_hex(k);
                s.generation = 1;
                s.algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
                s.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
                s.digest.data = digest;
                s.digest.len = sizeof digest;
                s.payload_type = (char *) "application/vnd.in-toto+json";
                s.annotations = anns;
                s.n_annotations = duplicate_keys ? 3 : 2;
                if (audit_append(a, &s, &seq, NULL, NULL) < 0)
                        return 1;
                if (i % 4096 == 4095)
                        while (audit_committed(a) <= seq)
                                usleep(1000);
        }
        while (audit_committed(a) <= seq)
                usleep(1000);
        audit_close(a);
        keys_store_free(store);
        return 0;
}
