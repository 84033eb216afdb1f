/* The raw PKCS#11 side of the keystore: key generation (libp11 0.4.12 can
 * only generate RSA) and object scans libp11 cannot do. PKCS#11 v2.40
 * §5.14 (C_GenerateKeyPair), §10.8 (private key attributes). */
#include <dlfcn.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "keyid.h"
#include "keystore-internal.h"
#include "provsign.pb-c.h"

/* DER OIDs for CKA_EC_PARAMS. */
static const CK_BYTE oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const CK_BYTE oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

int keys_raw_open(keys_store *s, const char *path, char **ret_error) {
        CK_C_GetFunctionList get_list;
        s->module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!s->module)
                return keys_errorf(ret_error, -EIO, "dlopen %s: %s", path, dlerror());
        *(void **) &get_list = dlsym(s->module, "C_GetFunctionList");
        if (!get_list || get_list(&s->fn) != CKR_OK)
                return keys_errorf(ret_error, -EIO, "%s is not a PKCS#11 module", path);
        CK_RV rv = s->fn->C_Initialize(NULL);
        s->raw_initialized = rv == CKR_OK; /* an instance of its own (p11-kit-client.so) */
        s->raw_own_instance = s->raw_initialized;
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
                return keys_errorf(ret_error, -EIO, "C_Initialize failed: 0x%lx", (unsigned long) rv);
        return 0;
}

void keys_raw_close(keys_store *s) {
        /* No C_Finalize: libp11 owns the module's lifetime (PKCS11_CTX_unload). */
        if (s->module)
                dlclose(s->module);
        s->module = NULL;
        s->fn = NULL;
}

static int open_session(keys_store *s, CK_SESSION_HANDLE *ret) {
        CK_RV rv = s->fn->C_OpenSession(s->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, ret);
        return rv == CKR_OK ? 0 : -EIO;
}

int keys_raw_has_eddsa(keys_store *s) {
        CK_SESSION_HANDLE sh;
        if (!s->fn || open_session(s, &sh) < 0)
                return -EIO;
        CK_KEY_TYPE kt = CKK_EC_EDWARDS;
        CK_ATTRIBUTE tmpl[] = { { CKA_KEY_TYPE, &kt, sizeof kt } };
        CK_OBJECT_HANDLE obj;
        CK_ULONG found = 0;
        int r = -EIO;
        if (s->fn->C_FindObjectsInit(sh, tmpl, 1) == CKR_OK) {
                r = s->fn->C_FindObjects(sh, &obj, 1, &found) == CKR_OK ? (found > 0) : -EIO;
                s->fn->C_FindObjectsFinal(sh);
        }
        s->fn->C_CloseSession(sh);
        return r;
}

static int get_attr(keys_store *s, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                    uint8_t **ret, size_t *ret_len) {
        CK_ATTRIBUTE a = { type, NULL, 0 };
        if (s->fn->C_GetAttributeValue(sh, obj, &a, 1) != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION ||
            a.ulValueLen == 0 || a.ulValueLen > 4096)
                return -EIO;
        a.pValue = malloc(a.ulValueLen);
        if (!a.pValue)
                return -ENOMEM;
        if (s->fn->C_GetAttributeValue(sh, obj, &a, 1) != CKR_OK) {
                free(a.pValue);
                return -EIO;
        }
        *ret = a.pValue;
        *ret_len = a.ulValueLen;
        return 0;
}

/* CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some
 * modules omit the wrapper); return a borrowed view of the point. */
static int unwrap_ec_point(const uint8_t *p, size_t len, const uint8_t **ret, size_t *ret_len) {
        if (len >= 2 && p[0] == 0x04 && p[1] < 0x80 && (size_t) p[1] == len - 2) {
                *ret = p + 2;
                *ret_len = len - 2;
                return 0;
        }
        if (len >= 3 && p[0] == 0x04 && p[1] == 0x81 && (size_t) p[2] == len - 3) {
                *ret = p + 3;
                *ret_len = len - 3;
                return 0;
        }
        if (len >= 1 && p[0] == 0x04 && (len == 65 || len == 97)) {
                *ret = p;
                *ret_len = len;
                return 0;
        }
        return -EBADMSG;
}

static int spki_from_params(const char *type, OSSL_PARAM_BLD *bld, uint8_t **ret, size_t *ret_len) {
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        EVP_PKEY *pkey = NULL;
        uint8_t *der = NULL;
        int r = -EIO;
        if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                goto out;
        int n = i2d_PUBKEY(pkey, &der);
        if (n <= 0)
                goto out;
        *ret = malloc((size_t) n);
        if (!*ret) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(*ret, der, (size_t) n);
        *ret_len = (size_t) n;
        r = 0;
out:
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        return r;
}

static int public_spki(keys_store *s, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE pub, int algorithm,
                       uint8_t **ret, size_t *ret_len) {
        uint8_t *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        BIGNUM *n = NULL, *e = NULL;
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        int r = -ENOMEM;
        if (!bld)
                goto out;
        if (algorithm == PROVSIGN__KEY_ALGORITHM__RSA_3072) {
                r = get_attr(s, sh, pub, CKA_MODULUS, &a, &alen);
                if (r < 0)
                        goto out;
                r = get_attr(s, sh, pub, CKA_PUBLIC_EXPONENT, &b, &blen);
                if (r < 0)
                        goto out;
                n = BN_bin2bn(a, (int) alen, NULL);
                e = BN_bin2bn(b, (int) blen, NULL);
                r = -EIO;
                if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
                    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
                        goto out;
                r = spki_from_params("RSA", bld, ret, ret_len);
        } else {
                const char *group = algorithm == PROVSIGN__KEY_ALGORITHM__ECDSA_P384 ? "secp384r1" : "prime256v1";
                const uint8_t *point;
                size_t plen;
                r = get_attr(s, sh, pub, CKA_EC_POINT, &a, &alen);
                if (r < 0)
                        goto out;
                r = unwrap_ec_point(a, alen, &point, &plen);
                if (r < 0)
                        goto out;
                r = -EIO;
                if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
                    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen))
                        goto out;
                r = spki_from_params("EC", bld, ret, ret_len);
        }
out:
        BN_free(n);
        BN_free(e);
        free(a);
        free(b);
        OSSL_PARAM_BLD_free(bld);
        return r;
}

/* The DER SPKI of one public key object: 0, 1 when it is no key we can
 * use (gone, unsupported, unreadable), or a negative errno. */
static int public_object_spki(keys_store *s, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE pub, uint8_t **ret_spki,
                              size_t *ret_spki_len) {
        uint8_t *params = NULL;
        size_t params_len = 0;
        int r = 1;
        CK_KEY_TYPE kt;
        CK_ATTRIBUTE a = { CKA_KEY_TYPE, &kt, sizeof kt };
        CK_RV rv = s->fn->C_GetAttributeValue(sh, pub, &a, 1);
        if (rv == CKR_OBJECT_HANDLE_INVALID)
                return 1; /* destroyed since it was found */
        if (rv != CKR_OK)
                return -EIO;
        int algorithm;
        if (kt == CKK_RSA)
                algorithm = PROVSIGN__KEY_ALGORITHM__RSA_3072; /* the size is the caller's to check */
        else if (kt == CKK_EC) {
                if (get_attr(s, sh, pub, CKA_EC_PARAMS, &params, &params_len) == -ENOMEM) {
                        r = -ENOMEM;
                        goto out;
                }
                if (params_len == sizeof oid_p256 && memcmp(params, oid_p256, params_len) == 0)
                        algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
                else if (params_len == sizeof oid_p384 && memcmp(params, oid_p384, params_len) == 0)
                        algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P384;
                else
                        goto out;
        } else
                goto out;
        r = public_spki(s, sh, pub, algorithm, ret_spki, ret_spki_len);
        if (r == -EIO || r == -EBADMSG)
                r = 1; /* unreadable or malformed: not a key we can use */
out:
        free(params);
        return r;
}

/* Public objects looked at per CKA_ID: the key's own, and others that
 * happen to carry the same id (another namespace's leftovers, a copy). */
#define PUBLIC_CANDIDATES 16

int keys_raw_public_key(keys_store *s, const uint8_t *id, size_t id_len, uint8_t **ret_spki, size_t *ret_spki_len) {
        CK_SESSION_HANDLE sh;
        if (!s->fn || open_session(s, &sh) < 0)
                return -EIO;
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, (void *) id, id_len } };
        CK_OBJECT_HANDLE pub[PUBLIC_CANDIDATES];
        CK_ULONG found = 0;
        int r = -EIO;
        if (s->fn->C_FindObjectsInit(sh, tmpl, 2) != CKR_OK)
                goto out;
        CK_RV rv = s->fn->C_FindObjects(sh, pub, PUBLIC_CANDIDATES, &found);
        s->fn->C_FindObjectsFinal(sh);
        if (rv != CKR_OK)
                goto out;
        /* No public half (gone, or not given its key id yet) is 1. Of
         * several with this CKA_ID, the one whose key id (SHA-256 of its
         * SPKI) is the id: the first found may be another object's; with a
         * CKA_ID that is no key id, the first usable one (the caller
         * compares). */
        r = 1;
        for (CK_ULONG i = 0; i < found; i++) {
                uint8_t *spki = NULL;
                size_t spki_len = 0;
                int k = public_object_spki(s, sh, pub[i], &spki, &spki_len);
                if (k < 0) {
                        if (r == 0) {
                                free(*ret_spki);
                                *ret_spki = NULL;
                        }
                        r = k;
                        break;
                }
                if (k > 0)
                        continue;
                uint8_t kid[PROTO_KEYID_LEN];
                proto_keyid_compute(spki, spki_len, kid);
                bool match = id_len == sizeof kid && memcmp(kid, id, sizeof kid) == 0;
                if (r == 0 && !match) {
                        free(spki);
                        continue;
                }
                if (r == 0)
                        free(*ret_spki);
                *ret_spki = spki;
                *ret_spki_len = spki_len;
                r = 0;
                if (match)
                        break;
        }
out:
        s->fn->C_CloseSession(sh);
        return r;
}

int keys_raw_generate(keys_store *s, int algorithm, const char *label, uint8_t **ret_spki,
                      size_t *ret_spki_len, char **ret_error) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY, priv_class = CKO_PRIVATE_KEY;
        CK_KEY_TYPE kt;
        CK_MECHANISM mech = { 0, NULL, 0 };
        CK_ULONG bits = 3072;
        CK_BYTE exponent[] = { 0x01, 0x00, 0x01 };
        uint8_t tmp_id[16];
        CK_ATTRIBUTE pub_tmpl[8], priv_tmpl[9];
        CK_ULONG np = 0, nv = 0;
        CK_SESSION_HANDLE sh;
        CK_OBJECT_HANDLE pub, priv;
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        int r;

        /* A random CKA_ID until the key id (hash of the public key) is known. */
        if (RAND_bytes(tmp_id, sizeof tmp_id) != 1)
                return -EIO;

        CK_ULONG npub_tmpl_count = 0, npriv_tmpl_count = 0;
#define PUB(type, ptr, len) pub_tmpl[npub_tmpl_count++] = (CK_ATTRIBUTE){ (type), (void *) (ptr), (len) }
#define PRIV(type, ptr, len) priv_tmpl[npriv_tmpl_count++] = (CK_ATTRIBUTE){ (type), (void *) (ptr), (len) }
        PUB(CKA_CLASS, &pub_class, sizeof pub_class);
        PUB(CKA_TOKEN, &yes, sizeof yes);
        PUB(CKA_VERIFY, &yes, sizeof yes);
        PUB(CKA_LABEL, label, strlen(label));
        PUB(CKA_ID, tmp_id, sizeof tmp_id);
        PRIV(CKA_CLASS, &priv_class, sizeof priv_class);
        PRIV(CKA_TOKEN, &yes, sizeof yes);
        PRIV(CKA_PRIVATE, &yes, sizeof yes);
        PRIV(CKA_SENSITIVE, &yes, sizeof yes);
        PRIV(CKA_EXTRACTABLE, &no, sizeof no);
        PRIV(CKA_SIGN, &yes, sizeof yes);
        PRIV(CKA_LABEL, label, strlen(label));
        PRIV(CKA_ID, tmp_id, sizeof tmp_id);
        switch (algorithm) {
        case PROVSIGN__KEY_ALGORITHM__ECDSA_P256:
        case PROVSIGN__KEY_ALGORITHM__ECDSA_P384:
                kt = CKK_EC;
                mech.mechanism = CKM_EC_KEY_PAIR_GEN;
                if (algorithm == PROVSIGN__KEY_ALGORITHM__ECDSA_P256)
                        PUB(CKA_EC_PARAMS, oid_p256, sizeof oid_p256);
                else
                        PUB(CKA_EC_PARAMS, oid_p384, sizeof oid_p384);
                break;
        case PROVSIGN__KEY_ALGORITHM__RSA_3072:
                kt = CKK_RSA;
                mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                PUB(CKA_MODULUS_BITS, &bits, sizeof bits);
                PUB(CKA_PUBLIC_EXPONENT, exponent, sizeof exponent);
                break;
        default:
                return -EINVAL;
        }
        PRIV(CKA_KEY_TYPE, &kt, sizeof kt);
        np = npub_tmpl_count;
        nv = npriv_tmpl_count;
#undef PUB
#undef PRIV

        if (open_session(s, &sh) < 0)
                return keys_errorf(ret_error, -EIO, "cannot open a session on token \"%s\"", s->token_label);
        CK_RV rv = s->fn->C_GenerateKeyPair(sh, &mech, pub_tmpl, np, priv_tmpl, nv, &pub, &priv);
        if (rv != CKR_OK) {
                r = keys_errorf(ret_error, -EIO, "C_GenerateKeyPair for \"%s\" failed: 0x%lx", label,
                                (unsigned long) rv);
                goto out;
        }
        r = public_spki(s, sh, pub, algorithm, &spki, &spki_len);
        if (r < 0) {
                keys_errorf(ret_error, r, "cannot read the public key of \"%s\"", label);
                goto destroy;
        }
        uint8_t id[PROTO_KEYID_LEN];
        proto_keyid_compute(spki, spki_len, id);
        CK_ATTRIBUTE set_id = { CKA_ID, id, sizeof id };
        if (s->fn->C_SetAttributeValue(sh, pub, &set_id, 1) != CKR_OK ||
            s->fn->C_SetAttributeValue(sh, priv, &set_id, 1) != CKR_OK) {
                r = keys_errorf(ret_error, -EIO, "cannot set CKA_ID of \"%s\"", label);
                goto destroy;
        }
        *ret_spki = spki;
        *ret_spki_len = spki_len;
        spki = NULL;
        r = 0;
        goto out;
destroy:
        /* Never leave a half-made key behind under a provsign label. */
        s->fn->C_DestroyObject(sh, priv);
        s->fn->C_DestroyObject(sh, pub);
out:
        free(spki);
        s->fn->C_CloseSession(sh);
        return r;
}

/* Destroys every private key object whose CKA_ID is k's id; the public
 * object stays (the public key is also kept in the audit log). The write
 * lock waits for signers using k to finish; afterwards keys_sign(k) answers
 * -ENOENT. */
int keys_destroy(keys_store *s, keys_key *k, char **ret_error) {
        CK_SESSION_HANDLE sh;
        int r;
        pthread_mutex_lock(&s->raw_lock);
        pthread_rwlock_wrlock(&s->lock);
        if (!s->fn || open_session(s, &sh) < 0) {
                r = keys_errorf(ret_error, -EIO, "cannot open a session on the token");
                goto out;
        }
        /* By label too: another namespace's object is never ours to destroy. */
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        const char *label = keys_key_label(k);
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls },
                                { CKA_ID, (void *) keys_key_id(k), PROTO_KEYID_LEN },
                                { CKA_LABEL, (void *) label, strlen(label) } };
        CK_OBJECT_HANDLE objs[8];
        CK_ULONG found = 0;
        r = -EIO;
        if (s->fn->C_FindObjectsInit(sh, tmpl, 3) == CKR_OK) {
                if (s->fn->C_FindObjects(sh, objs, 8, &found) == CKR_OK)
                        r = 0;
                s->fn->C_FindObjectsFinal(sh);
        }
        for (CK_ULONG i = 0; r == 0 && i < found; i++) {
                CK_RV rv = s->fn->C_DestroyObject(sh, objs[i]);
                if (rv != CKR_OK)
                        r = keys_errorf(ret_error, -EIO, "C_DestroyObject failed (CKR 0x%lx)", (unsigned long) rv);
        }
        if (r < 0 && ret_error && !*ret_error)
                keys_errorf(ret_error, r, "cannot find the private key object");
        s->fn->C_CloseSession(sh);
        if (r == 0)
                keys_key_forget_private(k);
out:
        pthread_rwlock_unlock(&s->lock);
        pthread_mutex_unlock(&s->raw_lock);
        return r < 0 ? r : (int) found;
}

/* ---- Namespaces: the owner marker and the first round's labels ---- */

/* Up to max handles of the objects matching tmpl; their number, or -EIO. */
static int find_objects(keys_store *s, CK_SESSION_HANDLE sh, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        CK_OBJECT_HANDLE *objs, CK_ULONG max) {
        CK_ULONG found = 0;
        if (s->fn->C_FindObjectsInit(sh, tmpl, n) != CKR_OK)
                return -EIO;
        CK_RV rv = s->fn->C_FindObjects(sh, objs, max, &found);
        s->fn->C_FindObjectsFinal(sh);
        return rv == CKR_OK ? (int) found : -EIO;
}

/* The marker's value as one line of printable text, for a message. */
static void printable(const uint8_t *v, size_t len, char *out, size_t size) {
        size_t o = 0;
        for (size_t i = 0; i < len && o + 3 < size; i++) {
                if (v[i] == '\n') {
                        if (i + 1 < len)
                                out[o++] = ';', out[o++] = ' ';
                } else
                        out[o++] = v[i] >= ' ' && v[i] <= '~' ? (char) v[i] : '?';
        }
        out[o] = '\0';
}

/* When an agent that created its owner marker looks again (ms after the
 * previous look): about a second in all. Only the first start of a
 * namespace waits for it. */
static const unsigned claim_look_ms[] = { 0, 50, 150, 300, 500 };

/* Destroys the marker this agent created (it lost a claim), trying a few
 * times: a marker left behind would refuse every later agent of the
 * namespace. 0, or -EIO with a message saying how to remove it by hand. */
static int release_marker(keys_store *s, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE mine, const char *label,
                          char **ret_error) {
        CK_RV rv = CKR_GENERAL_ERROR;
        for (int attempt = 0; attempt < 5; attempt++) {
                if (attempt > 0)
                        usleep(100000u * (unsigned) attempt);
                rv = s->fn->C_DestroyObject(sh, mine);
                if (rv == CKR_OK || rv == CKR_OBJECT_HANDLE_INVALID)
                        return 0;
        }
        return keys_errorf(ret_error, -EIO,
                           "key namespace \"%s\" on token \"%s\" was claimed by another agent at the same moment, "
                           "and this agent's own owner marker %s could not be removed (0x%lx): delete it by hand "
                           "(docs/fleet.md \"Owner marker\") and start one agent per namespace",
                           s->ns, s->token_label, label, (unsigned long) rv);
}

/* Creates this agent's marker (none was found) and looks again, a few
 * times over about a second (claim_look_ms), for a marker of another agent
 * that claimed the namespace at the same moment: PKCS#11 has no
 * create-if-absent. One look is not enough: a token served to several
 * processes may show one of them another's new object only a moment later
 * (SoftHSM2 behind p11-kit server does; with one look, two of four racing
 * agents both kept their markers and ran). An agent that sees another
 * marker removes its own and refuses, so at most one of the racers runs,
 * and none leaves a marker. */
static int create_marker(keys_store *s, CK_SESSION_HANDLE sh, CK_ATTRIBUTE *find, const uint8_t *value,
                         size_t len, const char *label, char **ret_error) {
        static const char app[] = "provsign";
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE create[] = {
                { CKA_CLASS, &cls, sizeof cls },     { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },   { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_APPLICATION, (void *) app, sizeof app - 1 },
                { CKA_VALUE, (void *) value, len },
        };
        CK_OBJECT_HANDLE mine, objs[4];
        CK_RV rv = s->fn->C_CreateObject(sh, create, sizeof create / sizeof create[0], &mine);
        if (rv != CKR_OK)
                return keys_errorf(ret_error, -EIO, "cannot create the owner marker %s on token \"%s\": 0x%lx",
                                   label, s->token_label, (unsigned long) rv);
        int n = 1;
        bool alone = true;
        for (size_t look = 0; alone && look < sizeof claim_look_ms / sizeof claim_look_ms[0]; look++) {
                usleep(claim_look_ms[look] * 1000u);
                n = find_objects(s, sh, find, 2, objs, 4);
                alone = n == 1 && objs[0] == mine;
        }
        if (alone)
                return 0;
        int r = release_marker(s, sh, mine, label, ret_error);
        if (r < 0)
                return r;
        if (n < 0)
                return keys_errorf(ret_error, -EIO,
                                   "cannot look again for the owner marker %s on token \"%s\" (this agent removed "
                                   "the one it had just created)",
                                   label, s->token_label);
        return keys_errorf(ret_error, -EBUSY,
                           "key namespace \"%s\" on token \"%s\" was claimed by another agent at the same moment "
                           "(this agent removed its own owner marker %s again); start one agent per namespace",
                           s->ns, s->token_label, label);
}

/* Compares the markers found (objs, n of them) with this agent's value: 0
 * when all are its own; -EEXIST (and the message) when one is another's;
 * -EAGAIN when one is gone since it was found (a racing agent removed its
 * own: look again). */
static int compare_markers(keys_store *s, CK_SESSION_HANDLE sh, const CK_OBJECT_HANDLE *objs, int n,
                           const uint8_t *value, size_t len, const char *label, char **ret_error) {
        for (int i = 0; i < n; i++) {
                uint8_t *v = NULL;
                size_t vlen = 0;
                int r = get_attr(s, sh, objs[i], CKA_VALUE, &v, &vlen);
                if (r == -ENOMEM)
                        return r;
                if (r == 0 && vlen == len && memcmp(v, value, len) == 0) {
                        free(v);
                        continue;
                }
                CK_ATTRIBUTE probe = { CKA_CLASS, NULL, 0 };
                if (r < 0 && s->fn->C_GetAttributeValue(sh, objs[i], &probe, 1) == CKR_OBJECT_HANDLE_INVALID)
                        return -EAGAIN;
                char shown[256];
                printable(v, r == 0 ? vlen : 0, shown, sizeof shown);
                free(v);
                return keys_errorf(ret_error, -EEXIST,
                                   "key namespace \"%s\" on token \"%s\" belongs to another agent's state (its "
                                   "owner marker %s says \"%s\"): give this agent its own key_namespace, or, if "
                                   "this is that agent on a new state_dir, see docs/fleet.md \"Owner marker\"",
                                   s->ns, s->token_label, label, shown);
        }
        return 0;
}

int keys_raw_claim_owner(keys_store *s, const uint8_t *value, size_t len, char **ret_error) {
        char label[KEYS_LABEL_MAX];
        int r = keys_owner_label(label, sizeof label, s->ns);
        if (r < 0)
                return r;
        CK_SESSION_HANDLE sh;
        if (open_session(s, &sh) < 0)
                return keys_errorf(ret_error, -EIO, "cannot open a session on token \"%s\"", s->token_label);
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE find[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, label, strlen(label) } };
        CK_OBJECT_HANDLE objs[4];
        /* A marker that vanishes between finding and reading it: look again
         * (a few times). */
        for (int vanished = 0;; vanished++) {
                int n = find_objects(s, sh, find, 2, objs, 4);
                if (n < 0) {
                        r = keys_errorf(ret_error, -EIO, "cannot look for the owner marker %s on token \"%s\"",
                                        label, s->token_label);
                        break;
                }
                if (n == 0) {
                        r = create_marker(s, sh, find, value, len, label, ret_error);
                        break;
                }
                r = compare_markers(s, sh, objs, n, value, len, label, ret_error);
                if (r != -EAGAIN)
                        break;
                if (vanished == 3) {
                        r = keys_errorf(ret_error, -EBUSY,
                                        "key namespace \"%s\" on token \"%s\" is being claimed and released by "
                                        "other agents at this moment; start one agent per namespace",
                                        s->ns, s->token_label);
                        break;
                }
                usleep(100000u);
        }
        s->fn->C_CloseSession(sh);
        return r;
}

/* Records one relabelled pair (for the agent's log line). */
static int note_relabel(keys_store *s, const uint8_t *id, const char *old_label) {
        struct keys_relabel *g = realloc(s->relabelled, (s->n_relabelled + 1) * sizeof *g);
        if (!g)
                return -ENOMEM;
        s->relabelled = g;
        struct keys_relabel *e = &g[s->n_relabelled];
        for (size_t i = 0; i < PROTO_KEYID_LEN; i++)
                snprintf(e->keyid + 2 * i, 3, "%02x", id[i]);
        e->old_label = strdup(old_label);
        if (!e->old_label)
                return -ENOMEM;
        s->n_relabelled++;
        return 0;
}

#define LEGACY_SCAN_MAX 4096

int keys_raw_adopt_legacy(keys_store *s, char **ret_error) {
        CK_SESSION_HANDLE sh;
        if (open_session(s, &sh) < 0)
                return keys_errorf(ret_error, -EIO, "cannot open a session on token \"%s\"", s->token_label);
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE find[] = { { CKA_CLASS, &cls, sizeof cls } };
        CK_OBJECT_HANDLE *objs = calloc(LEGACY_SCAN_MAX, sizeof *objs);
        int r = objs ? find_objects(s, sh, find, 1, objs, LEGACY_SCAN_MAX) : -ENOMEM;
        if (r < 0) {
                keys_errorf(ret_error, r, "cannot list the private keys of token \"%s\"", s->token_label);
                goto out;
        }
        int n = r;
        r = 0;
        for (int i = 0; i < n && r >= 0; i++) {
                uint8_t *lab = NULL, *id = NULL;
                size_t lab_len = 0, id_len = 0;
                char old[KEYS_LABEL_MAX], owner[KEYS_LABEL_MAX], label[KEYS_LABEL_MAX];
                uint32_t gen;
                if (get_attr(s, sh, objs[i], CKA_LABEL, &lab, &lab_len) < 0 || lab_len >= sizeof old ||
                    get_attr(s, sh, objs[i], CKA_ID, &id, &id_len) < 0 || id_len != PROTO_KEYID_LEN)
                        goto next;
                memcpy(old, lab, lab_len);
                old[lab_len] = '\0';
                if (memchr(old, '\0', lab_len) || keys_label_parse_legacy(old, owner, sizeof owner, &gen) < 0 ||
                    keys_label_format(label, sizeof label, s->ns, owner, gen) < 0)
                        goto next;
                /* A key of the namespace already has that label: leave this one. */
                CK_ATTRIBUTE taken[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, label, strlen(label) } };
                CK_OBJECT_HANDLE other;
                int t = find_objects(s, sh, taken, 2, &other, 1);
                if (t != 0) {
                        r = t < 0 ? keys_errorf(ret_error, -EIO, "cannot search token \"%s\"", s->token_label) : 0;
                        goto next;
                }
                /* Both halves (and only them): the first round's label and this key id. */
                CK_ATTRIBUTE pair[] = { { CKA_LABEL, old, lab_len }, { CKA_ID, id, id_len } };
                CK_OBJECT_HANDLE halves[4];
                int h = find_objects(s, sh, pair, 2, halves, 4);
                CK_ATTRIBUTE set = { CKA_LABEL, label, strlen(label) };
                for (int j = 0; j < h; j++) {
                        CK_RV rv = s->fn->C_SetAttributeValue(sh, halves[j], &set, 1);
                        if (rv != CKR_OK) {
                                r = keys_errorf(ret_error, -EIO, "cannot relabel \"%s\" as \"%s\" on token \"%s\": "
                                                "0x%lx", old, label, s->token_label, (unsigned long) rv);
                                goto next;
                        }
                }
                if (h > 0)
                        r = note_relabel(s, id, old);
        next:
                free(lab);
                free(id);
        }
out:
        free(objs);
        s->fn->C_CloseSession(sh);
        return r;
}
