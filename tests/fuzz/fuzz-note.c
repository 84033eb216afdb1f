/* Fuzzes C2SP signed notes (proto/note.h): the input is a note as a
 * checkpoint file or a receipt carries it.
 *
 * Invariants:
 *   - proto_note_split: 0, -EBADMSG or -EMSGSIZE (-EMSGSIZE only over the
 *     size or line limit). On success the text is a prefix of the input
 *     ending in "\n", followed by the blank line; 1..PROTO_NOTE_MAX_SIGS
 *     signatures, each with a name inside the input and a non-empty
 *     signature; the note rebuilt from the parts (text, "\n", one
 *     "— name base64(key hash ‖ sig)\n" per line) is byte for byte the
 *     input, and re-splitting the rebuilt copy gives identical parts; with
 *     one signature, proto_note_assemble() of the parts is the input too;
 *   - proto_note_verify, on notes that split, with a fixed ECDSA key (the
 *     independent tlog.json vector's, and the corpus test key): 0, -ENOKEY
 *     or -EKEYREJECTED; on success the body is a NUL-terminated copy of
 *     split's text, and some line carried the key's name and key hash;
 *   - the text of a note that splits goes through proto_checkpoint_parse
 *     (what receipts do) without leaking. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "note.h"

#include "fuzz-keys.h"
#include "fuzz.h"

static const uint8_t sig_prefix[] = { 0xe2, 0x80, 0x94, ' ' };

/* The note rebuilt from split's parts; caller frees. */
static char *rebuild(const proto_note *n, size_t *ret_len) {
        size_t cap = n->text_len + 1, len = 0;
        char *out;

        for (size_t i = 0; i < n->n_sigs; i++)
                cap += sizeof sig_prefix + n->sigs[i].name_len + 1 +
                       (PROTO_NOTE_KEY_HASH_LEN + n->sigs[i].sig_len + 2) / 3 * 4 + 1;
        out = malloc(cap + 1);
        FUZZ_CHECK(out);

        memcpy(out, n->text, n->text_len), len += n->text_len;
        out[len++] = '\n';
        for (size_t i = 0; i < n->n_sigs; i++) {
                const proto_note_sig *s = &n->sigs[i];
                size_t raw_len = PROTO_NOTE_KEY_HASH_LEN + s->sig_len;
                uint8_t *raw = malloc(raw_len);

                FUZZ_CHECK(raw);
                memcpy(raw, s->key_hash, PROTO_NOTE_KEY_HASH_LEN);
                memcpy(raw + PROTO_NOTE_KEY_HASH_LEN, s->sig, s->sig_len);
                memcpy(out + len, sig_prefix, sizeof sig_prefix), len += sizeof sig_prefix;
                memcpy(out + len, s->name, s->name_len), len += s->name_len;
                out[len++] = ' ';
                len += (size_t) EVP_EncodeBlock((unsigned char *) out + len, raw, (int) raw_len);
                out[len++] = '\n';
                free(raw);
        }
        FUZZ_CHECK(len <= cap);
        *ret_len = len;
        return out;
}

static void check_same_parts(const proto_note *a, const proto_note *b) {
        FUZZ_CHECK(a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0);
        FUZZ_CHECK(a->n_sigs == b->n_sigs);
        for (size_t i = 0; i < a->n_sigs; i++) {
                const proto_note_sig *x = &a->sigs[i], *y = &b->sigs[i];
                FUZZ_CHECK(x->name_len == y->name_len && memcmp(x->name, y->name, x->name_len) == 0);
                FUZZ_CHECK(memcmp(x->key_hash, y->key_hash, PROTO_NOTE_KEY_HASH_LEN) == 0);
                FUZZ_CHECK(x->sig_len == y->sig_len && memcmp(x->sig, y->sig, x->sig_len) == 0);
        }
}

/* Returns split's result; on success the parts were checked. */
static int check_split(const char *note, size_t size) {
        proto_note *n = NULL, *again = NULL;
        size_t rebuilt_len = 0;
        char *rebuilt;
        int r;

        r = proto_note_split(note, size, &n);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
                FUZZ_CHECK(n == NULL);
                return r;
        }
        FUZZ_CHECK(r == 0 && n);
        FUZZ_CHECK(size <= PROTO_NOTE_MAX_SIZE);
        FUZZ_CHECK(n->n_sigs >= 1 && n->n_sigs <= PROTO_NOTE_MAX_SIGS);
        FUZZ_CHECK(n->text == note);
        FUZZ_CHECK(n->text_len >= 1 && n->text_len < size);
        FUZZ_CHECK(note[n->text_len - 1] == '\n' && note[n->text_len] == '\n');
        for (size_t i = 0; i < n->n_sigs; i++) {
                const proto_note_sig *s = &n->sigs[i];
                FUZZ_CHECK(s->name > note + n->text_len && s->name + s->name_len <= note + size);
                FUZZ_CHECK(s->name_len > 0 && !memchr(s->name, ' ', s->name_len) && !memchr(s->name, '+', s->name_len));
                FUZZ_CHECK(s->sig_len > 0);
        }

        rebuilt = rebuild(n, &rebuilt_len);
        FUZZ_CHECK(rebuilt_len == size && memcmp(rebuilt, note, size) == 0);
        FUZZ_CHECK(proto_note_split(rebuilt, rebuilt_len, &again) == 0);
        check_same_parts(n, again);
        proto_note_free(again);
        free(rebuilt);

        if (n->n_sigs == 1) {
                const proto_note_sig *s = &n->sigs[0];
                char *text = strndup(n->text, n->text_len), *name = strndup(s->name, s->name_len), *assembled = NULL;

                FUZZ_CHECK(text && name);
                /* split refuses NUL (a control character), so the copies are whole */
                FUZZ_CHECK(strlen(text) == n->text_len && strlen(name) == s->name_len);
                FUZZ_CHECK(proto_note_assemble(text, name, s->key_hash, s->sig, s->sig_len, &assembled) == 0);
                FUZZ_CHECK(strlen(assembled) == size && memcmp(assembled, note, size) == 0);
                free(assembled);
                free(text);
                free(name);
        }

        /* what client_checkpoint_note_parse does with it */
        char *origin = NULL;
        uint64_t tree_size;
        uint8_t root[PROTO_CHECKPOINT_HASH_LEN];
        r = proto_checkpoint_parse(n->text, n->text_len, &origin, &tree_size, root);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        free(origin);

        proto_note_free(n);
        return 0;
}

/* For a note that splits. */
static void check_verify(const char *note, size_t size, const char *name, const uint8_t *spki, size_t spki_len) {
        uint8_t hash[SHA256_DIGEST_LENGTH];
        char *body = NULL;
        int r;

        r = proto_note_verify(note, size, name, spki, spki_len, &body);
        FUZZ_CHECK(r == 0 || r == -ENOKEY || r == -EKEYREJECTED);
        if (r < 0) {
                FUZZ_CHECK(body == NULL);
                return;
        }

        proto_note *n = NULL;
        bool matched = false;
        FUZZ_CHECK(proto_note_split(note, size, &n) == 0);
        FUZZ_CHECK(strlen(body) == n->text_len && memcmp(body, n->text, n->text_len) == 0);
        SHA256(spki, spki_len, hash);
        for (size_t i = 0; i < n->n_sigs; i++)
                if (n->sigs[i].name_len == strlen(name) && memcmp(n->sigs[i].name, name, strlen(name)) == 0 &&
                    memcmp(n->sigs[i].key_hash, hash, PROTO_NOTE_KEY_HASH_LEN) == 0)
                        matched = true;
        FUZZ_CHECK(matched);
        proto_note_free(n);
        free(body);
}

/* Whether some signature line of the note carries name. */
static bool names_key(const char *note, size_t size, const char *name) {
        proto_note *n = NULL;
        bool found = false;

        FUZZ_CHECK(proto_note_split(note, size, &n) == 0);
        for (size_t i = 0; i < n->n_sigs; i++)
                if (n->sigs[i].name_len == strlen(name) && memcmp(n->sigs[i].name, name, strlen(name)) == 0)
                        found = true;
        proto_note_free(n);
        return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *note = (const char *) data;

        /* proto_note_verify parses the SPKI first, on every call, which
         * costs close to a millisecond under ASan and would dominate. After
         * that it only returns split's error when split fails, so it runs
         * only on notes that split: always with the tlog key, and with the
         * corpus key when a line names it. */
        if (check_split(note, size) < 0)
                return 0;
        check_verify(note, size, FUZZ_TLOG_KEY_NAME, fuzz_tlog_spki, sizeof fuzz_tlog_spki);
        if (names_key(note, size, FUZZ_CORPUS_ORIGIN))
                check_verify(note, size, FUZZ_CORPUS_ORIGIN, fuzz_corpus_spki, sizeof fuzz_corpus_spki);
        return 0;
}
