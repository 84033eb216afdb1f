/* Export and Find for the auditor role (export.h).
 *
 * Export: the request is checked and everything the last frame carries is
 * fixed first, on the main thread: the latest checkpoint (it covers every
 * committed entry, so every exported one: `to` may not pass it), the
 * compact range proof of [from, to] in its tree and the consistency proof
 * from previous_size. Then a server_stream sends the leaves, read from the
 * segment files through a logreader, in frames of up to ~60 KiB; the last
 * frame (done) carries the proofs. Nothing but one frame and the reader's
 * 128 KiB buffer is in memory per export.
 *
 * Find: candidates come from the index (index.h: digest prefix or the
 * principal's seqs inside the time window), each entry is read back and
 * checked exactly, and matches stream like an export.
 *
 * Every stream owns its state (freed by its free()); the global count of
 * live streams is main-thread only. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "entry.h"
#include "export.h"
#include "frame.h"
#include "index.h"
#include "log.h"
#include "merkle.h"
#include "names.h"
#include "refusals.h"

/* Leaves per frame: what fits under PROTO_FRAME_MAX with room for the
 * fields around them. */
#define FRAME_BUDGET (PROTO_FRAME_MAX - 2048u)
#define FIND_BATCH 256u

static unsigned live_streams;

static int pack(const server_stream *s, Provsign__Response *resp, uint8_t **ret, size_t *ret_len) {
        resp->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp->status = PROVSIGN__STATUS__OK;
        resp->request_id = s->request_id;
        return proto_frame_pack(&resp->base, ret, ret_len);
}

/* Bytes a leaf adds to a frame. */
static size_t leaf_cost(size_t n) {
        return n + 1 + 3; /* tag + length varint */
}

/* ---- Filters (find, and sparse exports) ---- */

/* What a find (or a filtered export) asks for, checked exactly against
 * each candidate entry the index gives. */
typedef struct entry_filter {
        uint8_t digest[48];
        size_t digest_len;
        char *principal;         /* NULL: any */
        char *keyid;             /* NULL: any */
        int64_t since_us, until_us;
} entry_filter;

static void filter_done(entry_filter *f) {
        free(f->principal);
        free(f->keyid);
}

/* Takes the request's filter fields; -EINVAL with *ret_why for bad ones.
 * Checked here, after the role check (requests.c), not by the row's
 * validator: a caller without the auditor role hears PERMISSION_DENIED
 * whatever its filter says. */
static int filter_init(entry_filter *f, const ProtobufCBinaryData *digest, const char *principal, const char *keyid,
                       int64_t since_us, int64_t until_us, const char **ret_why) {
        memset(f, 0, sizeof *f);
        if (digest->len && digest->len != 32 && digest->len != 48) {
                *ret_why = "a digest is 32 (sha256) or 48 (sha384) bytes";
                return -EINVAL;
        }
        if (since_us < 0 || until_us < 0 || (until_us && since_us > until_us)) {
                *ret_why = "invalid time window";
                return -EINVAL;
        }
        memcpy(f->digest, digest->data, digest->len);
        f->digest_len = digest->len;
        f->since_us = since_us;
        f->until_us = until_us;
        if ((principal[0] && !(f->principal = strdup(principal))) || (keyid[0] && !(f->keyid = strdup(keyid)))) {
                filter_done(f);
                return -ENOMEM;
        }
        return 0;
}

static bool filter_any(const entry_filter *f) {
        return f->digest_len || f->principal || f->keyid || f->since_us || f->until_us;
}

struct match_ctx {
        const uint8_t *digest;
        size_t len;
        bool hit;
};

static void match_value(void *ctx, const char *v, size_t len) {
        struct match_ctx *m = ctx;
        uint8_t d[48];
        size_t n;
        int alg;
        if (proto_digest_spec_parse_n(v, len, &alg, d, &n) == 0 && n == m->len && memcmp(d, m->digest, n) == 0)
                m->hit = true;
}

static bool same_str(const char *want, const char *got, size_t got_len) {
        return strlen(want) == got_len && memcmp(want, got, got_len) == 0;
}

static bool filter_match(const entry_filter *f, const uint8_t *entry, size_t n) {
        proto_entry_fields fl;
        struct match_ctx m = { .digest = f->digest, .len = f->digest_len };
        if (proto_entry_scan(entry, n, &fl, f->digest_len ? match_value : NULL, &m) < 0)
                return false;
        if (f->digest_len && !m.hit &&
            !(fl.digest_len == f->digest_len && memcmp(fl.digest, f->digest, f->digest_len) == 0))
                return false;
        if (f->principal && !same_str(f->principal, fl.principal, fl.principal_len))
                return false;
        if (f->keyid && !same_str(f->keyid, fl.keyid, fl.keyid_len))
                return false;
        if (f->since_us && fl.time_us < f->since_us)
                return false;
        if (f->until_us && fl.time_us > f->until_us)
                return false;
        return true;
}

/* Candidates of a filter from the index, FIND_BATCH at a time, inside the
 * seq window [lo, hi); then every seq of the window the index did not hold
 * yet when the request came (the batches queued for its indexer: a group
 * commit or two), matched like the rest. */
typedef struct candidates {
        uint64_t seqs[FIND_BATCH];
        size_t n, i;
        uint64_t lo, hi;         /* the indexed part still to ask: [lo, min(hi, indexed)) */
        uint64_t indexed;        /* index_size() at the request */
        uint64_t tail;           /* next seq of the unindexed tail [indexed, hi) */
        bool end;                /* the index has no more */
} candidates;

/* The next candidate seq: 1, 0 when there are no more, or -EIO. */
static int next_candidate(candidates *c, const entry_filter *f, agent_index *x, uint64_t *ret) {
        if (c->i == c->n && !c->end) {
                uint64_t to = c->hi < c->indexed ? c->hi : c->indexed;
                c->n = c->i = 0;
                if (c->lo < to) {
                        index_query q = { .digest = f->digest_len ? f->digest : NULL, .digest_len = f->digest_len,
                                          .principal = f->principal, .keyid = f->keyid, .from = c->lo, .to = to };
                        int r = index_query_seqs(x, &q, c->seqs, FIND_BATCH, &c->n);
                        if (r < 0)
                                return r;
                }
                c->end = c->n < FIND_BATCH;
                if (c->n)
                        c->lo = c->seqs[c->n - 1] + 1;
        }
        if (c->i < c->n) {
                *ret = c->seqs[c->i++];
                return 1;
        }
        if (c->tail < c->hi) {
                *ret = c->tail++;
                return 1;
        }
        return 0;
}

/* Puts back the candidate last returned (for the next frame). */
static void unget_candidate(candidates *c, uint64_t seq) {
        if (c->i > 0 && c->seqs[c->i - 1] == seq)
                c->i--;
        else
                c->tail = seq;
}

/* The seq window of a filter inside [from, to) (to <= committed). */
static void filter_window(const entry_filter *f, agent_index *x, uint64_t from, uint64_t to, candidates *c) {
        uint64_t lo = 0, hi = to;
        if (f->since_us || f->until_us)
                index_time_window(x, f->since_us, f->until_us, &lo, &hi);
        c->indexed = index_size(x);
        c->lo = lo > from ? lo : from;
        /* The time window covers the indexed entries only: the tail's times
         * are checked one by one. */
        c->hi = hi < to ? hi : to;
        if (hi >= c->indexed)
                c->hi = to;
        c->tail = c->indexed > c->lo ? c->indexed : c->lo;
        c->n = c->i = 0;
        c->end = false;
}

/* ---- Export ---- */

typedef struct export_stream {
        server_stream base;
        agent_audit *audit;
        agent_logreader *reader;
        uint64_t next, to;       /* next seq to send; last seq (inclusive) */
        uint8_t *first;          /* sparse: the checkpoint frame, sent first */
        size_t first_len;
        uint8_t *final;          /* the done frame, packed up front */
        size_t final_len;
        bool sparse;             /* filtered: matching entries, each with its proof */
        uint64_t size;           /* the checkpoint's tree size */
        agent_index *x;
        entry_filter filter;
        candidates cands;
} export_stream;

static void export_free(server_stream *s) {
        export_stream *e = (export_stream *) s;
        logreader_free(e->reader);
        filter_done(&e->filter);
        free(e->first);
        free(e->final);
        free(e);
        live_streams--;
}

/* Bytes an inclusion proof of n hashes adds to a frame. */
static size_t proof_cost(size_t n) {
        return n * (PROTO_MERKLE_HASH_LEN + 2) + 1 + 3;
}

#define MAX_LEAVES (FRAME_BUDGET / 8)
/* Leaves of a sparse frame: each comes with a proof of ~20-40 hashes, so
 * fewer fit under FRAME_BUDGET anyway. */
#define MAX_SPARSE 128u

/* A frame of a sparse export: the next matching entries with their
 * inclusion proofs; bounded work (4 * FIND_BATCH entries examined). */
static int export_next_sparse(export_stream *e, uint8_t *arena, ProtobufCBinaryData *leaves,
                              Provsign__ExportResponse *er) {
        /* Main thread only, packed by the caller before the next frame of any stream. */
        static uint8_t hashes[MAX_SPARSE][PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        static ProtobufCBinaryData hl[MAX_SPARSE][PROTO_MERKLE_MAX_PROOF];
        static Provsign__InclusionProof proofs[MAX_SPARSE], *pp[MAX_SPARSE];
        size_t used = 0, n = 0;
        int r = 0;
        bool more = true;
        for (unsigned examined = 0; examined < 4 * FIND_BATCH && n < MAX_SPARSE; examined++) {
                uint64_t seq;
                r = next_candidate(&e->cands, &e->filter, e->x, &seq);
                if (r <= 0) {
                        more = r < 0;
                        break;
                }
                const uint8_t *entry;
                size_t len, np;
                r = logreader_get(e->reader, seq, &entry, &len);
                if (r < 0)
                        break;
                if (!filter_match(&e->filter, entry, len))
                        continue;
                r = audit_inclusion_proof(e->audit, seq, e->size, hashes[n], &np);
                if (r < 0)
                        break;
                if (used + leaf_cost(len) + proof_cost(np) > FRAME_BUDGET) {
                        unget_candidate(&e->cands, seq); /* for the next frame */
                        break;
                }
                memcpy(arena + used, entry, len);
                leaves[n] = (ProtobufCBinaryData){ .len = len, .data = arena + used };
                used += len + proof_cost(np);
                provsign__inclusion_proof__init(&proofs[n]);
                for (size_t i = 0; i < np; i++)
                        hl[n][i] = (ProtobufCBinaryData){ .len = PROTO_MERKLE_HASH_LEN, .data = hashes[n][i] };
                proofs[n].hashes = hl[n];
                proofs[n].n_hashes = np;
                pp[n] = &proofs[n];
                n++;
        }
        if (r < 0)
                return r;
        er->sparse = true;
        er->leaves = leaves;
        er->n_leaves = n;
        er->proofs = pp;
        er->n_proofs = n;
        if (!more)
                e->next = e->to + 1; /* the done frame next */
        return 0;
}

static int export_next(server_stream *s, uint8_t **ret, size_t *ret_len, bool *ret_last) {
        export_stream *e = (export_stream *) s;
        if (e->first) {
                *ret = e->first;
                *ret_len = e->first_len;
                e->first = NULL;
                *ret_last = false;
                return 0;
        }
        if (e->next > e->to) {
                *ret = e->final;
                *ret_len = e->final_len;
                e->final = NULL;
                *ret_last = true;
                return 0;
        }
        ProtobufCBinaryData leaves[MAX_LEAVES];
        uint8_t *arena = malloc(FRAME_BUDGET);
        if (!arena)
                return -ENOMEM;
        Provsign__ExportResponse er = PROVSIGN__EXPORT_RESPONSE__INIT;
        int r = 0;
        if (e->sparse) {
                er.first_seq = e->cands.lo;
                r = export_next_sparse(e, arena, leaves, &er);
        } else {
                size_t used = 0, n = 0;
                er.first_seq = e->next;
                while (e->next <= e->to && n < MAX_LEAVES) {
                        const uint8_t *entry;
                        size_t len;
                        r = logreader_get(e->reader, e->next, &entry, &len);
                        if (r < 0)
                                break;
                        if (used + leaf_cost(len) > FRAME_BUDGET) {
                                if (n == 0)
                                        r = -EMSGSIZE;
                                break;
                        }
                        memcpy(arena + used, entry, len);
                        leaves[n++] = (ProtobufCBinaryData){ .len = len, .data = arena + used };
                        used += len;
                        e->next++;
                }
                er.leaves = leaves;
                er.n_leaves = n;
        }
        if (r >= 0) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                resp.body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
                resp.export = &er;
                r = pack(s, &resp, ret, ret_len);
                *ret_last = false;
        } else
                log_error("export: cannot read log entry %" PRIu64 ": %s", e->next, strerror(-r));
        free(arena);
        return r;
}

static ProtobufCBinaryData *hash_list(uint8_t h[][32], size_t n, ProtobufCBinaryData *out) {
        for (size_t i = 0; i < n; i++)
                out[i] = (ProtobufCBinaryData){ .len = 32, .data = h[i] };
        return out;
}

bool export_handle_export(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__ExportRequest *x = req->export;
        char *note = NULL;
        uint64_t size = 0;
        uint8_t cons[PROTO_MERKLE_MAX_PROOF][32], left[PROTO_MERKLE_MAX_PROOF][32], right[PROTO_MERKLE_MAX_PROOF][32];
        ProtobufCBinaryData hc[PROTO_MERKLE_MAX_PROOF], hl[PROTO_MERKLE_MAX_PROOF], hr[PROTO_MERKLE_MAX_PROOF];
        size_t nc = 0, nl = 0, nr = 0;
        export_stream *e = NULL;

        if (live_streams >= EXPORT_MAX_STREAMS) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE, "%u exports or finds are running; try again later",
                       live_streams);
                return false;
        }
        e = calloc(1, sizeof *e);
        if (!e) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "export failed: %s", strerror(ENOMEM));
                return false;
        }
        const char *why = NULL;
        int r = filter_init(&e->filter, &x->digest, x->principal, x->keyid, x->since_us, x->until_us, &why);
        if (r == -EINVAL) {
                free(e);
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT, "%s", why);
                return false;
        }
        if (r < 0)
                goto fail;
        e->sparse = filter_any(&e->filter);
        e->base.request_id = server_conn_request_id(c);
        r = audit_checkpoint(a->audit, x->previous_size, &note, &size, cons, &nc);
        if (r == -EINVAL) {
                filter_done(&e->filter);
                free(e);
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                       "previous_size %" PRIu64 " is beyond the log's %" PRIu64 " entries", x->previous_size, size);
                return false;
        }
        if (r < 0)
                goto fail;
        uint64_t to = x->to_seq ? x->to_seq : size - 1;
        if (size == 0 || x->from_seq >= size || to >= size || x->from_seq > to) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                       "entries %" PRIu64 "..%" PRIu64 " are not in the log (it has %" PRIu64 " committed entries)",
                       x->from_seq, to, size);
                filter_done(&e->filter);
                free(e);
                free(note);
                return false;
        }
        if (!e->sparse)
                r = audit_range_proof(a->audit, x->from_seq, to + 1, size, left, &nl, right, &nr);
        if (r < 0)
                goto fail;
        e->audit = a->audit;
        e->x = audit_index(a->audit);
        e->size = size;
        r = logreader_new(audit_dir_fd(a->audit), e->x, &e->reader);
        if (r < 0)
                goto fail;
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__ExportResponse er = PROVSIGN__EXPORT_RESPONSE__INIT;
        resp.body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
        resp.export = &er;
        er.checkpoint = note;
        er.tree_size = size;
        er.from_size = x->previous_size;
        er.consistency_proof = hash_list(cons, nc, hc);
        er.n_consistency_proof = nc;
        if (e->sparse) {
                /* The checkpoint first, then the entries, then an empty done frame. */
                er.sparse = true;
                er.first_seq = x->from_seq;
                r = pack(&e->base, &resp, &e->first, &e->first_len);
                Provsign__ExportResponse done = PROVSIGN__EXPORT_RESPONSE__INIT;
                done.sparse = true;
                done.done = true;
                done.first_seq = to + 1;
                resp.export = &done;
                if (r >= 0)
                        r = pack(&e->base, &resp, &e->final, &e->final_len);
                filter_window(&e->filter, e->x, x->from_seq, to + 1, &e->cands);
        } else {
                er.first_seq = to + 1;
                er.done = true;
                er.left = hash_list(left, nl, hl);
                er.n_left = nl;
                er.right = hash_list(right, nr, hr);
                er.n_right = nr;
                r = pack(&e->base, &resp, &e->final, &e->final_len);
        }
        if (r < 0)
                goto fail;
        free(note);
        e->next = x->from_seq;
        e->to = to;
        e->base.next = export_next;
        e->base.free = export_free;
        live_streams++;
        log_info("%sexport of entries %" PRIu64 "..%" PRIu64 " (checkpoint %" PRIu64 ") for uid %u",
                 e->sparse ? "filtered " : "", x->from_seq, to, size, (unsigned) server_conn_caller(c)->uid);
        server_stream_start(a, c, &e->base);
        return false;
fail:
        logreader_free(e->reader);
        filter_done(&e->filter);
        free(e->first);
        free(e->final);
        free(e);
        free(note);
        server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "export failed: %s", strerror(-r));
        return false;
}

/* ---- Find ---- */

typedef struct find_stream {
        server_stream base;
        agent_logreader *reader;
        agent_index *x;
        entry_filter filter;
        candidates cands;
        uint64_t scanned;
} find_stream;

static void find_free(server_stream *s) {
        find_stream *f = (find_stream *) s;
        logreader_free(f->reader);
        filter_done(&f->filter);
        free(f);
        live_streams--;
}

static int find_next(server_stream *s, uint8_t **ret, size_t *ret_len, bool *ret_last) {
        find_stream *f = (find_stream *) s;
        ProtobufCBinaryData leaves[FRAME_BUDGET / 8];
        uint8_t *arena = malloc(FRAME_BUDGET);
        if (!arena)
                return -ENOMEM;
        size_t used = 0, n = 0;
        int r = 0;
        bool more = true;
        /* Bounded work per frame: at most 4 * FIND_BATCH entries examined. */
        for (unsigned examined = 0; examined < 4 * FIND_BATCH && n < sizeof leaves / sizeof leaves[0]; examined++) {
                uint64_t seq;
                r = next_candidate(&f->cands, &f->filter, f->x, &seq);
                if (r <= 0) {
                        more = r < 0;
                        break;
                }
                const uint8_t *entry;
                size_t len;
                r = logreader_get(f->reader, seq, &entry, &len);
                if (r < 0)
                        break;
                f->scanned++;
                if (!filter_match(&f->filter, entry, len))
                        continue;
                if (used + leaf_cost(len) > FRAME_BUDGET) {
                        /* Keep it for the next frame. */
                        unget_candidate(&f->cands, seq);
                        f->scanned--;
                        break;
                }
                memcpy(arena + used, entry, len);
                leaves[n++] = (ProtobufCBinaryData){ .len = len, .data = arena + used };
                used += len;
        }
        if (r >= 0) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                Provsign__FindResponse fr = PROVSIGN__FIND_RESPONSE__INIT;
                fr.leaves = leaves;
                fr.n_leaves = n;
                fr.done = !more;
                fr.scanned = f->scanned;
                resp.body_case = PROVSIGN__RESPONSE__BODY_FIND;
                resp.find = &fr;
                r = pack(s, &resp, ret, ret_len);
                *ret_last = !more;
        } else
                log_error("find: cannot read the log: %s", strerror(-r));
        free(arena);
        return r;
}

bool export_handle_find(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        const Provsign__FindRequest *q = req->find;
        if (live_streams >= EXPORT_MAX_STREAMS) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__UNAVAILABLE, "%u exports or finds are running; try again later",
                       live_streams);
                return false;
        }
        if (!q->digest.len && !q->principal[0] && !q->keyid[0]) {
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT,
                                "find needs a digest, a principal or a key id");
                return false;
        }
        find_stream *f = calloc(1, sizeof *f);
        const char *why = NULL;
        int r = f ? filter_init(&f->filter, &q->digest, q->principal, q->keyid, q->since_us, q->until_us, &why)
                  : -ENOMEM;
        if (r == -EINVAL) {
                free(f);
                dispatch_refuse(a, c, h, PROVSIGN__STATUS__INVALID_ARGUMENT, "%s", why);
                return false;
        }
        if (r < 0)
                goto fail;
        f->x = audit_index(a->audit);
        filter_window(&f->filter, f->x, 0, audit_committed(a->audit), &f->cands);
        r = logreader_new(audit_dir_fd(a->audit), f->x, &f->reader);
        if (r < 0) {
                filter_done(&f->filter);
                goto fail;
        }
        f->base.next = find_next;
        f->base.free = find_free;
        f->base.request_id = server_conn_request_id(c);
        live_streams++;
        server_stream_start(a, c, &f->base);
        return false;
fail:
        free(f);
        server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "find failed: %s", strerror(-r));
        return false;
}
