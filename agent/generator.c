#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "generator.h"
#include "log.h"

/* A generation that has waited this long for idle CPU (the agent's other
 * threads kept every CPU of its share busy, e.g. under a sustained signing
 * load) goes on at normal priority, as all generations did before. */
#define GENERATOR_IDLE_MAX_MS 1000u

struct agent_generator {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        agent_job *head, *tail;
        agent_job *last_urgent;  /* the last of the urgent jobs at the head; NULL: none queued */
        bool stopping;           /* __atomic for generator_stopping */
        pthread_t thread;
        pid_t tid;               /* __atomic: the thread's, for generator_tick */
        uint64_t job_start_ms;   /* __atomic: when the running job began; 0: none */
        int boosted;             /* __atomic: generator_tick put it back to SCHED_OTHER */
        bool boost_refused;      /* main thread: said once */
        bool idle;               /* SCHED_IDLE (else the normal priority); set before the thread starts */
};

/* A thread at SCHED_IDLE may go back to nice 0 only where RLIMIT_NICE
 * allows nice 0 (20 - 0); main.c raised the soft limit to the hard one. */
static bool can_leave_idle(void) {
        struct rlimit rl;
        return getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 20);
}

/* SCHED_IDLE: any other thread of the agent that becomes runnable preempts
 * this one at once. Among other processes the agent's cgroup (or autogroup)
 * competes as a whole, so other load on the host slows a generation only
 * as much as it slows the agent. Lowering a priority needs no privilege;
 * a seccomp filter may refuse it (the unit allows sched_setscheduler). */
static void lower_priority(void) {
        struct sched_param sp = { .sched_priority = 0 };
        if (sched_setscheduler(0, SCHED_IDLE, &sp) == 0)
                return;
        int e = errno;
        if (setpriority(PRIO_PROCESS, (id_t) gettid(), 19) == 0) {
                log_notice("key generator: SCHED_IDLE refused (%s); running at nice 19", strerror(e));
                return;
        }
        log_warning("key generator: cannot lower its CPU priority (%s); key generations compete with signers "
                    "for the CPU", strerror(errno));
}

/* Back to SCHED_IDLE after generator_tick raised it (always allowed). */
static void unboost(agent_generator *g) {
        if (g->idle && __atomic_exchange_n(&g->boosted, 0, __ATOMIC_ACQ_REL)) {
                struct sched_param sp = { .sched_priority = 0 };
                (void) sched_setscheduler(0, SCHED_IDLE, &sp);
        }
}

static void *generator_main(void *arg) {
        agent_generator *g = arg;
        __atomic_store_n(&g->tid, gettid(), __ATOMIC_RELEASE);
        (void) pthread_setname_np(pthread_self(), "provsign-keygen");
        if (g->idle)
                lower_priority();
        pthread_mutex_lock(&g->lock);
        for (;;) {
                while (!g->head && !__atomic_load_n(&g->stopping, __ATOMIC_ACQUIRE))
                        pthread_cond_wait(&g->cond, &g->lock);
                agent_job *job = g->head;
                if (!job)
                        break; /* stopping and drained */
                g->head = job->next;
                if (!g->head)
                        g->tail = NULL;
                if (g->last_urgent == job)
                        g->last_urgent = NULL;
                pthread_mutex_unlock(&g->lock);
                job->next = NULL;
                unboost(g);
                __atomic_store_n(&g->job_start_ms, agent_monotonic_ms(), __ATOMIC_RELEASE);
                job->run(job); /* hands the job on: not ours any more */
                __atomic_store_n(&g->job_start_ms, 0, __ATOMIC_RELEASE);
                unboost(g);
                pthread_mutex_lock(&g->lock);
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

int generator_start(agent_generator **ret) {
        agent_generator *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->cond, NULL);
        /* SCHED_IDLE only where a starved generation can leave it again:
         * without that, a sustained load of the agent's own threads (or, in
         * one cgroup, of anything) could hold a rotation back for good.
         * PROVSIGN_KEYGEN_PRIORITY=idle|normal decides instead (benchmarks,
         * tests). */
        const char *want = getenv("PROVSIGN_KEYGEN_PRIORITY");
        if (want && strcmp(want, "idle") != 0 && strcmp(want, "normal") != 0)
                log_warning("PROVSIGN_KEYGEN_PRIORITY=%s is neither \"idle\" nor \"normal\": ignored", want);
        bool escape = can_leave_idle();
        g->idle = want && strcmp(want, "idle") == 0 ? true : want && strcmp(want, "normal") == 0 ? false : escape;
        if (!g->idle)
                log_notice("key generator at normal priority: %s", want ? "PROVSIGN_KEYGEN_PRIORITY=normal"
                                                                         : "RLIMIT_NICE does not allow a starved "
                                                                           "generation to leave SCHED_IDLE "
                                                                           "(LimitNICE=+0 in the unit does)");
        else if (!escape)
                log_notice("key generator at SCHED_IDLE (PROVSIGN_KEYGEN_PRIORITY=idle), without a way back to "
                           "normal priority (RLIMIT_NICE)");
        /* Signals go to the main thread (signalfd). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(&g->thread, NULL, generator_main, g);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&g->lock);
                pthread_cond_destroy(&g->cond);
                free(g);
                return -r;
        }
        *ret = g;
        return 0;
}

void generator_submit(agent_generator *g, agent_job *job) {
        pthread_mutex_lock(&g->lock);
        job->next = NULL;
        if (g->tail)
                g->tail->next = job;
        else
                g->head = job;
        g->tail = job;
        pthread_cond_signal(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

void generator_submit_urgent(agent_generator *g, agent_job *job) {
        pthread_mutex_lock(&g->lock);
        agent_job **at = g->last_urgent ? &g->last_urgent->next : &g->head;
        job->next = *at;
        *at = job;
        if (!job->next)
                g->tail = job;
        g->last_urgent = job;
        pthread_cond_signal(&g->cond);
        pthread_mutex_unlock(&g->lock);
}

void generator_tick(agent_generator *g) {
        if (!g->idle)
                return;
        uint64_t start = __atomic_load_n(&g->job_start_ms, __ATOMIC_ACQUIRE);
        if (!start || agent_monotonic_ms() - start < GENERATOR_IDLE_MAX_MS || __atomic_load_n(&g->boosted, __ATOMIC_ACQUIRE))
                return;
        /* Leaving SCHED_IDLE needs RLIMIT_NICE room for nice 0 (the unit's
         * LimitNICE=+0; main.c raises the soft limit to the hard one). */
        struct sched_param sp = { .sched_priority = 0 };
        if (sched_setscheduler(__atomic_load_n(&g->tid, __ATOMIC_ACQUIRE), SCHED_OTHER, &sp) == 0) {
                __atomic_store_n(&g->boosted, 1, __ATOMIC_RELEASE);
                log_notice("key generator: a generation waited %u ms for idle CPU; it goes on at normal priority",
                           GENERATOR_IDLE_MAX_MS);
        } else if (!g->boost_refused) {
                g->boost_refused = true;
                log_warning("key generator: a generation has waited %u ms for idle CPU and cannot go on at normal "
                            "priority (%s: RLIMIT_NICE allows no nice 0; LimitNICE=+0 in the unit does); it waits for "
                            "the signers",
                            GENERATOR_IDLE_MAX_MS, strerror(errno));
        }
}

bool generator_stopping(const agent_generator *g) {
        return __atomic_load_n(&g->stopping, __ATOMIC_ACQUIRE);
}

void generator_stop(agent_generator *g) {
        if (!g)
                return;
        pthread_mutex_lock(&g->lock);
        __atomic_store_n(&g->stopping, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
}
