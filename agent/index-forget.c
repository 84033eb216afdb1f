/* A purge's rows (index_forget): noted, then queued for the indexer (see
 * index-int.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "index-int.h"
#include "names.h"

static int forget_add(agent_index *x, uint64_t seq, bool digest, int64_t prefix) {
        if (x->n_forget == x->cap_forget) {
                size_t cap = x->cap_forget ? 2 * x->cap_forget : 1024;
                forget_row *p = realloc(x->forget, cap * sizeof *p);
                if (!p)
                        return -ENOMEM;
                x->forget = p;
                x->cap_forget = cap;
        }
        x->forget[x->n_forget++] = (forget_row){ .seq = seq, .prefix = prefix, .digest = digest };
        return 0;
}

struct forget_ctx {
        agent_index *x;
        int r;
};

static void on_forget_value(void *ctx, const char *v, size_t len) {
        struct forget_ctx *fc = ctx;
        uint8_t d[48];
        size_t n;
        int alg;
        int64_t prefix;
        if (fc->r >= 0 && proto_digest_spec_parse_n(v, len, &alg, d, &n) == 0) {
                memcpy(&prefix, d, sizeof prefix);
                fc->r = forget_add(fc->x, 0, true, prefix); /* seq set below */
        }
}

int index_forget(agent_index *x, const uint8_t *entry, size_t n) {
        proto_entry_fields f;
        size_t mark = x->n_forget;
        struct forget_ctx fc = { .x = x, .r = 0 };
        if (proto_entry_scan(entry, n, &f, on_forget_value, &fc) < 0) {
                x->n_forget = mark; /* indexed by position only: nothing to remove */
                return 0;
        }
        int64_t prefix = 0;
        if (fc.r >= 0 && f.digest_len >= 8) {
                memcpy(&prefix, f.digest, sizeof prefix);
                fc.r = forget_add(x, 0, true, prefix);
        }
        if (fc.r >= 0)
                fc.r = forget_add(x, 0, false, 0);
        if (fc.r < 0) {
                x->n_forget = mark;
                return fc.r;
        }
        for (size_t i = mark; i < x->n_forget; i++)
                x->forget[i].seq = f.seq;
        return 0;
}

void index_forget_drop(agent_index *x) {
        x->n_forget = 0;
}

int index_forget_commit(agent_index *x) {
        size_t len = x->n_forget * sizeof(forget_row);
        int r = 0;
        if (len == 0)
                return 0;
        pending_batch *b = malloc(sizeof *b + len);
        if (!b) {
                x->n_forget = 0;
                return -ENOMEM;
        }
        *b = (pending_batch){ .forget = true, .len = len };
        memcpy(b->data, x->forget, len);
        x->n_forget = 0;
        pthread_mutex_lock(&x->qlock);
        if (x->broken || !x->w || !x->thread_started) {
                /* Stopped (the next start does not bring the rows back:
                 * they stay until a rebuild, and find re-checks every
                 * candidate against the stub, which never matches); or no
                 * indexer thread, whose writes are the committer's. */
                r = -EIO;
        } else {
                index_enqueue(x, b);
                b = NULL;
        }
        pthread_mutex_unlock(&x->qlock);
        free(b);
        return r;
}
