/* ---- Supplementary groups, looked up off the loop ---- */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server-int.h"

/*
 * A new connection reads nothing until its uid's groups are known; after
 * every reload (SIGHUP: the group database may have changed with the
 * policy) every open connection's groups are looked up again and, until
 * they are, it is dispatched nothing more, so a user who left a
 * principal's group stops signing for it on connections opened before. */
typedef struct groups_job {
        agent_job base;
        uid_t uid;
        uint64_t gen;            /* s->groups_gen when asked */
        gid_t *groups;
        int n_groups;
        int r;
} groups_job;

static void groups_run(agent_job *j) {
        groups_job *g = (groups_job *) j;
        g->r = agent_groups_of_uid(g->uid, &g->groups, &g->n_groups);
}

int server_groups_lookup(agent_server *s, uid_t uid) {
        groups_job *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->base.run = groups_run;
        g->uid = uid;
        g->gen = s->groups_gen;
        workers_submit(s->resolver, &g->base);
        return 0;
}

static void groups_job_free(groups_job *g) {
        free(g->groups);
        free(g);
}

/* On the main thread: hands a look-up's groups to every connection of its
 * uid that waits for them. A look-up from before the last reload is
 * dropped: a newer one for the same uid is on its way. */
void server_groups_done(agent_server *s) {
        agent_job *list = workers_take_done(s->resolver);
        while (list) {
                groups_job *g = (groups_job *) list;
                list = list->next;
                if (g->gen != s->groups_gen) {
                        groups_job_free(g);
                        continue;
                }
                for (agent_conn *c = s->conns, *next; c; c = next) {
                        next = c->next;
                        if (!c->resolving || c->caller.uid != g->uid)
                                continue;
                        gid_t *copy = g->n_groups ? malloc((size_t) g->n_groups * sizeof *copy) : NULL;
                        if (g->r < 0 || (g->n_groups && !copy)) {
                                log_error("cannot look up the groups of uid %u: %s; closing its connection",
                                          (unsigned) g->uid, strerror(g->r < 0 ? -g->r : ENOMEM));
                                free(copy);
                                server_conn_close(s, c);
                                continue;
                        }
                        if (copy)
                                memcpy(copy, g->groups, (size_t) g->n_groups * sizeof *copy);
                        agent_caller_set_groups(&c->caller, copy, g->n_groups);
                        c->resolving = false;
                        if (server_conn_can_take(s, c) && (c->rlen > 0 || c->readable))
                                server_conn_mark_ready(s, c);
                }
                groups_job_free(g);
        }
}

/* After a reload: every open connection's groups are stale. One look-up
 * per distinct uid. */
void server_groups_refresh_all(agent_server *s) {
        s->groups_gen++;
        for (agent_conn *c = s->conns; c; c = c->next) {
                bool asked = false;
                for (agent_conn *d = s->conns; d != c && !asked; d = d->next)
                        asked = d->caller.uid == c->caller.uid;
                c->resolving = true;
                if (!asked && server_groups_lookup(s, c->caller.uid) < 0)
                        log_error("cannot look up the groups of uid %u again: out of memory", (unsigned) c->caller.uid);
        }
}

int server_groups_start(agent_server *s) {
        return workers_start(RESOLVER_THREADS, "provsign-groups", &s->resolver);
}

void server_groups_stop(agent_server *s) {
        for (agent_job *j = workers_stop(s->resolver), *next; j; j = next) {
                next = j->next;
                groups_job_free((groups_job *) j);
        }
        s->resolver = NULL;
}
