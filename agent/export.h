/* The auditor's requests (docs/auditing.md): Export and Find stream the committed log
 * back as several Response frames (server_stream). Main thread only;
 * handlers for requests.c's table (they never keep the request: they
 * return false). */
#pragma once

#include <stdbool.h>

#include "dispatch.h"

/* At most this many exports and finds stream at once (agent-wide); more
 * are refused with UNAVAILABLE. */
#define EXPORT_MAX_STREAMS 4u

bool export_handle_export(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool export_handle_find(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
