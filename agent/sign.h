/* Sign: the request that signs a digest for a principal.
 *
 * main thread: authorize, pick the key, hand a job to a worker
 * worker:      sign in the token, then append the sign entry to the log
 * main thread: reply once the entry is durable and checkpointed, with a
 *              receipt (dispatch_park until then).
 * A signature whose entry cannot be logged never leaves the agent. */
#pragma once

#include "dispatch.h"

/* sign_handle: the Sign handler (requests.c's table). */
bool sign_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
