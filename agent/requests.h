/* The handler table: one row per request type, carrying its name, the
 * role it needs, its validator and its handler (docs/architecture.md
 * "Adding a request"). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"

/* requests_frame: handles one complete request frame of c (the server's
 * frame callback): decode, the row's validator, the role check, the
 * handler: exactly one reply, now or later, and SERVER_FRAME_TAKEN. A
 * request that must run alone (no request_id, or a row that is not
 * concurrent) while c has jobs out is left for later: SERVER_FRAME_WAIT. */
int requests_frame(agent *a, agent_conn *c, const uint8_t *payload, size_t len);

/* requests_validate: the validator of req's row under cfg's limits: a
 * status (INVALID_ARGUMENT for a body no row knows), with msg written
 * unless OK. */
int requests_validate(const agent_config *cfg, const Provsign__Request *req, char *msg, size_t n);
