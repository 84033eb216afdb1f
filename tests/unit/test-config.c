/* agent/config.c: every key, defaults, users and groups, and one test per
 * kind of bad config with the exact FILE:LINE message. */

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Not "config.h": the build root has a generated config.h of that name on
 * the include path. */
#include "../../agent/config.h"
#include "provsign.pb-c.h"

static char *tmpdir;
static char *conf_path;

static int group_setup(void **state) {
        char tmpl[] = "/tmp/test-config.XXXXXX";

        (void) state;
        if (!mkdtemp(tmpl))
                return -1;
        tmpdir = strdup(tmpl);
        if (!tmpdir || asprintf(&conf_path, "%s/agent.conf", tmpdir) < 0)
                return -1;
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        unlink(conf_path);
        rmdir(tmpdir);
        free(conf_path);
        free(tmpdir);
        return 0;
}

static void write_file(const char *path, const char *data, size_t len) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

static agent_config *load_ok(const char *text) {
        agent_config *c = NULL;
        char *err = NULL;
        int r;

        write_file(conf_path, text, strlen(text));
        r = agent_config_load(conf_path, &c, &err);
        if (r < 0)
                fail_msg("unexpected error %d: %s", r, err ? err : "(null)");
        assert_null(err);
        assert_non_null(c);
        return c;
}

/* expected: the message after the file name, e.g. ":7: unknown key ..." */
static void check_error_len(const char *text, size_t len, const char *expected) {
        agent_config *c = NULL;
        char *err = NULL, *want = NULL;
        int r;

        write_file(conf_path, text, len);
        r = agent_config_load(conf_path, &c, &err);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_non_null(err);
        assert_true(asprintf(&want, "%s%s", conf_path, expected) > 0);
        assert_string_equal(err, want);
        free(want);
        free(err);
}

static void check_error(const char *text, const char *expected) {
        check_error_len(text, strlen(text), expected);
}

static uid_t uid_of(const char *name) {
        struct passwd *pw = getpwnam(name);

        assert_non_null(pw);
        return pw->pw_uid;
}

static gid_t gid_of(const char *name) {
        struct group *gr = getgrnam(name);

        assert_non_null(gr);
        return gr->gr_gid;
}

static void test_full(void **state) {
        agent_config *c;
        const agent_principal *p;

        (void) state;
        c = load_ok(
                "; provsign agent\n"
                "[agent]\n"
                "socket = /run/ps/agent.sock\n"
                "socket_group = adm\n"
                "state_dir = /var/lib/ps\n"
                "publish_dir = /srv/ps-log\n"
                "publish_entries = yes\n"
                "pkcs11_module = /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\n"
                "token_label = ps-token\n"
                "pin_credential = hsm-pin\n"
                "algorithm = ecdsa-p384\n"
                "log_origin = example.org/provsign/log\n"
                "checkpoint_every = 500\n"
                "checkpoint_interval = 2m\n"
                "journal_events = all\n"
                "rotate_after = 90d\n"
                "auto_rotate_on_revoke = yes\n"
                "max_connections = 2048\n"
                "max_connections_per_uid = 64\n"
                "max_inflight_per_connection = 8\n"
                "idle_timeout = 10m\n"
                "read_timeout = 15s\n"
                "hsm_timeout = 7\n"
                "rate_limit = 100/s\n"
                "max_annotations = 10\n"
                "max_annotation_bytes = 1024\n"
                "workers = 32\n"
                "\n"
                "[principal ci-release]\n"
                "uids = root, daemon 1234\n"
                "gids = adm\n"
                "algorithm = rsa-3072\n"
                "rotate_after = 12h\n"
                "rate_limit = 30/m\n"
                "\n"
                "[principal nightly_build.v2]\n"
                "gids = 4321\n"
                "rate_limit = 5/h\n"
                "\n"
                "[role operator]\n"
                "uids = root\n"
                "gids = root\n"
                "\n"
                "[role auditor]\n"
                "uids = daemon,1000\n");

        assert_string_equal(c->path, conf_path);
        assert_string_equal(c->socket, "/run/ps/agent.sock");
        assert_string_equal(c->socket_group, "adm");
        assert_int_equal(c->socket_gid, gid_of("adm"));
        assert_string_equal(c->state_dir, "/var/lib/ps");
        assert_string_equal(c->publish_dir, "/srv/ps-log");
        assert_true(c->publish_entries);
        assert_string_equal(c->pkcs11_module, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
        assert_string_equal(c->token_label, "ps-token");
        assert_null(c->pin_file);
        assert_string_equal(c->pin_credential, "hsm-pin");
        assert_int_equal(c->algorithm, PROVSIGN__KEY_ALGORITHM__ECDSA_P384);
        assert_string_equal(c->log_origin, "example.org/provsign/log");
        /* key_namespace by default: the origin up to its first "/" */
        assert_string_equal(c->key_namespace, "example.org");
        assert_int_equal(c->checkpoint_every, 500);
        assert_int_equal(c->checkpoint_interval_s, 120);
        assert_int_equal(c->journal_events, AGENT_JOURNAL_ALL);
        assert_int_equal(c->rotate_after_s, 90 * 86400);
        assert_true(c->auto_rotate_on_revoke);
        assert_int_equal(c->max_connections, 2048);
        assert_int_equal(c->max_connections_per_uid, 64);
        assert_int_equal(c->max_inflight_per_connection, 8);
        assert_int_equal(c->idle_timeout_s, 600);
        assert_int_equal(c->read_timeout_s, 15);
        assert_int_equal(c->hsm_timeout_s, 7);
        assert_int_equal(c->rate_limit.count, 100);
        assert_int_equal(c->rate_limit.per_s, 1);
        assert_int_equal(c->max_annotations, 10);
        assert_int_equal(c->max_annotation_bytes, 1024);
        assert_int_equal(c->workers, 32);

        assert_int_equal(c->n_principals, 2);
        p = agent_config_find_principal(c, "ci-release");
        assert_ptr_equal(p, &c->principals[0]);
        assert_string_equal(p->name, "ci-release");
        assert_int_equal(p->ids.n_uids, 3);
        assert_int_equal(p->ids.uids[0], 0);
        assert_int_equal(p->ids.uids[1], uid_of("daemon"));
        assert_int_equal(p->ids.uids[2], 1234);
        assert_int_equal(p->ids.n_gids, 1);
        assert_int_equal(p->ids.gids[0], gid_of("adm"));
        assert_int_equal(p->algorithm, PROVSIGN__KEY_ALGORITHM__RSA_3072);
        assert_int_equal(p->rotate_after_s, 12 * 3600);
        assert_int_equal(p->rate_limit.count, 30);
        assert_int_equal(p->rate_limit.per_s, 60);

        p = agent_config_find_principal(c, "nightly_build.v2");
        assert_ptr_equal(p, &c->principals[1]);
        assert_int_equal(p->ids.n_uids, 0);
        assert_null(p->ids.uids);
        assert_int_equal(p->ids.n_gids, 1);
        assert_int_equal(p->ids.gids[0], 4321);
        /* unset: the agent's algorithm; 0: the agent's rotate_after */
        assert_int_equal(p->algorithm, PROVSIGN__KEY_ALGORITHM__ECDSA_P384);
        assert_int_equal(p->rotate_after_s, 0);
        assert_int_equal(p->rate_limit.count, 5);
        assert_int_equal(p->rate_limit.per_s, 3600);

        assert_null(agent_config_find_principal(c, "nosuch"));
        assert_null(agent_config_find_principal(c, "ci-releas"));
        assert_null(agent_config_find_principal(NULL, "ci-release"));
        assert_null(agent_config_find_principal(c, NULL));

        assert_int_equal(c->operators.n_uids, 1);
        assert_int_equal(c->operators.uids[0], 0);
        assert_int_equal(c->operators.n_gids, 1);
        assert_int_equal(c->operators.gids[0], 0);
        assert_int_equal(c->auditors.n_uids, 2);
        assert_int_equal(c->auditors.uids[0], uid_of("daemon"));
        assert_int_equal(c->auditors.uids[1], 1000);
        assert_int_equal(c->auditors.n_gids, 0);

        agent_config_free(c);
}

static void check_defaults(const agent_config *c) {
        assert_string_equal(c->path, conf_path);
        assert_string_equal(c->socket, "/run/provsign/agent.sock");
        assert_null(c->socket_group);
        assert_int_equal(c->socket_gid, (gid_t) -1);
        assert_string_equal(c->state_dir, "/var/lib/provsign");
        assert_null(c->publish_dir); /* <state_dir>/tlog */
        assert_false(c->publish_entries);
        assert_string_equal(c->pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
        assert_string_equal(c->token_label, "provsign");
        assert_null(c->pin_file);
        assert_string_equal(c->pin_credential, "pin");
        assert_int_equal(c->algorithm, PROVSIGN__KEY_ALGORITHM__ECDSA_P256);
        assert_null(c->log_origin);
        assert_null(c->key_namespace);
        assert_int_equal(c->checkpoint_every, 1000);
        assert_int_equal(c->checkpoint_interval_s, 60);
        assert_int_equal(c->journal_events, AGENT_JOURNAL_DEFAULT);
        assert_int_equal(c->rotate_after_s, 0);
        assert_false(c->auto_rotate_on_revoke);
        assert_int_equal(c->max_connections, 1024);
        assert_int_equal(c->max_connections_per_uid, 128);
        assert_int_equal(c->max_inflight_per_connection, 16);
        assert_int_equal(c->idle_timeout_s, 300);
        assert_int_equal(c->read_timeout_s, 10);
        assert_int_equal(c->hsm_timeout_s, 5);
        assert_int_equal(c->rate_limit.count, 0);
        assert_int_equal(c->max_annotations, 32);
        assert_int_equal(c->max_annotation_bytes, 4096);
        assert_int_equal(c->workers, 0);
        assert_int_equal(c->n_principals, 0);
        assert_int_equal(c->operators.n_uids + c->operators.n_gids, 0);
        assert_int_equal(c->auditors.n_uids + c->auditors.n_gids, 0);
}

static void test_defaults(void **state) {
        agent_config *c;

        (void) state;
        c = load_ok("");
        check_defaults(c);
        agent_config_free(c);

        c = load_ok("# nothing here\n; nor here\n\n[agent]\n");
        check_defaults(c);
        agent_config_free(c);
}

static void test_empty_sections(void **state) {
        agent_config *c;

        (void) state;
        /* a principal without keys still exists (and admits nobody) */
        c = load_ok("[principal idle]\n[role operator]\n[principal busy]\nuids =\n");
        assert_int_equal(c->n_principals, 2);
        assert_non_null(agent_config_find_principal(c, "idle"));
        assert_non_null(agent_config_find_principal(c, "busy"));
        assert_int_equal(c->principals[1].ids.n_uids, 0);
        agent_config_free(c);
}

static void test_ids(void **state) {
        agent_config *c;
        const agent_principal *p;

        (void) state;
        c = load_ok("[principal p]\n"
                    "uids = ,root,, daemon ,  0 4294967294,007\n"
                    "gids = root adm,4,65534\n"
                    "[agent]\n"
                    "socket_group = 0\n");
        p = agent_config_find_principal(c, "p");
        assert_non_null(p);
        assert_int_equal(p->ids.n_uids, 5);
        assert_int_equal(p->ids.uids[0], 0);
        assert_int_equal(p->ids.uids[1], uid_of("daemon"));
        assert_int_equal(p->ids.uids[2], 0);
        assert_int_equal(p->ids.uids[3], 4294967294u);
        assert_int_equal(p->ids.uids[4], 7);
        assert_int_equal(p->ids.n_gids, 4);
        assert_int_equal(p->ids.gids[0], 0);
        assert_int_equal(p->ids.gids[1], gid_of("adm"));
        assert_int_equal(p->ids.gids[2], 4);
        assert_int_equal(p->ids.gids[3], 65534);
        assert_string_equal(c->socket_group, "0");
        assert_int_equal(c->socket_gid, 0);
        agent_config_free(c);

        c = load_ok("[agent]\nsocket_group = root\n");
        assert_string_equal(c->socket_group, "root");
        assert_int_equal(c->socket_gid, 0);
        agent_config_free(c);
}

static void test_values(void **state) {
        agent_config *c;

        (void) state;
        /* principal before [agent]: it still inherits the agent's algorithm */
        c = load_ok("[principal a]\n"
                    "[agent]\n"
                    "algorithm = rsa-3072\n"
                    "pin_file = /etc/provsign/pin\n"
                    "auto_rotate_on_revoke = TRUE\n"
                    "journal_events = none\n"
                    "rate_limit = off\n"
                    "rotate_after = 0\n"
                    "max_annotations = 0\n"
                    "max_annotation_bytes = 65536\n"
                    "max_connections = 1048576\n"
                    "checkpoint_every = 4294967295\n"
                    "hsm_timeout = 1d\n"
                    "log_origin = a!~\n");
        assert_int_equal(c->principals[0].algorithm, PROVSIGN__KEY_ALGORITHM__RSA_3072);
        assert_string_equal(c->pin_file, "/etc/provsign/pin");
        assert_null(c->pin_credential); /* exactly one of the two */
        assert_true(c->auto_rotate_on_revoke);
        assert_int_equal(c->journal_events, AGENT_JOURNAL_NONE);
        assert_int_equal(c->rate_limit.count, 0);
        assert_int_equal(c->rotate_after_s, 0);
        assert_int_equal(c->max_annotations, 0);
        assert_int_equal(c->max_annotation_bytes, 65536);
        assert_int_equal(c->max_connections, 1048576);
        assert_int_equal(c->checkpoint_every, UINT32_MAX);
        assert_int_equal(c->hsm_timeout_s, 86400);
        assert_string_equal(c->log_origin, "a!~");
        assert_null(c->key_namespace); /* "a!~" is no namespace: the agent asks for key_namespace */
        agent_config_free(c);

        static const struct {
                const char *text;
                bool value;
        } bools[] = {
                { "yes", true }, { "true", true }, { "1", true }, { "Yes", true },
                { "no", false }, { "false", false }, { "0", false }, { "FALSE", false },
        };
        for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
                char *text = NULL;
                assert_true(asprintf(&text, "[agent]\nauto_rotate_on_revoke = %s\n", bools[i].text) > 0);
                c = load_ok(text);
                assert_int_equal(c->auto_rotate_on_revoke, bools[i].value);
                agent_config_free(c);
                free(text);
        }

        c = load_ok("[agent]\nrate_limit = 0\njournal_events = default\n");
        assert_int_equal(c->rate_limit.count, 0);
        assert_int_equal(c->journal_events, AGENT_JOURNAL_DEFAULT);
        agent_config_free(c);

        c = load_ok("[agent]\nrate_limit = 4294967295/h\nalgorithm = ecdsa-p256\n");
        assert_int_equal(c->rate_limit.count, UINT32_MAX);
        assert_int_equal(c->rate_limit.per_s, 3600);
        assert_int_equal(c->algorithm, PROVSIGN__KEY_ALGORITHM__ECDSA_P256);
        agent_config_free(c);
}

/* libinih quirks the reader neutralises */
static void test_syntax(void **state) {
        agent_config *c;
        char name64[65], *text = NULL;

        (void) state;
        /* indented keys are not continuation lines; inline comments; "key: value";
         * BOM; CRLF */
        c = load_ok("\xef\xbb\xbf[agent]\r\n"
                    "    socket = /run/x.sock ; the socket\r\n"
                    "    state_dir = /var/lib/x\r\n"
                    "\n"
                    "\t  token_label: tok;en\r\n"
                    "  [principal p]   ; comment\n"
                    "  uids = 5\n"
                    "\n"
                    "  gids = 6");
        assert_string_equal(c->socket, "/run/x.sock");
        assert_string_equal(c->state_dir, "/var/lib/x");
        assert_string_equal(c->token_label, "tok;en");
        assert_int_equal(c->principals[0].ids.n_uids, 1);
        assert_int_equal(c->principals[0].ids.uids[0], 5);
        assert_int_equal(c->principals[0].ids.n_gids, 1);
        assert_int_equal(c->principals[0].ids.gids[0], 6);
        agent_config_free(c);

        /* section names longer than libinih's 50-byte buffer */
        memset(name64, 'n', 64);
        name64[64] = '\0';
        assert_true(asprintf(&text, "[principal %s]\nuids = 1\n[principal %.63sm]\nuids = 2\n",
                             name64, name64) > 0);
        c = load_ok(text);
        free(text);
        assert_int_equal(c->n_principals, 2);
        assert_string_equal(c->principals[0].name, name64);
        assert_int_equal(agent_config_find_principal(c, name64)->ids.uids[0], 1);
        agent_config_free(c);
}

static void test_error_structure(void **state) {
        char longline[300];

        (void) state;
        check_error("[agent]\nsocket = /x\nsocket = /y\n", ":3: duplicate key \"socket\" in [agent]");
        check_error("socket = /x\n[agent]\n", ":1: key outside a section");
        check_error("\n\n\n\n\nsocket = /x\n", ":6: key outside a section");
        check_error("[agent\n", ":1: missing \"]\" in section header");
        check_error("[agent] x\n", ":1: unexpected text after section header");
        check_error("[agent]\nsocket\n", ":2: expected \"key = value\" or \"[section]\"");
        check_error("[agent]\nsocket ; = /x\n", ":2: expected \"key = value\" or \"[section]\"");
        check_error("[agent]\nsocket =\n", ":2: missing value for socket");
        check_error_len("[agent]\nsoc\0ket = /x\n", 21, ":2: NUL byte in line");

        memset(longline, 'a', sizeof(longline));
        memcpy(longline, "[agent]\nsocket = /", 18);
        longline[sizeof(longline) - 1] = '\0';
        check_error(longline, ":2: line too long (max 199 characters)");

        /* only the first error is reported */
        check_error("[agent]\nbogus = 1\n[foo]\n", ":2: unknown key \"bogus\" in [agent]");
}

static void test_error_sections(void **state) {
        (void) state;
        check_error("[agent]\n[foo]\n", ":2: unknown section [foo]");
        check_error("[ agent ]\n", ":1: unknown section [ agent ]");
        check_error("[Agent]\n", ":1: unknown section [Agent]");
        check_error("[role admin]\n", ":1: unknown section [role admin]");
        check_error("[role]\n", ":1: unknown section [role]");
        check_error("[principal]\n", ":1: unknown section [principal]");
        check_error("[agent]\n[principal ci]\nuids = 1\n[principal ci]\n",
                    ":4: duplicate section [principal ci]");
        check_error("[agent]\nsocket = /x\n[agent]\n", ":3: duplicate section [agent]");
        check_error("[role operator]\n[role auditor]\n[role operator]\n",
                    ":3: duplicate section [role operator]");
        check_error("[role auditor]\n[role auditor]\n", ":2: duplicate section [role auditor]");
}

static void test_error_principal_name(void **state) {
        char *text = NULL, *want = NULL, name65[66];

        (void) state;
        check_error("[principal a/b]\n", ":1: invalid principal name \"a/b\"");
        check_error("[principal ]\n", ":1: invalid principal name \"\"");
        check_error("[principal  x]\n", ":1: invalid principal name \" x\"");
        check_error("[principal a b]\n", ":1: invalid principal name \"a b\"");
        check_error("[principal caf\xc3\xa9]\n", ":1: invalid principal name \"caf\xc3\xa9\"");
        check_error("[principal ..]\n", ":1: invalid principal name \"..\"");
        check_error("[principal .]\n", ":1: invalid principal name \".\"");
        check_error("[principal log]\n", ":1: invalid principal name \"log\" (reserved for the log key)");

        memset(name65, 'x', 65);
        name65[65] = '\0';
        assert_true(asprintf(&text, "[agent]\n[principal %s]\n", name65) > 0);
        assert_true(asprintf(&want, ":2: invalid principal name \"%s\"", name65) > 0);
        check_error(text, want);
        free(text);
        free(want);
}

static void test_error_keys(void **state) {
        (void) state;
        check_error("[agent]\nsocket = /x\n\n\n\n\nsockett = /y\n", ":7: unknown key \"sockett\" in [agent]");
        check_error("[agent]\nSocket = /x\n", ":2: unknown key \"Socket\" in [agent]");
        check_error("[agent]\nuids = 1\n", ":2: unknown key \"uids\" in [agent]");
        check_error("[principal ci]\nsocket = /x\n", ":2: unknown key \"socket\" in [principal ci]");
        check_error("[role operator]\nalgorithm = rsa-3072\n",
                    ":2: unknown key \"algorithm\" in [role operator]");
        check_error("[agent]\n= 5\n", ":2: unknown key \"\" in [agent]");
        check_error("[principal ci-release]\n"
                    "uids = 1\n"
                    "gids = 2\n"
                    "algorithm = ecdsa-p256\n"
                    "rotate_after = 1d\n"
                    "rate_limit = 1/s\n"
                    "\n"
                    "; again\n"
                    "uids = 3\n",
                    ":9: duplicate key \"uids\" in [principal ci-release]");
        check_error("[role auditor]\ngids = 1\ngids = 1\n", ":3: duplicate key \"gids\" in [role auditor]");
}

static void test_error_users_groups(void **state) {
        (void) state;
        check_error("[principal ci]\n\n\n\n\n\n\n\n\n\n\nuids = root nosuchuser\n",
                    ":12: unknown user \"nosuchuser\"");
        check_error("[role operator]\nuids = 1abc\n", ":2: unknown user \"1abc\"");
        check_error("[role operator]\ngids = adm provsign-nosuchgroup\n",
                    ":2: unknown group \"provsign-nosuchgroup\"");
        check_error("[agent]\nsocket_group = provsign-nosuchgroup\n",
                    ":2: unknown group \"provsign-nosuchgroup\"");
        check_error("[role auditor]\nuids = 4294967295\n",
                    ":2: user id 4294967295 out of range (0..4294967294)");
        check_error("[role auditor]\ngids = 99999999999999999999999\n",
                    ":2: group id 99999999999999999999999 out of range (0..4294967294)");
        check_error("[role auditor]\nuids = -1\n", ":2: unknown user \"-1\"");
}

static void test_error_numbers(void **state) {
        (void) state;
        check_error("[agent]\nmax_connections = abc\n",
                    ":2: bad number \"abc\" for max_connections (use a decimal number)");
        check_error("[agent]\nmax_connections = -1\n",
                    ":2: bad number \"-1\" for max_connections (use a decimal number)");
        check_error("[agent]\nmax_connections = +5\n",
                    ":2: bad number \"+5\" for max_connections (use a decimal number)");
        check_error("[agent]\nmax_connections = 0x10\n",
                    ":2: bad number \"0x10\" for max_connections (use a decimal number)");
        check_error("[agent]\nmax_connections = 10 20\n",
                    ":2: bad number \"10 20\" for max_connections (use a decimal number)");
        check_error("[agent]\nmax_connections = 0\n",
                    ":2: number 0 out of range for max_connections (1..1048576)");
        check_error("[agent]\nworkers = 1025\n", ":2: number 1025 out of range for workers (0..1024)");
        check_error("[agent]\nmax_connections = 1048577\n",
                    ":2: number 1048577 out of range for max_connections (1..1048576)");
        check_error("[agent]\ncheckpoint_every = 4294967296\n",
                    ":2: number 4294967296 out of range for checkpoint_every (1..4294967295)");
        check_error("[agent]\ncheckpoint_every = 18446744073709551616\n",
                    ":2: number 18446744073709551616 out of range for checkpoint_every (1..4294967295)");
        check_error("[agent]\nmax_connections_per_uid = 0\n",
                    ":2: number 0 out of range for max_connections_per_uid (1..1048576)");
        check_error("[agent]\nmax_inflight_per_connection = 0\n",
                    ":2: number 0 out of range for max_inflight_per_connection (1..1024)");
        check_error("[agent]\nmax_annotations = 1025\n",
                    ":2: number 1025 out of range for max_annotations (0..1024)");
        check_error("[agent]\nmax_annotation_bytes = 0\n",
                    ":2: number 0 out of range for max_annotation_bytes (1..65536)");
}

static void test_error_durations(void **state) {
        (void) state;
        check_error("[agent]\n\nrotate_after = 5x\n",
                    ":3: bad duration \"5x\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = -5\n",
                    ":2: bad duration \"-5\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = 5 m\n",
                    ":2: bad duration \"5 m\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = 1.5h\n",
                    ":2: bad duration \"1.5h\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = 5ms\n",
                    ":2: bad duration \"5ms\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = h\n",
                    ":2: bad duration \"h\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = 5D\n",
                    ":2: bad duration \"5D\" for rotate_after (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nidle_timeout = 1h30m\n",
                    ":2: bad duration \"1h30m\" for idle_timeout (use 30s, 5m, 12h, 90d)");
        check_error("[agent]\nrotate_after = 36501d\n",
                    ":2: duration 36501d out of range for rotate_after (0s..36500d)");
        check_error("[agent]\nrotate_after = 999999999999999999999\n",
                    ":2: duration 999999999999999999999 out of range for rotate_after (0s..36500d)");
        check_error("[agent]\nrotate_after = 999999999999999999d\n",
                    ":2: duration 999999999999999999d out of range for rotate_after (0s..36500d)");
        check_error("[agent]\nidle_timeout = 0\n", ":2: duration 0 out of range for idle_timeout (1s..1d)");
        check_error("[agent]\nread_timeout = 25h\n",
                    ":2: duration 25h out of range for read_timeout (1s..1d)");
        check_error("[agent]\nhsm_timeout = 0s\n", ":2: duration 0s out of range for hsm_timeout (1s..1d)");
        check_error("[agent]\ncheckpoint_interval = 0m\n",
                    ":2: duration 0m out of range for checkpoint_interval (1s..1d)");
        check_error("[principal p]\nrotate_after = 0\n",
                    ":2: duration 0 out of range for rotate_after (1s..36500d)");
}

static void test_error_enums(void **state) {
        (void) state;
        check_error("[agent]\nalgorithm = rsa\n",
                    ":2: bad algorithm \"rsa\" (ecdsa-p256, ecdsa-p384, rsa-3072)");
        check_error("[principal p]\nalgorithm = ECDSA-P256\n",
                    ":2: bad algorithm \"ECDSA-P256\" (ecdsa-p256, ecdsa-p384, rsa-3072)");
        check_error("[agent]\nauto_rotate_on_revoke = maybe\n",
                    ":2: bad boolean \"maybe\" for auto_rotate_on_revoke (yes, no, true, false, 1, 0)");
        check_error("[agent]\nauto_rotate_on_revoke = 2\n",
                    ":2: bad boolean \"2\" for auto_rotate_on_revoke (yes, no, true, false, 1, 0)");
        check_error("[agent]\njournal_events = some\n",
                    ":2: bad journal_events \"some\" (default, all, none)");
}

static void test_error_rate_limit(void **state) {
        (void) state;
        check_error("[agent]\nrate_limit = 10\n", ":2: bad rate_limit \"10\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = 10/d\n", ":2: bad rate_limit \"10/d\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = 0/s\n", ":2: bad rate_limit \"0/s\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = -1/s\n", ":2: bad rate_limit \"-1/s\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = /s\n", ":2: bad rate_limit \"/s\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = 10/ s\n",
                    ":2: bad rate_limit \"10/ s\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = 4294967296/s\n",
                    ":2: bad rate_limit \"4294967296/s\" (use N/s, N/m, N/h or off)");
        check_error("[agent]\nrate_limit = 10/sec\n",
                    ":2: bad rate_limit \"10/sec\" (use N/s, N/m, N/h or off)");
        check_error("[principal ci]\nrate_limit = 10\n", ":2: bad rate_limit \"10\" (use N/s, N/m, N/h)");
        check_error("[principal ci]\nrate_limit = off\n",
                    ":2: bad rate_limit \"off\" in [principal ci] (use N/s, N/m or N/h; "
                    "omit rate_limit to use the agent's)");
        check_error("[principal ci]\nrate_limit = 0\n",
                    ":2: bad rate_limit \"0\" in [principal ci] (use N/s, N/m or N/h; "
                    "omit rate_limit to use the agent's)");
}

static void test_error_strings(void **state) {
        char *text = NULL;

        (void) state;
        check_error("[agent]\nsocket = run/agent.sock\n",
                    ":2: relative path \"run/agent.sock\" for socket (must be absolute)");
        check_error("[agent]\nstate_dir = ./state\n",
                    ":2: relative path \"./state\" for state_dir (must be absolute)");
        check_error("[agent]\npkcs11_module = libsofthsm2.so\n",
                    ":2: relative path \"libsofthsm2.so\" for pkcs11_module (must be absolute)");
        check_error("[agent]\npin_file = ~/pin\n",
                    ":2: relative path \"~/pin\" for pin_file (must be absolute)");
        check_error("[agent]\npublish_dir = tlog\n",
                    ":2: relative path \"tlog\" for publish_dir (must be absolute)");
        check_error("[agent]\nsocket = \"/run/x\"\n",
                    ":2: relative path \"\"/run/x\"\" for socket (must be absolute)");

        assert_true(asprintf(&text, "[agent]\nsocket = /%0107d\n", 0) > 0);
        check_error(text, ":2: socket path too long (max 107 bytes)");
        free(text);
        assert_true(asprintf(&text, "[agent]\nsocket = /%0106d\n", 0) > 0);
        agent_config_free(load_ok(text));
        free(text);

        check_error("[agent]\npin_file = /etc/pin\n\npin_credential = pin\n",
                    ":4: pin_file and pin_credential are mutually exclusive");
        check_error("[agent]\npin_credential = pin\npin_file = /etc/pin\n",
                    ":3: pin_file and pin_credential are mutually exclusive");
        check_error("[agent]\npin_credential = a/b\n",
                    ":2: bad pin_credential \"a/b\" (a file name: no \"/\", not \".\" or \"..\")");
        check_error("[agent]\npin_credential = ..\n",
                    ":2: bad pin_credential \"..\" (a file name: no \"/\", not \".\" or \"..\")");

        check_error("[agent]\ntoken_label = 0123456789abcdef0123456789abcdefX\n",
                    ":2: token_label \"0123456789abcdef0123456789abcdefX\" too long (max 32 bytes)");

        check_error("[agent]\nkey_namespace = ci/a\n", ":2: bad key_namespace \"ci/a\" (1..64 of A-Z a-z 0-9 . _ -)");
        check_error("[agent]\nkey_namespace = host:1\n",
                    ":2: bad key_namespace \"host:1\" (1..64 of A-Z a-z 0-9 . _ -)");
        assert_true(asprintf(&text, "[agent]\nkey_namespace = %065d\n", 0) > 0);
        check_error(text, ":2: bad key_namespace \"" "00000000000000000000000000000000000000000000000000000000000000000"
                          "\" (1..64 of A-Z a-z 0-9 . _ -)");
        free(text);
        {
                agent_config *c = load_ok("[agent]\nlog_origin = ci1.example.com/provsign\nkey_namespace = Fleet_1.a-b\n");
                assert_string_equal(c->key_namespace, "Fleet_1.a-b");
                agent_config_free(c);
        }
        check_error("[agent]\nlog_origin = example.org log\n",
                    ":2: bad log_origin \"example.org log\" (printable ASCII, no spaces, no \"+\")");
        check_error("[agent]\nlog_origin = example.org+log\n",
                    ":2: bad log_origin \"example.org+log\" (printable ASCII, no spaces, no \"+\")");
        check_error("[agent]\nlog_origin = caf\xc3\xa9\n",
                    ":2: bad log_origin \"caf\xc3\xa9\" (printable ASCII, no spaces, no \"+\")");
        check_error("[agent]\nlog_origin = a\tb\n",
                    ":2: bad log_origin \"a\tb\" (printable ASCII, no spaces, no \"+\")");
        check_error("[agent]\nlog_origin = a\x7f\n",
                    ":2: bad log_origin \"a\x7f\" (printable ASCII, no spaces, no \"+\")");
        check_error("[agent]\nlog_origin =\n", ":2: missing value for log_origin");
}

static void test_error_file(void **state) {
        agent_config *c = NULL;
        char *err = NULL, *want = NULL, *path = NULL, *big;
        size_t big_len = 1024 * 1024 + 1;
        int r;

        (void) state;
        assert_true(asprintf(&path, "%s/missing.conf", tmpdir) > 0);
        r = agent_config_load(path, &c, &err);
        assert_int_equal(r, -ENOENT);
        assert_null(c);
        assert_true(asprintf(&want, "%s: cannot open: No such file or directory", path) > 0);
        assert_string_equal(err, want);
        free(err);
        free(want);
        free(path);

        r = agent_config_load(tmpdir, &c, &err);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_true(asprintf(&want, "%s: not a regular file", tmpdir) > 0);
        assert_string_equal(err, want);
        free(err);
        free(want);

        big = malloc(big_len);
        assert_non_null(big);
        memset(big, '\n', big_len);
        write_file(conf_path, big, big_len);
        free(big);
        r = agent_config_load(conf_path, &c, &err);
        assert_int_equal(r, -EFBIG);
        assert_null(c);
        assert_true(asprintf(&want, "%s: too large (max 1048576 bytes)", conf_path) > 0);
        assert_string_equal(err, want);
        free(err);
        free(want);
}

static void test_parse_duration(void **state) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 }, { "0s", 0 }, { "1", 1 }, { "30s", 30 }, { "5m", 300 }, { "12h", 43200 },
                { "90d", 7776000 }, { "007s", 7 }, { "18446744073709551615", UINT64_MAX },
                { "18446744073709551615s", UINT64_MAX },
                { "213503982334601d", UINT64_C(18446744073709526400) },
        };
        static const char *const bad[] = {
                "", " ", "s", "-1", "+1", " 1", "1 ", "1x", "1ss", "1S", "1.0", "0x10", "1s1", "1h30m",
                "18446744073709551616", "18446744073709551616s", "307445734561825861m", "5124095576030432h",
                "213503982334602d", "-0", "1\n",
        };
        uint64_t v;

        (void) state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                v = 12345;
                assert_int_equal(agent_parse_duration(good[i].s, &v), 0);
                assert_int_equal(v, good[i].v);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                v = 12345;
                if (agent_parse_duration(bad[i], &v) != -EINVAL)
                        fail_msg("\"%s\" was accepted", bad[i]);
                assert_int_equal(v, 12345); /* untouched on failure */
        }
        assert_int_equal(agent_parse_duration(NULL, &v), -EINVAL);
}

static void test_free_null(void **state) {
        (void) state;
        agent_config_free(NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_empty_sections),
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_syntax),
                cmocka_unit_test(test_error_structure),
                cmocka_unit_test(test_error_sections),
                cmocka_unit_test(test_error_principal_name),
                cmocka_unit_test(test_error_keys),
                cmocka_unit_test(test_error_users_groups),
                cmocka_unit_test(test_error_numbers),
                cmocka_unit_test(test_error_durations),
                cmocka_unit_test(test_error_enums),
                cmocka_unit_test(test_error_rate_limit),
                cmocka_unit_test(test_error_strings),
                cmocka_unit_test(test_error_file),
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_free_null),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
