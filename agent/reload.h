/* SIGHUP: re-reads the config (reload.c). */
#pragma once

#include "agent.h"

/* agent_reload: a good new policy applies to the next request; a bad one
 * is refused with its reason (logged, audited) and the old one stays. 0 or
 * a negative errno. Main thread. */
int agent_reload(agent *a);
