#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "purge.h"

typedef struct purge_job {
        agent_conn_job base;
        agent *agent;
        const handler *h;
        int64_t before_us;
        agent_caller who;       /* exe owned */
        bool ran;
        int r;
        uint64_t purged, through;
        bool reported;
} purge_job;

static void purge_free(purge_job *job) {
        free(job->who.exe);
        free(job);
}

static void purge_run(agent_job *j) {
        purge_job *job = (purge_job *) j;
        Provsign__Caller c = PROVSIGN__CALLER__INIT;
        c.uid = job->who.uid;
        c.gid = job->who.gid;
        c.pid = job->who.pid;
        c.exe = job->who.exe ? job->who.exe : (char *) "";
        job->ran = true;
        job->r = audit_purge(job->agent->audit, job->before_us, &c, "operator", &job->purged, &job->through,
                             &job->base.wait_seq);
}

static bool purge_complete(agent *a, agent_conn *c, agent_conn_job *j) {
        purge_job *job = (purge_job *) j;
        if (!job->ran || job->r < 0) {
                if (c)
                        dispatch_refuse(a, c, job->h, job->ran ? PROVSIGN__STATUS__INTERNAL : PROVSIGN__STATUS__UNAVAILABLE,
                                        "%s", job->ran ? strerror(-job->r) : "the purge did not run; retry");
                purge_free(job);
                return true;
        }
        /* The PURGE entry durable before the answer. */
        if (!job->reported && c && job->purged && !audit_failed(a->audit) &&
            job->base.wait_seq >= audit_committed(a->audit)) {
                job->reported = true;
                dispatch_park(a, &job->base);
                return false;
        }
        if (c) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                Provsign__PurgeResponse pr = PROVSIGN__PURGE_RESPONSE__INIT;
                pr.purged = job->purged;
                pr.through_seq = job->through;
                pr.log_seq = job->purged ? job->base.wait_seq : 0;
                resp.body_case = PROVSIGN__RESPONSE__BODY_PURGE;
                resp.purge = &pr;
                server_reply(a, c, &resp, PROVSIGN__STATUS__OK, false, NULL);
        }
        purge_free(job);
        return true;
}

bool purge_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req) {
        purge_job *job = calloc(1, sizeof *job);
        if (!job) {
                server_reply(a, c, NULL, PROVSIGN__STATUS__INTERNAL, false, "out of memory");
                return false;
        }
        job->base.base.run = purge_run;
        job->base.complete = purge_complete;
        job->agent = a;
        job->h = h;
        job->before_us = req->purge->before_us;
        const agent_caller *who = server_conn_caller(c);
        job->who = (agent_caller){ .uid = who->uid, .gid = who->gid, .pid = who->pid };
        job->who.exe = who->exe ? strdup(who->exe) : NULL;
        server_submit(a, c, &job->base);
        return false;
}
