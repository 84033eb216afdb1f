/* Users and groups in the configuration (uids = ..., gids = ...,
 * socket_group): decimal ids or names resolved through NSS at load time. */

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"

/* getpwnam_r/getgrnam_r want a caller buffer; grow it on ERANGE. */
#define LOOKUP_BUF_MAX (1024u * 1024u)

/* lookup_id: a user (group false) or group name to its id. One loop for
 * both: the buffer protocol and the "not found" errno set are the same. */
static int lookup_id(bool group, const char *name, uint32_t *ret) {
        struct passwd pw, *pw_res = NULL;
        struct group gr, *gr_res = NULL;
        size_t size = 1024;
        char *buf = NULL;
        int r;

        for (;;) {
                char *nbuf = realloc(buf, size);
                if (!nbuf) {
                        free(buf);
                        return -ENOMEM;
                }
                buf = nbuf;
                r = group ? getgrnam_r(name, &gr, buf, size, &gr_res) : getpwnam_r(name, &pw, buf, size, &pw_res);
                if (r != ERANGE || size >= LOOKUP_BUF_MAX)
                        break;
                size *= 2;
        }
        bool found = group ? gr_res != NULL : pw_res != NULL;
        if (r == 0 && found)
                *ret = group ? (uint32_t) gr.gr_gid : (uint32_t) pw.pw_uid;
        free(buf);
        /* getpwnam_r(3): these mean "not found" on some NSS setups */
        if (r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
                return found ? 0 : -ENOENT;
        return -r;
}

/* One user or group: a decimal id (below the (id_t) -1 sentinel) or a name
 * resolved now. */
int config_resolve_id(struct parser *p, bool group, const char *token, uint32_t *ret) {
        const char *what = group ? "group" : "user";
        uint64_t n;
        int r;

        if (isdigit((unsigned char) token[0])) {
                r = config_parse_u64(token, &n);
                if (r == 0 && n >= UINT32_MAX)
                        r = -ERANGE;
                if (r == -ERANGE)
                        return parser_error(p, -EINVAL, "%s id %s out of range (0..%" PRIu32 ")",
                                            what, token, UINT32_MAX - 1);
                if (r == 0) {
                        *ret = (uint32_t) n;
                        return 0;
                }
                /* "1abc": not a number, try it as a name */
        }

        uint32_t id = 0;
        r = lookup_id(group, token, &id);
        n = id;
        if (r == -ENOENT)
                return parser_error(p, -EINVAL, "unknown %s \"%s\"", what, token);
        if (r == -ENOMEM)
                return config_parser_oom(p);
        if (r < 0)
                return parser_error(p, r, "cannot look up %s \"%s\": %s", what, token, strerror(-r));
        *ret = (uint32_t) n;
        return 0;
}

_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
               "uid_t and gid_t are 32 bits");

/* "root, 1000 daemon": names or numbers, separated by spaces and/or commas.
 * An empty list is allowed (admits nobody). */
int config_parse_id_list(struct parser *p, bool group, const char *value, agent_id_set *set) {
        uint32_t *ids = NULL;
        size_t n = 0;
        char *copy, *save = NULL;
        int r = 0;

        copy = strdup(value);
        if (!copy)
                return config_parser_oom(p);

        for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                uint32_t id;
                uint32_t *nids;

                r = config_resolve_id(p, group, tok, &id);
                if (r < 0)
                        goto out;
                nids = reallocarray(ids, n + 1, sizeof(*ids));
                if (!nids) {
                        r = config_parser_oom(p);
                        goto out;
                }
                ids = nids;
                ids[n++] = id;
        }

        if (group) {
                set->gids = (gid_t *) ids;
                set->n_gids = n;
        } else {
                set->uids = (uid_t *) ids;
                set->n_uids = n;
        }
        ids = NULL;
out:
        free(ids);
        free(copy);
        return r;
}
