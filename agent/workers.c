#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "workers.h"

/* One thread of the pool. An idle one waits on its own condition, on the
 * pool's stack of idle threads: a job wakes the one that went idle last,
 * whose caches (its stack, the token library's per-thread state) are the
 * warmest. A shared condition woke them in turn, so a lone client's every
 * Sign ran on a cold thread (4 workers: p50 +12 %; tests/bench/RESULTS.md). */
struct worker {
        pthread_t thread;
        pthread_cond_t cond;
        struct worker *next_idle;
        bool idle;               /* on the idle stack; cleared by whoever pops it */
        agent_workers *pool;
};

struct agent_workers {
        pthread_mutex_t lock;
        struct worker *idle_top; /* the idle stack, most recently idle first */
        agent_job *queue_head, *queue_tail;
        agent_job *done_head, *done_tail;
        agent_job *relay;        /* __atomic LIFO: workers_submit_unlocked, queued by the main thread */
        bool stopping;
        bool signalled;          /* efd written since the last take_done */
        bool (*wake_pending)(void *ctx);
        void *wake_ctx;
        int efd;
        size_t n;
        size_t queued, busy;     /* jobs waiting; workers holding a job (workers_load); queued
                                  * changes under the lock, __atomic for workers_waiting */
        struct worker *threads;
};

static void push(agent_job **head, agent_job **tail, agent_job *job) {
        job->next = NULL;
        if (*tail)
                (*tail)->next = job;
        else
                *head = job;
        *tail = job;
}

/* The thread to wake for a job just queued, taken off the idle stack, or
 * NULL if none is idle (a busy one finds the job when it comes back).
 * Caller holds the lock and signals the result's cond (after unlocking, or
 * not: both are correct). */
static struct worker *pop_idle_locked(agent_workers *w) {
        struct worker *t = w->idle_top;
        if (t) {
                w->idle_top = t->next_idle;
                t->idle = false;
        }
        return t;
}

/* Onto the idle stack: on top (the next job's thread), or at the bottom
 * for a thread that waited and was woken for a job another took first (or
 * has just started), so that the warm one keeps the next job. A thread
 * popped before it even began to wait goes back on top: it has just run a
 * job. Walks the stack (at most `workers` threads) only in those cases.
 * Caller holds the lock. */
static void idle_push_locked(agent_workers *w, struct worker *self, bool bottom) {
        struct worker **pp = &w->idle_top;
        while (bottom && *pp)
                pp = &(*pp)->next_idle;
        self->next_idle = *pp;
        *pp = self;
        self->idle = true;
}

static void idle_remove_locked(agent_workers *w, struct worker *self) {
        struct worker **pp = &w->idle_top;
        while (*pp != self)
                pp = &(*pp)->next_idle;
        *pp = self->next_idle;
        self->idle = false;
}

static void *worker_main(void *arg) {
        struct worker *self = arg;
        agent_workers *w = self->pool;
        /* A thread just started is no warmer than the idle ones: it
         * joins at the bottom, like one woken for nothing. */
        bool wake = false, woken = true;
        pthread_mutex_lock(&w->lock);
        for (;;) {
                /* Idle before the loop is woken: the job its answer brings
                 * back (a lone client's next request) comes to this thread. */
                if (!w->queue_head && !w->stopping)
                        idle_push_locked(w, self, woken);
                if (wake) {
                        /* Without the lock, which the woken loop takes
                         * first thing (workers_take_done). */
                        pthread_mutex_unlock(&w->lock);
                        uint64_t one = 1;
                        (void) !write(w->efd, &one, sizeof one);
                        pthread_mutex_lock(&w->lock);
                        wake = false;
                }
                woken = self->idle;
                while (self->idle && !w->stopping)
                        pthread_cond_wait(&self->cond, &w->lock);
                if (self->idle)
                        idle_remove_locked(w, self); /* stopping */
                agent_job *job = w->queue_head;
                if (!job) {
                        if (w->stopping)
                                break; /* and drained */
                        continue;      /* another thread took it */
                }
                woken = false;
                w->queue_head = job->next;
                if (!w->queue_head)
                        w->queue_tail = NULL;
                __atomic_store_n(&w->queued, w->queued - 1, __ATOMIC_RELAXED);
                w->busy++;
                pthread_mutex_unlock(&w->lock);

                if (!__atomic_load_n(&job->cancelled, __ATOMIC_ACQUIRE))
                        job->run(job);

                pthread_mutex_lock(&w->lock);
                w->busy--;
                push(&w->done_head, &w->done_tail, job);
                /* Asked after the push: a wake still to come finds the job. */
                if (!w->signalled && !(w->wake_pending && w->wake_pending(w->wake_ctx))) {
                        w->signalled = true;
                        wake = true;
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int workers_start(size_t n, const char *name, agent_workers **ret) {
        agent_workers *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        w->threads = calloc(n, sizeof *w->threads);
        if (w->efd < 0 || !w->threads) {
                int r = w->efd < 0 ? -errno : -ENOMEM;
                (void) workers_stop(w);
                return r;
        }
        /* Workers never take signals: the main thread reads them (signalfd). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        for (size_t i = 0; i < n; i++) {
                struct worker *t = &w->threads[i];
                t->pool = w;
                pthread_cond_init(&t->cond, NULL);
                int r = pthread_create(&t->thread, NULL, worker_main, t);
                if (r != 0) {
                        pthread_cond_destroy(&t->cond);
                        pthread_sigmask(SIG_SETMASK, &old, NULL);
                        (void) workers_stop(w);
                        return -r;
                }
                w->n++;
                (void) pthread_setname_np(t->thread, name);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        *ret = w;
        return 0;
}

int workers_fd(const agent_workers *w) {
        return w->efd;
}

void workers_submit(agent_workers *w, agent_job *job) {
        pthread_mutex_lock(&w->lock);
        push(&w->queue_head, &w->queue_tail, job);
        __atomic_store_n(&w->queued, w->queued + 1, __ATOMIC_RELAXED);
        struct worker *t = pop_idle_locked(w);
        pthread_mutex_unlock(&w->lock);
        /* After the unlock: the woken worker does not block at once on
         * the lock we still held (a futex round trip per job). It stays
         * valid: a worker leaves only at workers_stop, from this thread. */
        if (t)
                pthread_cond_signal(&t->cond);
}

/* Without the pool's lock: a CAS push, then the main loop's fd (the kernel
 * wakes it; no user-space lock is held at any point). */
void workers_submit_unlocked(agent_workers *w, agent_job *job) {
        agent_job *head = __atomic_load_n(&w->relay, __ATOMIC_RELAXED);
        do
                job->next = head;
        while (!__atomic_compare_exchange_n(&w->relay, &head, job, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
        uint64_t one = 1;
        (void) !write(w->efd, &one, sizeof one);
}

/* The relayed jobs into the queue, oldest first. Caller holds the lock. */
static void queue_relayed_locked(agent_workers *w) {
        agent_job *lifo = __atomic_exchange_n(&w->relay, NULL, __ATOMIC_ACQUIRE), *fifo = NULL;
        while (lifo) {
                agent_job *next = lifo->next;
                lifo->next = fifo;
                fifo = lifo;
                lifo = next;
        }
        while (fifo) {
                agent_job *next = fifo->next;
                push(&w->queue_head, &w->queue_tail, fifo);
                __atomic_store_n(&w->queued, w->queued + 1, __ATOMIC_RELAXED);
                struct worker *t = pop_idle_locked(w);
                if (t)
                        pthread_cond_signal(&t->cond);
                fifo = next;
        }
}

void workers_load(agent_workers *w, size_t *ret_threads, size_t *ret_busy, size_t *ret_queued) {
        pthread_mutex_lock(&w->lock);
        *ret_threads = w->n;
        *ret_busy = w->busy;
        *ret_queued = w->queued;
        pthread_mutex_unlock(&w->lock);
}

size_t workers_idle(agent_workers *w) {
        size_t n = 0;
        pthread_mutex_lock(&w->lock);
        for (const struct worker *t = w->idle_top; t; t = t->next_idle)
                n++;
        pthread_mutex_unlock(&w->lock);
        return n;
}

size_t workers_waiting(const agent_workers *w) {
        return __atomic_load_n(&w->queued, __ATOMIC_RELAXED);
}

void workers_cancel(agent_job *job) {
        __atomic_store_n(&job->cancelled, 1, __ATOMIC_RELEASE);
}

void workers_set_wake_hook(agent_workers *w, bool (*pending)(void *ctx), void *ctx) {
        pthread_mutex_lock(&w->lock);
        w->wake_pending = pending;
        w->wake_ctx = ctx;
        pthread_mutex_unlock(&w->lock);
}

agent_job *workers_take_done(agent_workers *w) {
        pthread_mutex_lock(&w->lock);
        /* Read whether or not this pool wrote it: workers_submit_unlocked
         * writes it without the lock (non-blocking; 0 is EAGAIN). */
        uint64_t v;
        (void) !read(w->efd, &v, sizeof v);
        w->signalled = false;
        queue_relayed_locked(w);
        agent_job *list = w->done_head;
        w->done_head = w->done_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        return list;
}

agent_job *workers_stop(agent_workers *w) {
        if (!w)
                return NULL;
        pthread_mutex_lock(&w->lock);
        queue_relayed_locked(w); /* run like the rest of the queue */
        w->stopping = true;
        for (size_t i = 0; i < w->n; i++)
                pthread_cond_signal(&w->threads[i].cond);
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < w->n; i++) {
                pthread_join(w->threads[i].thread, NULL);
                pthread_cond_destroy(&w->threads[i].cond);
        }
        free(w->threads);
        if (w->efd >= 0)
                close(w->efd);
        pthread_mutex_destroy(&w->lock);
        agent_job *left = w->done_head;
        free(w);
        return left;
}
