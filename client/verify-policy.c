/* Deploy-time policy for `provsign verify`: see verify-policy.h. */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "duration.h"
#include "inireader.h"
#include "verify-policy.h"

/* ---- The rules ---------------------------------------------------------------- */

int client_policy_list_add(struct client_policy_list *l, const char *s) {
        char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);

        if (!nv)
                return -ENOMEM;
        l->v = nv;
        l->v[l->n] = strdup(s);
        if (!l->v[l->n])
                return -ENOMEM;
        l->n++;
        return 0;
}

static void list_done(struct client_policy_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (struct client_policy_list) {};
}

void client_policy_rule_done(struct client_policy_rule *r) {
        if (!r)
                return;
        free(r->pattern);
        list_done(&r->principals);
        list_done(&r->source_uris);
        list_done(&r->source_uri_prefixes);
        list_done(&r->source_refs);
        list_done(&r->builder_ids);
        *r = (struct client_policy_rule) {};
}

void client_policy_done(struct client_policy *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                client_policy_rule_done(&p->rules[i]);
        free(p->rules);
        *p = (struct client_policy) {};
}

const struct client_policy_rule *client_policy_match(const struct client_policy *p, const char *name) {
        for (size_t i = 0; name && i < p->n; i++)
                if (fnmatch(p->rules[i].pattern, name, 0) == 0)
                        return &p->rules[i];
        return NULL;
}

/* ---- The file ----------------------------------------------------------------- */

struct policy_parser {
        struct proto_ini_reader rd;
        struct client_policy *policy;
        unsigned seen;            /* keys seen in the current section, by bit */
};

static struct client_policy_rule *current(struct policy_parser *pp) {
        return pp->policy->n ? &pp->policy->rules[pp->policy->n - 1] : NULL;
}

bool client_policy_rule_empty(const struct client_policy_rule *r) {
        return !r->principals.n && !r->source_uris.n && !r->source_uri_prefixes.n && !r->source_refs.n &&
               !r->builder_ids.n && !r->has_max_age && !r->require_receipt;
}

/* The section before a new one (or the end) must constrain something. */
static int section_end(struct policy_parser *pp) {
        const struct client_policy_rule *r = current(pp);

        if (!r || !client_policy_rule_empty(r))
                return 0;
        proto_ini_reader_error(&pp->rd, -EINVAL,
                               "[artifact \"%s\"] allows everything: give principals, source_uri, "
                               "source_uri_prefix, source_refs, builder_ids, max_age or require_receipt",
                               r->pattern);
        pp->rd.error_line = r->line;
        return pp->rd.error;
}

/* "artifact PATTERN" or "artifact \"PATTERN\"" into a new copy of PATTERN. */
static char *section_pattern(const char *name) {
        size_t n;

        if (strncmp(name, "artifact", 8) != 0 || !isspace((unsigned char) name[8]))
                return NULL;
        for (name += 8; isspace((unsigned char) *name); name++)
                ;
        n = strlen(name);
        if (name[0] == '"') {
                if (n < 3 || name[n - 1] != '"' || memchr(name + 1, '"', n - 2))
                        return NULL;
                return strndup(name + 1, n - 2);
        }
        return n > 0 && !strchr(name, '"') ? strdup(name) : NULL;
}

static int on_section(struct proto_ini_reader *rd, const char *name) {
        struct policy_parser *pp = rd->userdata;
        struct client_policy *p = pp->policy;
        struct client_policy_rule *nr;
        char *pattern;
        int r = section_end(pp);

        if (r < 0)
                return r;
        pattern = section_pattern(name);
        if (!pattern)
                return proto_ini_reader_error(rd, -EINVAL, "unknown section [%s] (expected [artifact \"PATTERN\"])",
                                              name);
        for (size_t i = 0; i < p->n; i++)
                if (strcmp(p->rules[i].pattern, pattern) == 0) {
                        r = proto_ini_reader_error(rd, -EINVAL,
                                                   "duplicate section [artifact \"%s\"] (first at line %u)", pattern,
                                                   p->rules[i].line);
                        free(pattern);
                        return r;
                }
        nr = p->n < CLIENT_POLICY_MAX_RULES ? realloc(p->rules, (p->n + 1) * sizeof *nr) : NULL;
        if (!nr) {
                free(pattern);
                return proto_ini_reader_error(rd, p->n < CLIENT_POLICY_MAX_RULES ? -ENOMEM : -EINVAL,
                                              "too many sections (at most %u)", CLIENT_POLICY_MAX_RULES);
        }
        p->rules = nr;
        p->rules[p->n++] = (struct client_policy_rule) { .pattern = pattern, .line = rd->line };
        pp->seen = 0;
        return 0;
}

/* A list value: words separated by blanks or commas. */
static int parse_list(struct policy_parser *pp, const char *key, const char *value, struct client_policy_list *l) {
        char *copy = strdup(value), *save = NULL;
        int r = copy ? 0 : -ENOMEM;

        for (char *tok = copy ? strtok_r(copy, " \t,", &save) : NULL; tok && r == 0;
             tok = strtok_r(NULL, " \t,", &save))
                r = client_policy_list_add(l, tok);
        free(copy);
        if (r < 0)
                return proto_ini_reader_error(&pp->rd, r, "out of memory");
        if (l->n == 0)
                return proto_ini_reader_error(&pp->rd, -EINVAL, "%s is empty", key);
        return 0;
}

static int parse_bool(struct policy_parser *pp, const char *key, const char *value, bool *b) {
        if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0)
                *b = true;
        else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0)
                *b = false;
        else
                return proto_ini_reader_error(&pp->rd, -EINVAL,
                                              "bad boolean \"%s\" for %s (yes, no, true, false, 1, 0)", value, key);
        return 0;
}

static const char *const policy_keys[] = {
        "principals", "source_uri", "source_uri_prefix", "source_refs", "builder_ids", "max_age", "require_receipt",
};

static int set_key(struct policy_parser *pp, struct client_policy_rule *r, size_t k, const char *value) {
        struct client_policy_list *lists[] = { &r->principals, &r->source_uris, &r->source_uri_prefixes,
                                               &r->source_refs, &r->builder_ids };

        if (k < 5)
                return parse_list(pp, policy_keys[k], value, lists[k]);
        if (k == 6)
                return parse_bool(pp, policy_keys[k], value, &r->require_receipt);
        if (proto_duration_parse(value, &r->max_age_s) < 0)
                return proto_ini_reader_error(&pp->rd, -EINVAL, "bad duration \"%s\" for max_age (30s, 5m, 12h, 90d)",
                                              value);
        r->has_max_age = true;
        return 0;
}

static int policy_handler(void *user, const char *section, const char *name, const char *value) {
        struct policy_parser *pp = user;
        struct client_policy_rule *r = current(pp);

        (void) section; /* truncated by libinih: the reader's callback has it whole */
        if (pp->rd.error < 0)
                return 0;
        if (!r) {
                proto_ini_reader_error(&pp->rd, -EINVAL, "\"%s\" outside a section", name);
                return 0;
        }
        for (size_t k = 0; k < sizeof policy_keys / sizeof policy_keys[0]; k++) {
                if (strcmp(name, policy_keys[k]) != 0)
                        continue;
                if (pp->seen & (1u << k)) {
                        proto_ini_reader_error(&pp->rd, -EINVAL, "duplicate key %s", name);
                        return 0;
                }
                pp->seen |= 1u << k;
                set_key(pp, r, k, value);
                return 1;
        }
        proto_ini_reader_error(&pp->rd, -EINVAL, "unknown key \"%s\"", name);
        return 0;
}

int client_policy_parse(const char *text, size_t len, struct client_policy *ret, char *msg, size_t msg_size) {
        struct policy_parser pp = {
                .rd = { .data = text, .size = len, .section = on_section },
                .policy = ret,
        };
        int r;

        pp.rd.userdata = &pp;
        r = ini_parse_stream(proto_ini_reader_next, &pp.rd, policy_handler, &pp);
        if (pp.rd.error == 0 && r == -2)
                proto_ini_reader_error(&pp.rd, -ENOMEM, "out of memory");
        else if (pp.rd.error == 0 && r != 0) {
                proto_ini_reader_error(&pp.rd, -EINVAL, "syntax error");
                pp.rd.error_line = r > 0 ? (unsigned) r : 0;
        }
        if (pp.rd.error == 0)
                section_end(&pp);
        if (pp.rd.error == 0 && ret->n == 0) {
                proto_ini_reader_error(&pp.rd, -EINVAL, "no [artifact \"PATTERN\"] section: every artifact would fail");
                pp.rd.error_line = 0;
        }
        if (pp.rd.error < 0) {
                unsigned line = pp.rd.error_line;

                if (line)
                        snprintf(msg, msg_size, ":%u: %s", line, pp.rd.message);
                else
                        snprintf(msg, msg_size, ": %s", pp.rd.message);
                return pp.rd.error;
        }
        return 0;
}

/* ---- The checks ----------------------------------------------------------------- */

/* "a, b, c" of a list into buf (truncated with "..."). */
static void join(char *buf, size_t size, const struct client_policy_list *l, const char *prefix) {
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < l->n && off < size; i++) {
                int n = snprintf(buf + off, size - off, "%s%s%s", off ? ", " : "", prefix, l->v[i]);

                if (n < 0 || (size_t) n >= size - off) {
                        if (size > 4)
                                strcpy(buf + size - 4, "...");
                        return;
                }
                off += (size_t) n;
        }
}

static bool in_list(const struct client_policy_list *l, const char *s, int how) {
        for (size_t i = 0; s && i < l->n; i++)
                if (how == 0 ? strcmp(l->v[i], s) == 0
                    : how == 1 ? strncmp(s, l->v[i], strlen(l->v[i])) == 0
                               : fnmatch(l->v[i], s, 0) == 0)
                        return true;
        return false;
}

static struct client_policy_check *add(struct client_policy_check *c, const char *field, bool ok, const char *value) {
        *c = (struct client_policy_check) { .field = field, .ok = ok };
        snprintf(c->value, sizeof c->value, "%s", value ? value : "(none)");
        return c;
}

static size_t check_source(const struct client_policy_rule *rule, const struct client_policy_facts *f,
                           struct client_policy_check *out) {
        struct client_policy_check *c;
        size_t n = 0;

        if (rule->source_uris.n || rule->source_uri_prefixes.n) {
                char a[240], b[240];

                c = add(&out[n++], "source_uri", in_list(&rule->source_uris, f->source_uri, 0) ||
                                                         in_list(&rule->source_uri_prefixes, f->source_uri, 1),
                        f->source_uri);
                join(a, sizeof a, &rule->source_uris, "");
                join(b, sizeof b, &rule->source_uri_prefixes, "prefix ");
                snprintf(c->allowed, sizeof c->allowed, "%s%s%s", a, a[0] && b[0] ? ", " : "", b);
        }
        if (rule->source_refs.n) {
                c = add(&out[n++], "source_ref", in_list(&rule->source_refs, f->source_ref, 2), f->source_ref);
                join(c->allowed, sizeof c->allowed, &rule->source_refs, "");
        }
        return n;
}

size_t client_policy_check(const struct client_policy_rule *rule, const struct client_policy_facts *f,
                           struct client_policy_check out[static CLIENT_POLICY_MAX_CHECKS]) {
        struct client_policy_check *c;
        size_t n = 0;

        if (rule->principals.n) {
                c = add(&out[n++], "principal", in_list(&rule->principals, f->principal, 0), f->principal);
                join(c->allowed, sizeof c->allowed, &rule->principals, "");
        }
        n += check_source(rule, f, out + n);
        if (rule->builder_ids.n) {
                c = add(&out[n++], "builder_id", in_list(&rule->builder_ids, f->builder_id, 0), f->builder_id);
                join(c->allowed, sizeof c->allowed, &rule->builder_ids, "");
        }
        if (rule->require_receipt) {
                c = add(&out[n++], "receipt", f->receipt, f->receipt ? "verified" : "(none)");
                snprintf(c->allowed, sizeof c->allowed, "a verified receipt is required");
        }
        if (rule->has_max_age) {
                /* microseconds: "1s" must refuse 1.5 s */
                uint64_t age_us = f->now_us > f->log_time_us ? (uint64_t) (f->now_us - f->log_time_us) : 0;
                bool young = rule->max_age_s > UINT64_MAX / 1000000 || age_us <= rule->max_age_s * 1000000;
                char v[64];

                snprintf(v, sizeof v, "%" PRIu64 ".%03" PRIu64 "s old", age_us / 1000000, age_us % 1000000 / 1000);
                c = add(&out[n++], "max_age", f->receipt && young,
                        f->receipt ? v : "unknown (no receipt: the log time is not proven)");
                snprintf(c->allowed, sizeof c->allowed, "at most %" PRIu64 "s", rule->max_age_s);
        }
        return n;
}
