/* A fixed pool of threads for token calls, so the event loop never waits on
 * the token. Jobs go in with workers_submit(); finished jobs come back on
 * the main thread through workers_take_done() when workers_fd() is
 * readable. A job is owned by whoever holds it: submitter -> pool -> the
 * main thread again. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct agent_job agent_job;
struct agent_job {
        void (*run)(agent_job *job);   /* on a worker thread */
        agent_job *next;
        int cancelled;                 /* __atomic; set: run() is skipped if not started */
};

typedef struct agent_workers agent_workers;

/* workers_start: n threads, named name (at most 15 bytes: what ps, top
 * and perf show per thread). 0 and *ret, or a negative errno. */
int workers_start(size_t n, const char *name, agent_workers **ret);

int workers_fd(const agent_workers *w);

void workers_submit(agent_workers *w, agent_job *job);

/* workers_submit_unlocked: the same for a thread that must not take the
 * pool's lock, the SCHED_IDLE key generator: preempted while holding it,
 * it would stall the event loop and every worker (each Sign goes through
 * that lock) until it got a CPU again. The job is queued by the main
 * thread at its next workers_take_done() (the pool's fd wakes it), or by
 * workers_stop(). */
void workers_submit_unlocked(agent_workers *w, agent_job *job);

/* workers_load: the pool's threads, how many of them hold a job (taken
 * from the queue, not yet handed back), and the jobs submitted that no
 * worker has taken yet; counted under the pool's lock as jobs move, so
 * exact at the moment of the call (the metrics' provsign_workers_busy and
 * provsign_workers_queued). */
void workers_load(agent_workers *w, size_t *ret_threads, size_t *ret_busy, size_t *ret_queued);

/* workers_idle: the threads waiting for a job (none held, none queued for
 * them); under the pool's lock. */
size_t workers_idle(agent_workers *w);

/* workers_waiting: the jobs submitted that no worker has taken yet, read
 * without the pool's lock (a hint: it may change at once). */
size_t workers_waiting(const agent_workers *w);

/* workers_cancel: a job whose caller gave up (hsm_timeout). If no worker has
 * started it, run() is skipped; it still comes back through
 * workers_take_done() like any other job. */
void workers_cancel(agent_job *job);

/* workers_set_wake_hook: after each job a worker asks pending(ctx); true
 * means someone else is bound to wake the main loop, which then takes the
 * finished jobs too (e.g. the audit committer after the job's entry is
 * durable), so the pool does not write its fd for that job: one wakeup per
 * group commit instead of one per signature. Set before jobs run. */
void workers_set_wake_hook(agent_workers *w, bool (*pending)(void *ctx), void *ctx);

/* workers_take_done: finished jobs, oldest first (a list through ->next),
 * or NULL. Clears the fd's readiness. */
agent_job *workers_take_done(agent_workers *w);

/* workers_stop: runs what is queued, joins the threads, frees the pool and
 * returns the finished jobs nobody took yet (the caller completes or frees
 * them). Accepts NULL. */
agent_job *workers_stop(agent_workers *w);
