/* Fuzzes the agent's configuration loader (agent_config_load, config.h).
 * It reads a path, so the input goes into one memfd per process (rewritten
 * in place for every input) opened through /proc/self/fd/N: no file system
 * traffic, nothing left behind.
 *
 * Invariants:
 *   - failure: a negative errno and one line of error text that starts with
 *     the path; *ret untouched;
 *   - success: what docs/operations.md "Config" promises of a loaded config: every
 *     path absolute, exactly one of pin_file and pin_credential, token_label
 *     at most 32 bytes, log_origin without spaces or '+', key_namespace a
 *     valid namespace (set whenever log_origin starts with one), numbers within
 *     their ranges, rate windows of 1, 60 or 3600 s, principal names
 *     [A-Za-z0-9._-]{1,64} but not "log", ".", "..", no two principals of
 *     one name (agent_config_find_principal finds each one itself), every
 *     principal with a known algorithm. */

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "keystore.h"
#include "names.h"
#include "provsign.pb-c.h"

#include "fuzz.h"

static int input_fd = -1;
static char input_path[64];

/* The memfd, or (without memfd_create) an unlinked O_TMPFILE in /tmp. */
static void input_open(void) {
        if (input_fd >= 0)
                return;
        input_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (input_fd < 0)
                input_fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        FUZZ_CHECK(input_fd >= 0);
        snprintf(input_path, sizeof input_path, "/proc/self/fd/%d", input_fd);
}

static void input_write(const uint8_t *data, size_t size) {
        size_t off = 0;

        FUZZ_CHECK(ftruncate(input_fd, 0) == 0);
        while (off < size) {
                ssize_t n = pwrite(input_fd, data + off, size - off, (off_t) off);
                if (n < 0 && errno == EINTR)
                        continue;
                FUZZ_CHECK(n > 0);
                off += (size_t) n;
        }
}

static bool absolute(const char *p) {
        return p && p[0] == '/';
}

static void check_rate(const agent_rate *r) {
        FUZZ_CHECK(r->per_s == 1 || r->per_s == 60 || r->per_s == 3600);
}

static void check_ids(const agent_id_set *s) {
        FUZZ_CHECK(s->n_uids == 0 || s->uids);
        FUZZ_CHECK(s->n_gids == 0 || s->gids);
        for (size_t i = 0; i < s->n_uids; i++)
                FUZZ_CHECK(s->uids[i] != (uid_t) -1);
        for (size_t i = 0; i < s->n_gids; i++)
                FUZZ_CHECK(s->gids[i] != (gid_t) -1);
}

static void check_config(const agent_config *c) {
        FUZZ_CHECK(strcmp(c->path, input_path) == 0);
        FUZZ_CHECK(absolute(c->socket) && strlen(c->socket) <= 107);
        FUZZ_CHECK(absolute(c->state_dir) && absolute(c->pkcs11_module));
        FUZZ_CHECK(c->token_label && strlen(c->token_label) <= 32);
        FUZZ_CHECK(!c->pin_file != !c->pin_credential);
        FUZZ_CHECK(!c->pin_file || absolute(c->pin_file));
        FUZZ_CHECK(!c->pin_credential || (!strchr(c->pin_credential, '/') && strcmp(c->pin_credential, ".") &&
                                          strcmp(c->pin_credential, "..")));
        FUZZ_CHECK(!c->socket_group == (c->socket_gid == (gid_t) -1));
        FUZZ_CHECK(strcmp(proto_key_algorithm_name(c->algorithm), proto_key_algorithm_name(-1)) != 0);
        if (c->log_origin)
                for (const char *p = c->log_origin; *p; p++)
                        FUZZ_CHECK(*p > ' ' && *p <= '~' && *p != '+');
        FUZZ_CHECK(!c->key_namespace || keys_namespace_valid(c->key_namespace));
        if (c->log_origin) {
                char ns[KEYS_NAMESPACE_MAX + 1];
                FUZZ_CHECK(keys_namespace_from_origin(c->log_origin, ns) < 0 || c->key_namespace);
        }
        FUZZ_CHECK(c->checkpoint_every >= 1);
        FUZZ_CHECK(c->checkpoint_interval_s >= 1 && c->checkpoint_interval_s <= 86400);
        FUZZ_CHECK(c->journal_events == AGENT_JOURNAL_DEFAULT || c->journal_events == AGENT_JOURNAL_ALL ||
                   c->journal_events == AGENT_JOURNAL_NONE);
        FUZZ_CHECK(c->max_connections >= 1 && c->max_connections <= 1048576);
        FUZZ_CHECK(c->max_connections_per_uid >= 1 && c->max_connections_per_uid <= 1048576);
        FUZZ_CHECK(c->max_inflight_per_connection >= 1 && c->max_inflight_per_connection <= 1024);
        FUZZ_CHECK(c->idle_timeout_s >= 1 && c->idle_timeout_s <= 86400);
        FUZZ_CHECK(c->read_timeout_s >= 1 && c->read_timeout_s <= 86400);
        FUZZ_CHECK(c->hsm_timeout_s >= 1 && c->hsm_timeout_s <= 86400);
        check_rate(&c->rate_limit);
        FUZZ_CHECK(c->max_annotations <= 1024);
        FUZZ_CHECK(c->max_annotation_bytes >= 1 && c->max_annotation_bytes <= 65536);

        FUZZ_CHECK(c->n_principals == 0 || c->principals);
        for (size_t i = 0; i < c->n_principals; i++) {
                const agent_principal *p = &c->principals[i];
                size_t n = strlen(p->name);

                FUZZ_CHECK(n >= 1 && n <= 64);
                FUZZ_CHECK(strspn(p->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n);
                FUZZ_CHECK(strcmp(p->name, "log") && strcmp(p->name, ".") && strcmp(p->name, ".."));
                FUZZ_CHECK(agent_config_find_principal(c, p->name) == p);
                FUZZ_CHECK(p->algorithm != PROVSIGN__KEY_ALGORITHM__KEY_ALGORITHM_UNSPECIFIED);
                FUZZ_CHECK(strcmp(proto_key_algorithm_name(p->algorithm), proto_key_algorithm_name(-1)) != 0);
                check_rate(&p->rate_limit);
                check_ids(&p->ids);
        }
        check_ids(&c->operators);
        check_ids(&c->auditors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        agent_config *c = NULL;
        char *error = NULL;
        int r;

        input_open();
        input_write(data, size);

        r = agent_config_load(input_path, &c, &error);
        if (r < 0) {
                size_t plen = strlen(input_path);
                FUZZ_CHECK(c == NULL);
                FUZZ_CHECK(error);
                FUZZ_CHECK(strncmp(error, input_path, plen) == 0 && error[plen] == ':');
                FUZZ_CHECK(!strchr(error, '\n'));
                free(error);
                return 0;
        }
        FUZZ_CHECK(r == 0 && c && !error);
        check_config(c);
        agent_config_free(c);
        return 0;
}
