/* The signed key bundle (GetKeyBundle; the format: proto/keybundle.h). */
#pragma once

#include <stddef.h>

#include "dispatch.h"

/* bundle_build: the bundle JSON (proto/keybundle.h) of every key in the
 * registry. 0 with *ret (caller frees) and *ret_len, or -errno. */
int bundle_build(agent *a, const char *only, char **ret, size_t *ret_len);

/* bundle_handle: the GetKeyBundle handler (any caller). */
bool bundle_handle(agent *a, agent_conn *c, const handler *h, Provsign__Request *req);
