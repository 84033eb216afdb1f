/* DSSE PAE and envelopes; see dsse.h. Every allocation returned belongs to
 * the caller (free(), or proto_dsse_envelope_free for a parsed envelope). */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "dsse.h"
#include "jsonval.h"
#include "provsign.pb-c.h"

/* "DSSEv1" SP LEN SP type SP LEN SP: two decimal lengths of at most 20
 * digits each, the prefix and four spaces. */
#define PAE_HEADER_MAX (sizeof(PROTO_DSSE_PREFIX) - 1 + 4 + 20 + 20 + PROTO_DSSE_MAX_TYPE)

static int check_type(const char *type, size_t *ret_len) {
        size_t n;

        if (!type)
                return -EINVAL;
        n = strnlen(type, PROTO_DSSE_MAX_TYPE + 1);
        if (n > PROTO_DSSE_MAX_TYPE)
                return -EINVAL;
        *ret_len = n;
        return 0;
}

/* Writes everything of the PAE that precedes the body into hdr and returns
 * its length. */
static int pae_header(const char *type, size_t len, char hdr[static PAE_HEADER_MAX + 1], size_t *ret_len) {
        size_t tlen;
        int k, r;

        r = check_type(type, &tlen);
        if (r < 0)
                return r;
        if (len > PROTO_DSSE_MAX_PAYLOAD)
                return -EMSGSIZE;
        k = snprintf(hdr, PAE_HEADER_MAX + 1, PROTO_DSSE_PREFIX " %zu %s %zu ", tlen, type, len);
        if (k < 0 || (size_t) k > PAE_HEADER_MAX)
                return -EINVAL;
        *ret_len = (size_t) k;
        return 0;
}

int proto_dsse_pae(const char *type, const uint8_t *body, size_t len, uint8_t **ret, size_t *ret_len) {
        char hdr[PAE_HEADER_MAX + 1];
        size_t hlen;
        uint8_t *out;
        int r;

        if (!body && len > 0)
                return -EINVAL;
        r = pae_header(type, len, hdr, &hlen);
        if (r < 0)
                return r;
        out = malloc(hlen + len + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, hdr, hlen);
        if (len > 0)
                memcpy(out + hlen, body, len);
        *ret = out;
        *ret_len = hlen + len;
        return 0;
}

static const EVP_MD *digest_md(int dalg) {
        switch (dalg) {
        case PROVSIGN__DIGEST_ALGORITHM__SHA256:
                return EVP_sha256();
        case PROVSIGN__DIGEST_ALGORITHM__SHA384:
                return EVP_sha384();
        default:
                return NULL;
        }
}

int proto_dsse_pae_digest(int dalg, const char *type, const uint8_t *body, size_t len,
                          uint8_t out[PROTO_DSSE_MAX_DIGEST]) {
        const EVP_MD *md = digest_md(dalg);
        char hdr[PAE_HEADER_MAX + 1];
        unsigned int dlen = 0;
        EVP_MD_CTX *ctx;
        size_t hlen;
        int r;

        if (!md || (!body && len > 0))
                return -EINVAL;
        r = pae_header(type, len, hdr, &hlen);
        if (r < 0)
                return r;
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, hdr, hlen) != 1 ||
            (len > 0 && EVP_DigestUpdate(ctx, body, len) != 1) || EVP_DigestFinal_ex(ctx, out, &dlen) != 1)
                r = -ENOMEM;
        EVP_MD_CTX_free(ctx);
        return r < 0 ? r : (int) dlen;
}

/* ---- Writing ------------------------------------------------------------- */

/* json_object_set_new() that tolerates a NULL value (a failed build). */
static bool set(json_t *o, const char *key, json_t *v) {
        return v && json_object_set_new(o, key, v) == 0;
}

static json_t *b64_json(const uint8_t *p, size_t n) {
        char *s = proto_base64_encode(p, n);
        json_t *j = s ? json_string(s) : NULL;

        free(s);
        return j;
}

int proto_dsse_envelope_format(const char *type, const uint8_t *body, size_t len, const struct proto_dsse_sig *sigs,
                               size_t n, char **ret_json) {
        json_t *root = NULL, *list = NULL;
        size_t tlen;
        char *text;
        int r;

        r = check_type(type, &tlen);
        if (r < 0)
                return r;
        if (tlen == 0 || (!body && len > 0) || !sigs || n == 0 || n > PROTO_DSSE_MAX_SIGS)
                return -EINVAL;
        if (len > PROTO_DSSE_MAX_PAYLOAD)
                return -EMSGSIZE;
        for (size_t i = 0; i < n; i++)
                if (!sigs[i].sig || sigs[i].sig_len == 0 || sigs[i].sig_len > PROTO_DSSE_MAX_SIG ||
                    (sigs[i].keyid && strnlen(sigs[i].keyid, PROTO_DSSE_MAX_KEYID + 1) > PROTO_DSSE_MAX_KEYID))
                        return -EINVAL;

        r = -ENOMEM;
        root = json_object();
        list = json_array();
        if (!root || !list)
                goto out;
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_object();
                if (!s)
                        goto out;
                if ((sigs[i].keyid && !set(s, "keyid", json_string(sigs[i].keyid))) ||
                    !set(s, "sig", b64_json(sigs[i].sig, sigs[i].sig_len)) || json_array_append_new(list, s) < 0) {
                        json_decref(s);
                        /* a keyid that is not UTF-8 makes json_string fail */
                        r = -EINVAL;
                        goto out;
                }
        }
        if (!set(root, "payloadType", json_string(type))) {
                r = -EINVAL;
                goto out;
        }
        if (!set(root, "payload", b64_json(body ? body : (const uint8_t *) "", len)))
                goto out;
        if (!set(root, "signatures", list))
                goto out;
        list = NULL;
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                goto out;
        *ret_json = text;
        r = 0;
out:
        json_decref(list);
        json_decref(root);
        return r;
}

/* ---- Reading ------------------------------------------------------------- */

void proto_dsse_envelope_free(struct proto_dsse_envelope *e) {
        if (!e)
                return;
        free(e->payload_type);
        free(e->payload);
        for (size_t i = 0; i < e->n_sigs; i++) {
                free(e->sigs[i].keyid);
                free(e->sigs[i].sig);
        }
        free(e->sigs);
        free(e);
}

/* Only the given keys, each present (jansson has already refused
 * duplicates). optional names one key that may be missing. */
static bool only_keys(const json_t *o, const char *const *keys, size_t n, const char *optional) {
        size_t found = 0;
        const char *k;
        json_t *v;

        json_object_foreach((json_t *) o, k, v) {
                bool known = false;
                for (size_t i = 0; i < n; i++)
                        if (strcmp(k, keys[i]) == 0)
                                known = true;
                if (!known)
                        return false;
                found++;
        }
        if (found == n)
                return true;
        return optional && found == n - 1 && !json_object_get(o, optional);
}

static int get_b64(const json_t *v, size_t max, uint8_t **ret, size_t *ret_len) {
        if (!json_is_string(v))
                return -EBADMSG;
        if (json_string_length(v) > PROTO_BASE64_LEN(max))
                return -EMSGSIZE;
        return proto_base64_decode(json_string_value(v), json_string_length(v), ret, ret_len);
}

static int parse_sig(const json_t *o, struct proto_dsse_sig *s) {
        static const char *const keys[] = { "keyid", "sig" };
        const json_t *kv;
        int r;

        if (!json_is_object(o) || !only_keys(o, keys, 2, "keyid"))
                return -EBADMSG;
        kv = json_object_get(o, "keyid");
        if (kv) {
                const char *keyid = proto_json_string(kv, PROTO_DSSE_MAX_KEYID);
                if (!keyid)
                        return -EBADMSG;
                s->keyid = strdup(keyid);
                if (!s->keyid)
                        return -ENOMEM;
        }
        r = get_b64(json_object_get(o, "sig"), PROTO_DSSE_MAX_SIG, &s->sig, &s->sig_len);
        if (r < 0)
                return r;
        if (s->sig_len == 0 || s->sig_len > PROTO_DSSE_MAX_SIG)
                return -EBADMSG;
        return 0;
}

int proto_dsse_envelope_parse(const char *text, size_t len, struct proto_dsse_envelope **ret) {
        static const char *const keys[] = { "payloadType", "payload", "signatures" };
        struct proto_dsse_envelope *e = NULL;
        const json_t *list;
        const char *type;
        json_error_t jerr;
        json_t *root = NULL;
        int r;

        if (!text || len > PROTO_DSSE_MAX_ENVELOPE)
                return text ? -EMSGSIZE : -EBADMSG;
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        r = -EBADMSG;
        if (!root || !json_is_object(root) || !only_keys(root, keys, 3, NULL))
                goto out;
        type = proto_json_string(json_object_get(root, "payloadType"), PROTO_DSSE_MAX_TYPE);
        list = json_object_get(root, "signatures");
        if (!type || !json_is_array(list) || json_array_size(list) == 0)
                goto out;
        if (json_array_size(list) > PROTO_DSSE_MAX_SIGS) {
                r = -EMSGSIZE;
                goto out;
        }

        r = -ENOMEM;
        e = calloc(1, sizeof *e);
        if (!e)
                goto out;
        e->payload_type = strdup(type);
        e->sigs = calloc(json_array_size(list), sizeof *e->sigs);
        if (!e->payload_type || !e->sigs)
                goto out;
        r = get_b64(json_object_get(root, "payload"), PROTO_DSSE_MAX_PAYLOAD, &e->payload, &e->payload_len);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < json_array_size(list); i++) {
                /* counted before parsing so a half-built entry is freed */
                e->n_sigs++;
                r = parse_sig(json_array_get(list, i), &e->sigs[i]);
                if (r < 0)
                        goto out;
        }
        *ret = e;
        e = NULL;
        r = 0;
out:
        proto_dsse_envelope_free(e);
        json_decref(root);
        return r;
}
