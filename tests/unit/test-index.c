/* agent/index.c: the log's SQLite index over segment files written here
 * record by record (proto/record.h), as the agent writes them: open,
 * add, find, locate, catch up, and rebuild when the index is deleted,
 * corrupt, ahead of the log or another log's. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "index.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "record.h"
#include "shell.h"

#define PER_SEGMENT 100u

static char dir[256], logdir[300], path[300];
static bool variant; /* entries carry a message (longer records) */
static int dir_fd = -1;

/* Entry seq: principal p<seq % 3>, key k<seq % 2>, digest byte pattern
 * seq, time 1000 * seq, a key event every 50th, an annotation naming the
 * digest of seq + 1000 every 7th. */
static size_t make_entry(uint64_t seq, uint8_t *out, size_t cap) {
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        char principal[16], keyid[16], spec[80];
        uint8_t digest[32], other[32];
        memset(digest, 0, sizeof digest);
        memcpy(digest, &seq, sizeof seq);
        e.seq = seq;
        e.time_us = (int64_t) (1000000 + 1000 * seq);
        e.event = seq % 50 == 0 ? PROVSIGN__AUDIT_EVENT__KEY_CREATE : PROVSIGN__AUDIT_EVENT__SIGN;
        snprintf(principal, sizeof principal, "p%u", (unsigned) (seq % 3));
        snprintf(keyid, sizeof keyid, "k%u", (unsigned) (seq % 2));
        e.principal = principal;
        e.keyid = keyid;
        e.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        e.digest.data = digest;
        e.digest.len = sizeof digest;
        if (variant)
                e.message = (char *) "another log";
        Provsign__Annotation ann = PROVSIGN__ANNOTATION__INIT, *anns[1] = { &ann };
        if (seq % 7 == 0) {
                memset(other, 0, sizeof other);
                uint64_t o = seq + 1000;
                memcpy(other, &o, sizeof o);
                char *s = proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA256, other, sizeof other);
                assert_non_null(s);
                snprintf(spec, sizeof spec, "%s", s);
                free(s);
                ann.key = (char *) "subject";
                ann.value = spec;
                e.annotations = anns;
                e.n_annotations = 1;
        }
        uint8_t tmp[1024];
        size_t n = protobuf_c_message_pack(&e.base, tmp);
        size_t len;
        assert_int_equal(proto_record_encode(tmp, n, out, cap, &len), 0);
        return len;
}

/* Appends entries [from, to) to the log, PER_SEGMENT a segment. */
static void write_log(uint64_t from, uint64_t to) {
        for (uint64_t s = from; s < to; s++) {
                char name[400];
                uint64_t first = s - s % PER_SEGMENT;
                snprintf(name, sizeof name, "%s/%020" PRIu64 ".seg", logdir, first);
                int fd = open(name, O_WRONLY | O_CREAT | O_APPEND, 0600);
                assert_true(fd >= 0);
                uint8_t rec[1200];
                size_t n = make_entry(s, rec, sizeof rec);
                assert_int_equal(write(fd, rec, n), (ssize_t) n);
                close(fd);
        }
}

static int setup(void **state) {
        strcpy(dir, "/tmp/provsign-test-index-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(logdir, sizeof logdir, "%s/log", dir);
        snprintf(path, sizeof path, "%s/" INDEX_FILE, dir);
        assert_int_equal(mkdir(logdir, 0700), 0);
        dir_fd = open(logdir, O_RDONLY | O_DIRECTORY);
        assert_true(dir_fd >= 0);
        return 0;
}

static int teardown(void **state) {
        close(dir_fd);
        test_sh("rm -rf %s", dir);
        return 0;
}

static agent_index *sync_ok(uint64_t size) {
        agent_index *x = NULL;
        char *err = NULL;
        assert_int_equal(index_open(path, &x), 0);
        int r = index_sync(x, dir_fd, size, &err);
        if (r < 0)
                fail_msg("index_sync: %s", err ? err : strerror(-r));
        assert_int_equal(index_size(x), size);
        return x;
}

static size_t query(agent_index *x, const index_query *q0, uint64_t *out, size_t cap) {
        /* Pages of 3, to exercise paging. */
        index_query q = *q0;
        size_t n = 0, got;
        do {
                assert_int_equal(index_query_seqs(x, &q, out + n, cap - n < 3 ? cap - n : 3, &got), 0);
                n += got;
                if (got)
                        q.from = out[n - 1] + 1;
        } while (got == 3 && n < cap);
        return n;
}

/* Entry seq read back through rd is entry seq. */
static void read_back(agent_logreader *rd, uint64_t seq) {
        const uint8_t *e;
        size_t len;
        assert_int_equal(logreader_get(rd, seq, &e, &len), 0);
        Provsign__AuditEntry *pe = provsign__audit_entry__unpack(NULL, len, e);
        assert_non_null(pe);
        assert_int_equal(pe->seq, seq);
        provsign__audit_entry__free_unpacked(pe, NULL);
}

/* Every answer the index gives about a log of `size` entries. */
static void check_answers(agent_index *x, uint64_t size) {
        uint64_t out[2000];
        size_t n;
        /* Digest of entry 123 (its own), and of 1007 (an annotation of 7). */
        uint8_t d[32] = { 0 };
        uint64_t v = 123;
        memcpy(d, &v, sizeof v);
        index_query q = { .digest = d, .digest_len = 32, .to = UINT64_MAX };
        n = query(x, &q, out, 2000);
        assert_int_equal(n, 1);
        assert_int_equal(out[0], 123);
        v = 1007;
        memcpy(d, &v, sizeof v);
        n = query(x, &q, out, 2000);
        assert_int_equal(n, 1);
        assert_int_equal(out[0], 7);
        /* Principal p1: seqs 1, 4, 7, ... */
        q = (index_query){ .principal = "p1", .to = UINT64_MAX };
        n = query(x, &q, out, 2000);
        assert_int_equal(n, (size + 1) / 3);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(out[i], 3 * i + 1);
        /* Key k0 of principal p2 in [10, 40): 14, 20, 26, 32, 38. */
        q = (index_query){ .principal = "p2", .keyid = "k0", .from = 10, .to = 40 };
        n = query(x, &q, out, 2000);
        assert_int_equal(n, 5);
        assert_int_equal(out[0], 14);
        assert_int_equal(out[4], 38);
        q = (index_query){ .keyid = "k1", .to = UINT64_MAX };
        assert_int_equal(query(x, &q, out, 2000), size / 2);
        q = (index_query){ .principal = "nobody", .to = UINT64_MAX };
        assert_int_equal(query(x, &q, out, 2000), 0);
        /* Time window: times 1000000 + 1000 * seq. */
        uint64_t lo, hi;
        index_time_window(x, 1000000 + 1000 * 20 - 1, 1000000 + 1000 * 30, &lo, &hi);
        assert_int_equal(lo, 20);
        assert_int_equal(hi, 31);
        /* Key events: every 50th. */
        assert_int_equal(index_key_events(x, 0, out, 2000, &n), 0);
        assert_int_equal(n, (size + 49) / 50);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(out[i], 50 * i);
        /* Locate and read back, across segments, in both directions. */
        agent_logreader *rd;
        assert_int_equal(logreader_new(dir_fd, x, &rd), 0);
        const uint64_t probes[] = { size - 1, 0, 99, 100, 101, 250, 5, size / 2 };
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
                uint64_t seg, off;
                assert_int_equal(index_locate(x, probes[i], &seg, &off), 0);
                assert_int_equal(seg, probes[i] - probes[i] % PER_SEGMENT);
                read_back(rd, probes[i]);
        }
        logreader_free(rd);
        assert_int_equal(index_locate(x, size, &lo, &hi), -ENOENT);
}

static void test_build_add_find(void **state) {
        write_log(0, 300);
        agent_index *x = sync_ok(300); /* missing: built */
        check_answers(x, 300);
        /* The committer's path: a batch of records appended to segment 300. */
        uint8_t buf[64 * 1024];
        size_t len = 0;
        for (uint64_t s = 300; s < 320; s++)
                len += make_entry(s, buf + len, sizeof buf - len);
        write_log(300, 320);
        assert_int_equal(index_add_records(x, 300, 0, 300, buf, len), 0);
        index_flush(x);
        assert_int_equal(index_size(x), 320);
        check_answers(x, 320);
        /* Not the next seq: refused, and indexing stops. */
        assert_int_equal(index_add_records(x, 300, len, 330, buf, len), -EINVAL);
        index_close(x);
        /* Reopened: the same answers. */
        x = sync_ok(320);
        check_answers(x, 320);
        index_close(x);
}

static void test_catch_up(void **state) {
        /* The log grew by 2 segments and a half while the index was closed;
         * before it catches up, a reader reads the unindexed entries on from
         * the last indexed one. */
        agent_index *x = sync_ok(320);
        write_log(320, 570);
        agent_logreader *rd;
        assert_int_equal(logreader_new(dir_fd, x, &rd), 0);
        const uint64_t probes[] = { 450, 321, 569, 10 };
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
                read_back(rd, probes[i]);
        }
        logreader_free(rd);
        index_close(x);
        x = sync_ok(570);
        check_answers(x, 570);
        index_close(x);
}

static void test_rebuild_deleted(void **state) {
        assert_int_equal(unlink(path), 0);
        agent_index *x = sync_ok(570);
        check_answers(x, 570);
        index_close(x);
}

static void test_rebuild_corrupt(void **state) {
        /* Garbage over the whole file. */
        int fd = open(path, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        char junk[8192];
        memset(junk, 0x5a, sizeof junk);
        assert_int_equal(write(fd, junk, sizeof junk), (ssize_t) sizeof junk);
        close(fd);
        test_sh("rm -f %s-wal %s-shm", path, path);
        agent_index *x = sync_ok(570);
        check_answers(x, 570);
        index_close(x);
}

static void test_rebuild_ahead_or_foreign(void **state) {
        /* Ahead: the log is shorter than the index (a restored log). */
        agent_index *x = sync_ok(400);
        check_answers(x, 400);
        index_close(x);
        /* Foreign: another log of the same length whose records are longer
         * (a message in each): the index's last entry is not where it says. */
        uint64_t seg_before, off_before, seg_after, off_after;
        x = sync_ok(570);
        assert_int_equal(index_locate(x, 569, &seg_before, &off_before), 0);
        index_close(x);
        test_sh("rm -f %s/*.seg", logdir);
        variant = true;
        write_log(0, 570);
        x = sync_ok(570);
        check_answers(x, 570);
        assert_int_equal(index_locate(x, 569, &seg_after, &off_after), 0);
        assert_int_equal(seg_after, seg_before);
        assert_true(off_after > off_before);
        index_close(x);
}

/* Runs sql on the index file (closed by the agent's side meanwhile). */
static void db_exec(const char *sql) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        char *msg = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
                fail_msg("%s: %s", sql, msg);
        sqlite3_close(db);
}

/* 1 if the marker row planted by plant() is still there (not rebuilt). */
static int planted(void) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM names WHERE kind = 9", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

static int state_clean(void) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT clean FROM state", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

static void test_system_crash(void **state) {
        /* The index is written without fsync: a clean close syncs it and
         * says so; an unclean one in another boot (the system went down
         * meanwhile) is rebuilt; an unclean one in this boot (the agent
         * crashed, the OS kept its writes) is used. */
        agent_index *x = sync_ok(570);
        /* Closed cleanly before and nothing written yet: still clean (no
         * fsync at start); the first write marks it durably. */
        assert_int_equal(state_clean(), 1);
        uint8_t buf[16 * 1024];
        size_t len = 0;
        for (uint64_t s = 570; s < 576; s++)
                len += make_entry(s, buf + len, sizeof buf - len);
        char seg[400];
        struct stat st;
        snprintf(seg, sizeof seg, "%s/%020u.seg", logdir, 500u);
        assert_int_equal(stat(seg, &st), 0);
        write_log(570, 576);
        assert_int_equal(index_add_records(x, 500, (uint64_t) st.st_size, 570, buf, len), 0);
        index_flush(x);
        assert_int_equal(state_clean(), 0);
        index_close(x);
        assert_int_equal(state_clean(), 1);
        db_exec("INSERT INTO names(kind, name) VALUES (9, 'planted'); UPDATE state SET boot_id = 'another-boot'");
        x = sync_ok(576); /* closed cleanly, then a reboot: kept */
        index_close(x);
        assert_int_equal(planted(), 1);
        db_exec("UPDATE state SET clean = 0"); /* the agent was killed, same boot */
        x = sync_ok(576);
        assert_int_equal(planted(), 1);
        assert_int_equal(state_clean(), 0);
        index_close(x);
        db_exec("UPDATE state SET clean = 0, boot_id = 'another-boot'"); /* the system went down */
        x = sync_ok(576);
        assert_int_equal(planted(), 0);
        check_answers(x, 576);
        index_close(x);
        db_exec("DELETE FROM state"); /* no state row: not to be trusted */
        db_exec("INSERT INTO names(kind, name) VALUES (9, 'planted')");
        x = sync_ok(576);
        assert_int_equal(planted(), 0);
        index_close(x);

        /* After a power loss the state row can say "clean" (its mark's WAL
         * frame overwritten once an unsynced checkpoint copied it): the
         * marker file, synced before the first unsynced write and removed
         * at a clean close, says otherwise. */
        char marker[320], now[64] = "";
        snprintf(marker, sizeof marker, "%s.writing", path);
        assert_int_equal(access(marker, F_OK), -1); /* removed by the clean close */
        x = sync_ok(576);
        len = make_entry(576, buf, sizeof buf);
        assert_int_equal(stat(seg, &st), 0);
        write_log(576, 577);
        assert_int_equal(index_add_records(x, 500, (uint64_t) st.st_size, 576, buf, len), 0);
        index_flush(x);
        assert_int_equal(access(marker, F_OK), 0); /* written before the first write */
        index_close(x);
        assert_int_equal(access(marker, F_OK), -1);
        assert_int_equal(state_clean(), 1);
        FILE *f = fopen(marker, "w"); /* the system went down; the file says clean */
        assert_non_null(f);
        fputs("another-boot", f);
        fclose(f);
        db_exec("INSERT INTO names(kind, name) VALUES (9, 'planted')");
        x = sync_ok(577);
        assert_int_equal(planted(), 0);
        check_answers(x, 577);
        index_close(x);
        assert_int_equal(access(marker, F_OK), -1);
        f = fopen("/proc/sys/kernel/random/boot_id", "r"); /* this boot's: the agent was killed */
        assert_non_null(f);
        assert_non_null(fgets(now, sizeof now, f));
        fclose(f);
        now[strspn(now, "0123456789abcdef-")] = '\0';
        f = fopen(marker, "w");
        assert_non_null(f);
        fputs(now, f);
        fclose(f);
        db_exec("INSERT INTO names(kind, name) VALUES (9, 'planted')");
        x = sync_ok(577);
        assert_int_equal(planted(), 1);
        index_close(x);
}

/* The entry bytes of seq (as make_entry writes them, record stripped). */
static size_t entry_bytes(uint64_t seq, uint8_t *rec, size_t cap, const uint8_t **ret) {
        size_t len = make_entry(seq, rec, cap), n;
        proto_cursor c = proto_cursor_make(rec, len);
        assert_int_equal(proto_record_next(&c, ret, &n), 0);
        return n;
}

static void test_forget(void **state) {
        /* A purge notes the rows of the entries it replaces by stubs; they
         * go once committed, and not when dropped. */
        agent_index *x = sync_ok(570);
        uint8_t rec[1200], d[32] = { 0 };
        const uint8_t *e;
        size_t n;
        uint64_t out[2000], v;
        index_query q = { .digest = d, .digest_len = 32, .to = UINT64_MAX };
        n = entry_bytes(124, rec, sizeof rec, &e);
        assert_int_equal(index_forget(x, e, n), 0);
        index_forget_drop(x);
        assert_int_equal(index_forget_commit(x), 0); /* nothing noted */
        n = entry_bytes(123, rec, sizeof rec, &e);
        assert_int_equal(index_forget(x, e, n), 0);
        n = entry_bytes(7, rec, sizeof rec, &e);
        assert_int_equal(index_forget(x, e, n), 0);
        assert_int_equal(index_forget_commit(x), 0);
        index_flush(x);
        v = 123;
        memcpy(d, &v, sizeof v);
        assert_int_equal(query(x, &q, out, 2000), 0);
        v = 1007; /* entry 7's annotation */
        memcpy(d, &v, sizeof v);
        assert_int_equal(query(x, &q, out, 2000), 0);
        v = 124;
        memcpy(d, &v, sizeof v);
        assert_int_equal(query(x, &q, out, 2000), 1);
        q = (index_query){ .principal = "p1", .to = UINT64_MAX }; /* 7 was one */
        assert_int_equal(query(x, &q, out, 2000), (570 + 1) / 3 - 1);
        q = (index_query){ .principal = "p0", .to = UINT64_MAX }; /* and 123 */
        assert_int_equal(query(x, &q, out, 2000), 570 / 3 - 1);
        q = (index_query){ .keyid = "k1", .to = UINT64_MAX }; /* both odd */
        assert_int_equal(query(x, &q, out, 2000), 570 / 2 - 2);
        /* Still located and read. */
        uint64_t seg, off;
        assert_int_equal(index_locate(x, 123, &seg, &off), 0);
        index_close(x);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_build_add_find),
                cmocka_unit_test(test_catch_up),
                cmocka_unit_test(test_rebuild_deleted),
                cmocka_unit_test(test_rebuild_corrupt),
                cmocka_unit_test(test_rebuild_ahead_or_foreign),
                cmocka_unit_test(test_system_crash),
                cmocka_unit_test(test_forget),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
