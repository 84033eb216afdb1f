/* Internals shared by the keys/ sources only. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <libp11.h>
#include <p11-kit/pkcs11.h>

#include "keystore.h"

struct keys_key {
        char *label;
        uint8_t id[32];
        char id_hex[65];
        int algorithm;
        uint8_t *spki;
        size_t spki_len;
        char *pem;
        bool destroyed;   /* keys_destroy() removed its private object */
        EVP_PKEY *priv;   /* libp11-backed; signing goes through the token */
};

struct keys_store {
        PKCS11_CTX *ctx;
        PKCS11_SLOT *slots;
        unsigned int n_slots;
        PKCS11_SLOT *slot;
        char *token_label;
        bool ctx_loaded;
        char *ns;                /* NULL: every provsign key (keys_store_open) */
        /* keys_store_open_ns with adopt_legacy: pairs relabelled into ns */
        struct keys_relabel {
                char keyid[65];
                char *old_label;
        } *relabelled;
        size_t n_relabelled;

        /* The same module, opened raw for what libp11 cannot do (EC key
         * generation, finding objects libp11 chokes on). dlopen of the same
         * path shares the module instance, so libp11's login applies. */
        void *module;
        CK_FUNCTION_LIST_PTR fn;
        CK_SLOT_ID slot_id;
        /* Some modules (p11-kit-client.so) give every C_GetFunctionList
         * caller its own instance and login: the raw side then logs in
         * itself and keeps this session open to stay logged in. */
        CK_SESSION_HANDLE raw_session;
        bool raw_session_open;
        bool raw_initialized;    /* its C_Initialize was ours (not ALREADY_INITIALIZED) */
        bool raw_own_instance;   /* at open, the raw side's C_Initialize was ours: it has an instance of
                                  * its own (p11-kit-client.so), to initialize again after a failure
                                  * even when an attempt left it finalized (raw_initialized false) */

        /* Readers: keys_sign. Writers: refresh (it grows keys[]), re-open,
         * destroy; held briefly (a key's generation takes raw_lock only, and
         * the write lock just for adding the new key). */
        pthread_rwlock_t lock;
        /* Serialises use of the raw module side that may take long (key
         * generation) with what tears that side down or uses it otherwise
         * (re-open, destroy): order reopen_lock, raw_lock, lock. Signers
         * never take it, so a generation does not stall them. */
        pthread_mutex_t raw_lock;
        keys_key **keys;
        size_t n_keys;

        /* Outage recovery (keystore.c, "Token outages"). module_path is the
         * resolved path; pin a NUL-terminated copy in its own mlocked,
         * MADV_DONTDUMP page (pin_mapped bytes), kept for re-login and wiped
         * in keys_store_free. reopen_lock serialises recovery; broken and
         * generation are read without it (atomics). */
        char *module_path;
        char *pin;
        size_t pin_mapped;
        pthread_mutex_t reopen_lock;
        int broken;              /* __atomic: the last token call failed */
        unsigned generation;     /* __atomic: successful re-opens so far */
        uint64_t last_attempt_ms;
        uint64_t down_since_ms;  /* under reopen_lock; 0 while healthy */
};

/* keys_raw_open: dlopen + C_GetFunctionList + C_Initialize on path. */
int keys_raw_open(keys_store *s, const char *path, char **ret_error);
void keys_raw_close(keys_store *s);
/* keys_raw_has_eddsa: 1 if the token holds an EdDSA key, 0 if not, <0 on error. */
int keys_raw_has_eddsa(keys_store *s);
/* keys_raw_generate: generates the pair, sets CKA_ID to its key id, returns
 * the DER SPKI (caller frees). Caller holds raw_lock (not the rwlock: it
 * opens a session of its own, so signers carry on meanwhile). */
int keys_raw_generate(keys_store *s, int algorithm, const char *label, uint8_t **ret_spki,
                      size_t *ret_spki_len, char **ret_error);

/* keys_raw_public_key: the DER SPKI of the public key object whose CKA_ID
 * is id (caller frees *ret_spki). 0 and the SPKI; 1 when there is no such
 * object or it is no P-256, P-384 or RSA key we can read (another agent's
 * generation half done, a public half deleted); <0 on a token error.
 * Read on the raw side: libp11 0.4.12's PKCS11_get_public_key dereferences
 * NULL when a private key has no public half. Caller holds raw_lock or is
 * the only thread. */
int keys_raw_public_key(keys_store *s, const uint8_t *id, size_t id_len, uint8_t **ret_spki, size_t *ret_spki_len);

/* keys_raw_claim_owner / keys_raw_adopt_legacy: see keys_open_options.
 * Called once at open, after the login, before the keys are enumerated. */
int keys_raw_claim_owner(keys_store *s, const uint8_t *value, size_t len, char **ret_error);
int keys_raw_adopt_legacy(keys_store *s, char **ret_error);

/* keys_key_forget_private: drops k's handle on its (destroyed) private
 * key. Caller holds the write lock. */
void keys_key_forget_private(keys_key *k);

int keys_errorf(char **ret_error, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
