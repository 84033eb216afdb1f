#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "frame.h"
#include "hex.h"
#include "keyid.h"
#include "base64.h"
#include "note.h"
#include "sigverify.h"

/* signed-note "Format": em dash (U+2014) then a space opens a signature line. */
static const uint8_t sig_prefix[] = { 0xe2, 0x80, 0x94, ' ' };

/* Decodes one UTF-8 scalar value at p[0..n). Returns its length (1-4) with
 * *ret_cp set, or 0 if the bytes are not well-formed UTF-8 (RFC 3629 §4:
 * no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *ret_cp) {
        uint32_t cp, min;
        size_t need;

        if (n == 0)
                return 0;
        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        if ((p[0] & 0xe0) == 0xc0) {
                need = 1, cp = p[0] & 0x1fu, min = 0x80;
        } else if ((p[0] & 0xf0) == 0xe0) {
                need = 2, cp = p[0] & 0x0fu, min = 0x800;
        } else if ((p[0] & 0xf8) == 0xf0) {
                need = 3, cp = p[0] & 0x07u, min = 0x10000;
        } else
                return 0;
        if (n - 1 < need)
                return 0;
        for (size_t i = 1; i <= need; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return need + 1;
}

/* signed-note "Format": notes MUST be valid UTF-8 and MUST NOT contain ASCII
 * control characters (below U+0020) other than newline. */
static bool text_valid(const uint8_t *p, size_t n) {
        while (n > 0) {
                uint32_t cp;
                size_t k = utf8_next(p, n, &cp);
                if (k == 0)
                        return false;
                if (cp < 0x20 && cp != '\n')
                        return false;
                p += k;
                n -= k;
        }
        return true;
}

/* Unicode White_Space (what Go's unicode.IsSpace, used by the reference
 * implementation, reports). */
static bool is_unicode_space(uint32_t cp) {
        return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
               (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
               cp == 0x3000;
}

/* signed-note "Format": key names MUST be non-empty and MUST NOT contain any
 * Unicode spaces or plus (U+002B). Control characters are never allowed. */
static bool key_name_valid(const uint8_t *p, size_t n) {
        if (n == 0)
                return false;
        while (n > 0) {
                uint32_t cp;
                size_t k = utf8_next(p, n, &cp);
                if (k == 0 || cp < 0x20 || cp == '+' || is_unicode_space(cp))
                        return false;
                p += k;
                n -= k;
        }
        return true;
}


/* Borrows the next line from the cursor, without its newline, and moves past
 * the newline. -EBADMSG if no newline remains. */
static int cursor_get_line(proto_cursor *c, const uint8_t **ret, size_t *ret_len) {
        const uint8_t *nl = memchr(c->p, '\n', c->len);
        const uint8_t *line;
        size_t n;

        if (!nl)
                return -EBADMSG;
        n = (size_t) (nl - c->p);
        if (proto_cursor_get_bytes(c, n + 1, &line) < 0)
                return -EBADMSG;
        *ret = line;
        *ret_len = n;
        return 0;
}

/* tlog-checkpoint "Note text" 2: ASCII decimal, no leading zeroes unless the
 * tree is empty ("0"). Anything that does not fit a u64 is refused. */
static int parse_tree_size(const uint8_t *p, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0 || (n > 1 && p[0] == '0'))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -EBADMSG;
                unsigned d = p[i] - '0';
                if (v > (UINT64_MAX - d) / 10)
                        return -EBADMSG;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int proto_checkpoint_format(const char *origin, uint64_t size, const uint8_t root[PROTO_CHECKPOINT_HASH_LEN],
                            char **ret_body) {
        char hash[PROTO_BASE64_LEN(PROTO_CHECKPOINT_HASH_LEN) + 1];
        size_t olen = strlen(origin);
        char *body;
        int n;

        /* tlog-checkpoint "Note text" 1: the origin MUST be non-empty; one line. */
        if (olen == 0 || memchr(origin, '\n', olen) || !text_valid((const uint8_t *) origin, olen))
                return -EINVAL;
        if (olen > PROTO_NOTE_MAX_SIZE)
                return -EMSGSIZE;

        proto_base64_encode_to(root, PROTO_CHECKPOINT_HASH_LEN, hash);
        n = asprintf(&body, "%s\n%" PRIu64 "\n%s\n", origin, size, hash);
        if (n < 0)
                return -ENOMEM;
        if ((size_t) n > PROTO_NOTE_MAX_SIZE) {
                free(body);
                return -EMSGSIZE;
        }
        *ret_body = body;
        return 0;
}

int proto_checkpoint_parse(const char *body, size_t len, char **ret_origin, uint64_t *ret_size,
                           uint8_t ret_root[PROTO_CHECKPOINT_HASH_LEN]) {
        const uint8_t *p = (const uint8_t *) body;
        proto_cursor c = proto_cursor_make(body, len);
        uint8_t root[PROTO_CHECKPOINT_HASH_LEN + 1]; /* 44 base64 chars decode to 33 incl. padding */
        const uint8_t *origin, *size, *hash, *ext;
        size_t origin_len, size_len, hash_len, ext_len, root_len;
        uint64_t tree_size;
        char *o;
        int r;

        if (len > PROTO_NOTE_MAX_SIZE)
                return -EMSGSIZE;
        if (len == 0 || p[len - 1] != '\n' || !text_valid(p, len))
                return -EBADMSG;

        /* tlog-checkpoint "Note text": at least three non-empty lines. */
        if (cursor_get_line(&c, &origin, &origin_len) < 0 || origin_len == 0)
                return -EBADMSG;
        if (cursor_get_line(&c, &size, &size_len) < 0)
                return -EBADMSG;
        r = parse_tree_size(size, size_len, &tree_size);
        if (r < 0)
                return r;
        if (cursor_get_line(&c, &hash, &hash_len) < 0)
                return -EBADMSG;
        r = proto_base64_decode_to((const char *) hash, hash_len, root, sizeof root, &root_len);
        if (r < 0)
                return r;
        if (root_len != PROTO_CHECKPOINT_HASH_LEN)
                return -EBADMSG;
        /* 4: extension lines are opaque and ignored, but MUST be non-empty. */
        while (c.len > 0) {
                if (cursor_get_line(&c, &ext, &ext_len) < 0 || ext_len == 0)
                        return -EBADMSG;
        }

        o = strndup((const char *) origin, origin_len);
        if (!o)
                return -ENOMEM;
        *ret_origin = o;
        *ret_size = tree_size;
        memcpy(ret_root, root, PROTO_CHECKPOINT_HASH_LEN);
        return 0;
}

int proto_note_key_hash(const uint8_t *spki_der, size_t len, uint8_t out[PROTO_NOTE_KEY_HASH_LEN]) {
        uint8_t digest[PROTO_KEYID_LEN];

        if (len == 0)
                return -EINVAL;
        /* signed-note "0x02": the truncated SHA-256 of the DER SPKI (the
         * key id's first bytes). */
        proto_keyid_compute(spki_der, len, digest);
        memcpy(out, digest, PROTO_NOTE_KEY_HASH_LEN);
        return 0;
}

/* Parses a DER SubjectPublicKeyInfo that must be exactly len bytes and an EC
 * key on one of the curves signed-note allows for 0x02. */
static int pkey_from_spki(const uint8_t *spki, size_t len, EVP_PKEY **ret) {
        const unsigned char *p = spki;
        EVP_PKEY *pkey = NULL;
        char group[32];
        size_t glen;
        int r = -EINVAL;

        if (len == 0 || len > PROTO_NOTE_MAX_SIZE)
                return -EINVAL;
        pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey || p != spki + len)
                goto out;
        /* signed-note "0x02": the curve MUST be P-256, P-384 or P-521. */
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
                goto out;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1)
                goto out;
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0 && strcmp(group, "secp521r1") != 0)
                goto out;

        *ret = pkey;
        pkey = NULL;
        r = 0;
out:
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return r;
}

int proto_note_verifier_key(const char *origin, const uint8_t *spki, size_t len, char **ret) {
        uint8_t hash[PROTO_NOTE_KEY_HASH_LEN], *typed = NULL;
        char hash_hex[2 * PROTO_NOTE_KEY_HASH_LEN + 1], *b64 = NULL, *s;
        EVP_PKEY *pkey = NULL;
        int r;

        if (!key_name_valid((const uint8_t *) origin, strlen(origin)))
                return -EINVAL;
        r = pkey_from_spki(spki, len, &pkey);
        if (r < 0)
                return r;
        EVP_PKEY_free(pkey);

        r = proto_note_key_hash(spki, len, hash);
        if (r < 0)
                return r;
        proto_hex_encode(hash, sizeof hash, hash_hex);

        r = -ENOMEM;
        typed = malloc(len + 1);
        b64 = malloc(PROTO_BASE64_LEN(len + 1) + 1);
        if (!typed || !b64)
                goto out;
        typed[0] = PROTO_NOTE_SIG_TYPE_ECDSA;
        memcpy(typed + 1, spki, len);
        proto_base64_encode_to(typed, len + 1, b64);
        if (asprintf(&s, "%s+%s+%s", origin, hash_hex, b64) < 0)
                goto out;

        *ret = s;
        r = 0;
out:
        free(typed);
        free(b64);
        return r;
}

int proto_note_assemble(const char *body, const char *key_name, const uint8_t key_hash[PROTO_NOTE_KEY_HASH_LEN],
                        const uint8_t *der_sig, size_t sig_len, char **ret_note) {
        size_t blen = strlen(body), nlen = strlen(key_name), raw_len, b64_len, total;
        uint8_t *raw = NULL;
        char *note = NULL, *w;
        int r;

        /* signed-note "Format": a text ending in newline, valid UTF-8, no
         * control characters but newline. */
        if (blen == 0 || body[blen - 1] != '\n' || !text_valid((const uint8_t *) body, blen))
                return -EINVAL;
        if (!key_name_valid((const uint8_t *) key_name, nlen))
                return -EINVAL;
        if (!der_sig || sig_len == 0)
                return -EINVAL;
        if (blen > PROTO_NOTE_MAX_SIZE || nlen > PROTO_NOTE_MAX_SIZE || sig_len > PROTO_NOTE_MAX_SIZE)
                return -EMSGSIZE;

        raw_len = PROTO_NOTE_KEY_HASH_LEN + sig_len;
        b64_len = PROTO_BASE64_LEN(raw_len);
        /* text ‖ "\n" ‖ "— " ‖ name ‖ " " ‖ base64 ‖ "\n" */
        total = blen + 1 + sizeof sig_prefix + nlen + 1 + b64_len + 1;
        if (total > PROTO_NOTE_MAX_SIZE)
                return -EMSGSIZE;

        r = -ENOMEM;
        raw = malloc(raw_len);
        note = malloc(total + 1);
        if (!raw || !note)
                goto out;
        memcpy(raw, key_hash, PROTO_NOTE_KEY_HASH_LEN);
        memcpy(raw + PROTO_NOTE_KEY_HASH_LEN, der_sig, sig_len);

        w = note;
        memcpy(w, body, blen), w += blen;
        *w++ = '\n';
        memcpy(w, sig_prefix, sizeof sig_prefix), w += sizeof sig_prefix;
        memcpy(w, key_name, nlen), w += nlen;
        *w++ = ' ';
        proto_base64_encode_to(raw, raw_len, w), w += b64_len;
        *w++ = '\n';
        *w = '\0';

        *ret_note = note;
        note = NULL;
        r = 0;
out:
        free(raw);
        free(note);
        return r;
}

void proto_note_free(proto_note *n) {
        if (!n)
                return;
        free(n->sig_data);
        free(n);
}

/* Parses one signature line (without its newline) into s, decoding into
 * data[0..data_size); *ret_used is the number of data bytes consumed. */
static int parse_sig_line(const uint8_t *line, size_t n, proto_note_sig *s, uint8_t *data, size_t data_size,
                          size_t *ret_used) {
        const uint8_t *name, *sp;
        size_t name_len, dlen;
        int r;

        if (n < sizeof sig_prefix || memcmp(line, sig_prefix, sizeof sig_prefix) != 0)
                return -EBADMSG;
        line += sizeof sig_prefix;
        n -= sizeof sig_prefix;

        /* key name, space, base64: a key name has no spaces, so the first
         * space ends it; the base64 alphabet has none either. */
        sp = memchr(line, ' ', n);
        if (!sp)
                return -EBADMSG;
        name = line;
        name_len = (size_t) (sp - line);
        if (!key_name_valid(name, name_len))
                return -EBADMSG;
        line += name_len + 1;
        n -= name_len + 1;

        r = proto_base64_decode_to((const char *) line, n, data, data_size, &dlen);
        if (r < 0)
                return r;
        /* signed-note "Format": 4 bytes of key ID and a non-empty signature. */
        if (dlen <= PROTO_NOTE_KEY_HASH_LEN)
                return -EBADMSG;

        s->name = (const char *) name;
        s->name_len = name_len;
        memcpy(s->key_hash, data, PROTO_NOTE_KEY_HASH_LEN);
        s->sig = data + PROTO_NOTE_KEY_HASH_LEN;
        s->sig_len = dlen - PROTO_NOTE_KEY_HASH_LEN;
        *ret_used = dlen;
        return 0;
}

int proto_note_split(const char *note, size_t len, proto_note **ret_note) {
        const uint8_t *p = (const uint8_t *) note;
        proto_note *n = NULL;
        proto_cursor c;
        size_t text_len = 0, block_len, lines = 0, used = 0;
        bool found = false;
        int r;

        if (len > PROTO_NOTE_MAX_SIZE)
                return -EMSGSIZE;
        if (len < 2 || p[len - 1] != '\n' || !text_valid(p, len))
                return -EBADMSG;

        /* signed-note "Format": the text (final newline included) is separated
         * from the signatures by the last empty line in the note. */
        for (size_t i = len - 1; i > 0; i--)
                if (p[i - 1] == '\n' && p[i] == '\n') {
                        text_len = i;
                        found = true;
                        break;
                }
        if (!found)
                return -EBADMSG;

        block_len = len - text_len - 1;
        c = proto_cursor_make(p + text_len + 1, block_len);
        for (size_t i = 0; i < c.len; i++)
                if (c.p[i] == '\n')
                        lines++;
        if (lines == 0)
                return -EBADMSG;
        if (lines > PROTO_NOTE_MAX_SIGS)
                return -EMSGSIZE;

        n = calloc(1, sizeof *n + lines * sizeof n->sigs[0]);
        if (!n)
                return -ENOMEM;
        /* Decoded base64 is shorter than its text, so the signature block's
         * length bounds every decoded signature together. */
        n->sig_data = malloc(block_len);
        if (!n->sig_data) {
                r = -ENOMEM;
                goto out;
        }
        n->text = note;
        n->text_len = text_len;

        while (c.len > 0) {
                const uint8_t *line;
                size_t line_len, k;

                r = cursor_get_line(&c, &line, &line_len);
                if (r < 0)
                        goto out;
                /* lines == the newline count, so this cannot overrun sigs[]. */
                r = parse_sig_line(line, line_len, &n->sigs[n->n_sigs], n->sig_data + used, block_len - used, &k);
                if (r < 0)
                        goto out;
                used += k;
                n->n_sigs++;
        }

        *ret_note = n;
        n = NULL;
        r = 0;
out:
        proto_note_free(n);
        return r;
}

/* ECDSA over SHA-256 of the note text, DER signature (docs/formats.md
 * "Checkpoints"). OpenSSL refuses non-DER encodings of (r, s). */
static int verify_one(EVP_PKEY *pkey, const char *text, size_t text_len, const uint8_t *sig, size_t sig_len) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int r;

        if (!ctx)
                return -ENOMEM;
        if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1) {
                r = -EINVAL;
                goto out;
        }
        r = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *) text, text_len) == 1 ? 0 : -EKEYREJECTED;
out:
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return r;
}

int proto_note_verify(const char *note, size_t len, const char *key_name, const uint8_t *spki_der, size_t spki_len,
                      char **ret_body) {
        uint8_t hash[PROTO_NOTE_KEY_HASH_LEN];
        size_t name_len = strlen(key_name), matched = 0;
        EVP_PKEY *pkey = NULL;
        proto_note *n = NULL;
        char *body;
        int r;

        if (!key_name_valid((const uint8_t *) key_name, name_len))
                return -EINVAL;
        r = pkey_from_spki(spki_der, spki_len, &pkey);
        if (r < 0)
                return r;
        r = proto_note_key_hash(spki_der, spki_len, hash);
        if (r < 0)
                goto out;
        r = proto_note_split(note, len, &n);
        if (r < 0)
                goto out;

        /* signed-note "Signatures": ignore lines from unknown keys (another
         * name or another key ID, e.g. the Ed25519 line); a known key's line
         * MUST verify, and if one fails the note is rejected. */
        for (size_t i = 0; i < n->n_sigs; i++) {
                const proto_note_sig *s = &n->sigs[i];

                if (s->name_len != name_len || memcmp(s->name, key_name, name_len) != 0 ||
                    memcmp(s->key_hash, hash, sizeof hash) != 0)
                        continue;
                matched++;
                r = verify_one(pkey, n->text, n->text_len, s->sig, s->sig_len);
                if (r < 0)
                        goto out;
        }
        if (matched == 0) {
                r = -ENOKEY;
                goto out;
        }

        body = strndup(n->text, n->text_len);
        if (!body) {
                r = -ENOMEM;
                goto out;
        }
        *ret_body = body;
        r = 0;
out:
        proto_note_free(n);
        EVP_PKEY_free(pkey);
        return r;
}

int proto_note_verify_pem(const char *note, size_t len, const char *key_name, const char *pem, char **ret_body) {
        EVP_PKEY *pkey = proto_pkey_from_pem(pem);
        unsigned char *der = NULL;
        int der_len, r = -EINVAL;

        if (!pkey)
                goto out;
        der_len = i2d_PUBKEY(pkey, &der);
        if (der_len <= 0)
                goto out;

        r = proto_note_verify(note, len, key_name, der, (size_t) der_len, ret_body);
out:
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return r;
}
