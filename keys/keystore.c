/* The libp11 side of the keystore: open, login, enumerate, sign, and
 * re-open after a token outage.
 *
 * Token outages. Any failed token call in keys_sign() marks the store
 * broken and re-opens it at once: the libp11 context is unloaded (the
 * module finalized, every session gone), loaded again, the slot found,
 * the login redone with the store's own PIN copy and every keys_key given
 * the new token's private key object (matched by label and CKA_ID), all
 * under the write lock, so the keys_key handles callers hold stay valid.
 * While the token is down a re-open is attempted at most every
 * REOPEN_RETRY_MS, by whichever keys_sign() comes along (the agent's Sign
 * requests and the audit log's checkpoint signing); the others fail fast
 * with -EIO. The first call after the token is back re-opens it and signs,
 * so signing resumes by itself. A call that hangs in the module is not
 * this file's business: the agent answers its caller after hsm_timeout.
 *
 * The price: to log in again without a person, the store keeps the PIN for
 * its lifetime, in its own page (mlocked, MADV_DONTDUMP, wiped and unmapped
 * in keys_store_free) instead of wiping it right after the first login. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
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
#define REOPEN_RETRY_MS 250u

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
static int last_ckr_to_errno(unsigned long *ret_ckr) {
        unsigned long e = ERR_peek_last_error();
        unsigned long ckr = e ? (unsigned long) ERR_GET_REASON(e) : 0;
        ERR_clear_error();
        if (ret_ckr)
                *ret_ckr = ckr;
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

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* The store's PIN copy: NUL-terminated (libp11 wants a C string) in its own
 * anonymous mapping, locked (best effort: mlock needs CAP_IPC_LOCK or
 * RLIMIT_MEMLOCK room) and excluded from core dumps. */
static int pin_keep(keys_store *s, const char *pin, size_t pin_len) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        size_t mapped = (pin_len / page + 1) * page;
        char *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -ENOMEM;
        (void) mlock(p, mapped);
        (void) madvise(p, mapped, MADV_DONTDUMP);
        memcpy(p, pin, pin_len);
        p[pin_len] = '\0';
        s->pin = p;
        s->pin_mapped = mapped;
        return 0;
}

static void pin_drop(keys_store *s) {
        if (!s->pin)
                return;
        explicit_bzero(s->pin, s->pin_mapped);
        munlock(s->pin, s->pin_mapped);
        munmap(s->pin, s->pin_mapped);
        s->pin = NULL;
        s->pin_mapped = 0;
}

static void raw_detach(keys_store *s) {
        if (!s->fn)
                return;
        if (s->raw_session_open)
                (void) s->fn->C_CloseSession(s->raw_session);
        s->raw_session_open = false;
}

/* Drops everything libp11 gave us: the keys' private key objects, the
 * slots, the context (C_Finalize: every session closes). The keys_key
 * objects stay. Caller holds the write lock (or is the only thread). */
static void store_detach(keys_store *s) {
        for (size_t i = 0; i < s->n_keys; i++) {
                EVP_PKEY_free(s->keys[i]->priv);
                s->keys[i]->priv = NULL;
        }
        if (s->slots)
                PKCS11_release_all_slots(s->ctx, s->slots, s->n_slots);
        s->slots = NULL;
        s->n_slots = 0;
        s->slot = NULL;
        if (s->ctx_loaded)
                PKCS11_CTX_unload(s->ctx);
        s->ctx_loaded = false;
        if (s->ctx)
                PKCS11_CTX_free(s->ctx);
        s->ctx = NULL;
        ERR_clear_error();
}

void keys_store_free(keys_store *s) {
        if (!s)
                return;
        raw_detach(s);
        store_detach(s);
        for (size_t i = 0; i < s->n_keys; i++)
                key_free(s->keys[i]);
        free(s->keys);
        keys_raw_close(s);
        pin_drop(s);
        free(s->module_path);
        free(s->token_label);
        free(s->ns);
        for (size_t i = 0; i < s->n_relabelled; i++)
                free(s->relabelled[i].old_label);
        free(s->relabelled);
        pthread_mutex_destroy(&s->reopen_lock);
        pthread_mutex_destroy(&s->raw_lock);
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

/* Builds our view of one libp11 private key. Returns 0 and *ret, or 1 when
 * the object is not ours to use (no public half, unsupported algorithm, or
 * CKA_ID that is not the SHA-256 of its public key), or a negative errno.
 * The public half is read on the raw side (keys_raw_public_key), never with
 * PKCS11_get_public_key: libp11 0.4.12 crashes (a NULL dereference) on a
 * private key without one, which another agent's generation in progress,
 * or a deleted public object, shows it. */
static int key_from_p11(keys_store *s, PKCS11_KEY *pk, keys_key **ret) {
        keys_key *k = NULL;
        EVP_PKEY *pub = NULL;
        int r;
        if (pk->id_len != sizeof k->id)
                return 1;
        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        r = -ENOMEM;
        k->label = strdup(pk->label);
        if (!k->label)
                goto out;
        r = keys_raw_public_key(s, pk->id, pk->id_len, &k->spki, &k->spki_len);
        if (r != 0)
                goto out;
        const uint8_t *p = k->spki;
        pub = d2i_PUBKEY(NULL, &p, (long) k->spki_len);
        if (!pub || p != k->spki + k->spki_len) {
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
        proto_keyid_compute(k->spki, k->spki_len, k->id);
        proto_keyid_hex(k->spki, k->spki_len, k->id_hex);
        if (memcmp(pk->id, k->id, sizeof k->id) != 0) {
                r = 1;
                goto out;
        }
        r = proto_spki_pem(k->spki, k->spki_len, &k->pem);
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

/* A label this store may load: in its namespace, or any provsign label for
 * a store without one. */
static bool label_ours(const keys_store *s, const char *label) {
        char owner[KEYS_LABEL_MAX];
        uint32_t gen;
        if (s->ns)
                return keys_label_parse(label, s->ns, owner, sizeof owner, &gen) == 0;
        return strncmp(label, KEYS_LABEL_PREFIX, strlen(KEYS_LABEL_PREFIX)) == 0;
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
                if (!pk->isPrivate || !pk->label || !label_ours(s, pk->label))
                        continue;
                if (have_key(s, pk->label, pk->id, pk->id_len))
                        continue;
                keys_key *k = NULL;
                int r = key_from_p11(s, pk, &k);
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

/* Loads the module into a fresh libp11 context and finds the token, trying
 * `attempts` enumerations. Caller holds the write lock (or is the only
 * thread); on failure store_detach() undoes what was done. */
/* A new libp11 context with the module loaded into it. */
static int ctx_load(keys_store *s, char **ret_error) {
        s->ctx = PKCS11_CTX_new();
        if (!s->ctx)
                return -ENOMEM;
        if (PKCS11_CTX_load(s->ctx, s->module_path) < 0) {
                ERR_clear_error();
                return keys_errorf(ret_error, -EIO, "cannot load PKCS#11 module %s", s->module_path);
        }
        s->ctx_loaded = true;
        return 0;
}

static int store_attach(keys_store *s, int attempts, char **ret_error) {
        int r = ctx_load(s, ret_error);
        if (r < 0)
                return r;

        bool enumerated = false;
        /* SoftHSM assigns slot ids at random as tokens are created; a token
         * made a moment ago may need another enumeration to show up. */
        for (int attempt = 0; attempt < attempts; attempt++) {
                if (attempt > 0)
                        usleep(TOKEN_FIND_DELAY_US);
                if (s->slots) {
                        PKCS11_release_all_slots(s->ctx, s->slots, s->n_slots);
                        s->slots = NULL;
                }
                /* A failed enumeration is tried again too, with the module
                 * loaded again: p11-kit-client.so's connection, made when it
                 * is loaded, sometimes fails for good when agents start
                 * together (the server's process for it found no token). */
                if (PKCS11_enumerate_slots(s->ctx, &s->slots, &s->n_slots) < 0) {
                        ERR_clear_error();
                        s->slots = NULL;
                        s->n_slots = 0;
                        enumerated = false;
                        if (attempt + 1 == attempts)
                                break;
                        PKCS11_CTX_unload(s->ctx);
                        s->ctx_loaded = false;
                        PKCS11_CTX_free(s->ctx);
                        r = ctx_load(s, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
                enumerated = true;
                s->slot = find_token_slot(s);
                if (s->slot)
                        break;
        }
        if (!s->slot && !enumerated)
                return keys_errorf(ret_error, -EIO, "cannot enumerate the slots of %s", s->module_path);
        if (!s->slot)
                return keys_errorf(ret_error, -ENOENT, "no token labelled \"%s\" in %s", s->token_label,
                                   s->module_path);
        s->slot_id = PKCS11_get_slotid_from_slot(s->slot);
        return 0;
}

/* A login that fails for another reason than the PIN is tried again a few
 * times: agents of a fleet that start together log in to one token at the
 * same moment, and a token may answer one of them with a transient error
 * (SoftHSM2 behind p11-kit server does; test-fleet). A wrong PIN is never
 * retried: that would count against the token's lockout. A re-open after
 * an outage tries once (it holds the store's write lock; the next request
 * tries again). */
#define LOGIN_ATTEMPTS 5
#define LOGIN_DELAY_US 100000

static int store_login(keys_store *s, int attempts, char **ret_error) {
        unsigned long ckr = 0;
        int r = -EIO;
        for (int attempt = 0; attempt < attempts; attempt++) {
                if (attempt > 0)
                        usleep(LOGIN_DELAY_US * (useconds_t) attempt);
                int logged_in = 0;
                if (PKCS11_is_logged_in(s->slot, 0, &logged_in) < 0)
                        ERR_clear_error();
                if (logged_in || PKCS11_login(s->slot, 0, s->pin) == 0)
                        return 0;
                r = last_ckr_to_errno(&ckr);
                if (r == 0)
                        return 0;
                if (r == -EACCES)
                        return keys_errorf(ret_error, r, "wrong PIN for token \"%s\"", s->token_label);
                if (r == -EPERM)
                        return keys_errorf(ret_error, r, "the PIN of token \"%s\" is locked", s->token_label);
        }
        return keys_errorf(ret_error, r, "login to token \"%s\" failed (CKR 0x%lx)", s->token_label, ckr);
}

/* Logs the raw side in (see raw_session in keystore-internal.h). Where the
 * raw side shares libp11's module instance the login is already there.
 * Like store_login, a failure that is not the PIN is tried again: where the
 * raw side has an instance of its own (p11-kit-client.so: its own
 * connection, served by its own p11-kit server process), that instance is
 * finalized and initialized again first, since agents starting together
 * see SoftHSM2 behind the server answer a fresh connection now and then
 * with CKR_SLOT_ID_INVALID (the token not loaded yet) or
 * CKR_GENERAL_ERROR. */
static int raw_login(keys_store *s, int attempts, char **ret_error) {
        CK_RV rv = CKR_GENERAL_ERROR;
        const char *what = "C_OpenSession";
        for (int attempt = 0; attempt < attempts; attempt++) {
                if (attempt > 0) {
                        usleep(LOGIN_DELAY_US * (useconds_t) attempt);
                        /* raw_own_instance, not raw_initialized: an attempt
                         * whose C_Initialize failed left the instance
                         * finalized, and the next must initialize it again
                         * (else every call is CKR_CRYPTOKI_NOT_INITIALIZED). */
                        if (s->raw_own_instance) {
                                if (s->raw_initialized)
                                        (void) s->fn->C_Finalize(NULL);
                                s->raw_session_open = false;
                                rv = s->fn->C_Initialize(NULL);
                                s->raw_initialized = rv == CKR_OK;
                                if (rv != CKR_OK) {
                                        what = "C_Initialize";
                                        continue;
                                }
                        }
                }
                if (s->raw_session_open)
                        (void) s->fn->C_CloseSession(s->raw_session);
                s->raw_session_open = false;
                what = "C_OpenSession";
                rv = s->fn->C_OpenSession(s->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                          &s->raw_session);
                if (rv != CKR_OK)
                        continue;
                s->raw_session_open = true;
                what = "C_Login";
                rv = s->fn->C_Login(s->raw_session, CKU_USER, (CK_UTF8CHAR_PTR) s->pin, (CK_ULONG) strlen(s->pin));
                if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
                        return 0;
                if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE)
                        return keys_errorf(ret_error, -EACCES, "wrong PIN for token \"%s\"", s->token_label);
                if (rv == CKR_PIN_LOCKED)
                        return keys_errorf(ret_error, -EPERM, "the PIN of token \"%s\" is locked", s->token_label);
        }
        return keys_errorf(ret_error, -EIO, "%s on token \"%s\" failed: 0x%lx", what, s->token_label,
                           (unsigned long) rv);
}

/* After a re-open: gives every known key the new token's private key
 * object with the same label and CKA_ID. A key no longer on the token keeps
 * priv NULL (keys_sign fails with -EIO). Caller holds the write lock. */
static int store_remap_locked(keys_store *s) {
        PKCS11_KEY *pks = NULL;
        unsigned int n = 0;
        if (PKCS11_enumerate_keys(s->slot->token, &pks, &n) < 0) {
                ERR_clear_error();
                return -EIO;
        }
        for (size_t i = 0; i < s->n_keys; i++) {
                keys_key *k = s->keys[i];
                for (unsigned int j = 0; j < n && !k->priv; j++) {
                        PKCS11_KEY *pk = &pks[j];
                        if (!pk->isPrivate || !pk->label || strcmp(pk->label, k->label) != 0 ||
                            pk->id_len != sizeof k->id || memcmp(pk->id, k->id, sizeof k->id) != 0)
                                continue;
                        k->priv = PKCS11_get_private_key(pk);
                        if (!k->priv)
                                ERR_clear_error();
                }
        }
        return 0;
}

int keys_store_open(const char *module_path, const char *token_label, const char *pin,
                    size_t pin_len, keys_store **ret, char **ret_error) {
        return keys_store_open_ns(module_path, token_label, pin, pin_len, NULL, ret, ret_error);
}

int keys_store_open_ns(const char *module_path, const char *token_label, const char *pin, size_t pin_len,
                       const keys_open_options *o, keys_store **ret, char **ret_error) {
        char resolved[PATH_MAX];
        int r;

        if (!realpath(module_path, resolved))
                return keys_errorf(ret_error, -ENOENT, "PKCS#11 module %s: %s", module_path, strerror(errno));
        /* libp11 wants a C string: a PIN with a NUL inside would be cut short. */
        if (memchr(pin, '\0', pin_len))
                return keys_errorf(ret_error, -EINVAL, "the PIN contains a NUL byte");
        if (o && (!o->ns || !keys_namespace_valid(o->ns)))
                return keys_errorf(ret_error, -EINVAL, "bad key namespace \"%s\"", o->ns ? o->ns : "");

        keys_store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        /* Writers (re-open, key generation, destruction) must get in while
         * signers keep the lock busy: glibc's default prefers readers. */
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&s->lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        pthread_mutex_init(&s->reopen_lock, NULL);
        pthread_mutex_init(&s->raw_lock, NULL);
        s->token_label = strdup(token_label);
        s->module_path = strdup(resolved);
        s->ns = o ? strdup(o->ns) : NULL;
        if (!s->token_label || !s->module_path || (o && !s->ns) || pin_keep(s, pin, pin_len) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        r = store_attach(s, TOKEN_FIND_ATTEMPTS, ret_error);
        if (r < 0)
                goto fail;
        r = keys_raw_open(s, resolved, ret_error);
        if (r < 0)
                goto fail;
        r = store_login(s, LOGIN_ATTEMPTS, ret_error);
        if (r < 0)
                goto fail;
        r = raw_login(s, LOGIN_ATTEMPTS, ret_error);
        if (r < 0)
                goto fail;
        /* Before libp11 enumerates anything: it keeps the labels it saw. */
        if (o && o->owner) {
                r = keys_raw_claim_owner(s, o->owner, o->owner_len, ret_error);
                if (r < 0)
                        goto fail;
        }
        if (o && o->adopt_legacy) {
                r = keys_raw_adopt_legacy(s, ret_error);
                if (r < 0)
                        goto fail;
        }
        r = store_refresh_locked(s, ret_error);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        keys_store_free(s);
        return r;
}

/* Re-opens the token (see the top of this file). Returns 0 when the token
 * is usable: re-opened here, or by another thread since the caller read
 * generation `seen`; -EIO while it is down. */
static int store_recover(keys_store *s, unsigned seen) {
        int r = -EIO;
        pthread_mutex_lock(&s->reopen_lock);
        if (__atomic_load_n(&s->generation, __ATOMIC_ACQUIRE) != seen) {
                r = __atomic_load_n(&s->broken, __ATOMIC_ACQUIRE) ? -EIO : 0;
                goto out;
        }
        uint64_t now = mono_ms();
        if (s->last_attempt_ms && now - s->last_attempt_ms < REOPEN_RETRY_MS)
                goto out;
        s->last_attempt_ms = now;
        if (!s->down_since_ms)
                s->down_since_ms = now;
        __atomic_store_n(&s->broken, 1, __ATOMIC_RELEASE);

        /* A generation under way finishes (or fails) first: it uses the raw
         * side this tears down. */
        pthread_mutex_lock(&s->raw_lock);
        pthread_rwlock_wrlock(&s->lock);
        raw_detach(s);
        store_detach(s);
        /* After libp11's C_Finalize: where the raw side has an instance of
         * its own (p11-kit-client.so), that one reconnects too. */
        if (s->raw_initialized)
                (void) s->fn->C_Finalize(NULL);
        s->raw_initialized = false;
        r = store_attach(s, 1, NULL);
        if (r >= 0) {
                CK_RV rv = s->fn->C_Initialize(NULL);
                s->raw_initialized = rv == CKR_OK;
                r = rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? 0 : -EIO;
        }
        if (r >= 0)
                r = store_login(s, 1, NULL);
        if (r >= 0)
                r = raw_login(s, 1, NULL);
        if (r >= 0)
                r = store_remap_locked(s);
        if (r >= 0)
                r = store_refresh_locked(s, NULL);
        pthread_rwlock_unlock(&s->lock);
        pthread_mutex_unlock(&s->raw_lock);
        ERR_clear_error();
        if (r < 0) {
                r = -EIO;
                goto out;
        }
        s->down_since_ms = 0;
        __atomic_store_n(&s->broken, 0, __ATOMIC_RELEASE);
        __atomic_add_fetch(&s->generation, 1, __ATOMIC_RELEASE);
out:
        pthread_mutex_unlock(&s->reopen_lock);
        return r;
}

int keys_store_health(keys_store *s, unsigned *ret_reopens) {
        if (ret_reopens)
                *ret_reopens = __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
        return __atomic_load_n(&s->broken, __ATOMIC_ACQUIRE) ? -EIO : 0;
}

const char *keys_store_token_label(const keys_store *s) {
        return s->token_label;
}

const char *keys_store_namespace(const keys_store *s) {
        return s->ns;
}

int keys_store_relabelled(const keys_store *s, size_t i, const char **ret_keyid, const char **ret_old_label) {
        if (i >= s->n_relabelled)
                return -ENOENT;
        *ret_keyid = s->relabelled[i].keyid;
        *ret_old_label = s->relabelled[i].old_label;
        return 0;
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

int keys_generate_pair(keys_store *s, int algorithm, const char *label, uint8_t **ret_spki, size_t *ret_spki_len,
                       char **ret_error) {
        if (!label_ours(s, label))
                return -EINVAL;
        /* The generation itself (seconds for RSA-3072 on a slow HSM) holds
         * raw_lock only, never the store's lock: signers of every key carry
         * on, whatever the priority of the generating thread (the agent
         * runs it at SCHED_IDLE). raw_lock keeps a re-open from tearing the
         * raw side down meanwhile, and keeps s->slot_id stable. */
        pthread_mutex_lock(&s->raw_lock);
        int r = s->fn && s->slot ? keys_raw_generate(s, algorithm, label, ret_spki, ret_spki_len, ret_error)
                                 : keys_errorf(ret_error, -EIO, "token \"%s\" is unavailable", s->token_label);
        pthread_mutex_unlock(&s->raw_lock);
        return r;
}

int keys_generate_insert(keys_store *s, const uint8_t *spki, size_t spki_len, keys_key **ret, char **ret_error) {
        uint8_t id[32];
        proto_keyid_compute(spki, spki_len, id);
        /* The write lock waits for running signatures (the PKCS#11 object
         * list is read again), milliseconds. raw_lock first (the order of
         * keys_destroy): reading the object list while another principal's
         * pair is being generated made SoftHSM2 fail that generation with
         * CKR_GENERAL_ERROR (test-bundle-limits, four principals revoked
         * at once with auto_rotate_on_revoke). Signers take neither. */
        pthread_mutex_lock(&s->raw_lock);
        pthread_rwlock_wrlock(&s->lock);
        int r = s->slot ? store_refresh_locked(s, ret_error)
                        : keys_errorf(ret_error, -EIO, "token \"%s\" is unavailable", s->token_label);
        keys_key *k = r < 0 ? NULL : keys_store_find_id(s, id);
        if (r >= 0 && !k)
                r = keys_errorf(ret_error, -EIO, "the generated key is not visible on the token");
        pthread_rwlock_unlock(&s->lock);
        pthread_mutex_unlock(&s->raw_lock);
        if (r < 0)
                return r;
        *ret = k;
        return 0;
}

int keys_generate(keys_store *s, int algorithm, const char *label, keys_key **ret, char **ret_error) {
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        if (!label_ours(s, label))
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        bool taken = keys_store_find_label(s, label) != NULL;
        pthread_rwlock_unlock(&s->lock);
        if (taken)
                return keys_errorf(ret_error, -EEXIST, "a key labelled \"%s\" already exists", label);
        int r = keys_generate_pair(s, algorithm, label, &spki, &spki_len, ret_error);
        if (r >= 0)
                r = keys_generate_insert(s, spki, spki_len, ret, ret_error);
        free(spki);
        return r;
}

int keys_sign(keys_store *s, keys_key *k, const uint8_t *digest, size_t digest_len, uint8_t *sig,
              size_t *ret_len) {
        size_t want = k->algorithm == PROVSIGN__KEY_ALGORITHM__ECDSA_P384 ? 48 : 32;
        if (digest_len != want)
                return -EINVAL;

        /* A token call that failed re-opens the token and tries once more
         * (store_recover): a token that came back since is used at once. */
        bool retried = false;
        unsigned seen = __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->broken, __ATOMIC_ACQUIRE)) {
                if (store_recover(s, seen) < 0)
                        return -EIO;
                seen = __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
                retried = true;
        }
again:;
        int r = -EIO;
        pthread_rwlock_rdlock(&s->lock);
        if (k->destroyed) {
                /* Not a token failure: nothing to re-open. */
                pthread_rwlock_unlock(&s->lock);
                return -ENOENT;
        }
#if PROVSIGN_BENCH_HSM_DELAY_US > 0
        /* Benchmark builds only (meson -Dbench_hsm_delay_us): a network
         * HSM's round trip. Compiled out of every normal build. */
        usleep(PROVSIGN_BENCH_HSM_DELAY_US);
#endif
        EVP_PKEY_CTX *ctx = k->priv ? EVP_PKEY_CTX_new(k->priv, NULL) : NULL;
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
        if (r < 0 && !retried) {
                retried = true;
                if (store_recover(s, seen) == 0) {
                        seen = __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
                        goto again;
                }
        }
        return r;
}

void keys_key_forget_private(keys_key *k) {
        EVP_PKEY_free(k->priv);
        k->priv = NULL;
        k->destroyed = true;
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

/* ---- Labels ---- */

#define NAMESPACE_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

bool keys_namespace_valid(const char *ns) {
        size_t len = ns ? strlen(ns) : 0;
        return len >= 1 && len <= KEYS_NAMESPACE_MAX && strspn(ns, NAMESPACE_CHARS) == len;
}

int keys_namespace_from_origin(const char *origin, char *out) {
        size_t len = strcspn(origin, "/");
        if (len < 1 || len > KEYS_NAMESPACE_MAX || strspn(origin, NAMESPACE_CHARS) < len)
                return -EINVAL;
        memcpy(out, origin, len);
        out[len] = '\0';
        return 0;
}

/* "<owner>/<gen>" (the rest of a label): owner into owner, the generation. */
static int parse_owner_gen(const char *o, char *owner, size_t owner_size, uint32_t *ret_gen) {
        const char *slash = strchr(o, '/');
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

int keys_label_parse(const char *label, const char *ns, char *owner, size_t owner_size, uint32_t *ret_gen) {
        size_t plen = strlen(KEYS_LABEL_PREFIX), nlen = strlen(ns);
        if (!keys_namespace_valid(ns) || strncmp(label, KEYS_LABEL_PREFIX, plen) != 0 ||
            strncmp(label + plen, ns, nlen) != 0 || label[plen + nlen] != '/')
                return -EINVAL;
        return parse_owner_gen(label + plen + nlen + 1, owner, owner_size, ret_gen);
}

int keys_label_parse_legacy(const char *label, char *owner, size_t owner_size, uint32_t *ret_gen) {
        size_t plen = strlen(KEYS_LABEL_PREFIX);
        if (strncmp(label, KEYS_LABEL_PREFIX, plen) != 0)
                return -EINVAL;
        return parse_owner_gen(label + plen, owner, owner_size, ret_gen);
}

int keys_label_format(char *buf, size_t size, const char *ns, const char *owner, uint32_t gen) {
        if (!keys_namespace_valid(ns) || !owner[0] || strchr(owner, '/') || gen < 1 || gen > 999999999u)
                return -EINVAL;
        int n = snprintf(buf, size, KEYS_LABEL_PREFIX "%s/%s/%u", ns, owner, gen);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

int keys_owner_label(char *buf, size_t size, const char *ns) {
        if (!keys_namespace_valid(ns))
                return -EINVAL;
        int n = snprintf(buf, size, KEYS_LABEL_PREFIX "%s/owner", ns);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}
