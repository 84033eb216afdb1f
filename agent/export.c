/* Export, Find and Proof for the auditor role (export.h).
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

/* Refusals take the one shared path (rate-limited log, line and event). */
#define refuse dispatch_refuse_named

static int pack(Provsign__Response *resp, uint8_t **ret, size_t *ret_len) {
        resp->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp->status = PROVSIGN__STATUS__OK;
        return proto_frame_pack(&resp->base, ret, ret_len);
}

/* Bytes a leaf adds to a frame. */
static size_t leaf_cost(size_t n) {
        return n + 1 + 3; /* tag + length varint */
}

/* ---- Export ---- */

typedef struct export_stream {
        server_stream base;
        agent_logreader *reader;
        uint64_t next, to;       /* next seq to send; last seq (inclusive) */
        uint8_t *final;          /* the done frame, packed up front */
        size_t final_len;
} export_stream;

static void export_free(server_stream *s) {
        export_stream *e = (export_stream *) s;
        logreader_free(e->reader);
        free(e->final);
        free(e);
        live_streams--;
}

static int export_next(server_stream *s, uint8_t **ret, size_t *ret_len, bool *ret_last) {
        export_stream *e = (export_stream *) s;
        if (e->next > e->to) {
                *ret = e->final;
                *ret_len = e->final_len;
                e->final = NULL;
                *ret_last = true;
                return 0;
        }
        ProtobufCBinaryData leaves[FRAME_BUDGET / 8];
        uint8_t *arena = malloc(FRAME_BUDGET);
        if (!arena)
                return -ENOMEM;
        size_t used = 0, n = 0;
        uint64_t first = e->next;
        int r = 0;
        while (e->next <= e->to && n < sizeof leaves / sizeof leaves[0]) {
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
        if (r >= 0) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                Provsign__ExportResponse er = PROVSIGN__EXPORT_RESPONSE__INIT;
                er.first_seq = first;
                er.leaves = leaves;
                er.n_leaves = n;
                resp.body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
                resp.export = &er;
                r = pack(&resp, ret, ret_len);
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

bool export_handle_export(agent *a, agent_conn *c, const struct handler *h, Provsign__Request *req) {
        (void) h;
        const Provsign__ExportRequest *x = req->export;
        char *note = NULL;
        uint64_t size = 0;
        uint8_t cons[PROTO_MERKLE_MAX_PROOF][32], left[PROTO_MERKLE_MAX_PROOF][32], right[PROTO_MERKLE_MAX_PROOF][32];
        ProtobufCBinaryData hc[PROTO_MERKLE_MAX_PROOF], hl[PROTO_MERKLE_MAX_PROOF], hr[PROTO_MERKLE_MAX_PROOF];
        size_t nc = 0, nl = 0, nr = 0;
        export_stream *e = NULL;

        if (live_streams >= EXPORT_MAX_STREAMS) {
                refuse(a, c, "Export", PROVSIGN__STATUS__UNAVAILABLE, "%u exports or finds are running; try again later",
                       live_streams);
                return false;
        }
        int r = audit_checkpoint(a->audit, x->previous_size, &note, &size, cons, &nc);
        if (r == -EINVAL) {
                refuse(a, c, "Export", PROVSIGN__STATUS__INVALID_ARGUMENT,
                       "previous_size %" PRIu64 " is beyond the log's %" PRIu64 " entries", x->previous_size, size);
                return false;
        }
        if (r < 0)
                goto fail;
        uint64_t to = x->to_seq ? x->to_seq : size - 1;
        if (size == 0 || x->from_seq >= size || to >= size || x->from_seq > to) {
                refuse(a, c, "Export", PROVSIGN__STATUS__INVALID_ARGUMENT,
                       "entries %" PRIu64 "..%" PRIu64 " are not in the log (it has %" PRIu64 " committed entries)",
                       x->from_seq, to, size);
                free(note);
                return false;
        }
        r = audit_range_proof(a->audit, x->from_seq, to + 1, size, left, &nl, right, &nr);
        if (r < 0)
                goto fail;

        e = calloc(1, sizeof *e);
        if (!e) {
                r = -ENOMEM;
                goto fail;
        }
        r = logreader_new(audit_dir_fd(a->audit), audit_index(a->audit), &e->reader);
        if (r < 0)
                goto fail;
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__ExportResponse er = PROVSIGN__EXPORT_RESPONSE__INIT;
        er.first_seq = to + 1;
        er.done = true;
        er.checkpoint = note;
        er.tree_size = size;
        er.left = hash_list(left, nl, hl);
        er.n_left = nl;
        er.right = hash_list(right, nr, hr);
        er.n_right = nr;
        er.from_size = x->previous_size;
        er.consistency_proof = hash_list(cons, nc, hc);
        er.n_consistency_proof = nc;
        resp.body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
        resp.export = &er;
        r = pack(&resp, &e->final, &e->final_len);
        if (r < 0)
                goto fail;
        free(note);
        e->next = x->from_seq;
        e->to = to;
        e->base.next = export_next;
        e->base.free = export_free;
        live_streams++;
        log_info("export of entries %" PRIu64 "..%" PRIu64 " (checkpoint %" PRIu64 ") for uid %u",
                 x->from_seq, to, size, (unsigned) server_conn_caller(c)->uid);
        server_stream_start(a, c, &e->base);
        return false;
fail:
        if (e) {
                logreader_free(e->reader);
                free(e->final);
                free(e);
        }
        free(note);
        server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "export failed: %s", strerror(-r));
        return false;
}

/* ---- Find ---- */

typedef struct find_stream {
        server_stream base;
        agent_logreader *reader;
        uint8_t digest[48];
        size_t digest_len;
        char *principal;         /* NULL: any */
        int64_t since_us, until_us;
        uint64_t *cands;         /* digest mode: candidate seqs */
        size_t n_cands, i_cands;
        uint64_t lo, hi;         /* principal mode: next seq to ask the index for; end */
        uint64_t scanned;
        bool done;
} find_stream;

static void find_free(server_stream *s) {
        find_stream *f = (find_stream *) s;
        logreader_free(f->reader);
        free(f->principal);
        free(f->cands);
        free(f);
        live_streams--;
}

struct match_ctx {
        const uint8_t *digest;
        size_t len;
        bool hit;
};

static void match_value(void *ctx, const uint8_t *v, size_t len) {
        struct match_ctx *m = ctx;
        uint8_t d[48];
        size_t n = index_digest_value(v, len, d);
        if (n && n == m->len && memcmp(d, m->digest, n) == 0)
                m->hit = true;
}

static bool find_match(find_stream *f, const uint8_t *entry, size_t n) {
        index_fields fl;
        struct match_ctx m = { .digest = f->digest, .len = f->digest_len };
        if (index_scan_entry(entry, n, &fl, f->digest_len ? match_value : NULL, &m) < 0)
                return false;
        if (f->digest_len && !m.hit &&
            !(fl.digest_len == f->digest_len && memcmp(fl.digest, f->digest, f->digest_len) == 0))
                return false;
        if (f->principal &&
            (fl.principal_len != strlen(f->principal) || memcmp(fl.principal, f->principal, fl.principal_len) != 0))
                return false;
        if (f->since_us && fl.time_us < f->since_us)
                return false;
        if (f->until_us && fl.time_us > f->until_us)
                return false;
        return true;
}

/* The next candidate seq, or false when there are no more. */
static bool find_candidate(find_stream *f, agent_index *x, uint64_t *ret) {
        if (f->digest_len) {
                while (f->i_cands < f->n_cands) {
                        uint64_t s = f->cands[f->i_cands++];
                        if (s >= f->lo && s < f->hi) {
                                *ret = s;
                                return true;
                        }
                }
                return false;
        }
        if (f->i_cands == f->n_cands) {
                size_t got = 0;
                if (f->lo < f->hi)
                        index_principal_seqs(x, f->principal, f->lo, f->hi, f->cands, FIND_BATCH, &got);
                f->n_cands = got;
                f->i_cands = 0;
                if (got == 0)
                        return false;
                f->lo = f->cands[got - 1] + 1;
        }
        *ret = f->cands[f->i_cands++];
        return true;
}

typedef struct find_ctx_stream {
        find_stream f;
        agent_index *x;
} find_ctx_stream;

static int find_next(server_stream *s, uint8_t **ret, size_t *ret_len, bool *ret_last) {
        find_ctx_stream *fc = (find_ctx_stream *) s;
        find_stream *f = &fc->f;
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
                if (!find_candidate(f, fc->x, &seq)) {
                        more = false;
                        break;
                }
                const uint8_t *entry;
                size_t len;
                r = logreader_get(f->reader, seq, &entry, &len);
                if (r < 0)
                        break;
                f->scanned++;
                if (!find_match(f, entry, len))
                        continue;
                if (used + leaf_cost(len) > FRAME_BUDGET) {
                        /* Keep it for the next frame. */
                        f->i_cands--;
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
                r = pack(&resp, ret, ret_len);
                *ret_last = !more;
        } else
                log_error("find: cannot read the log: %s", strerror(-r));
        free(arena);
        return r;
}

bool export_handle_find(agent *a, agent_conn *c, const struct handler *h, Provsign__Request *req) {
        (void) h;
        const Provsign__FindRequest *q = req->find;
        if (live_streams >= EXPORT_MAX_STREAMS) {
                refuse(a, c, "Find", PROVSIGN__STATUS__UNAVAILABLE, "%u exports or finds are running; try again later",
                       live_streams);
                return false;
        }
        if (!q->digest.len && !q->principal[0]) {
                refuse(a, c, "Find", PROVSIGN__STATUS__INVALID_ARGUMENT, "find needs a digest or a principal");
                return false;
        }
        if (q->digest.len && q->digest.len != 32 && q->digest.len != 48) {
                refuse(a, c, "Find", PROVSIGN__STATUS__INVALID_ARGUMENT, "a digest is 32 (sha256) or 48 (sha384) bytes");
                return false;
        }
        if (q->since_us < 0 || q->until_us < 0 || (q->until_us && q->since_us > q->until_us)) {
                refuse(a, c, "Find", PROVSIGN__STATUS__INVALID_ARGUMENT, "invalid time window");
                return false;
        }
        agent_index *x = audit_index(a->audit);
        find_ctx_stream *fc = calloc(1, sizeof *fc);
        int r = -ENOMEM;
        if (!fc)
                goto fail;
        find_stream *f = &fc->f;
        fc->x = x;
        f->since_us = q->since_us;
        f->until_us = q->until_us;
        uint64_t committed = audit_committed(a->audit), lo, hi;
        index_time_window(x, q->since_us, q->until_us, &lo, &hi);
        f->lo = lo;
        f->hi = hi < committed ? hi : committed;
        if (q->principal[0] && !(f->principal = strdup(q->principal)))
                goto fail;
        if (q->digest.len) {
                memcpy(f->digest, q->digest.data, q->digest.len);
                f->digest_len = q->digest.len;
                r = index_find_digest(x, f->digest, f->digest_len, &f->cands, &f->n_cands);
        } else {
                f->cands = calloc(FIND_BATCH, sizeof *f->cands);
                r = f->cands ? 0 : -ENOMEM;
        }
        if (r >= 0)
                r = logreader_new(audit_dir_fd(a->audit), x, &f->reader);
        if (r < 0)
                goto fail;
        f->base.next = find_next;
        f->base.free = find_free;
        live_streams++;
        server_stream_start(a, c, &f->base);
        return false;
fail:
        if (fc) {
                logreader_free(fc->f.reader);
                free(fc->f.principal);
                free(fc->f.cands);
                free(fc);
        }
        server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "find failed: %s", strerror(-r));
        return false;
}

/* ---- Proof ---- */

bool export_handle_proof(agent *a, agent_conn *c, const struct handler *h, Provsign__Request *req) {
        (void) h;
        uint64_t seq = req->proof->seq, committed = audit_committed(a->audit);
        if (seq >= committed) {
                refuse(a, c, "Proof", PROVSIGN__STATUS__NOT_FOUND,
                       "entry %" PRIu64 " is not in the log (it has %" PRIu64 " committed entries)", seq, committed);
                return false;
        }
        agent_logreader *rd = NULL;
        const uint8_t *entry;
        size_t n;
        index_fields f;
        Provsign__Receipt receipt;
        int r = logreader_new(audit_dir_fd(a->audit), audit_index(a->audit), &rd);
        if (r >= 0)
                r = logreader_get(rd, seq, &entry, &n);
        if (r >= 0)
                r = index_scan_entry(entry, n, &f, NULL, NULL);
        if (r >= 0)
                r = audit_receipt(a->audit, seq, f.time_us, entry, n, &receipt);
        if (r < 0) {
                logreader_free(rd);
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "cannot prove entry %" PRIu64 ": %s", seq,
                             strerror(-r));
                return false;
        }
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        Provsign__ProofResponse pr = PROVSIGN__PROOF_RESPONSE__INIT;
        pr.receipt = &receipt;
        resp.body_case = PROVSIGN__RESPONSE__BODY_PROOF;
        resp.proof = &pr;
        server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        receipt.leaf.data = NULL; /* borrowed from the reader */
        audit_receipt_done(&receipt);
        logreader_free(rd);
        return false;
}
