/* provsign: the command-line client of provsign-agent.
 *
 *   provsign [--socket PATH] [--timeout DURATION] VERB [OPTIONS]
 *
 * One cmd_<verb>() per verb, found through the table below (the shape of
 * wireguard-tools' wg.c); each verb parses its own options with
 * getopt_long(). Exit codes: see cli.h. */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"

#include "cli.h"
#include "duration.h"

static const struct cli_verb verbs[] = {
        { "sign",    cmd_sign,    "sign a digest with a principal's active key" },
        { "key",     cmd_key,     "keys: pubkey, list, rotate, revoke, destroy, bundle" },
        { "status",  cmd_status,  "show the agent's status and what you may do" },
        { "audit",   cmd_audit,   "the audit log: checkpoint, log-key, export, verify, proof, find" },
        { "receipt", cmd_receipt, "verify a signature's receipt offline (verify)" },
        { "attest",     cmd_attest,     "sign a payload as a DSSE envelope" },
        { "provenance", cmd_provenance, "sign SLSA provenance (in-toto) for build artifacts" },
        { "verify",     cmd_verify,     "verify an envelope offline against the key bundle" },
        { "metrics",    cmd_metrics,    "the agent's metrics as OpenMetrics or Prometheus text" },
};

static void help(FILE *f) {
        fprintf(f,
                "Usage: provsign [--socket PATH] [--timeout DURATION] VERB [OPTIONS]\n"
                "\n"
                "Client of provsign-agent, the HSM-backed signing agent.\n"
                "\n"
                "Verbs:\n");
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f,
                "\n"
                "Options:\n"
                "  --socket PATH   agent socket (default: $PROVSIGN_AGENT_SOCK, else\n"
                "                  /run/provsign/agent.sock)\n"
                "  --timeout DURATION\n"
                "                  deadline of each call to the agent, e.g. 30s, 5m\n"
                "                  (default: $PROVSIGN_TIMEOUT, else 60s); a missed\n"
                "                  deadline is exit 4, \"timed out\"\n"
                "  -h, --help      show this help\n"
                "  --version       show the version\n"
                "\n"
                "'provsign VERB --help' describes a verb.\n"
                "\n"
                "Exit status: 0 success, 1 verification failed, 2 usage error,\n"
                "3 refused by the agent, 4 agent unreachable or timed out, 5 local error.\n");
}

/* --timeout > $PROVSIGN_TIMEOUT > 60 s into ctx; CLI_EXIT_OK or a usage
 * error naming where the bad value came from. */
static int set_timeout(struct cli_ctx *ctx, const char *arg) {
        const char *text = arg ? arg : secure_getenv("PROVSIGN_TIMEOUT");
        uint64_t s;

        if (!text || !*text) {
                ctx->timeout_ms = PROVSIGN_DEFAULT_TIMEOUT_MS;
                ctx->timeout_text = "60s";
                return CLI_EXIT_OK;
        }
        if (proto_duration_parse(text, &s) < 0 || s == 0 || s > PROVSIGN_MAX_TIMEOUT_MS / 1000)
                return cli_usage_error(NULL, "invalid %s '%s': expected a duration from 1s to 1d (30s, 5m, 2h)",
                                       arg ? "--timeout" : "$PROVSIGN_TIMEOUT", text);
        ctx->timeout_ms = s * 1000;
        ctx->timeout_text = text;
        return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_VERSION, ARG_TIMEOUT };
        static const struct option options[] = {
                { "socket",  required_argument, NULL, ARG_SOCKET },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "help",    no_argument,       NULL, 'h' },
                { "version", no_argument,       NULL, ARG_VERSION },
                {}
        };
        struct cli_ctx ctx = {};
        const char *socket_arg = NULL, *timeout_arg = NULL;
        int c, r;

        /* '+': stop at the verb, whose options are its own. ':': report a
         * missing argument as ':' so the message can say so. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (c) {
                case ARG_SOCKET:
                        if (!*optarg)
                                return cli_usage_error(NULL, "--socket needs a non-empty path");
                        socket_arg = optarg;
                        break;
                case ARG_TIMEOUT:
                        timeout_arg = optarg;
                        break;
                case 'h':
                        help(stdout);
                        return CLI_EXIT_OK;
                case ARG_VERSION:
                        printf("provsign %s\n", PROVSIGN_VERSION);
                        return CLI_EXIT_OK;
                default:
                        return cli_getopt_error(NULL, c, argv);
                }

        if (optind >= argc)
                return cli_usage_error(NULL, "missing verb");

        ctx.socket_path = socket_arg ? socket_arg : provsign_default_socket();
        r = set_timeout(&ctx, timeout_arg);
        if (r != CLI_EXIT_OK)
                return r;

        const char *verb = argv[optind];
        const struct cli_verb *v = NULL;
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
                if (strcmp(verbs[i].name, verb) == 0) {
                        v = &verbs[i];
                        break;
                }
        if (!v)
                return cli_usage_error(NULL, "unknown verb '%s'", verb);

        argc -= optind;
        argv += optind;
        optind = 0;     /* glibc: re-initialize getopt for the verb's argv */

        r = v->run(&ctx, argc, argv);

        /* A full disk or a closed pipe must not pass for success. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                if (r == CLI_EXIT_OK) {
                        fprintf(stderr, "provsign: cannot write output: %s\n", strerror(errno));
                        r = CLI_EXIT_LOCAL;
                }
        }
        return r;
}
