/* Refusal entries in the audit log, rate-limited per uid so that no caller
 * can flood the log: each uid gets REFUSALS_PER_WINDOW entries per window;
 * past that, refusals are counted, and one REFUSED_SUMMARY entry says how
 * many were not logged once the window ends. Main thread only. */
#pragma once

#include "agent.h"
#include "peer.h"

#define REFUSALS_PER_WINDOW 20u
#define REFUSAL_WINDOW_S 60u

/* refusals_record: logs (or counts) one refusal. request: the request's
 * name; principal may be "" or NULL. */
void refusals_record(agent *a, const agent_caller *who, const char *request, const char *principal, int status,
                     const char *message);

/* refusals_tick: emits the summaries of windows that ended. Call about once
 * a second, and with force at shutdown. */
void refusals_tick(agent *a, bool force);

void refusals_free(void);
