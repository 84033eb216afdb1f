/* The token PIN: read from pin_file or $CREDENTIALS_DIRECTORY/<pin_credential>
 * into locked memory (never swapped, excluded from core dumps), wiped after
 * login. Never logged. */
#pragma once

#include <stddef.h>

#include "config.h"

typedef struct agent_pin {
        char *data;      /* mlocked, MADV_DONTDUMP; not NUL-terminated */
        size_t len;
        size_t mapped;
} agent_pin;

/* agent_pin_read: 0 and *ret filled (agent_pin_wipe it), or a negative errno
 * with *ret_error naming the file (caller frees). One trailing newline is
 * dropped; an empty PIN is an error. */
int agent_pin_read(const agent_config *c, agent_pin *ret, char **ret_error);

/* agent_pin_wipe: zeroes, unlocks and unmaps. Accepts an empty agent_pin. */
void agent_pin_wipe(agent_pin *p);
