/* The libp11 side of the keystore: open, login, enumerate, sign. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "build-config.h"
#include "keyid.h"
#include "keystore-internal.h"
#include "provsign.pb-c.h"

#define TOKEN_FIND_ATTEMPTS 10
#define TOKEN_FIND_DELAY_US 100000

int keys_errorf(char **ret_error, int r, const char *fmt, ...) {
        if (ret_error && !*ret_error) {
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r;
}

/* libp11 reports PKCS#11 return values as the reason of the last OpenSSL
 * error it raised (ERR_CKR_error). Map the ones a caller acts on. */
static int last_ckr_to_errno(void) {
        unsigned long e = ERR_peek_last_error();
        unsigned long ckr = e ? (unsigned long) ERR_GET_REASON(e) : 0;
        ERR_clear_error();
        switch (ckr) {
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
                return -EACCES;
        case CKR_PIN_LOCKED:
                return -EPERM;
        case CKR_USER_ALREADY_LOGGED_IN:
                return 0;
        default:
                return -EIO;
        }
}

static void key_free(keys_key *k) {
        if (!k)
                return;
        free(k->label);
        free(k->spki);
        free(k->pem);
        EVP_PKEY_free(k->priv);
        free(k);
}

void keys_store_free(keys_store *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_keys; i++)
                key_free(s->keys[i]);
        free(s->keys);
        if (s->slots)
                PKCS11_release_all_slots(s->ctx, s->slots, s->n_slots);
        if (s->ctx_loaded)
                PKCS11_CTX_unload(s->ctx);
        if (s->ctx)
                PKCS11_CTX_free(s->ctx);
        keys_raw_close(s);
        free(s->token_label);
        pthread_rwlock_destroy(&s->lock);
        free(s);
}

static int algorithm_of(EVP_PKEY *pub) {
        switch (EVP_PKEY_get_base_id(pub)) {
        case EVP_PKEY_EC:
                if (EVP_PKEY_get_bits(pub) == 256)
                        return PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
                if (EVP_PKEY_get_bits(pub) == 384)
                        return PROVSIGN__KEY_ALGORITHM__ECDSA_P384;
                return -ENOTSUP;
        case EVP_PKEY_RSA:
                return EVP_PKEY_get_bits(pub) == 3072 ? PROVSIGN__KEY_ALGORITHM__RSA_3072 : -ENOTSUP;
        default:
                return -ENOTSUP;
        }
}

static int spki_to_pem(const uint8_t *der, size_t len, char **ret) {
        const uint8_t *p = der;
        EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey)
                return -EINVAL;
        BIO *bio = BIO_new(BIO_s_mem());
        int r = -ENOMEM;
        if (!bio || !PEM_write_bio_PUBKEY(bio, pkey))
                goto out;
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        char *pem = strndup(data, (size_t) n);
        if (!pem)
                goto out;
        *ret = pem;
        r = 0;
out:
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        return r;
}

/* Builds our view of one libp11 private key. Returns 0 and *ret, or 1 when
 * the object is not ours to use (no public half, unsupported algorithm, or
 * CKA_ID that is not the SHA-256 of its public key), or a negative errno. */
static int key_from_p11(PKCS11_KEY *pk, keys_key **ret) {
        keys_key *k = calloc(1, sizeof *k);
        EVP_PKEY *pub = NULL;
        uint8_t *der = NULL;
        int r = -ENOMEM;
        if (!k)
                goto out;
        k->label = strdup(pk->label);
        if (!k->label)
                goto out;
        pub = PKCS11_get_public_key(pk);
        if (!pub) {
                ERR_clear_error();
                r = 1;
                goto out;
        }
        r = algorithm_of(pub);
        if (r < 0) {
                r = 1;
                goto out;
        }
        k->algorithm = r;
        int n = i2d_PUBKEY(pub, &der);
        if (n <= 0) {
                r = -EIO;
                goto out;
        }
        k->spki_len = (size_t) n;
        k->spki = malloc(k->spki_len);
        if (!k->spki) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(k->spki, der, k->spki_len);
        proto_keyid_compute(k->spki, k->spki_len, k->id);
        proto_keyid_hex(k->spki, k->spki_len, k->id_hex);
        if (pk->id_len != sizeof k->id || memcmp(pk->id, k->id, sizeof k->id) != 0) {
                r = 1;
                goto out;
        }
        r = spki_to_pem(k->spki, k->spki_len, &k->pem);
        if (r < 0)
                goto out;
        k->priv = PKCS11_get_private_key(pk);
        if (!k->priv) {
                ERR_clear_error();
                r = -EIO;
                goto out;
        }
        *ret = k;
        k = NULL;
        r = 0;
out:
        OPENSSL_free(der);
        EVP_PKEY_free(pub);
        key_free(k);
        return r;
}

static bool have_key(const keys_store *s, const char *label, const unsigned char *id, size_t id_len) {
        for (size_t i = 0; i < s->n_keys; i++)
                if (strcmp(s->keys[i]->label, label) == 0 && id_len == sizeof s->keys[i]->id &&
                    memcmp(s->keys[i]->id, id, id_len) == 0)
                        return true;
        return false;
}

/* Adds every provsign key on the token that we do not know yet. Caller holds
 * the write lock (or is the only thread). */
static int store_refresh_locked(keys_store *s, char **ret_error) {
        PKCS11_KEY *pks = NULL;
        unsigned int n = 0;
        if (PKCS11_enumerate_keys(s->slot->token, &pks, &n) < 0) {
                ERR_clear_error();
                if (keys_raw_has_eddsa(s) > 0)
                        return keys_errorf(ret_error, -ENOTSUP,
                                           "token \"%s\" holds an Ed25519 key, which libp11 0.4.12 cannot "
                                           "enumerate; move or delete it (pkcs11-tool --list-objects shows it)",
                                           s->token_label);
                return keys_errorf(ret_error, -EIO, "cannot list the keys of token \"%s\"", s->token_label);
        }
        for (unsigned int i = 0; i < n; i++) {
                PKCS11_KEY *pk = &pks[i];
                if (!pk->isPrivate || !pk->label || strncmp(pk->label, KEYS_LABEL_PREFIX, strlen(KEYS_LABEL_PREFIX)) != 0)
                        continue;
                if (have_key(s, pk->label, pk->id, pk->id_len))
                        continue;
                keys_key *k = NULL;
                int r = key_from_p11(pk, &k);
                if (r < 0)
                        return keys_errorf(ret_error, r, "cannot load key \"%s\" from the token", pk->label);
                if (r > 0)
                        continue;
                keys_key **nk = realloc(s->keys, (s->n_keys + 1) * sizeof *nk);
                if (!nk) {
                        key_free(k);
                        return -ENOMEM;
                }
                s->keys = nk;
                s->keys[s->n_keys++] = k;
        }
        return 0;
}

static PKCS11_SLOT *find_token_slot(keys_store *s) {
        for (unsigned int i = 0; i < s->n_slots; i++) {
                PKCS11_SLOT *slot = &s->slots[i];
                if (slot->token && slot->token->initialized && slot->token->label &&
                    strcmp(slot->token->label, s->token_label) == 0)
                        return slot;
        }
        return NULL;
}

int keys_store_open(const char *module_path, const char *token_label, const char *pin,
                    size_t pin_len, keys_store **ret, char **ret_error) {
        char resolved[PATH_MAX];
        char *pin_z = NULL;
        int r;

        if (!realpath(module_path, resolved))
                return keys_errorf(ret_error, -ENOENT, "PKCS#11 module %s: %s", module_path, strerror(errno));

        keys_store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        pthread_rwlock_init(&s->lock, NULL);
        s->token_label = strdup(token_label);
        s->ctx = PKCS11_CTX_new();
        if (!s->token_label || !s->ctx) {
                r = -ENOMEM;
                goto fail;
        }
        if (PKCS11_CTX_load(s->ctx, resolved) < 0) {
                ERR_clear_error();
                r = keys_errorf(ret_error, -EIO, "cannot load PKCS#11 module %s", resolved);
                goto fail;
        }
        s->ctx_loaded = true;

        /* SoftHSM assigns slot ids at random as tokens are created; a token
         * made a moment ago may need another enumeration to show up. */
        for (int attempt = 0; attempt < TOKEN_FIND_ATTEMPTS; attempt++) {
                if (s->slots) {
                        PKCS11_release_all_slots(s->ctx, s->slots, s->n_slots);
                        s->slots = NULL;
                }
                if (PKCS11_enumerate_slots(s->ctx, &s->slots, &s->n_slots) < 0) {
                        ERR_clear_error();
                        s->slots = NULL;
                        r = keys_errorf(ret_error, -EIO, "cannot enumerate the slots of %s", resolved);
                        goto fail;
                }
                s->slot = find_token_slot(s);
                if (s->slot)
                        break;
                usleep(TOKEN_FIND_DELAY_US);
        }
        if (!s->slot) {
                r = keys_errorf(ret_error, -ENOENT, "no token labelled \"%s\" in %s", token_label, resolved);
                goto fail;
        }
        s->slot_id = PKCS11_get_slotid_from_slot(s->slot);

        r = keys_raw_open(s, resolved, ret_error);
        if (r < 0)
                goto fail;

        /* libp11 wants a C string: a short-lived copy, wiped on every path
         * (OPENSSL_clear_free). A PIN with a NUL inside would be cut short. */
        if (memchr(pin, '\0', pin_len)) {
                r = keys_errorf(ret_error, -EINVAL, "the PIN contains a NUL byte");
                goto fail;
        }
        pin_z = OPENSSL_zalloc(pin_len + 1);
        if (!pin_z) {
                r = -ENOMEM;
                goto fail;
        }
        memcpy(pin_z, pin, pin_len);
        int logged_in = 0;
        if (PKCS11_is_logged_in(s->slot, 0, &logged_in) < 0)
                ERR_clear_error();
        if (!logged_in && PKCS11_login(s->slot, 0, pin_z) < 0) {
                r = last_ckr_to_errno();
                if (r < 0) {
                        if (r == -EACCES)
                                keys_errorf(ret_error, r, "wrong PIN for token \"%s\"", token_label);
                        else if (r == -EPERM)
                                keys_errorf(ret_error, r, "the PIN of token \"%s\" is locked", token_label);
                        else
                                keys_errorf(ret_error, r, "login to token \"%s\" failed", token_label);
                        goto fail;
                }
        }

        r = store_refresh_locked(s, ret_error);
        if (r < 0)
                goto fail;

        OPENSSL_clear_free(pin_z, pin_len + 1);
        *ret = s;
        return 0;
fail:
        if (pin_z)
                OPENSSL_clear_free(pin_z, pin_len + 1);
        keys_store_free(s);
        return r;
}

const char *keys_store_token_label(const keys_store *s) {
        return s->token_label;
}

size_t keys_store_count(const keys_store *s) {
        return s->n_keys;
}

keys_key *keys_store_get(const keys_store *s, size_t i) {
        return i < s->n_keys ? s->keys[i] : NULL;
}

keys_key *keys_store_find_label(const keys_store *s, const char *label) {
        for (size_t i = 0; i < s->n_keys; i++)
                if (strcmp(s->keys[i]->label, label) == 0)
                        return s->keys[i];
        return NULL;
}

keys_key *keys_store_find_id(const keys_store *s, const uint8_t id[32]) {
        for (size_t i = 0; i < s->n_keys; i++)
                if (memcmp(s->keys[i]->id, id, 32) == 0)
                        return s->keys[i];
        return NULL;
}

int keys_generate(keys_store *s, int algorithm, const char *label, keys_key **ret, char **ret_error) {
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        int r;

        if (strncmp(label, KEYS_LABEL_PREFIX, strlen(KEYS_LABEL_PREFIX)) != 0)
                return -EINVAL;
        pthread_rwlock_wrlock(&s->lock);
        if (keys_store_find_label(s, label)) {
                r = keys_errorf(ret_error, -EEXIST, "a key labelled \"%s\" already exists", label);
                goto out;
        }
        r = keys_raw_generate(s, algorithm, label, &spki, &spki_len, ret_error);
        if (r < 0)
                goto out;
        r = store_refresh_locked(s, ret_error);
        if (r < 0)
                goto out;
        uint8_t id[32];
        proto_keyid_compute(spki, spki_len, id);
        keys_key *k = keys_store_find_id(s, id);
        if (!k) {
                r = keys_errorf(ret_error, -EIO, "generated key \"%s\" is not visible on the token", label);
                goto out;
        }
        *ret = k;
        r = 0;
out:
        pthread_rwlock_unlock(&s->lock);
        free(spki);
        return r;
}

int keys_sign(keys_store *s, keys_key *k, const uint8_t *digest, size_t digest_len, uint8_t *sig,
              size_t *ret_len) {
        size_t want = k->algorithm == PROVSIGN__KEY_ALGORITHM__ECDSA_P384 ? 48 : 32;
        if (digest_len != want)
                return -EINVAL;

#if PROVSIGN_BENCH_HSM_DELAY_US > 0
        /* Benchmark builds only (meson -Dbench_hsm_delay_us): a network
         * HSM's round trip. Compiled out of every normal build. */
        usleep(PROVSIGN_BENCH_HSM_DELAY_US);
#endif
        int r = -EIO;
        pthread_rwlock_rdlock(&s->lock);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->priv, NULL);
        if (!ctx || EVP_PKEY_sign_init(ctx) <= 0)
                goto out;
        if (k->algorithm == PROVSIGN__KEY_ALGORITHM__RSA_3072 &&
            (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0 ||
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0))
                goto out;
        size_t len = KEYS_MAX_SIGNATURE;
        if (EVP_PKEY_sign(ctx, sig, &len, digest, digest_len) <= 0)
                goto out;
        *ret_len = len;
        r = 0;
out:
        if (r < 0)
                ERR_clear_error();
        EVP_PKEY_CTX_free(ctx);
        pthread_rwlock_unlock(&s->lock);
        return r;
}

const char *keys_key_label(const keys_key *k) {
        return k->label;
}
int keys_key_algorithm(const keys_key *k) {
        return k->algorithm;
}
const uint8_t *keys_key_id(const keys_key *k) {
        return k->id;
}
const char *keys_key_id_hex(const keys_key *k) {
        return k->id_hex;
}
const uint8_t *keys_key_spki(const keys_key *k, size_t *ret_len) {
        *ret_len = k->spki_len;
        return k->spki;
}
const char *keys_key_pem(const keys_key *k) {
        return k->pem;
}

int keys_label_parse(const char *label, char *owner, size_t owner_size, uint32_t *ret_gen) {
        size_t plen = strlen(KEYS_LABEL_PREFIX);
        if (strncmp(label, KEYS_LABEL_PREFIX, plen) != 0)
                return -EINVAL;
        const char *o = label + plen;
        const char *slash = strrchr(o, '/');
        if (!slash || slash == o || (size_t) (slash - o) >= owner_size)
                return -EINVAL;
        const char *g = slash + 1;
        if (*g < '1' || *g > '9' || strlen(g) > 9)
                return -EINVAL;
        uint32_t gen = 0;
        for (; *g; g++) {
                if (*g < '0' || *g > '9')
                        return -EINVAL;
                gen = gen * 10 + (uint32_t) (*g - '0');
        }
        memcpy(owner, o, (size_t) (slash - o));
        owner[slash - o] = '\0';
        *ret_gen = gen;
        return 0;
}
