/* agent/workers.c: jobs handed over without the pool's lock
 * (workers_submit_unlocked, the SCHED_IDLE key generator's way) run on a
 * worker and come back through workers_take_done; the pool's fd does not
 * stay readable once taken (the event loop is level-triggered); a relayed
 * job not yet queued at workers_stop still runs. The key generator runs
 * urgent jobs (a revocation's successor) before the others queued, in the
 * order they came. An idle pool hands each job to the thread that went idle
 * last (a lone client's Signs stay on one warm thread), and jobs queued
 * together still run on every thread at once. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "generator.h"
#include "workers.h"

struct tjob {
        agent_job base;
        int ran; /* __atomic */
};

static void tjob_run(agent_job *j) {
        __atomic_store_n(&((struct tjob *) j)->ran, 1, __ATOMIC_RELEASE);
}

/* ---- the key generator's queue ---- */

struct gjob {
        agent_job base;
        char name;
        int *gate;     /* the first job waits until *gate (__atomic) is set */
};

static char g_order[16];
static int g_n;       /* __atomic */
static int g_started; /* __atomic: the gated job is running */

static void gjob_run(agent_job *j) {
        struct gjob *g = (struct gjob *) j;
        if (g->gate)
                __atomic_store_n(&g_started, 1, __ATOMIC_RELEASE);
        while (g->gate && !__atomic_load_n(g->gate, __ATOMIC_ACQUIRE))
                usleep(1000);
        int i = __atomic_fetch_add(&g_n, 1, __ATOMIC_ACQ_REL);
        if (i < (int) sizeof g_order)
                g_order[i] = g->name;
}

static void test_generator_urgent_first(void **state) {
        (void) state;
        agent_generator *gen = NULL;
        assert_int_equal(generator_start(&gen), 0);
        int gate = 0;
        struct gjob jobs[] = { { .name = 'x', .gate = &gate }, { .name = 'a' }, { .name = 'b' },
                               { .name = 'U' }, { .name = 'c' }, { .name = 'V' } };
        for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
                jobs[i].base.run = gjob_run;
        generator_submit(gen, &jobs[0].base);
        /* the gated job is running (off the queue) before the rest come */
        for (int t = 0; t < 5000 && !__atomic_load_n(&g_started, __ATOMIC_ACQUIRE); t++)
                usleep(1000);
        assert_true(__atomic_load_n(&g_started, __ATOMIC_ACQUIRE));
        generator_submit(gen, &jobs[1].base);
        generator_submit(gen, &jobs[2].base);
        generator_submit_urgent(gen, &jobs[3].base);
        generator_submit(gen, &jobs[4].base);
        generator_submit_urgent(gen, &jobs[5].base);
        __atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
        for (int t = 0; t < 5000 && __atomic_load_n(&g_n, __ATOMIC_ACQUIRE) < 6; t++)
                usleep(1000);
        generator_stop(gen);
        assert_int_equal(g_n, 6);
        g_order[6] = '\0';
        assert_string_equal(g_order, "xUVabc");
}

static bool readable(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

#define N_JOBS 16

struct submitter {
        agent_workers *w;
        struct tjob *jobs;
};

static void *submit_all(void *arg) {
        struct submitter *s = arg;
        for (int i = 0; i < N_JOBS; i++)
                workers_submit_unlocked(s->w, &s->jobs[i].base);
        return NULL;
}

/* Takes finished jobs until n came back or about 10 s passed; their
 * count. With the wake hook the pool does not wake the loop for finished
 * jobs, so this looks every 10 ms, as the audit committer's wakes would. */
static int take_until(agent_workers *w, int n) {
        int back = 0;
        for (int rounds = 0; back < n && rounds < 1000; rounds++) {
                (void) readable(workers_fd(w), 10);
                for (agent_job *j = workers_take_done(w); j; j = j->next)
                        back++;
        }
        return back;
}

static bool always_pending(void *ctx) {
        (void) ctx;
        return true;
}

static void unlocked_from_another_thread(bool hook) {
        agent_workers *w = NULL;
        assert_int_equal(workers_start(2, "test-worker", &w), 0);
        if (hook)
                workers_set_wake_hook(w, always_pending, NULL);
        struct tjob jobs[N_JOBS] = { 0 };
        for (int i = 0; i < N_JOBS; i++)
                jobs[i].base.run = tjob_run;
        struct submitter s = { w, jobs };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, submit_all, &s), 0);
        pthread_join(t, NULL);
        /* Relayed jobs are queued by workers_take_done, then come back done. */
        assert_int_equal(take_until(w, N_JOBS), N_JOBS);
        for (int i = 0; i < N_JOBS; i++)
                assert_int_equal(__atomic_load_n(&jobs[i].ran, __ATOMIC_ACQUIRE), 1);
        /* Nothing pending: the fd is not left readable (a busy loop). */
        assert_null(workers_take_done(w));
        assert_false(readable(workers_fd(w), 0));
        assert_null(workers_stop(w));
}

static void test_unlocked_from_another_thread(void **state) {
        (void) state;
        unlocked_from_another_thread(false);
}

/* As in the agent: finished jobs come back on the audit committer's wake,
 * so only the relay writes the pool's fd. */
static void test_unlocked_with_wake_hook(void **state) {
        (void) state;
        unlocked_from_another_thread(true);
}

static void test_relayed_at_stop_still_runs(void **state) {
        (void) state;
        agent_workers *w = NULL;
        assert_int_equal(workers_start(1, "test-worker", &w), 0);
        struct tjob jobs[3] = { 0 };
        for (int i = 0; i < 3; i++) {
                jobs[i].base.run = tjob_run;
                workers_submit_unlocked(w, &jobs[i].base);
        }
        int back = 0;
        for (agent_job *j = workers_stop(w); j; j = j->next)
                back++;
        assert_int_equal(back, 3);
        for (int i = 0; i < 3; i++)
                assert_int_equal(__atomic_load_n(&jobs[i].ran, __ATOMIC_ACQUIRE), 1);
}

/* ---- which thread runs a job ---- */

struct ttjob {
        agent_job base;
        pthread_t ran_on;
        int *running, *peak; /* __atomic; with peak: wait (<= 5 s) for *peak threads at once */
        int want;
};

static void ttjob_run(agent_job *j) {
        struct ttjob *t = (struct ttjob *) j;
        t->ran_on = pthread_self();
        if (!t->running)
                return;
        int now = __atomic_add_fetch(t->running, 1, __ATOMIC_ACQ_REL);
        int seen = __atomic_load_n(t->peak, __ATOMIC_ACQUIRE);
        while (now > seen && !__atomic_compare_exchange_n(t->peak, &seen, now, false, __ATOMIC_ACQ_REL,
                                                          __ATOMIC_ACQUIRE))
                ;
        for (int i = 0; i < 5000 && __atomic_load_n(t->peak, __ATOMIC_ACQUIRE) < t->want; i++)
                usleep(1000);
        __atomic_sub_fetch(t->running, 1, __ATOMIC_ACQ_REL);
}

/* Until every thread of the pool waits for a job (about 5 s at most): a
 * thread still starting, or between its job and its wait, takes a job it
 * finds queued whoever was woken for it. */
static void wait_all_idle(agent_workers *w, size_t n) {
        for (int i = 0; i < 5000 && workers_idle(w) < n; i++)
                usleep(1000);
        assert_int_equal(workers_idle(w), n);
}

static void test_lone_jobs_stay_on_one_thread(void **state) {
        (void) state;
        agent_workers *w = NULL;
        assert_int_equal(workers_start(4, "test-worker", &w), 0);
        wait_all_idle(w, 4);
        struct ttjob jobs[40] = { 0 };
        for (int i = 0; i < 40; i++) {
                jobs[i].base.run = ttjob_run;
                workers_submit(w, &jobs[i].base);
                assert_int_equal(take_until(w, 1), 1); /* one at a time, as a lone client's */
        }
        /* The first goes to the thread on top of the idle stack; it comes
         * back on top before the pool's fd says it is done, so it takes
         * every next one. */
        for (int i = 1; i < 40; i++)
                assert_true(pthread_equal(jobs[i].ran_on, jobs[0].ran_on));
        wait_all_idle(w, 4);
        assert_null(workers_stop(w));
}

static void test_queued_jobs_use_every_thread(void **state) {
        (void) state;
        agent_workers *w = NULL;
        assert_int_equal(workers_start(4, "test-worker", &w), 0);
        /* All waiting first: else threads still starting find the jobs
         * themselves and the wake-up of idle ones goes untested. */
        wait_all_idle(w, 4);
        int running = 0, peak = 0;
        struct ttjob jobs[8] = { 0 };
        for (int i = 0; i < 8; i++) {
                jobs[i].base.run = ttjob_run;
                jobs[i].running = &running;
                jobs[i].peak = &peak;
                jobs[i].want = 4;
                workers_submit(w, &jobs[i].base);
        }
        assert_int_equal(take_until(w, 8), 8);
        /* Each job waits until four run at once: every thread was woken. */
        assert_int_equal(__atomic_load_n(&peak, __ATOMIC_ACQUIRE), 4);
        assert_null(workers_stop(w));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unlocked_from_another_thread),
                cmocka_unit_test(test_unlocked_with_wake_hook),
                cmocka_unit_test(test_relayed_at_stop_still_runs),
                cmocka_unit_test(test_generator_urgent_first),
                cmocka_unit_test(test_lone_jobs_stay_on_one_thread),
                cmocka_unit_test(test_queued_jobs_use_every_thread),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
