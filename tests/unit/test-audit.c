/* agent/audit.c against a real SoftHSM2 token (the log key lives there):
 * records on disk, group commit, receipts, torn tails at every byte offset,
 * corruption in the middle, restart continuity. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "audit.h"
#include "config.h"
#include "merkle.h"
#include "note.h"
#include "shell.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"

static char dir[256];
static keys_store *store;
static agent_config cfg;

static int setup(void **state) {
        strcpy(dir, "/tmp/provsign-test-audit-XXXXXX");
        assert_non_null(mkdtemp(dir));
        test_sh("%s/tests/lib/make-token %s/tok audit-test", getenv("SRCDIR") ? getenv("SRCDIR") : ".", dir);
        char p[300], pin[64] = { 0 };
        snprintf(p, sizeof p, "%s/tok/softhsm2.conf", dir);
        setenv("SOFTHSM2_CONF", p, 1);
        snprintf(p, sizeof p, "%s/tok/pin", dir);
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        size_t n = fread(pin, 1, sizeof pin - 1, f);
        fclose(f);
        char *err = NULL;
        assert_int_equal(keys_store_open(MODULE, "audit-test", pin, n, &store, &err), 0);
        cfg.path = (char *) "test.conf";
        cfg.log_origin = (char *) "provsign.test/audit";
        return 0;
}

static int teardown(void **state) {
        keys_store_free(store);
        test_sh("rm -rf %s", dir);
        return 0;
}

static char state_dir[300];

static void fresh_state(const char *name) {
        snprintf(state_dir, sizeof state_dir, "%s/%s", dir, name);
        assert_int_equal(mkdir(state_dir, 0700), 0);
        cfg.state_dir = state_dir;
}

static agent_audit *open_ok(void) {
        agent_audit *a = NULL;
        char *err = NULL;
        int r = audit_open(&cfg, store, NULL, NULL, &a, &err);
        if (r < 0)
                fail_msg("audit_open: %s", err ? err : strerror(-r));
        return a;
}

static void wait_committed(agent_audit *a, uint64_t n) {
        for (int i = 0; i < 5000 && audit_committed(a) < n; i++)
                usleep(1000);
        assert_true(audit_committed(a) >= n);
}

static uint64_t append_sign(agent_audit *a, int i, uint8_t **leaf, size_t *leaf_len) {
        uint8_t digest[32] = { (uint8_t) i };
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__SIGN;
        e.principal = (char *) "ci";
        e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        e.digest.data = digest;
        e.digest.len = sizeof digest;
        uint64_t seq;
        assert_int_equal(audit_append(a, &e, &seq, leaf, leaf_len), 0);
        return seq;
}

/* Checks a receipt the way an offline verifier does. */
static void verify_receipt(agent_audit *a, const Provsign__Receipt *r) {
        const keys_key *lk = audit_log_key(a);
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(lk, &spki_len);
        char *body = NULL, *origin = NULL;
        assert_int_equal(proto_note_verify(r->checkpoint, strlen(r->checkpoint), "provsign.test/audit", spki, spki_len,
                                           &body),
                         0);
        uint64_t size;
        uint8_t root[32], leaf_hash[32];
        assert_int_equal(proto_checkpoint_parse(body, strlen(body), &origin, &size, root), 0);
        assert_string_equal(origin, "provsign.test/audit");
        assert_int_equal(size, r->tree_size);
        proto_merkle_leaf_hash(r->leaf.data, r->leaf.len, leaf_hash);
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][32];
        for (size_t i = 0; i < r->n_inclusion_proof; i++)
                memcpy(proof[i], r->inclusion_proof[i].data, 32);
        assert_int_equal(proto_merkle_verify_inclusion(leaf_hash, r->log_seq, r->tree_size,
                                                       (const uint8_t(*)[32]) proof, r->n_inclusion_proof, root),
                         0);
        free(body);
        free(origin);
}

struct appender {
        agent_audit *a;
        int base;
        uint64_t seqs[100];
};

static void *append_loop(void *arg) {
        struct appender *ap = arg;
        for (int i = 0; i < 100; i++) {
                uint8_t *leaf;
                size_t len;
                ap->seqs[i] = append_sign(ap->a, ap->base + i, &leaf, &len);
                free(leaf);
        }
        return NULL;
}

static void test_group_commit_and_receipts(void **state) {
        fresh_state("group");
        agent_audit *a = open_ok();
        uint64_t start = audit_committed(a); /* the log key's KEY_CREATE may be pending */
        pthread_t t[8];
        struct appender ap[8];
        for (int i = 0; i < 8; i++) {
                ap[i] = (struct appender){ .a = a, .base = i * 100 };
                assert_int_equal(pthread_create(&t[i], NULL, append_loop, &ap[i]), 0);
        }
        for (int i = 0; i < 8; i++)
                pthread_join(t[i], NULL);
        wait_committed(a, start + 800);
        /* 800 distinct sequence numbers */
        static bool seen[2000];
        memset(seen, 0, sizeof seen);
        for (int i = 0; i < 8; i++)
                for (int j = 0; j < 100; j++) {
                        assert_true(ap[i].seqs[j] < 2000);
                        assert_false(seen[ap[i].seqs[j]]);
                        seen[ap[i].seqs[j]] = true;
                }
        /* fewer syncs than entries: concurrent appends shared them */
        uint64_t syncs = audit_syncs(a);
        print_message("800 entries from 8 threads in %llu syncs\n", (unsigned long long) syncs);
        assert_true(syncs < 800);

        uint8_t *leaf;
        size_t len;
        uint64_t seq = append_sign(a, 999, &leaf, &len);
        wait_committed(a, seq + 1);
        Provsign__Receipt r;
        assert_int_equal(audit_receipt(a, seq, 1, leaf, len, &r), 0);
        verify_receipt(a, &r);
        audit_receipt_done(&r);
        /* a receipt for an entry not yet committed is refused */
        assert_int_equal(audit_receipt(a, seq + 1000, 1, leaf, len, &r), -EAGAIN);
        free(leaf);
        audit_close(a);
}

static off_t last_segment(char *path, size_t size) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "ls %s/log/*.seg | tail -1", state_dir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(path, (int) size, p));
        pclose(p);
        path[strcspn(path, "\n")] = '\0';
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        return st.st_size;
}

/* A fresh log under state dir `name` with `entries` sign entries, committed
 * and closed. Returns the last sequence number; *ret_len is the entry size
 * (all entries here have the same size). */
static uint64_t make_log(const char *name, int entries, size_t *ret_len) {
        fresh_state(name);
        agent_audit *a = open_ok();
        uint8_t *leaf;
        uint64_t seq = 0;
        for (int i = 0; i < entries; i++) {
                seq = append_sign(a, i, &leaf, ret_len);
                free(leaf);
        }
        wait_committed(a, seq + 1);
        audit_close(a);
        return seq;
}

/* Cut the last record at every byte offset: each start cuts the torn tail
 * back to the last whole record and the log continues from there. */
static void test_torn_tail_every_offset(void **state) {
        size_t len;
        uint64_t seq = make_log("torn", 3, &len);
        agent_audit *a;
        uint8_t *leaf;
        uint64_t n = seq + 1;

        char seg[512];
        off_t full = last_segment(seg, sizeof seg);
        char backup[600];
        snprintf(backup, sizeof backup, "%s.bak", seg);
        test_sh("cp %s %s", seg, backup);
        off_t rec = (off_t) (len + 8); /* the last record: same size as the others */
        for (off_t cut = full - rec + 1; cut < full; cut++) {
                test_sh("cp %s %s && truncate -s %lld %s", backup, seg, (long long) cut, seg);
                a = open_ok();
                /* the torn entry is gone; entries before it remain */
                assert_int_equal(audit_committed(a), n - 1);
                audit_close(a);
                struct stat st;
                assert_int_equal(stat(seg, &st), 0);
                assert_int_equal(st.st_size, full - rec);
        }
        /* after a repair, the log grows again from the cut */
        a = open_ok();
        uint64_t s2 = append_sign(a, 7, &leaf, &len);
        free(leaf);
        assert_int_equal(s2, n - 1);
        wait_committed(a, n);
        audit_close(a);
        a = open_ok();
        assert_int_equal(audit_committed(a), n);
        audit_close(a);
        unlink(backup);
}

/* What a crash can leave after the last whole record: zeros (a file
 * extended whose data never reached the disk), or a half-written group of
 * records. Both are cut; the entries before them stay. */
static void test_torn_tail_shapes(void **state) {
        size_t len;
        uint64_t seq = make_log("shapes", 3, &len);
        agent_audit *a;
        char seg[512];
        off_t full = last_segment(seg, sizeof seg);
        /* 64 zero bytes: a length of 0 is no record */
        test_sh("head -c 64 /dev/zero >> %s", seg);
        a = open_ok();
        assert_int_equal(audit_committed(a), seq + 1);
        audit_close(a);
        struct stat st;
        assert_int_equal(stat(seg, &st), 0);
        assert_int_equal(st.st_size, full);
        /* a plausible length, then garbage to the end */
        test_sh("printf '\\000\\000\\001\\000garbage' >> %s && head -c 300 /dev/urandom >> %s", seg, seg);
        a = open_ok();
        assert_int_equal(audit_committed(a), seq + 1);
        audit_close(a);
        assert_int_equal(stat(seg, &st), 0);
        assert_int_equal(st.st_size, full);
        /* garbage followed by a whole valid record is damage, not a tear */
        test_sh("tail -c %zu %s > %s.rec && head -c 10 /dev/zero >> %s && cat %s.rec >> %s && rm %s.rec", len + 8, seg, seg,
           seg, seg, seg, seg);
        agent_audit *bad = NULL;
        char *err = NULL;
        assert_int_equal(audit_open(&cfg, store, NULL, NULL, &bad, &err), -EBADMSG);
        assert_non_null(strstr(err, "corrupt audit log"));
        free(err);
}

/* A damaged record anywhere but the tail is corruption: refuse to start,
 * naming the file and the offset. */
static void test_corruption_refuses(void **state) {
        size_t len;
        (void) make_log("corrupt", 5, &len);
        char seg[512];
        last_segment(seg, sizeof seg);
        /* flip one byte inside the second record's entry */
        int fd = open(seg, O_RDWR);
        assert_true(fd >= 0);
        uint8_t hdr[4];
        assert_int_equal(pread(fd, hdr, 4, 0), 4);
        uint32_t first_len = (uint32_t) hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
        off_t second = 8 + first_len;
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, second + 6), 1);
        b ^= 0x40;
        assert_int_equal(pwrite(fd, &b, 1, second + 6), 1);
        close(fd);

        agent_audit *bad = NULL;
        char *err = NULL;
        assert_int_equal(audit_open(&cfg, store, NULL, NULL, &bad, &err), -EBADMSG);
        assert_null(bad);
        char want[700];
        snprintf(want, sizeof want, "%s: corrupt audit log at offset %lld", seg, (long long) second);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "CRC32C mismatch"));
        free(err);
}

static void test_requires_origin_and_safe_dir(void **state) {
        fresh_state("perm");
        agent_audit *a = NULL;
        char *err = NULL;
        cfg.log_origin = NULL;
        assert_int_equal(audit_open(&cfg, store, NULL, NULL, &a, &err), -EINVAL);
        assert_non_null(strstr(err, "log_origin is not set"));
        free(err);
        err = NULL;
        cfg.log_origin = (char *) "provsign.test/audit";
        assert_int_equal(chmod(state_dir, 0777), 0);
        assert_int_equal(audit_open(&cfg, store, NULL, NULL, &a, &err), -EPERM);
        assert_non_null(strstr(err, "world-writable"));
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_group_commit_and_receipts),
                cmocka_unit_test(test_torn_tail_every_offset),
                cmocka_unit_test(test_torn_tail_shapes),
                cmocka_unit_test(test_corruption_refuses),
                cmocka_unit_test(test_requires_origin_and_safe_dir),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
