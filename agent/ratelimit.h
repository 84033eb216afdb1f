/* Per-principal signing rate limits (`rate_limit = N/s|N/m|N/h`, in
 * [principal NAME] or agent-wide): at most N Sign requests per fixed window,
 * counted per principal across all callers. Over the limit a Sign answers
 * RATE_LIMITED (and the refusal is logged like any other). Main thread only;
 * state is kept by principal name, so it survives a SIGHUP. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* ratelimit_allow: counts one request for principal and says whether it is
 * within rate (count 0: unlimited). *ret_retry_s is the number of seconds
 * until the window ends when refused. */
bool ratelimit_allow(const char *principal, agent_rate rate, uint64_t now_ms, uint64_t *ret_retry_s);

/* ratelimit_for: the limit that applies to p under cfg. */
agent_rate ratelimit_for(const agent_config *cfg, const agent_principal *p);

void ratelimit_free(void);
