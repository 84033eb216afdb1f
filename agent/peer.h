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
        gid_t *groups;     /* supplementary groups of uid (getgrouplist) */
        int n_groups;
        char *exe;         /* /proc/PID/exe, NULL where unreadable */
} agent_caller;

/* agent_caller_from_fd: fills *ret from the connected socket fd. 0 or a
 * negative errno (no credentials: the connection must be dropped). */
int agent_caller_from_fd(int fd, agent_caller *ret);

void agent_caller_done(agent_caller *c);

/* agent_caller_in_group: gid is the caller's primary or a supplementary group. */
bool agent_caller_in_group(const agent_caller *c, gid_t gid);
