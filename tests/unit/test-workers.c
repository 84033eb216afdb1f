/* agent/workers.c: jobs handed over without the pool's lock
 * (workers_submit_unlocked, the SCHED_IDLE key generator's way) run on a
 * worker and come back through workers_take_done; the pool's fd does not
 * stay readable once taken (the event loop is level-triggered); a relayed
 * job not yet queued at workers_stop still runs. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "workers.h"

struct tjob {
        agent_job base;
        int ran; /* __atomic */
};

static void tjob_run(agent_job *j) {
        __atomic_store_n(&((struct tjob *) j)->ran, 1, __ATOMIC_RELEASE);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unlocked_from_another_thread),
                cmocka_unit_test(test_unlocked_with_wake_hook),
                cmocka_unit_test(test_relayed_at_stop_still_runs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
