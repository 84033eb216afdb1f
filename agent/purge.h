/* PurgeRequest (operator): retention by hand, on a worker (audit_purge). */
#pragma once

#include "dispatch.h"

bool purge_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
