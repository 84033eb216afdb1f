/* Operator key operations: rotate, revoke, destroy (docs/operations.md), and
 * scheduled rotation (rotate_after). Each runs on a worker (the token may
 * take its time generating or destroying), appends its key event(s)
 * through registry_append_events() and answers once the entries are
 * durable. One operation per principal at a time; a second one meanwhile
 * gets UNAVAILABLE. */
#pragma once

#include "dispatch.h"

bool keyops_handle_rotate(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool keyops_handle_revoke(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
bool keyops_handle_destroy(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);

/* keyops_tick: called about once a second on the main thread; starts the
 * rotations that rotate_after (per principal, else agent-wide) asks for. */
void keyops_tick(agent *a);
