/* Refusals, the one path for all of them: an audit log entry, a stderr
 * line and a journald event each, rate-limited per uid so that no caller
 * can flood the log or the journal: each uid gets REFUSALS_PER_WINDOW of
 * them per window; past that, refusals are counted, and once the window
 * ends one REFUSED_SUMMARY entry (and one line, one event) says how many
 * were not logged. Main thread only. */
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
