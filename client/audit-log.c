/* Audit log exports: entries as JSON and the offline verifier (see
 * audit-log.h). The verifier owns everything it allocates; it is freed by
 * client_audit_verify_free(). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit-log.h"
#include "base64.h"
#include "entry.h"
#include "hex.h"
#include "merkle.h"
#include "names.h"
#include "receipt-json.h"
#include "receipt.h"
#include "timefmt.h"

const char *const client_audit_columns[] = {
        "seq", "time", "event", "uid", "gid", "pid", "exe", "principal", "keyid", "digest", "payload_type",
        "annotations", "status", "leaf",
};

static json_t *str_or_null(const char *s) {
        return s && *s ? json_string(s) : json_null();
}

/* Builds the object; a NULL value from a failed json_* call makes the whole
 * build fail. */
static bool put(json_t *o, const char *key, json_t *v) {
        return v && json_object_set_new(o, key, v) == 0;
}

/* A purged entry's stub (docs/log-tiles.md "Retention"): its seq, time
 * and leaf hash; no leaf bytes. */
static json_t *purged_json(const Provsign__AuditEntry *e) {
        char when[PROTO_TIME_LEN + 1], hex[2 * PROTO_MERKLE_HASH_LEN + 1];
        if (e->purged_leaf_hash.len != PROTO_MERKLE_HASH_LEN)
                return NULL;
        proto_hex_encode(e->purged_leaf_hash.data, PROTO_MERKLE_HASH_LEN, hex);
        return json_pack("{s:I, s:o, s:s, s:b, s:s}", "seq", (json_int_t) e->seq, "time",
                         proto_time_format_us(e->time_us, when) ? json_string(when) : json_null(), "event",
                         "ENTRY_PURGED", "purged", 1, "leaf_hash", hex);
}

/* The annotations as an object, key -> value. A key that an entry holds
 * more than once (logs written before the agent refused duplicate keys at
 * Sign) maps to the array of its values, in the entry's order: every pair
 * of the leaf is shown, and `audit verify`, which derives this object from
 * the leaf and compares, compares all of them. */
static json_t *annotations_json(const Provsign__AuditEntry *e) {
        json_t *ann = json_object();
        for (size_t i = 0; ann && i < e->n_annotations; i++) {
                const char *k = e->annotations[i]->key;
                json_t *v = json_string(e->annotations[i]->value), *seen = json_object_get(ann, k);
                bool ok;
                if (!seen)
                        ok = put(ann, k, v);
                else if (json_is_array(seen))
                        ok = v && json_array_append_new(seen, v) == 0;
                else
                        ok = v && put(ann, k, json_pack("[Oo]", seen, v));
                if (!ok) {
                        json_decref(ann);
                        return NULL;
                }
        }
        return ann;
}

json_t *client_audit_entry_json(const Provsign__AuditEntry *e, const uint8_t *leaf, size_t n) {
        char when[PROTO_TIME_LEN + 1], unknown[32];
        if (e->event == PROVSIGN__AUDIT_EVENT__ENTRY_PURGED)
                return purged_json(e);
        json_t *o = json_object(), *ann = NULL;
        char *digest = NULL, *b64 = NULL;
        bool ok;

        if (!o)
                return NULL;
        const char *ev = proto_audit_event_name((int) e->event);
        if (!ev) {
                snprintf(unknown, sizeof unknown, "UNKNOWN_%d", (int) e->event);
                ev = unknown;
        }
        const Provsign__Caller *c = e->caller;
        bool has_status = e->event == PROVSIGN__AUDIT_EVENT__SIGN || e->event == PROVSIGN__AUDIT_EVENT__REFUSED ||
                          e->event == PROVSIGN__AUDIT_EVENT__REFUSED_SUMMARY;
        if (e->digest.len) {
                digest = proto_digest_spec((int) e->digest_algorithm, e->digest.data, e->digest.len);
                if (!digest)
                        goto fail;
        }
        if (e->n_annotations) {
                ann = annotations_json(e);
                if (!ann)
                        goto fail;
        } else
                ann = json_null();
        b64 = proto_base64_encode(leaf, n);
        if (!b64)
                goto fail;
        ok = put(o, "seq", json_integer((json_int_t) e->seq)) &&
             put(o, "time", proto_time_format_us(e->time_us, when) ? json_string(when) : json_null()) &&
             put(o, "event", json_string(ev)) &&
             put(o, "uid", c ? json_integer(c->uid) : json_null()) &&
             put(o, "gid", c ? json_integer(c->gid) : json_null()) &&
             put(o, "pid", c ? json_integer(c->pid) : json_null()) &&
             put(o, "exe", str_or_null(c ? c->exe : NULL)) &&
             put(o, "principal", str_or_null(e->principal)) &&
             put(o, "keyid", str_or_null(e->keyid)) &&
             put(o, "digest", digest ? json_string(digest) : json_null()) &&
             put(o, "payload_type", str_or_null(e->payload_type));
        if (ok) {
                ok = put(o, "annotations", ann);
                ann = NULL;
        }
        ok = ok && put(o, "status", has_status ? json_string(proto_status_name((int) e->status)) : json_null()) &&
             put(o, "leaf", json_string(b64));
        if (!ok)
                goto fail;
        free(digest);
        free(b64);
        return o;
fail:
        json_decref(ann);
        json_decref(o);
        free(digest);
        free(b64);
        return NULL;
}

/* ---- Verification ---- */

enum key_state { KS_ACTIVE, KS_RETIRED, KS_REVOKED, KS_DESTROYED };
static const char *const key_state_names[] = { "active", "retired", "revoked", "destroyed" };

struct vkey {
        char *keyid;
        char *principal;
        enum key_state state;
        uint64_t since_seq;      /* the entry that put it in this state */
        bool unknown_before;     /* first seen signing in a partial export */
};

struct vprincipal {
        char *name;
        struct vkey *active;     /* NULL: none (or unknown) */
        bool events_in_range;    /* a key event of this principal was seen */
        bool signs;              /* signed something here */
};

struct client_audit_verify {
        char *log_key_pem;
        char *previous;
        client_audit_choose_key choose; /* NULL: log_key_pem and previous as given */
        void *choose_userdata;
        bool failed, has_seq, finished_final;
        uint64_t fail_seq;
        char reason[512];

        uint64_t lines;
        uint64_t from, next;     /* first seq; the seq expected next */
        uint64_t n;              /* entries */
        uint8_t (*hashes)[PROTO_MERKLE_HASH_LEN];
        size_t cap_hashes;
        int64_t first_time, last_time;

        struct vkey *keys;
        size_t n_keys, cap_keys;
        struct vprincipal *principals;
        size_t n_principals, cap_principals;
        uint64_t unknown_before;

        json_t *final;           /* the final object, once seen */
        char *origin;
        uint64_t checkpoint_size;
        uint8_t root[PROTO_MERKLE_HASH_LEN]; /* the checkpoint's, once checked */
        bool consistent_previous;

        /* A sparse (filtered) export: the checkpoint object comes first and
         * every entry carries its inclusion proof, checked as it comes. */
        bool sparse, ended;
};

/* One CSV cell (RFC 4180 quoting). A cell that a spreadsheet would read as
 * a formula (starting with '=', '+', '-', '@', tab or CR) gets a leading
 * single quote, the OWASP rule against CSV injection: the text a signer
 * chose (payload_type, annotations) stays text. */
static void csv_cell(FILE *f, const char *s) {
        bool formula = strchr("=+-@\t\r", s[0]) && s[0];

        if (!formula && !strpbrk(s, ",\"\r\n")) {
                fputs(s, f);
                return;
        }
        fputc('"', f);
        if (formula)
                fputc('\'', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        fputc('"', f);
}

int client_audit_csv_row(FILE *f, json_t *o) {
        for (size_t i = 0; i < CLIENT_AUDIT_N_COLUMNS; i++) {
                json_t *v = json_object_get(o, client_audit_columns[i]);

                if (i)
                        fputc(',', f);
                if (json_is_string(v))
                        csv_cell(f, json_string_value(v));
                else if (json_is_integer(v))
                        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                else if (json_is_object(v)) {
                        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);

                        if (!s)
                                return -ENOMEM;
                        csv_cell(f, s);
                        free(s);
                }
        }
        fputc('\n', f);
        return ferror(f) ? -EIO : 0;
}


int client_audit_verify_new(const char *log_key_pem, const char *previous, client_audit_verify **ret) {
        client_audit_verify *v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        if ((log_key_pem && !(v->log_key_pem = strdup(log_key_pem))) || (previous && !(v->previous = strdup(previous)))) {
                client_audit_verify_free(v);
                return -ENOMEM;
        }
        *ret = v;
        return 0;
}

void client_audit_verify_choose_key(client_audit_verify *v, client_audit_choose_key choose, void *userdata) {
        v->choose = choose;
        v->choose_userdata = userdata;
}

void client_audit_verify_free(client_audit_verify *v) {
        if (!v)
                return;
        for (size_t i = 0; i < v->n_keys; i++) {
                free(v->keys[i].keyid);
                free(v->keys[i].principal);
        }
        for (size_t i = 0; i < v->n_principals; i++)
                free(v->principals[i].name);
        free(v->keys);
        free(v->principals);
        free(v->hashes);
        json_decref(v->final);
        free(v->origin);
        free(v->log_key_pem);
        free(v->previous);
        free(v);
}

void client_audit_verify_failure(const client_audit_verify *v, bool *ret_has_seq, uint64_t *ret_seq,
                                 const char **ret_reason) {
        *ret_has_seq = v->has_seq;
        *ret_seq = v->fail_seq;
        *ret_reason = v->reason;
}

static int fail(client_audit_verify *v, bool has_seq, uint64_t seq, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail(client_audit_verify *v, bool has_seq, uint64_t seq, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->reason, sizeof v->reason, fmt, ap);
        va_end(ap);
        v->failed = true;
        v->has_seq = has_seq;
        v->fail_seq = seq;
        return 1;
}

/* Key ids, principals: printable in a message (the agent only writes such). */
static const char *shown(const char *s) {
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return "(unprintable)";
        return s;
}

static struct vkey *key_find(client_audit_verify *v, const char *keyid) {
        /* The handful of keys of a log: a linear walk is fine. */
        for (size_t i = 0; i < v->n_keys; i++)
                if (strcmp(v->keys[i].keyid, keyid) == 0)
                        return &v->keys[i];
        return NULL;
}

static struct vprincipal *principal_get(client_audit_verify *v, const char *name) {
        for (size_t i = 0; i < v->n_principals; i++)
                if (strcmp(v->principals[i].name, name) == 0)
                        return &v->principals[i];
        if (v->n_principals == v->cap_principals) {
                size_t cap = v->cap_principals ? v->cap_principals * 2 : 8;
                struct vprincipal *p = realloc(v->principals, cap * sizeof *p);
                if (!p)
                        return NULL;
                v->principals = p;
                v->cap_principals = cap;
        }
        struct vprincipal *p = &v->principals[v->n_principals];
        memset(p, 0, sizeof *p);
        if (!(p->name = strdup(name)))
                return NULL;
        v->n_principals++;
        return p;
}

/* keys[] moves when it grows: principals point into it, so re-point them. */
static struct vkey *key_add(client_audit_verify *v, const char *keyid, const char *principal, enum key_state st,
                            uint64_t seq) {
        if (v->n_keys == v->cap_keys) {
                size_t cap = v->cap_keys ? v->cap_keys * 2 : 8;
                /* Principals point into keys[]: keep their indexes across the move. */
                size_t *idx = calloc(v->n_principals ? v->n_principals : 1, sizeof *idx);
                if (!idx)
                        return NULL;
                for (size_t i = 0; i < v->n_principals; i++)
                        idx[i] = v->principals[i].active ? (size_t) (v->principals[i].active - v->keys) : SIZE_MAX;
                struct vkey *k = realloc(v->keys, cap * sizeof *k);
                if (!k) {
                        free(idx);
                        return NULL;
                }
                for (size_t i = 0; i < v->n_principals; i++)
                        v->principals[i].active = idx[i] == SIZE_MAX ? NULL : k + idx[i];
                free(idx);
                v->keys = k;
                v->cap_keys = cap;
        }
        struct vkey *k = &v->keys[v->n_keys];
        memset(k, 0, sizeof *k);
        k->keyid = strdup(keyid);
        k->principal = strdup(principal);
        if (!k->keyid || !k->principal) {
                free(k->keyid);
                free(k->principal);
                return NULL;
        }
        k->state = st;
        k->since_seq = seq;
        v->n_keys++;
        return k;
}

/* The key events and sign entries (proto/provsign.proto, "Key events"). A
 * partial export (from > 0) starts without the key history: a key first
 * seen signing, for a principal with no key event yet in the range, is
 * counted as "unknown before range" and taken as that principal's active
 * key; everything after it is checked as usual. */
/* KEY_CREATE, KEY_ROTATE: the key becomes its principal's (active when
 * first or rotated to; a created successor waits retired). */
static int check_key_create(client_audit_verify *v, const Provsign__AuditEntry *e) {
        uint64_t seq = e->seq;
        struct vkey *k;
        struct vprincipal *p;

        if (!e->keyid[0] || !e->principal[0])
                return fail(v, true, seq, "key event without a key id or principal");
        p = principal_get(v, e->principal);
        if (!p)
                return -ENOMEM;
        p->events_in_range = true;
        k = key_find(v, e->keyid);
        if (k && strcmp(k->principal, e->principal) != 0)
                return fail(v, true, seq, "key %s of principal %s appears for principal %s", shown(e->keyid),
                            shown(k->principal), shown(e->principal));
        if (e->event == PROVSIGN__AUDIT_EVENT__KEY_CREATE) {
                if (k)
                        return 0; /* seen again (adopted from the token): nothing changes */
                bool first = !p->active;
                k = key_add(v, e->keyid, e->principal, first ? KS_ACTIVE : KS_RETIRED, seq);
                if (!k)
                        return -ENOMEM;
                if (first)
                        p = principal_get(v, e->principal), p->active = k;
                return 0;
        }
        if (k && k->state != KS_ACTIVE && k->state != KS_RETIRED)
                return fail(v, true, seq, "rotation to key %s, which was %s at seq %" PRIu64, shown(e->keyid),
                            key_state_names[k->state], k->since_seq);
        if (!k) {
                k = key_add(v, e->keyid, e->principal, KS_ACTIVE, seq);
                if (!k)
                        return -ENOMEM;
                p = principal_get(v, e->principal);
        }
        if (p->active && p->active != k) {
                p->active->state = KS_RETIRED;
                p->active->since_seq = seq;
        }
        k->state = KS_ACTIVE;
        k->since_seq = seq;
        p->active = k;
        return 0;
}

/* KEY_REVOKE, KEY_DESTROY: the key stops signing. */
static int check_key_end(client_audit_verify *v, const Provsign__AuditEntry *e) {
        uint64_t seq = e->seq;
        struct vkey *k;
        struct vprincipal *p;

        bool revoke = e->event == PROVSIGN__AUDIT_EVENT__KEY_REVOKE;
        k = key_find(v, e->keyid);
        if (!k) {
                if (v->from == 0)
                        return fail(v, true, seq, "%s of key %s, which no earlier entry created",
                                    revoke ? "revocation" : "destruction", shown(e->keyid));
                k = key_add(v, e->keyid, e->principal[0] ? e->principal : "", KS_REVOKED, seq);
                if (!k)
                        return -ENOMEM;
                k->unknown_before = true;
                v->unknown_before++;
        }
        if (k->state == KS_DESTROYED && revoke)
                return 0; /* revoking a destroyed key changes nothing here */
        k->state = revoke ? KS_REVOKED : KS_DESTROYED;
        k->since_seq = seq;
        p = k->principal[0] ? principal_get(v, k->principal) : NULL;
        if (k->principal[0] && !p)
                return -ENOMEM;
        if (p) {
                p->events_in_range = true;
                if (p->active == k)
                        p->active = NULL;
        }
        return 0;
}

/* SIGN (OK): by the principal's active key. */
static int check_sign_key(client_audit_verify *v, const Provsign__AuditEntry *e) {
        uint64_t seq = e->seq;
        struct vkey *k;
        struct vprincipal *p;

        if (e->status != PROVSIGN__STATUS__OK)
                return 0;
        if (!e->keyid[0] || !e->principal[0])
                return fail(v, true, seq, "sign entry without a key id or principal");
        p = principal_get(v, e->principal);
        if (!p)
                return -ENOMEM;
        p->signs = true;
        k = key_find(v, e->keyid);
        if (!k) {
                if (v->from > 0 && !p->events_in_range && !p->active) {
                        k = key_add(v, e->keyid, e->principal, KS_ACTIVE, seq);
                        if (!k)
                                return -ENOMEM;
                        k->unknown_before = true;
                        v->unknown_before++;
                        p = principal_get(v, e->principal);
                        p->active = k;
                        return 0;
                }
                return fail(v, true, seq, "signed by %s with key %s, which is not a key of the principal (%s)",
                            shown(e->principal), shown(e->keyid),
                            v->from > 0 ? "the principal has key events in the range, none names it"
                                        : "no KEY_CREATE or KEY_ROTATE before it");
        }
        if (strcmp(k->principal, e->principal) != 0)
                return fail(v, true, seq, "signed for %s with key %s, which belongs to %s", shown(e->principal),
                            shown(e->keyid), shown(k->principal));
        if (k->state != KS_ACTIVE || p->active != k)
                return fail(v, true, seq, "signed by %s with key %s, which was %s at seq %" PRIu64
                            " (not the principal's active key)", shown(e->principal), shown(e->keyid),
                            key_state_names[k->state], k->since_seq);
        return 0;
}

static int check_keys(client_audit_verify *v, const Provsign__AuditEntry *e) {
        switch (e->event) {
        case PROVSIGN__AUDIT_EVENT__KEY_CREATE:
        case PROVSIGN__AUDIT_EVENT__KEY_ROTATE:
                return check_key_create(v, e);
        case PROVSIGN__AUDIT_EVENT__KEY_REVOKE:
        case PROVSIGN__AUDIT_EVENT__KEY_DESTROY:
                return check_key_end(v, e);
        case PROVSIGN__AUDIT_EVENT__SIGN:
                return check_sign_key(v, e);
        default:
                return 0;
        }
}

/* The first key whose value in `got` differs from `want` (or is missing,
 * or extra): a field edited after export. */
static const char *first_difference(json_t *want, json_t *got) {
        const char *key;
        json_t *val;
        for (size_t i = 0; i < CLIENT_AUDIT_N_COLUMNS; i++) {
                json_t *w = json_object_get(want, client_audit_columns[i]), *g = json_object_get(got, client_audit_columns[i]);
                if (!g || !json_equal(w, g))
                        return client_audit_columns[i];
        }
        json_object_foreach(got, key, val)
                if (!json_object_get(want, key))
                        return key;
        return NULL;
}

static int add_hash(client_audit_verify *v, const uint8_t hash[PROTO_MERKLE_HASH_LEN]) {
        if (v->n == v->cap_hashes) {
                size_t cap = v->cap_hashes ? v->cap_hashes * 2 : 1024;
                void *h = realloc(v->hashes, cap * sizeof *v->hashes);
                if (!h)
                        return -ENOMEM;
                v->hashes = h;
                v->cap_hashes = cap;
        }
        memcpy(v->hashes[v->n], hash, PROTO_MERKLE_HASH_LEN);
        v->n++;
        return 0;
}

static int hash_array(json_t *a, uint8_t (**ret)[PROTO_MERKLE_HASH_LEN], size_t *ret_n);

/* A sparse export's entry e (leaf[0..n)): after the entries before it, in
 * the checkpoint's tree, its inclusion proof (in o) leading to the
 * checkpoint's root. Key states are not checked: the key events are
 * (mostly) not in a filtered export. */
static int verify_sparse_entry(client_audit_verify *v, json_t *o, uint64_t seq, int64_t time_us,
                               const uint8_t h[PROTO_MERKLE_HASH_LEN]) {
        uint8_t (*proof)[PROTO_MERKLE_HASH_LEN] = NULL;
        size_t np = 0;
        if (v->n && seq < v->next)
                return fail(v, true, seq, "seq %" PRIu64 " after seq %" PRIu64 " (an entry is repeated or out of order)",
                            seq, v->next - 1);
        if (seq >= v->checkpoint_size)
                return fail(v, true, seq, "not covered by the checkpoint (tree size %" PRIu64 ")", v->checkpoint_size);
        if (hash_array(json_object_get(o, "inclusion_proof"), &proof, &np) < 0)
                return fail(v, true, seq, "\"inclusion_proof\" is not a list of base64 hashes");
        int r = proto_merkle_verify_inclusion(h, seq, v->checkpoint_size, (const uint8_t (*)[32]) proof, np, v->root);
        free(proof);
        if (r == -ENOMEM || r == -EIO)
                return r;
        if (r < 0)
                return fail(v, true, seq, "its inclusion proof does not lead to the checkpoint's root (edited?)");
        if (!v->n)
                v->from = seq;
        v->n++;
        if (v->n == 1)
                v->first_time = time_us;
        v->last_time = time_us;
        v->next = seq + 1;
        return 0;
}

/* A purged entry ({"seq", "time", "purged": true, "leaf_hash"}): its leaf
 * hash goes into the tree (or its inclusion proof) as is; it has no fields
 * to check. */
static int verify_purged(client_audit_verify *v, json_t *o) {
        json_t *jseq = json_object_get(o, "seq"), *jh = json_object_get(o, "leaf_hash"),
               *jt = json_object_get(o, "time");
        uint64_t expect = v->n ? v->next : 0;
        uint8_t h[PROTO_MERKLE_HASH_LEN];
        size_t hl = 0;
        int64_t t = 0;
        if (!json_is_integer(jseq) || json_integer_value(jseq) < 0)
                return fail(v, true, expect, "purged entry has no \"seq\"");
        uint64_t seq = (uint64_t) json_integer_value(jseq);
        if (!v->n)
                expect = seq;
        if (!json_is_string(jh) || json_string_length(jh) != 2 * PROTO_MERKLE_HASH_LEN ||
            proto_hex_decode(json_string_value(jh), h, sizeof h, &hl) < 0 || hl != sizeof h)
                return fail(v, true, seq, "purged entry's \"leaf_hash\" is not 64 hex digits");
        if (json_is_string(jt))
                (void) proto_time_parse_us(json_string_value(jt), &t);
        if (v->sparse)
                return verify_sparse_entry(v, o, seq, t, h);
        if (seq != expect)
                return fail(v, true, expect, "expected seq %" PRIu64 ", found seq %" PRIu64 " (%s)", expect, seq,
                            seq > expect ? "an entry is missing or out of order"
                                         : "an entry is repeated, inserted or out of order");
        if (!v->n)
                v->from = seq;
        int r = add_hash(v, h);
        if (r < 0)
                return r;
        if (v->n == 1)
                v->first_time = t;
        v->last_time = t;
        v->next = seq + 1;
        return 0;
}

static int verify_entry(client_audit_verify *v, json_t *o) {
        uint64_t expect = v->n ? v->next : 0;
        json_t *jleaf = json_object_get(o, "leaf"), *jseq = json_object_get(o, "seq"), *want = NULL;
        uint8_t *leaf = NULL;
        size_t n = 0;
        Provsign__AuditEntry *e = NULL;
        int r;

        /* Before the first entry decodes, the best name for it is what it says. */
        if (!v->n)
                expect = json_is_integer(jseq) && json_integer_value(jseq) >= 0 ? (uint64_t) json_integer_value(jseq) : 0;
        if (!json_is_string(jleaf))
                return fail(v, true, expect, "entry has no \"leaf\"");
        if (proto_base64_decode(json_string_value(jleaf), json_string_length(jleaf), &leaf, &n) < 0 || n == 0) {
                r = fail(v, true, expect, "\"leaf\" is not canonical base64 of an entry");
                goto out;
        }
        e = provsign__audit_entry__unpack(NULL, n, leaf);
        if (!e) {
                r = fail(v, true, expect, "\"leaf\" does not decode as an AuditEntry");
                goto out;
        }
        if (!v->n) {
                v->from = v->next = expect = e->seq;
        }
        if (v->sparse)
                expect = e->seq;
        want = client_audit_entry_json(e, leaf, n);
        if (!want) {
                r = fail(v, true, expect, "the entry's strings are not valid UTF-8");
                goto out;
        }
        json_t *proof = v->sparse ? json_object_get(o, "inclusion_proof") : NULL;
        if (proof && json_object_set(want, "inclusion_proof", proof) < 0) {
                r = -ENOMEM;
                goto out;
        }
        const char *diff = first_difference(want, o);
        if (diff) {
                r = fail(v, true, expect, "field \"%s\" does not match the entry's leaf (edited)", diff);
                goto out;
        }
        if (v->sparse) {
                uint8_t h[PROTO_MERKLE_HASH_LEN];
                r = proto_merkle_leaf_hash(leaf, n, h);
                if (r >= 0)
                        r = verify_sparse_entry(v, o, e->seq, e->time_us, h);
                goto out;
        }
        if (e->seq != expect) {
                r = fail(v, true, expect, "expected seq %" PRIu64 ", found seq %" PRIu64 " (%s)", expect,
                         (uint64_t) e->seq,
                         e->seq > expect ? "an entry is missing or out of order"
                                         : "an entry is repeated, inserted or out of order");
                goto out;
        }
        uint8_t h[PROTO_MERKLE_HASH_LEN];
        r = proto_merkle_leaf_hash(leaf, n, h);
        if (r >= 0)
                r = add_hash(v, h);
        if (r < 0)
                goto out;
        r = check_keys(v, e);
        if (r != 0)
                goto out;
        if (v->n == 1)
                v->first_time = e->time_us;
        v->last_time = e->time_us;
        v->next = expect + 1;
out:
        json_decref(want);
        if (e)
                provsign__audit_entry__free_unpacked(e, NULL);
        free(leaf);
        return r;
}

static int verify_sparse_head(client_audit_verify *v);

/* A filtered export's end object counts what came before it (a file cut
 * or shortened by whole lines). Takes o. */
static int verify_sparse_end(client_audit_verify *v, json_t *o) {
        json_t *jn = json_object_get(o, "entries");
        bool ok = json_is_true(json_object_get(o, "end")) && json_is_integer(jn) &&
                  (uint64_t) json_integer_value(jn) == v->n && json_object_size(o) == 2;
        json_decref(o);
        v->ended = true;
        if (!ok)
                return fail(v, false, 0, "the end object does not count the %" PRIu64 " entries read (lines removed or"
                            " added?)", v->n);
        return 0;
}

int client_audit_verify_line(client_audit_verify *v, const char *line, size_t len) {
        json_error_t err;
        if (v->failed)
                return 1;
        v->lines++;
        uint64_t here = v->n ? v->next : 0;
        if (v->final && !v->sparse)
                return fail(v, false, 0, "line %" PRIu64 ": data after the final checkpoint object", v->lines);
        if (v->ended)
                return fail(v, false, 0, "line %" PRIu64 ": data after the end of a filtered export", v->lines);
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(o)) {
                json_decref(o);
                return fail(v, v->n > 0, here, "line %" PRIu64 " is not a JSON object (truncated or edited?)", v->lines);
        }
        if (v->lines == 1 && json_object_get(o, "checkpoint") && json_is_true(json_object_get(o, "sparse"))) {
                /* A filtered (sparse) export: its checkpoint first. */
                v->sparse = true;
                v->final = o;
                return verify_sparse_head(v);
        }
        if (v->sparse && json_object_get(o, "end"))
                return verify_sparse_end(v, o);
        if (!v->sparse && json_object_get(o, "checkpoint")) {
                v->final = o;
                return 0;
        }
        int r = json_is_true(json_object_get(o, "purged")) ? verify_purged(v, o) : verify_entry(v, o);
        json_decref(o);
        return r;
}

static int hash_array(json_t *a, uint8_t (**ret)[PROTO_MERKLE_HASH_LEN], size_t *ret_n) {
        if (!json_is_array(a) || json_array_size(a) > PROTO_MERKLE_MAX_PROOF)
                return -EBADMSG;
        size_t n = json_array_size(a);
        uint8_t (*h)[PROTO_MERKLE_HASH_LEN] = calloc(n ? n : 1, sizeof *h);
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(a, i);
                uint8_t buf[48];
                size_t got;
                if (!json_is_string(s) || json_string_length(s) > 64 ||
                    proto_base64_decode_to(json_string_value(s), json_string_length(s), buf, sizeof buf, &got) < 0 ||
                    got != PROTO_MERKLE_HASH_LEN) {
                        free(h);
                        return -EBADMSG;
                }
                memcpy(h[i], buf, PROTO_MERKLE_HASH_LEN);
        }
        *ret = h;
        *ret_n = n;
        return 0;
}

/* The final object's checkpoint: signed by the log key, of the size it
 * states, covering the entries, which with left/right hash to its root.
 * Fills res. 0, 1 (failed), -ENOMEM. */
/* With a chooser: the key and previous checkpoint of the note's origin. 0,
 * 1 (failed), -errno. */
static int choose_key(client_audit_verify *v, const char *note) {
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        const char *pem = NULL, *prev = NULL;
        char *origin = NULL, why[400] = "";
        uint64_t size;
        int r = client_checkpoint_note_parse(note, strlen(note), &origin, &size, root);

        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(v, false, 0, "checkpoint: not a well-formed checkpoint note");
        r = v->choose(v->choose_userdata, origin, note, &pem, &prev, why, sizeof why);
        free(origin);
        if (r != 0)
                return r < 0 ? r : fail(v, false, 0, "%s", why);
        if (!pem)
                return -EINVAL;
        free(v->log_key_pem);
        free(v->previous);
        v->previous = NULL;
        v->log_key_pem = strdup(pem);
        if (!v->log_key_pem || (prev && !(v->previous = strdup(prev))))
                return -ENOMEM;
        return 0;
}

/* The checkpoint object's note (v->final): signed by the log key, of the
 * size it states. Fills res and v's origin, checkpoint_size and root. 0, 1
 * (failed), -ENOMEM. */
static int verify_checkpoint_note(client_audit_verify *v, struct client_receipt_result *res) {
        json_t *jcp = json_object_get(v->final, "checkpoint"), *jsize = json_object_get(v->final, "tree_size");
        int r;

        if (!json_is_string(jcp) || !json_is_integer(jsize) || json_integer_value(jsize) < 0 ||
            !json_object_get(v->final, "consistency"))
                return fail(v, false, 0, "the %s object lacks checkpoint, tree_size or consistency",
                            v->sparse ? "first" : "final");
        if (v->choose) {
                r = choose_key(v, json_string_value(jcp));
                if (r != 0)
                        return r;
        }
        r = client_checkpoint_verify(json_string_value(jcp), v->log_key_pem, res);
        if (r < 0)
                return r;
        if (r > 0)
                return fail(v, false, 0, "checkpoint: %s", res->detail);
        v->origin = strdup(res->origin);
        if (!v->origin)
                return -ENOMEM;
        v->checkpoint_size = res->checkpoint_size;
        memcpy(v->root, res->root, sizeof v->root);
        if ((uint64_t) json_integer_value(jsize) != res->checkpoint_size)
                return fail(v, false, 0, "tree_size %" PRIu64 " is not the checkpoint's size %" PRIu64,
                            (uint64_t) json_integer_value(jsize), res->checkpoint_size);
        return 0;
}

static int verify_final_checkpoint(client_audit_verify *v, struct client_receipt_result *res) {
        uint8_t (*left)[PROTO_MERKLE_HASH_LEN] = NULL, (*right)[PROTO_MERKLE_HASH_LEN] = NULL;
        size_t nl = 0, nr = 0;
        int r = verify_checkpoint_note(v, res);

        if (r != 0)
                return r;
        if (v->next > res->checkpoint_size)
                return fail(v, true, res->checkpoint_size,
                            "not covered by the checkpoint (tree size %" PRIu64 ", older than the entries?)",
                            res->checkpoint_size);
        if (hash_array(json_object_get(v->final, "left"), &left, &nl) < 0 ||
            hash_array(json_object_get(v->final, "right"), &right, &nr) < 0) {
                r = fail(v, false, 0, "left/right are not lists of base64 hashes");
                goto out;
        }
        r = proto_merkle_verify_range(v->from, v->next, res->checkpoint_size, (const uint8_t (*)[32]) v->hashes,
                                      (const uint8_t (*)[32]) left, nl, (const uint8_t (*)[32]) right, nr, res->root);
        if (r < 0 && r != -ENOMEM && r != -EIO)
                r = fail(v, false, 0, "checkpoint: entries %" PRIu64 "..%" PRIu64
                         " (with left/right) do not hash to the checkpoint's root", v->from, v->next - 1);
out:
        free(left);
        free(right);
        return r;
}

/* The previous checkpoint the auditor kept: signed by the same key, of
 * the same log, no larger, and the export's consistency proof ties it to
 * the checkpoint in res. 0, 1 (failed), -ENOMEM. */
static int verify_previous(client_audit_verify *v, const struct client_receipt_result *res) {
        struct client_receipt_result prev = { 0 };
        uint8_t (*cons)[PROTO_MERKLE_HASH_LEN] = NULL;
        json_t *jcons = json_object_get(v->final, "consistency");
        json_t *fs = json_is_object(jcons) ? json_object_get(jcons, "from_size") : NULL;
        size_t nc = 0;
        int r;

        r = client_checkpoint_verify_previous(v->previous, v->log_key_pem, res->origin, res->checkpoint_size, &prev);
        if (r > 0)
                r = fail(v, false, 0, "%s", prev.detail);
        else if (r == 0 && (!fs || !json_is_integer(fs) || (uint64_t) json_integer_value(fs) != prev.checkpoint_size))
                r = fail(v, false, 0, "the export has no consistency proof from the previous checkpoint's size %" PRIu64
                         " (export with --previous-size %" PRIu64 ")", prev.checkpoint_size, prev.checkpoint_size);
        else if (r == 0 && hash_array(json_object_get(jcons, "proof"), &cons, &nc) < 0)
                r = fail(v, false, 0, "consistency proof is not a list of base64 hashes");
        else if (r == 0) {
                r = proto_merkle_verify_consistency(prev.checkpoint_size, res->checkpoint_size, prev.root, res->root,
                                                    (const uint8_t (*)[32]) cons, nc);
                if (r < 0 && r != -ENOMEM && r != -EIO)
                        r = fail(v, false, 0, "previous checkpoint: the log's history was rewritten: the tree of %" PRIu64
                                 " entries is not an extension of the previous tree of %" PRIu64,
                                 res->checkpoint_size, prev.checkpoint_size);
                v->consistent_previous = r == 0;
        }
        client_receipt_result_done(&prev);
        free(cons);
        return r;
}

/* A filtered export's first object: its checkpoint, and the consistency
 * with the previous one, checked before any entry. */
static int verify_sparse_head(client_audit_verify *v) {
        struct client_receipt_result res = { 0 };
        int r = verify_checkpoint_note(v, &res);

        if (r == 0 && v->previous)
                r = verify_previous(v, &res);
        client_receipt_result_done(&res);
        return r;
}

int client_audit_verify_finish(client_audit_verify *v) {
        struct client_receipt_result res = { 0 };
        int r;

        if (v->failed)
                return 1;
        if (v->sparse)
                /* The checkpoint and every entry were checked as they came. */
                return v->ended ? 0
                                : fail(v, v->n > 0, v->next, "the filtered export ends %s without its end object"
                                       " (truncated)", v->n ? "after an entry" : "after its checkpoint");
        if (!v->final) {
                if (!v->n)
                        return fail(v, false, 0, "the export is empty");
                return fail(v, true, v->next, "the export ends after seq %" PRIu64
                            " without its final checkpoint object (truncated)", v->next - 1);
        }
        if (!v->n)
                return fail(v, false, 0, "the export has a checkpoint but no entries");
        r = verify_final_checkpoint(v, &res);
        if (r == 0 && v->previous)
                r = verify_previous(v, &res);
        client_receipt_result_done(&res);
        return r;
}

json_t *client_audit_verify_summary(const client_audit_verify *v) {
        char t1[PROTO_TIME_LEN + 1], t2[PROTO_TIME_LEN + 1];
        size_t signers = 0;
        for (size_t i = 0; i < v->n_principals; i++)
                signers += v->principals[i].signs;
        json_t *o = json_object();
        bool ok = o &&
                  put(o, "verified", json_true()) &&
                  put(o, "entries", json_integer((json_int_t) v->n)) &&
                  put(o, "first_seq", v->n ? json_integer((json_int_t) v->from) : json_null()) &&
                  put(o, "last_seq", v->n ? json_integer((json_int_t) (v->next - 1)) : json_null()) &&
                  put(o, "sparse", json_boolean(v->sparse)) &&
                  put(o, "principals", json_integer((json_int_t) signers)) &&
                  put(o, "keys", json_integer((json_int_t) v->n_keys)) &&
                  put(o, "keys_unknown_before_range", json_integer((json_int_t) v->unknown_before)) &&
                  put(o, "first_time", proto_time_format_us(v->first_time, t1) ? json_string(t1) : json_null()) &&
                  put(o, "last_time", proto_time_format_us(v->last_time, t2) ? json_string(t2) : json_null()) &&
                  put(o, "checkpoint_size", json_integer((json_int_t) v->checkpoint_size)) &&
                  put(o, "origin", json_string(v->origin ? v->origin : "")) &&
                  put(o, "consistent_with_previous", v->previous ? json_boolean(v->consistent_previous) : json_null());
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}
