/* provsign status: the agent's state and what the caller may do. */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"

static void status_help(void) {
        printf("Usage: provsign status [--json]\n"
               "\n"
               "Shows the agent's version, token and principals, and which principals\n"
               "and roles the agent grants you. When the agent's audit log has failed\n"
               "(nothing is signed until the agent is restarted) it says so, on stdout\n"
               "and with \"warning: the audit log has failed; ...\" on stderr; it still\n"
               "exits 0, since the agent answered (--json: \"log_failed\": true).\n"
               "\n"
               "  -j, --json   print {agent_version, protocol_version, token_label,\n"
               "               principals, uptime_seconds, caller_principals, caller_roles,\n"
               "               log_origin, log_size, log_syncs, log_failed}\n"
               "  -h, --help   show this help\n");
}

static json_t *strv_to_json(const char *const *v) {
        json_t *a = json_array();

        for (; a && *v; v++)
                if (json_array_append_new(a, json_string(*v)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static void print_strv(const char *label, const char *const *v) {
        printf("%-18s", label);
        if (!*v)
                fputs(" -", stdout);
        for (size_t i = 0; v[i]; i++)
                printf("%s %s", i > 0 ? "," : "", cli_safe(v[i]));
        putchar('\n');
}

static int status_run(const struct cli_ctx *ctx, bool json) {
        provsign_conn *conn = NULL;
        provsign_agent_status *st = NULL;
        bool failed;
        int r;

        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;

        r = provsign_status(conn, &st);
        if (r != 0) {
                r = cli_call_failed(ctx, conn, r, "status");
                goto out;
        }

        failed = provsign_agent_status_log_failed(st);
        if (json) {
                /* "o" steals the arrays; a NULL one fails the whole pack. */
                r = cli_print_json(json_pack("{s:s, s:I, s:s, s:o, s:I, s:o, s:o, s:s, s:I, s:I, s:b}",
                                             "agent_version", provsign_agent_status_agent_version(st),
                                             "protocol_version", (json_int_t) provsign_agent_status_protocol_version(st),
                                             "token_label", provsign_agent_status_token_label(st),
                                             "principals", strv_to_json(provsign_agent_status_principals(st)),
                                             "uptime_seconds", (json_int_t) provsign_agent_status_uptime_seconds(st),
                                             "caller_principals", strv_to_json(provsign_agent_status_caller_principals(st)),
                                             "caller_roles", strv_to_json(provsign_agent_status_caller_roles(st)),
                                             "log_origin", provsign_agent_status_log_origin(st),
                                             "log_size", (json_int_t) provsign_agent_status_log_size(st),
                                             "log_syncs", (json_int_t) provsign_agent_status_log_syncs(st),
                                             "log_failed", failed));
                goto degraded;
        }

        printf("%-18s %s\n", "agent version:", cli_safe(provsign_agent_status_agent_version(st)));
        printf("%-18s %" PRIu32 "\n", "protocol version:", provsign_agent_status_protocol_version(st));
        printf("%-18s %s\n", "token:", cli_safe(provsign_agent_status_token_label(st)));
        printf("%-18s %" PRIu64 "s\n", "uptime:", provsign_agent_status_uptime_seconds(st));
        print_strv("principals:", provsign_agent_status_principals(st));
        print_strv("you may sign for:", provsign_agent_status_caller_principals(st));
        print_strv("your roles:", provsign_agent_status_caller_roles(st));
        printf("%-18s %s, %" PRIu64 " entries, %" PRIu64 " group commits since start\n", "audit log:",
               cli_safe(provsign_agent_status_log_origin(st)), provsign_agent_status_log_size(st),
               provsign_agent_status_log_syncs(st));
        if (failed)
                printf("%-18s %s\n", "audit log state:", "FAILED: nothing is signed until the agent is restarted");
        r = CLI_EXIT_OK;
degraded:
        /* A failed log: said on stderr too, after the whole status on stdout.
         * The exit stays 0: the agent answered, and exit 3 means "refused"
         * (DESIGN.md); monitoring reads "log_failed" or provsign_log_failed. */
        if (r == CLI_EXIT_OK && failed) {
                fflush(stdout);
                fprintf(stderr, "warning: the audit log has failed; nothing is signed until the agent is restarted\n");
        }
out:
        provsign_agent_status_free(st);
        provsign_close(conn);
        return r;
}

int cmd_status(const struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        bool json = false;
        int c, r;

        while ((c = getopt_long(argc, argv, ":jh", options, NULL)) >= 0)
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'h':
                        status_help();
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error("status", c, argv);
                }

        r = cli_extra_args("status", argc, argv);
        if (r != CLI_EXIT_OK)
                return r;

        return status_run(ctx, json);
}
