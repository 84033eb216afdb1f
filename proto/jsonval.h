/* Reading values out of untrusted JSON (jansson) with their bounds. */
#pragma once

#include <stddef.h>

#include <jansson.h>

/* proto_json_string: v's text when v is a string of 1..max bytes without
 * NUL bytes (JSON may carry \u0000); NULL otherwise (NULL v included).
 * Borrowed from v. */
const char *proto_json_string(const json_t *v, size_t max);
