/* The key generator: one thread, at the lowest CPU priority (SCHED_IDLE,
 * where RLIMIT_NICE lets a starved generation go back to nice 0; see
 * generator_start), on which every key generation runs (operator and scheduled rotations,
 * auto_rotate_on_revoke, a reload's new principals). A generation is CPU
 * work of 0.2-1 s for RSA-3072 in SoftHSM2; on this thread the workers,
 * the committer and the event loop preempt it whenever they have work, and
 * no token worker is taken by it (docs/hardening.md, "Key generation").
 *
 * Nothing a Sign needs may wait on this thread: a job's run() on it must
 * take no lock that a signer takes (keys_generate_pair takes none), and
 * hands the job on (workers_submit_unlocked: not even the pool's lock) for
 * whatever does. */
#pragma once

#include <stdbool.h>

#include "workers.h"

typedef struct agent_generator agent_generator;

/* generator_start: the thread ("provsign-keygen"). 0 and *ret, or a
 * negative errno. It runs at SCHED_IDLE where RLIMIT_NICE lets a starved
 * generation go back to nice 0 (generator_tick), else at the normal
 * priority (said once); PROVSIGN_KEYGEN_PRIORITY=idle|normal in the
 * environment decides instead. If the priority cannot be lowered (a
 * seccomp filter, say), it runs at the normal one and says so. */
int generator_start(agent_generator **ret);

/* generator_submit: queues job; its run() is called on the generator
 * thread, whatever job->cancelled says (run() decides), and then owns it. */
void generator_submit(agent_generator *g, agent_job *job);
/* generator_submit_urgent: queues job before every job not urgent (after the
 * urgent ones already queued): a revocation's successor must not wait for a
 * reload's batch of RSA keys while the revoked key still signs. */
void generator_submit_urgent(agent_generator *g, agent_job *job);

/* generator_tick: about once a second, on the main thread. A generation
 * that has run for GENERATOR_IDLE_MAX_MS (1 s) without finishing (the
 * agent's CPU share was never idle: a sustained signing load) goes on at
 * SCHED_OTHER, where RLIMIT_NICE allows it, so that a rotation cannot
 * starve past hsm_timeout; the next job starts at SCHED_IDLE again. */
void generator_tick(agent_generator *g);

/* generator_stopping: true once generator_stop began; a run() then hands
 * its job on without generating. */
bool generator_stopping(const agent_generator *g);

/* generator_stop: the job in progress finishes, the queued ones are run
 * with generator_stopping() true, the thread is joined and g freed.
 * Accepts NULL. */
void generator_stop(agent_generator *g);
