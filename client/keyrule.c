/* The key lifecycle's verification rule; see keyrule.h. The rule's steps
 * run in the order of the chain of trust: nothing in the bundle is looked
 * at before the trusted log key's signature over it holds, nothing in the
 * envelope is believed before its key is found in that bundle. Every
 * allocation belongs to the result (client_keyrule_result_done) or to the
 * bundle (proto_bundle_free). */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dsse.h"
#include "keyid.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "timefmt.h"

#include "keyrule.h"
#include "sigverify.h"

static const char *const rule_names[] = {
        [CLIENT_KEYRULE_VALID] = "valid",
        [CLIENT_KEYRULE_BAD_LOG_KEY] = "bad log key",
        [CLIENT_KEYRULE_BUNDLE_MALFORMED] = "malformed key bundle",
        [CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY] = "key bundle not signed by the log key",
        [CLIENT_KEYRULE_ENVELOPE_MALFORMED] = "malformed envelope",
        [CLIENT_KEYRULE_KEY_UNKNOWN] = "key not in the bundle",
        [CLIENT_KEYRULE_WRONG_PRINCIPAL] = "key of another principal",
        [CLIENT_KEYRULE_BAD_SIGNATURE] = "bad signature",
        [CLIENT_KEYRULE_REVOKED_NO_RECEIPT] = "revoked key without receipt",
        [CLIENT_KEYRULE_RECEIPT_INVALID] = "invalid receipt",
        [CLIENT_KEYRULE_AFTER_COMPROMISE] = "signed after the key's compromise",
};

const char *client_keyrule_name(int rule) {
        if (rule < 0 || (size_t) rule >= sizeof rule_names / sizeof rule_names[0])
                return "unknown";
        return rule_names[rule];
}

__attribute__((format(printf, 4, 5)))
static int fail(char *detail, size_t size, int rule, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, size, fmt, ap);
        va_end(ap);
        return rule;
}

/* ---- The rule ---------------------------------------------------------------- */

void client_keyrule_result_done(struct client_keyrule_result *res) {
        if (!res)
                return;
        proto_bundle_free(res->bundle);
        proto_dsse_envelope_free(res->envelope);
        client_receipt_result_done(&res->receipt);
        *res = (struct client_keyrule_result) {};
}

/* Step 1: the bundle, signed by the trusted log key. */
static int check_bundle(const struct client_keyrule_input *in, EVP_PKEY *log_key, const char *log_keyid,
                        struct client_keyrule_result *res) {
        struct proto_dsse_envelope *env = NULL;
        const struct proto_dsse_sig *sig = NULL;
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        char *d = res->detail;
        size_t ds = sizeof res->detail;
        int r, n;

        r = proto_dsse_envelope_parse(in->bundle, in->bundle_len, &env);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the key bundle is not a DSSE envelope");
        if (strcmp(env->payload_type, PROTO_KEY_BUNDLE_TYPE) != 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the envelope's payloadType is not %s",
                         PROTO_KEY_BUNDLE_TYPE);
                goto out;
        }
        for (size_t i = 0; i < env->n_sigs; i++)
                if (env->sigs[i].keyid && strcmp(env->sigs[i].keyid, log_keyid) == 0)
                        sig = &env->sigs[i];
        if (!sig) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY,
                         "the key bundle has no signature by the trusted log key %s", log_keyid);
                goto out;
        }
        n = proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, env->payload_type, env->payload,
                                  env->payload_len, digest);
        if (n < 0) {
                r = n;
                goto out;
        }
        r = proto_verify_digest(log_key, PROVSIGN__DIGEST_ALGORITHM__SHA256, digest, (size_t) n, sig->sig, sig->sig_len);
        if (r < 0)
                goto out;
        if (r == 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY,
                         "the key bundle's signature does not verify with the trusted log key %s", log_keyid);
                goto out;
        }
        r = proto_bundle_parse(env->payload, env->payload_len, &res->bundle, d, ds);
        if (r == -ENOMEM)
                goto out;
        if (r < 0) {
                r = CLIENT_KEYRULE_BUNDLE_MALFORMED; /* detail set by the parser */
                goto out;
        }
        if (strcmp(res->bundle->log_keyid, log_keyid) != 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the bundle names log key %s, not the one that signed it",
                         res->bundle->log_keyid);
                goto out;
        }
        r = 0;
out:
        proto_dsse_envelope_free(env);
        return r;
}

/* Step 3 failed. Without a receipt all that can be said is that the
 * signature does not hold; with one that holds on its own (checkpoint by
 * the log key, inclusion, a SIGN entry), the log's record of the signature
 * says which part of the envelope was changed. */
static int bad_signature(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        const struct proto_dsse_envelope *env = res->envelope;
        const struct proto_bundle_key *k = res->key;
        struct client_receipt_result rr = {};
        const Provsign__AuditEntry *e;
        char *d = res->detail;
        size_t ds = sizeof res->detail;
        int r = CLIENT_KEYRULE_BAD_SIGNATURE;

        fail(d, ds, r, "the signature does not verify with key %s over this payloadType and payload", k->keyid);
        if (!in->receipt || client_receipt_verify(in->receipt, NULL, in->log_key_pem, &rr) != 0 || !rr.entry)
                goto out;
        e = rr.entry;
        if (strcmp(e->keyid ? e->keyid : "", k->keyid) != 0)
                fail(d, ds, r, "wrong key: the log recorded this signature by key %.64s, the envelope names key %s",
                     e->keyid ? e->keyid : "", k->keyid);
        else if (strcmp(e->payload_type ? e->payload_type : "", env->payload_type) != 0)
                fail(d, ds, r, "the payloadType was changed: the log recorded '%.128s', the envelope says '%.128s'",
                     e->payload_type ? e->payload_type : "", env->payload_type);
        else
                fail(d, ds, r, "the payload was changed: its digest is not the one the log recorded for this signature");
out:
        client_receipt_result_done(&rr);
        return r;
}

/* 2. The envelope's key, in the bundle, of the principal. */
static int find_key(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        char *d = res->detail;
        size_t ds = sizeof res->detail;
        const struct proto_dsse_sig *sig;
        int r;

        r = proto_dsse_envelope_parse(in->envelope, in->envelope_len, &res->envelope);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(d, ds, CLIENT_KEYRULE_ENVELOPE_MALFORMED, "the envelope is not a DSSE envelope (%s)",
                            r == -EMSGSIZE ? "over a size limit" : "malformed JSON or field");
        if (res->envelope->n_sigs != 1 || !res->envelope->sigs[0].keyid)
                return fail(d, ds, CLIENT_KEYRULE_ENVELOPE_MALFORMED,
                            "the envelope has %zu signatures; provsign envelopes have one, with a keyid",
                            res->envelope->n_sigs);
        sig = &res->envelope->sigs[0];
        for (size_t i = 0; i < res->bundle->n_keys; i++)
                if (strcmp(res->bundle->keys[i].keyid, sig->keyid) == 0)
                        res->key = &res->bundle->keys[i];
        if (!res->key)
                return fail(d, ds, CLIENT_KEYRULE_KEY_UNKNOWN, "key %.64s is not in the key bundle", sig->keyid);
        if (in->principal && strcmp(in->principal, res->key->principal) != 0)
                return fail(d, ds, CLIENT_KEYRULE_WRONG_PRINCIPAL, "key %s belongs to principal '%.64s', not '%.64s'",
                            res->key->keyid, res->key->principal, in->principal);
        return 0;
}

/* 3. The signature over the PAE, with the key's digest. */
static int check_signature(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        const struct proto_bundle_key *k = res->key;
        const struct proto_dsse_sig *sig = &res->envelope->sigs[0];
        EVP_PKEY *pkey;
        int r;

        res->digest_algorithm = proto_key_algorithm_digest(k->algorithm);
        r = proto_dsse_pae_digest(res->digest_algorithm, res->envelope->payload_type, res->envelope->payload,
                                  res->envelope->payload_len, res->digest);
        if (r < 0)
                return r;
        res->digest_len = (size_t) r;
        pkey = proto_pkey_from_pem(k->pem);
        if (!pkey)
                return -ENOMEM; /* parsed once already in proto_bundle_parse */
        r = proto_verify_digest(pkey, res->digest_algorithm, res->digest, res->digest_len, sig->sig, sig->sig_len);
        EVP_PKEY_free(pkey);
        if (r < 0)
                return r;
        return r == 0 ? bad_signature(in, res) : 0;
}

/* 4a. A receipt given is checked, whatever the key's state. */
static int check_receipt(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        const struct proto_bundle_key *k = res->key;
        struct client_receipt_signer signer = {
                .keyid = k->keyid,
                .principal = k->principal,
                .digest_algorithm = res->digest_algorithm,
                .digest = res->digest,
                .digest_len = res->digest_len,
        };
        int r;

        if (!in->receipt)
                return 0;
        r = client_receipt_verify(in->receipt, &signer, in->log_key_pem, &res->receipt);
        if (r < 0)
                return r;
        if (r > 0)
                return fail(res->detail, sizeof res->detail, CLIENT_KEYRULE_RECEIPT_INVALID,
                            "the receipt fails its %s check: %s", client_receipt_check_name(r), res->receipt.detail);
        if (strcmp(res->receipt.origin, res->bundle->origin) != 0)
                return fail(res->detail, sizeof res->detail, CLIENT_KEYRULE_RECEIPT_INVALID,
                            "the receipt is from log '%.128s', the key bundle from log '%.128s'", res->receipt.origin,
                            res->bundle->origin);
        res->receipt_verified = true;
        return 0;
}

/* 4b. A revoked key's signature needs a receipt older than the compromise. */
static int check_revocation(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        const struct proto_bundle_key *k = res->key;
        char cs[PROTO_TIME_LEN + 1], lt[PROTO_TIME_LEN + 1];

        if (k->state != PROVSIGN__KEY_STATE__REVOKED)
                return 0;
        if (!proto_time_format_us(k->compromised_since_us, cs))
                snprintf(cs, sizeof cs, "?");
        if (!in->receipt)
                return fail(res->detail, sizeof res->detail, CLIENT_KEYRULE_REVOKED_NO_RECEIPT,
                            "key %s is revoked (compromised since %s) and no receipt proves the signature older",
                            k->keyid, cs);
        if (in->receipt->log_time_us < k->compromised_since_us)
                return 0;
        if (!proto_time_format_us(in->receipt->log_time_us, lt))
                snprintf(lt, sizeof lt, "?");
        return fail(res->detail, sizeof res->detail, CLIENT_KEYRULE_AFTER_COMPROMISE,
                    "key %s is revoked, compromised since %s; the receipt's log time %s is not before it", k->keyid,
                    cs, lt);
}

int client_keyrule_check(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        char log_keyid[PROTO_KEYID_HEX_LEN + 1];
        EVP_PKEY *log_key;
        int r;

        if (!in || !res || !in->bundle || !in->log_key_pem || !in->envelope)
                return -EINVAL;
        client_keyrule_result_done(res);

        log_key = proto_pkey_from_pem(in->log_key_pem);
        if (!log_key)
                return fail(res->detail, sizeof res->detail, CLIENT_KEYRULE_BAD_LOG_KEY,
                            "the log key is not a PEM public key");
        r = proto_pkey_keyid(log_key, log_keyid) ? 0 : -ENOMEM;
        /* 1. The bundle. */
        if (r == 0)
                r = check_bundle(in, log_key, log_keyid, res);
        EVP_PKEY_free(log_key);
        if (r == 0)
                r = find_key(in, res);
        if (r == 0)
                r = check_signature(in, res);
        if (r == 0)
                r = check_receipt(in, res);
        if (r == 0)
                r = check_revocation(in, res);
        if (r == 0)
                res->detail[0] = '\0';
        return r;
}
