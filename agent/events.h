/* Audit entries for the agent's own lifecycle: start, stop, policy loads.
 * (Signatures, refusals and key events are written where they happen.) */
#pragma once

#include "agent.h"

/* agent_audit_lifecycle: AGENT_START or AGENT_STOP with a message. */
void agent_audit_lifecycle(agent *a, int event, const char *message);

/* agent_audit_policy_load: POLICY_LOAD naming the file, with the SHA-256 of
 * its bytes as digest (so an auditor can tell which policy was in force),
 * status OK or why the load was refused. */
void agent_audit_policy_load(agent *a, const char *path, int status, const char *message);
