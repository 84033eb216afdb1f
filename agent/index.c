/* In-memory indexes over the audit log and a reader of entries by seq
 * (see index.h). Everything allocated here is freed by index_free() /
 * logreader_free(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "index.h"
#include "record.h"

#define MAX_PRINCIPAL 64u

typedef struct sample {
        uint64_t seg;
        uint64_t off;
        int64_t time_us;
} sample;

typedef struct slot {
        uint64_t key;
        uint64_t seq1; /* seq + 1; 0 = empty */
} slot;

typedef struct principal_list {
        char name[MAX_PRINCIPAL + 1];
        uint64_t *seqs;
        size_t n, cap;
} principal_list;

struct agent_index {
        pthread_rwlock_t lock;
        uint64_t size;             /* entries added */
        sample *samples;           /* samples[i] = entry i * INDEX_STRIDE */
        size_t n_samples, cap_samples;
        slot *slots;               /* power of two */
        size_t n_slots, used_slots;
        principal_list *principals;
        size_t n_principals, cap_principals;
};

int index_new(agent_index **ret) {
        agent_index *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        pthread_rwlock_init(&x->lock, NULL);
        *ret = x;
        return 0;
}

void index_free(agent_index *x) {
        if (!x)
                return;
        for (size_t i = 0; i < x->n_principals; i++)
                free(x->principals[i].seqs);
        free(x->principals);
        free(x->slots);
        free(x->samples);
        pthread_rwlock_destroy(&x->lock);
        free(x);
}

/* ---- Reading entries without unpacking them ---- */

static int get_varint(proto_cursor *c, uint64_t *ret) {
        uint64_t v = 0;
        for (size_t i = 0; i < 10; i++) {
                if (c->len == 0)
                        return -EBADMSG;
                uint8_t b = *c->p++;
                c->len--;
                v |= (uint64_t) (b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

/* Next field: *field, *wire; for LEN fields, *data and *len borrow the bytes,
 * for varints *v. Skips 64- and 32-bit fields' bytes. */
static int next_field(proto_cursor *c, uint32_t *field, uint32_t *wire, uint64_t *v, const uint8_t **data,
                      size_t *len) {
        uint64_t tag;
        if (get_varint(c, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
                return -EBADMSG;
        *field = (uint32_t) (tag >> 3);
        *wire = (uint32_t) (tag & 7);
        switch (*wire) {
        case 0:
                return get_varint(c, v);
        case 1:
                return proto_cursor_get_bytes(c, 8, data);
        case 5:
                return proto_cursor_get_bytes(c, 4, data);
        case 2: {
                uint64_t l;
                if (get_varint(c, &l) < 0 || l > c->len)
                        return -EBADMSG;
                *len = (size_t) l;
                return proto_cursor_get_bytes(c, (size_t) l, data);
        }
        default:
                return -EBADMSG;
        }
}

int index_scan_entry(const uint8_t *p, size_t n, index_fields *f,
                     void (*on_value)(void *ctx, const uint8_t *v, size_t len), void *ctx) {
        proto_cursor c = proto_cursor_make(p, n);
        memset(f, 0, sizeof *f);
        while (c.len > 0) {
                uint32_t field, wire;
                uint64_t v = 0;
                const uint8_t *d = NULL;
                size_t l = 0;
                if (next_field(&c, &field, &wire, &v, &d, &l) < 0)
                        return -EBADMSG;
                if (field == 1 && wire == 0)
                        f->seq = v;
                else if (field == 2 && wire == 0)
                        f->time_us = (int64_t) v;
                else if (field == 5 && wire == 2) {
                        f->principal = d;
                        f->principal_len = l;
                } else if (field == 8 && wire == 2) {
                        f->digest = d;
                        f->digest_len = l;
                } else if (field == 10 && wire == 2 && on_value) {
                        proto_cursor a = proto_cursor_make(d, l);
                        while (a.len > 0) {
                                uint32_t af, aw;
                                uint64_t av;
                                const uint8_t *ad = NULL;
                                size_t al = 0;
                                if (next_field(&a, &af, &aw, &av, &ad, &al) < 0)
                                        return -EBADMSG;
                                if (af == 2 && aw == 2)
                                        on_value(ctx, ad, al);
                        }
                }
        }
        return 0;
}

static int hexval(uint8_t ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        return -1;
}

size_t index_digest_value(const uint8_t *v, size_t len, uint8_t out[48]) {
        size_t want;
        if (len == 7 + 64 && memcmp(v, "sha256:", 7) == 0)
                want = 32;
        else if (len == 7 + 96 && memcmp(v, "sha384:", 7) == 0)
                want = 48;
        else
                return 0;
        for (size_t i = 0; i < want; i++) {
                int hi = hexval(v[7 + 2 * i]), lo = hexval(v[8 + 2 * i]);
                if (hi < 0 || lo < 0)
                        return 0;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return want;
}

/* ---- Building ---- */

static uint64_t key_of(const uint8_t *d) {
        uint64_t k;
        memcpy(&k, d, 8);
        return k;
}

/* Fibonacci hashing: the top bits of key * 2^64/phi (keys may be
 * anything an annotation says, not only random digest bytes). */
static size_t slot_hash(uint64_t key, size_t n_slots) {
        unsigned bits = (unsigned) __builtin_ctzll((unsigned long long) n_slots);
        return (size_t) ((key * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - bits));
}

static int slots_grow(agent_index *x) {
        size_t n = x->n_slots ? x->n_slots * 2 : 1024;
        slot *s = calloc(n, sizeof *s);
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < x->n_slots; i++) {
                if (!x->slots[i].seq1)
                        continue;
                size_t h = slot_hash(x->slots[i].key, n);
                while (s[h].seq1)
                        h = (h + 1) & (n - 1);
                s[h] = x->slots[i];
        }
        free(x->slots);
        x->slots = s;
        x->n_slots = n;
        return 0;
}

static int add_digest(agent_index *x, const uint8_t *d, uint64_t seq) {
        if ((x->used_slots + 1) * 4 > x->n_slots * 3) {
                int r = slots_grow(x);
                if (r < 0)
                        return r;
        }
        uint64_t key = key_of(d);
        size_t h = slot_hash(key, x->n_slots);
        while (x->slots[h].seq1) {
                if (x->slots[h].key == key && x->slots[h].seq1 == seq + 1)
                        return 0; /* the same entry again (digest = an annotation) */
                h = (h + 1) & (x->n_slots - 1);
        }
        x->slots[h] = (slot){ .key = key, .seq1 = seq + 1 };
        x->used_slots++;
        return 0;
}

static int add_principal(agent_index *x, const uint8_t *name, size_t len, uint64_t seq) {
        if (len == 0 || len > MAX_PRINCIPAL)
                return 0;
        principal_list *pl = NULL;
        for (size_t i = 0; i < x->n_principals && !pl; i++)
                if (strlen(x->principals[i].name) == len && memcmp(x->principals[i].name, name, len) == 0)
                        pl = &x->principals[i];
        if (!pl) {
                if (x->n_principals == x->cap_principals) {
                        size_t cap = x->cap_principals ? x->cap_principals * 2 : 8;
                        principal_list *p = realloc(x->principals, cap * sizeof *p);
                        if (!p)
                                return -ENOMEM;
                        x->principals = p;
                        x->cap_principals = cap;
                }
                pl = &x->principals[x->n_principals++];
                memset(pl, 0, sizeof *pl);
                memcpy(pl->name, name, len);
        }
        if (pl->n == pl->cap) {
                size_t cap = pl->cap ? pl->cap * 2 : 64;
                uint64_t *s = realloc(pl->seqs, cap * sizeof *s);
                if (!s)
                        return -ENOMEM;
                pl->seqs = s;
                pl->cap = cap;
        }
        pl->seqs[pl->n++] = seq;
        return 0;
}

struct value_ctx {
        agent_index *x;
        uint64_t seq;
        int r;
};

static void on_annotation_value(void *ctx, const uint8_t *v, size_t len) {
        struct value_ctx *vc = ctx;
        uint8_t d[48];
        if (vc->r >= 0 && index_digest_value(v, len, d) > 0)
                vc->r = add_digest(vc->x, d, vc->seq);
}

static int add_locked(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t seq, const uint8_t *entry,
                      size_t n) {
        if (seq != x->size)
                return -EINVAL;
        index_fields f;
        struct value_ctx vc = { .x = x, .seq = seq, .r = 0 };
        bool parsed = index_scan_entry(entry, n, &f, on_annotation_value, &vc) == 0;
        if (vc.r < 0)
                return vc.r;
        if (seq % INDEX_STRIDE == 0) {
                if (x->n_samples == x->cap_samples) {
                        size_t cap = x->cap_samples ? x->cap_samples * 2 : 1024;
                        sample *s = realloc(x->samples, cap * sizeof *s);
                        if (!s)
                                return -ENOMEM;
                        x->samples = s;
                        x->cap_samples = cap;
                }
                x->samples[x->n_samples++] = (sample){ .seg = seg_first, .off = off,
                                                       .time_us = parsed ? f.time_us : 0 };
        }
        if (parsed) {
                int r = 0;
                if (f.digest_len >= 8)
                        r = add_digest(x, f.digest, seq);
                if (r >= 0)
                        r = add_principal(x, f.principal, f.principal_len, seq);
                if (r < 0)
                        return r;
        }
        x->size++;
        return 0;
}

int index_add(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t seq, const uint8_t *entry, size_t n) {
        pthread_rwlock_wrlock(&x->lock);
        int r = add_locked(x, seg_first, off, seq, entry, n);
        pthread_rwlock_unlock(&x->lock);
        return r;
}

int index_add_records(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t first_seq, const uint8_t *buf,
                      size_t len) {
        proto_cursor c = proto_cursor_make(buf, len);
        int r = 0;
        pthread_rwlock_wrlock(&x->lock);
        for (uint64_t seq = first_seq; r >= 0; seq++) {
                size_t at = len - c.len;
                const uint8_t *entry;
                size_t n;
                r = proto_record_next(&c, &entry, &n);
                if (r == -ENODATA) {
                        r = 0;
                        break;
                }
                if (r >= 0)
                        r = add_locked(x, seg_first, off + at, seq, entry, n);
        }
        pthread_rwlock_unlock(&x->lock);
        return r;
}

/* ---- Queries ---- */

uint64_t index_size(agent_index *x) {
        pthread_rwlock_rdlock(&x->lock);
        uint64_t n = x->size;
        pthread_rwlock_unlock(&x->lock);
        return n;
}

int index_locate(agent_index *x, uint64_t seq, uint64_t *ret_seq, uint64_t *ret_seg, uint64_t *ret_off) {
        int r = -ENOENT;
        pthread_rwlock_rdlock(&x->lock);
        if (seq < x->size) {
                size_t i = (size_t) (seq / INDEX_STRIDE);
                *ret_seq = (uint64_t) i * INDEX_STRIDE;
                *ret_seg = x->samples[i].seg;
                *ret_off = x->samples[i].off;
                r = 0;
        }
        pthread_rwlock_unlock(&x->lock);
        return r;
}

void index_time_window(agent_index *x, int64_t since_us, int64_t until_us, uint64_t *ret_lo, uint64_t *ret_hi) {
        pthread_rwlock_rdlock(&x->lock);
        uint64_t lo = 0, hi = x->size;
        size_t n = x->n_samples;
        if (since_us > 0) {
                /* The last sample earlier than since: entries before it are earlier still. */
                size_t a = 0, b = n; /* first sample with time >= since */
                while (a < b) {
                        size_t m = a + (b - a) / 2;
                        if (x->samples[m].time_us < since_us)
                                a = m + 1;
                        else
                                b = m;
                }
                lo = a > 0 ? (uint64_t) (a - 1) * INDEX_STRIDE : 0;
        }
        if (until_us > 0) {
                size_t a = 0, b = n; /* first sample with time > until */
                while (a < b) {
                        size_t m = a + (b - a) / 2;
                        if (x->samples[m].time_us <= until_us)
                                a = m + 1;
                        else
                                b = m;
                }
                if (a < n && (uint64_t) a * INDEX_STRIDE < hi)
                        hi = (uint64_t) a * INDEX_STRIDE;
        }
        pthread_rwlock_unlock(&x->lock);
        *ret_lo = lo;
        *ret_hi = hi;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

int index_find_digest(agent_index *x, const uint8_t *digest, size_t n, uint64_t **ret, size_t *ret_n) {
        if (n < 8)
                return -EINVAL;
        uint64_t key = key_of(digest), *out = NULL;
        size_t cnt = 0, cap = 0;
        int r = 0;
        pthread_rwlock_rdlock(&x->lock);
        if (x->n_slots) {
                for (size_t h = slot_hash(key, x->n_slots); x->slots[h].seq1; h = (h + 1) & (x->n_slots - 1)) {
                        if (x->slots[h].key != key)
                                continue;
                        if (cnt == cap) {
                                size_t nc = cap ? cap * 2 : 16;
                                uint64_t *p = realloc(out, nc * sizeof *p);
                                if (!p) {
                                        r = -ENOMEM;
                                        break;
                                }
                                out = p;
                                cap = nc;
                        }
                        out[cnt++] = x->slots[h].seq1 - 1;
                }
        }
        pthread_rwlock_unlock(&x->lock);
        if (r >= 0 && !out && !(out = malloc(sizeof *out)))
                r = -ENOMEM;
        if (r < 0) {
                free(out);
                return r;
        }
        qsort(out, cnt, sizeof *out, cmp_u64);
        *ret = out;
        *ret_n = cnt;
        return 0;
}

void index_principal_seqs(agent_index *x, const char *principal, uint64_t from, uint64_t to, uint64_t *out,
                          size_t cap, size_t *ret_n) {
        size_t cnt = 0;
        pthread_rwlock_rdlock(&x->lock);
        for (size_t i = 0; i < x->n_principals; i++) {
                principal_list *pl = &x->principals[i];
                if (strcmp(pl->name, principal) != 0)
                        continue;
                size_t a = 0, b = pl->n; /* first >= from */
                while (a < b) {
                        size_t m = a + (b - a) / 2;
                        if (pl->seqs[m] < from)
                                a = m + 1;
                        else
                                b = m;
                }
                for (; a < pl->n && cnt < cap && pl->seqs[a] < to; a++)
                        out[cnt++] = pl->seqs[a];
                break;
        }
        pthread_rwlock_unlock(&x->lock);
        *ret_n = cnt;
}

/* ---- Reading entries back ---- */

#define READ_BUF (PROTO_RECORD_MAX_ENTRY * 2u)

struct agent_logreader {
        int dir_fd;
        agent_index *x;
        int fd;              /* segment seg_first, or -1 */
        uint64_t seg_first;
        uint64_t next_seq;   /* the entry whose record starts at off */
        uint64_t off;
        uint8_t *buf;        /* file bytes [buf_off, buf_off + buf_len) */
        uint64_t buf_off;
        size_t buf_len;
};

int logreader_new(int dir_fd, agent_index *x, agent_logreader **ret) {
        agent_logreader *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->buf = malloc(READ_BUF);
        if (!r->buf) {
                free(r);
                return -ENOMEM;
        }
        r->dir_fd = dir_fd;
        r->x = x;
        r->fd = -1;
        *ret = r;
        return 0;
}

void logreader_free(agent_logreader *r) {
        if (!r)
                return;
        if (r->fd >= 0)
                close(r->fd);
        free(r->buf);
        free(r);
}

static int open_seg(agent_logreader *r, uint64_t seg_first) {
        if (r->fd >= 0 && r->seg_first == seg_first)
                return 0;
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", seg_first);
        int fd = openat(r->dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (r->fd >= 0)
                close(r->fd);
        r->fd = fd;
        r->seg_first = seg_first;
        r->buf_len = 0;
        r->buf_off = 0;
        return 0;
}

/* Makes file bytes [off, off + need) available in buf. 1 when they are, 0
 * at a clean end of file (no byte at off), -EBADMSG when the file ends
 * inside them. */
static int ensure(agent_logreader *r, uint64_t off, size_t need) {
        if (off >= r->buf_off && off - r->buf_off <= r->buf_len && r->buf_len - (off - r->buf_off) >= need)
                return 1;
        size_t got = 0;
        while (got < READ_BUF) {
                ssize_t k = pread(r->fd, r->buf + got, READ_BUF - got, (off_t) (off + got));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t) k;
                if (got >= need)
                        break;
        }
        r->buf_off = off;
        r->buf_len = got;
        if (got == 0)
                return 0;
        return got >= need ? 1 : -EBADMSG;
}

int logreader_get(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n) {
        int k;
        if (r->fd < 0 || seq < r->next_seq || seq - r->next_seq >= 2 * INDEX_STRIDE) {
                uint64_t s, seg, off;
                k = index_locate(r->x, seq, &s, &seg, &off);
                if (k < 0)
                        return k;
                k = open_seg(r, seg);
                if (k < 0)
                        return k;
                r->next_seq = s;
                r->off = off;
        }
        for (;;) {
                k = ensure(r, r->off, PROTO_RECORD_HEADER);
                if (k == 0) {
                        /* End of this segment: the next one starts with next_seq. */
                        if (r->off == 0)
                                return -EBADMSG;
                        k = open_seg(r, r->next_seq);
                        if (k < 0)
                                return k;
                        r->off = 0;
                        continue;
                }
                if (k < 0)
                        return k;
                size_t len = proto_get_u32be(r->buf + (r->off - r->buf_off));
                size_t rec = proto_record_size(len);
                if (rec == 0)
                        return -EBADMSG;
                k = ensure(r, r->off, rec);
                if (k <= 0)
                        return -EBADMSG;
                proto_cursor c = proto_cursor_make(r->buf + (r->off - r->buf_off), rec);
                const uint8_t *entry;
                size_t n;
                if (proto_record_next(&c, &entry, &n) < 0)
                        return -EBADMSG;
                r->off += rec;
                if (r->next_seq++ == seq) {
                        index_fields f;
                        if (index_scan_entry(entry, n, &f, NULL, NULL) < 0 || f.seq != seq)
                                return -EBADMSG;
                        *ret = entry;
                        *ret_n = n;
                        return 0;
                }
        }
}
