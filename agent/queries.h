/* The requests that read the agent's state and answer at once, on the
 * main thread: Status, GetPublicKey, ListKeys, GetCheckpoint, GetLogKey,
 * GetMetrics, Proof. Handlers for requests.c's table (they never keep the
 * request: they return false). */
#pragma once

#include "dispatch.h"

bool queries_handle_status(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_get_public_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_list_keys(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_get_checkpoint(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_get_log_key(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_get_metrics(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool queries_handle_proof(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
