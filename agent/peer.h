/* Who is on the other end of a connection: the kernel's word only
 * (SO_PEERCRED), plus the uid's supplementary groups and, where readable,
 * the executable. Nothing the client says about itself is trusted. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

typedef struct agent_caller {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t *groups;     /* supplementary groups of uid (getgrouplist), owned */
        int n_groups;
        char *exe;         /* /proc/PID/exe, NULL where unreadable */
} agent_caller;

/* agent_caller_from_fd: fills *ret from the connected socket fd, without
 * supplementary groups (no NSS look-up here: see agent_groups_of_uid). 0 or
 * a negative errno (no credentials: the connection must be dropped). */
int agent_caller_from_fd(int fd, agent_caller *ret);

/* agent_groups_of_uid: the supplementary groups of uid from the group
 * database (getpwuid_r + getgrouplist: NSS, which may be LDAP or sssd and
 * slow, so never on the event loop's thread). 0 with *ret_groups (caller
 * frees; NULL and 0 when uid has no passwd entry), or -ENOMEM. */
int agent_groups_of_uid(uid_t uid, gid_t **ret_groups, int *ret_n);

/* agent_caller_set_groups: replaces c's groups with groups (c takes them). */
void agent_caller_set_groups(agent_caller *c, gid_t *groups, int n);

void agent_caller_done(agent_caller *c);

/* agent_caller_in_group: gid is the caller's primary or a supplementary group. */
bool agent_caller_in_group(const agent_caller *c, gid_t gid);
