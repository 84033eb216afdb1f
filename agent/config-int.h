/* Internal to the configuration loader (config*.c); the rest of the agent
 * includes config.h only. Who does what:
 *
 *   config-load.c    agent_config_load(): reads the file (bounded, regular,
 *                    not group/world-writable) and runs libinih over it
 *                    through the strict line reader (proto/inireader.h)
 *   config-keys.c    what each section and key means: the key tables, the
 *                    value parsers and range checks, section headers, the
 *                    libinih handler
 *   config-ids.c     users and groups by name or number (NSS lookups)
 *   config-parser.c  the parse state they share: the first error as one
 *                    line of text, strings, decimal numbers
 *   config.c         the agent_config object: defaults before and after the
 *                    file, lookup, free
 *
 * Calls go down this list only (load -> keys -> ids -> parser; config.c
 * calls none of them). Nothing here logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "inireader.h"

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

enum section_kind {
        SECTION_NONE,
        SECTION_AGENT,
        SECTION_PRINCIPAL,
        SECTION_OPERATOR,
        SECTION_AUDITOR,
};

struct parser {
        agent_config *config;
        const char *path;

        /* the file, read whole, and the strict line reader over it
         * (proto/inireader.h; rd.line is the line being read) */
        struct proto_ini_reader rd;

        /* the section being read, as written between the brackets */
        enum section_kind kind;
        char *section;
        size_t principal;       /* index into config->principals */
        uint64_t seen;          /* keys set in this section: bit = table index */
        bool seen_agent, seen_operator, seen_auditor;

        int error;              /* first error, negative errno; 0 while none */
        char *message;          /* "FILE:LINE: ..." or "FILE: ..." */
};

struct config_key;
typedef int (*key_parser)(struct parser *p, const struct config_key *k, const char *value, void *data);

struct config_key {
        const char *name;
        key_parser parse;
        size_t offset;          /* of the field in the section's struct */
        uint64_t min, max;      /* numbers and durations */
};

/* ---- config-parser.c ---------------------------------------------------- */

/* config_parser_error_at: records the first error only (later calls are
 * ignored) and returns it, so callers can `return parser_error(...)`. line 0:
 * not tied to a line. p->message is owned by p. */
__attribute__((format(printf, 4, 5)))
int config_parser_error_at(struct parser *p, unsigned line, int error, const char *fmt, ...);

#define parser_error(p, error, ...) config_parser_error_at((p), (p)->rd.line, (error), __VA_ARGS__)

int config_parser_oom(struct parser *p);

/* config_parse_u64: decimal digits only: no sign, no space, no hex, no
 * trailing junk. -EINVAL on syntax, -ERANGE above UINT64_MAX. */
int config_parse_u64(const char *s, uint64_t *ret);

/* config_set_string: replaces *dst with a copy of value (frees the old one). */
int config_set_string(struct parser *p, char **dst, const char *value);

/* ---- config-ids.c ------------------------------------------------------- */

/* config_resolve_id: one user (group false) or group: a decimal id below the
 * (id_t) -1 sentinel, or a name resolved now. */
int config_resolve_id(struct parser *p, bool group, const char *token, uint32_t *ret);

/* config_parse_id_list: "root, 1000 daemon" into set's uids (group false) or
 * gids; the set takes the array. An empty list admits nobody. */
int config_parse_id_list(struct parser *p, bool group, const char *value, agent_id_set *set);

/* ---- config-keys.c ------------------------------------------------------ */

/* config_reader_section: the line reader's callback for "[...]" headers
 * (rd->userdata is the struct parser). */
int config_reader_section(struct proto_ini_reader *rd, const char *name);

/* config_handler: libinih's callback for every "key = value"; the first
 * error is kept in the parser and parsing continues quietly. */
int config_handler(void *userdata, const char *section, const char *name, const char *value);

/* ---- config.c ----------------------------------------------------------- */

/* config_new: an agent_config holding the defaults, or NULL (out of memory). */
agent_config *config_new(const char *path);

/* config_finish: the defaults that depend on other keys, applied once the
 * whole file is read. 0 or -ENOMEM. */
int config_finish(agent_config *c);
