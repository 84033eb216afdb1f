#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

#define MAX_GROUPS 1024

int agent_groups_of_uid(uid_t uid, gid_t **ret_groups, int *ret_n) {
        char buf[4096];
        struct passwd pw, *res = NULL;
        *ret_groups = NULL;
        *ret_n = 0;
        if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || !res)
                return 0; /* no passwd entry: primary gid only */
        int n = 32;
        for (;;) {
                gid_t *g = malloc((size_t) n * sizeof *g);
                if (!g)
                        return -ENOMEM;
                int want = n;
                if (getgrouplist(res->pw_name, res->pw_gid, g, &want) >= 0) {
                        *ret_groups = g;
                        *ret_n = want;
                        return 0;
                }
                free(g);
                if (want <= n || want > MAX_GROUPS)
                        return 0;
                n = want;
        }
}

void agent_caller_set_groups(agent_caller *c, gid_t *groups, int n) {
        free(c->groups);
        c->groups = groups;
        c->n_groups = n;
}

int agent_caller_from_fd(int fd, agent_caller *ret) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        if (len != sizeof cred || cred.pid <= 0)
                return -EPROTO;
        agent_caller c = { .uid = cred.uid, .gid = cred.gid, .pid = cred.pid };
        char link[64], exe[PATH_MAX];
        snprintf(link, sizeof link, "/proc/%d/exe", (int) cred.pid);
        ssize_t n = readlink(link, exe, sizeof exe - 1);
        if (n > 0) {
                exe[n] = '\0';
                /* The file name is the caller's choice: it goes to the journal
                 * and into a protobuf string, so keep printable ASCII only. */
                for (ssize_t i = 0; i < n; i++)
                        if ((unsigned char) exe[i] < 0x20 || (unsigned char) exe[i] >= 0x7f)
                                exe[i] = '?';
                c.exe = strdup(exe);
        }
        *ret = c;
        return 0;
}

void agent_caller_done(agent_caller *c) {
        free(c->groups);
        free(c->exe);
        c->groups = NULL;
        c->exe = NULL;
        c->n_groups = 0;
}

bool agent_caller_in_group(const agent_caller *c, gid_t gid) {
        if (c->gid == gid)
                return true;
        for (int i = 0; i < c->n_groups; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}
