/* The agent's clocks, one place for every module (no module needs another
 * one's code just to read the time). Any thread. */
#pragma once

#include <stdint.h>

/* agent_now_us: wall-clock time (CLOCK_REALTIME), microseconds since 1970:
 * what the log's entries and checkpoints record. */
uint64_t agent_now_us(void);

/* agent_monotonic_ms, agent_monotonic_ns: CLOCK_MONOTONIC, for timeouts,
 * deadlines and durations. */
uint64_t agent_monotonic_ms(void);
uint64_t agent_monotonic_ns(void);
