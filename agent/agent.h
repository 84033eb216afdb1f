/* The agent's state, owned by the main (event loop) thread. Worker threads
 * see only what a job hands them: a keys_store, a keys_key (both stable for
 * the process lifetime) and copies of the request's bytes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "clock.h"
#include "config.h"
#include "keystore.h"
#include "registry.h"
#include "generator.h"
#include "workers.h"

typedef struct agent_server agent_server;

typedef struct agent {
        agent_config *config;       /* current policy; replaced on SIGHUP */
        keys_store *store;
        agent_registry registry;
        agent_workers *workers;
        agent_generator *generator; /* every key generation after start (generator.h) */
        agent_server *server;
        agent_audit *audit;
        struct agent_conn_job *parked_head, *parked_tail; /* Sign replies waiting for their entry */
        uint64_t started_us;
        _Atomic int journal_events; /* config->journal_events, readable from any thread (events.h) */
} agent;

