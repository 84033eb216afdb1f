#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "names.h"
#include "provsign.pb-c.h"

static const char *const status_names[] = {
        [PROVSIGN__STATUS__OK] = "OK",
        [PROVSIGN__STATUS__INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [PROVSIGN__STATUS__PERMISSION_DENIED] = "PERMISSION_DENIED",
        [PROVSIGN__STATUS__NOT_FOUND] = "NOT_FOUND",
        [PROVSIGN__STATUS__KEY_REVOKED] = "KEY_REVOKED",
        [PROVSIGN__STATUS__NO_ACTIVE_KEY] = "NO_ACTIVE_KEY",
        [PROVSIGN__STATUS__RATE_LIMITED] = "RATE_LIMITED",
        [PROVSIGN__STATUS__HSM_UNAVAILABLE] = "HSM_UNAVAILABLE",
        [PROVSIGN__STATUS__UNAVAILABLE] = "UNAVAILABLE",
        [PROVSIGN__STATUS__INTERNAL] = "INTERNAL",
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

bool proto_status_known(int status) {
        return status >= 0 && (size_t) status < N_ELEMENTS(status_names) && status_names[status];
}

const char *proto_status_name(int status) {
        return proto_status_known(status) ? status_names[status] : "UNKNOWN_STATUS";
}

static const struct {
        int alg;
        const char *name;
        int digest;
} key_algorithms[] = {
        { PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "ecdsa-p256", PROVSIGN__DIGEST_ALGORITHM__SHA256 },
        { PROVSIGN__KEY_ALGORITHM__ECDSA_P384, "ecdsa-p384", PROVSIGN__DIGEST_ALGORITHM__SHA384 },
        { PROVSIGN__KEY_ALGORITHM__RSA_3072, "rsa-3072", PROVSIGN__DIGEST_ALGORITHM__SHA256 },
};

const char *proto_key_algorithm_name(int alg) {
        for (size_t i = 0; i < N_ELEMENTS(key_algorithms); i++)
                if (key_algorithms[i].alg == alg)
                        return key_algorithms[i].name;
        return "unknown";
}

int proto_key_algorithm_from_name(const char *name) {
        for (size_t i = 0; i < N_ELEMENTS(key_algorithms); i++)
                if (strcmp(key_algorithms[i].name, name) == 0)
                        return key_algorithms[i].alg;
        return -EINVAL;
}

int proto_key_algorithm_digest(int alg) {
        for (size_t i = 0; i < N_ELEMENTS(key_algorithms); i++)
                if (key_algorithms[i].alg == alg)
                        return key_algorithms[i].digest;
        return 0;
}

static const struct {
        int alg;
        const char *name;
        size_t len;
} digests[] = {
        { PROVSIGN__DIGEST_ALGORITHM__SHA256, "sha256", 32 },
        { PROVSIGN__DIGEST_ALGORITHM__SHA384, "sha384", 48 },
};

const char *proto_digest_name(int dalg) {
        for (size_t i = 0; i < N_ELEMENTS(digests); i++)
                if (digests[i].alg == dalg)
                        return digests[i].name;
        return "unknown";
}

int proto_digest_from_name(const char *name) {
        for (size_t i = 0; i < N_ELEMENTS(digests); i++)
                if (strcmp(digests[i].name, name) == 0)
                        return digests[i].alg;
        return -EINVAL;
}

size_t proto_digest_length(int dalg) {
        for (size_t i = 0; i < N_ELEMENTS(digests); i++)
                if (digests[i].alg == dalg)
                        return digests[i].len;
        return 0;
}

int proto_digest_spec_parse_n(const char *spec, size_t len, int *ret_alg, uint8_t out[48], size_t *ret_len) {
        const char *colon = memchr(spec, ':', len < 9 ? len : 9);
        if (!colon)
                return -EINVAL;
        char name[9];
        memcpy(name, spec, (size_t) (colon - spec));
        name[colon - spec] = '\0';
        int alg = proto_digest_from_name(name);
        if (alg < 0)
                return -EINVAL;
        size_t want = proto_digest_length(alg);
        size_t hex_len = len - (size_t) (colon + 1 - spec);
        if (hex_len != 2 * want)
                return -EINVAL;
        char hex[2 * 48 + 1];
        memcpy(hex, colon + 1, hex_len);
        hex[hex_len] = '\0';
        size_t got;
        if (proto_hex_decode(hex, out, want, &got) < 0 || got != want)
                return -EINVAL;
        *ret_alg = alg;
        *ret_len = want;
        return 0;
}

int proto_digest_spec_parse(const char *spec, int *ret_alg, uint8_t out[48], size_t *ret_len) {
        return proto_digest_spec_parse_n(spec, strlen(spec), ret_alg, out, ret_len);
}

static const char *const state_names[] = {
        [PROVSIGN__KEY_STATE__ACTIVE] = "active",
        [PROVSIGN__KEY_STATE__RETIRED] = "retired",
        [PROVSIGN__KEY_STATE__REVOKED] = "revoked",
        [PROVSIGN__KEY_STATE__DESTROYED] = "destroyed",
};

const char *proto_key_state_name(int state) {
        if (state < 0 || (size_t) state >= N_ELEMENTS(state_names) || !state_names[state])
                return "unknown";
        return state_names[state];
}

const char *proto_audit_event_name(int event) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&provsign__audit_event__descriptor, event);
        return v && event != 0 ? v->name : NULL;
}

char *proto_digest_spec(int digest_algorithm, const uint8_t *digest, size_t len) {
        const char *name = proto_digest_name(digest_algorithm);
        size_t nl = strlen(name);
        if (len > 65536)
                return NULL;
        char *s = malloc(nl + 1 + 2 * len + 1);
        if (!s)
                return NULL;
        memcpy(s, name, nl);
        s[nl] = ':';
        proto_hex_encode(digest, len, s + nl + 1);
        return s;
}
