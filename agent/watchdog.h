/* The systemd watchdog (WatchdogSec= in the unit). */
#pragma once

#include "agent.h"

/* agent_watchdog_ping: WATCHDOG=1 while the agent can do its job. Once the
 * audit log has failed for good (every Sign refused until a restart), no
 * more pings: STATUS= says why, once, and the service manager's watchdog
 * restarts the agent. Main thread; called every WATCHDOG_USEC / 2. */
void agent_watchdog_ping(agent *a);
