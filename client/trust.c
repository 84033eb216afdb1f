/* The trust file (trust.h, docs/fleet.md "Trust file"). A line is valid
 * when it is exactly the verifier key that proto_note_verifier_key() makes
 * of its own origin and decoded key: one format, one implementation. */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "dsse.h"
#include "keyid.h"
#include "note.h"
#include "receipt.h"
#include "trust.h"

/* A verifier key line is far shorter; a longer one is malformed. */
#define TRUST_LINE_MAX 4096u

static int bad(char *msg, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *msg, size_t size, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, size, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/* One verifier key (line, n bytes, no newline) into e. */
static int parse_key(const char *line, size_t n, struct client_trust_entry *e, char *msg, size_t msg_size) {
        const char *plus1, *plus2;
        uint8_t *typed = NULL;
        size_t typed_len = 0;
        char *origin = NULL, *again = NULL;
        int r;

        plus1 = memchr(line, '+', n);
        plus2 = plus1 ? memchr(plus1 + 1, '+', n - (size_t) (plus1 + 1 - line)) : NULL;
        if (!plus1 || !plus2 || plus1 == line)
                return bad(msg, msg_size, "not a note verifier key (<origin>+<key hash>+<key>)");
        origin = strndup(line, (size_t) (plus1 - line));
        if (!origin)
                return -ENOMEM;
        r = proto_base64_decode(plus2 + 1, n - (size_t) (plus2 + 1 - line), &typed, &typed_len);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || typed_len < 2 || typed[0] != PROTO_NOTE_SIG_TYPE_ECDSA) {
                r = bad(msg, msg_size, "the key is not base64 of an ECDSA (0x02) note key");
                goto out;
        }
        r = proto_note_verifier_key(origin, typed + 1, typed_len - 1, &again);
        if (r == -ENOMEM)
                goto out;
        if (r < 0) {
                r = bad(msg, msg_size, "not a valid origin and note key (an EC P-256/384/521 public key)");
                goto out;
        }
        if (strlen(again) != n || memcmp(again, line, n) != 0) {
                r = bad(msg, msg_size, "the key hash does not match the key");
                goto out;
        }
        r = proto_spki_pem(typed + 1, typed_len - 1, &e->pem);
        if (r < 0) {
                r = r == -ENOMEM ? r : bad(msg, msg_size, "the key is not a public key");
                goto out;
        }
        proto_keyid_hex(typed + 1, typed_len - 1, e->keyid);
        e->origin = origin;
        origin = NULL;
        r = 0;
out:
        free(again);
        free(typed);
        free(origin);
        return r;
}

static bool blank(char c) {
        return c == ' ' || c == '\t' || c == '\r';
}

int client_trust_parse(const char *text, size_t len, struct client_trust *t, size_t *ret_line, char *msg,
                       size_t msg_size) {
        size_t lineno = 0, pos = 0;
        int r = 0;

        *t = (struct client_trust){};
        *ret_line = 0;
        while (pos < len) {
                const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - line) : len - pos;
                struct client_trust_entry e = {}, *grown;

                pos += n + (nl ? 1 : 0);
                lineno++;
                while (n > 0 && blank(*line))
                        line++, n--;
                while (n > 0 && blank(line[n - 1]))
                        n--;
                if (n == 0 || line[0] == '#')
                        continue;
                *ret_line = lineno;
                if (n > TRUST_LINE_MAX || memchr(line, '\0', n)) {
                        r = bad(msg, msg_size, "line too long or not text");
                        goto fail;
                }
                r = parse_key(line, n, &e, msg, msg_size);
                if (r < 0)
                        goto fail;
                if (client_trust_by_origin(t, e.origin)) {
                        r = bad(msg, msg_size, "origin \"%s\" listed twice", e.origin);
                        free(e.origin);
                        free(e.pem);
                        goto fail;
                }
                grown = reallocarray(t->e, t->n + 1, sizeof *t->e);
                if (!grown) {
                        free(e.origin);
                        free(e.pem);
                        r = -ENOMEM;
                        goto fail;
                }
                t->e = grown;
                t->e[t->n++] = e;
        }
        if (t->n == 0) {
                *ret_line = lineno;
                r = bad(msg, msg_size, "no log key listed");
                goto fail;
        }
        *ret_line = 0;
        return 0;
fail:
        client_trust_done(t);
        return r;
}

void client_trust_done(struct client_trust *t) {
        for (size_t i = 0; i < t->n; i++) {
                free(t->e[i].origin);
                free(t->e[i].pem);
        }
        free(t->e);
        *t = (struct client_trust){};
}

const struct client_trust_entry *client_trust_by_origin(const struct client_trust *t, const char *origin) {
        for (size_t i = 0; origin && i < t->n; i++)
                if (strcmp(t->e[i].origin, origin) == 0)
                        return &t->e[i];
        return NULL;
}

const struct client_trust_entry *client_trust_by_keyid(const struct client_trust *t, const char *keyid) {
        for (size_t i = 0; keyid && i < t->n; i++)
                if (strcmp(t->e[i].keyid, keyid) == 0)
                        return &t->e[i];
        return NULL;
}

int client_trust_for_checkpoint(const struct client_trust *t, const char *note, const struct client_trust_entry **ret,
                                char **ret_origin) {
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        uint64_t size;
        char *origin = NULL;
        int r;

        if (!note)
                return -EBADMSG;
        r = client_checkpoint_note_parse(note, strlen(note), &origin, &size, root);
        if (r < 0)
                return r;
        *ret = client_trust_by_origin(t, origin);
        *ret_origin = origin;
        return 0;
}

int client_trust_for_bundle(const struct client_trust *t, const char *bundle, size_t len,
                            const struct client_trust_entry **ret) {
        struct proto_dsse_envelope *env = NULL;
        int r = proto_dsse_envelope_parse(bundle, len, &env);

        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        *ret = NULL;
        for (size_t i = 0; i < env->n_sigs && !*ret; i++)
                *ret = client_trust_by_keyid(t, env->sigs[i].keyid);
        proto_dsse_envelope_free(env);
        return 0;
}
