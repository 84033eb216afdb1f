/* provsign metrics: the agent's counters, histograms and gauges as text
 * (docs/metrics.md), for Prometheus. */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void metrics_help(void) {
        printf("Usage: provsign metrics [--format openmetrics|prometheus] [-o FILE]\n"
               "\n"
               "Prints the agent's metrics: signatures by principal and status, refusals by\n"
               "request and reason, latency histograms (sign, token, log sync), entries per\n"
               "group commit, log size, checkpoint age, token outages, connections.\n"
               "Any connected caller may ask: counts only, no uids or digests.\n"
               "\n"
               "  -f, --format FMT   openmetrics (default; OpenMetrics 1.0 text) or\n"
               "                     prometheus (text format 0.0.4, for node_exporter's\n"
               "                     textfile collector)\n"
               "  -o, --output FILE  write FILE through a new file renamed over it (never\n"
               "                     half-written, as the textfile collector needs)\n"
               "  -h, --help         show this help\n");
}

struct metrics_opts {
        int prometheus_text;
        const char *output;
};

static int metrics_parse(int argc, char **argv, struct metrics_opts *o) {
        static const struct option options[] = {
                { "format", required_argument, NULL, 'f' },
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;
        while ((c = getopt_long(argc, argv, ":f:o:h", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        if (strcmp(optarg, "openmetrics") == 0)
                                o->prometheus_text = 0;
                        else if (strcmp(optarg, "prometheus") == 0)
                                o->prometheus_text = 1;
                        else {
                                fprintf(stderr, "provsign: metrics: --format is openmetrics or prometheus, not \"%s\"\n",
                                        cli_safe(optarg));
                                return CLI_EXIT_USAGE;
                        }
                        break;
                case 'o':
                        o->output = optarg;
                        break;
                case 'h':
                        metrics_help();
                        return -1;
                default:
                        return cli_getopt_error("metrics", c, argv);
                }
        return cli_extra_args("metrics", argc, argv);
}

int cmd_metrics(const struct cli_ctx *ctx, int argc, char **argv) {
        struct metrics_opts o = { 0 };
        int r = metrics_parse(argc, argv, &o);
        if (r < 0)
                return CLI_EXIT_OK;
        if (r != CLI_EXIT_OK)
                return r;

        provsign_conn *conn = NULL;
        char *text = NULL;
        r = cli_connect(ctx, &conn);
        if (r != CLI_EXIT_OK)
                return r;
        int e = provsign_get_metrics(conn, o.prometheus_text, &text);
        if (e != 0) {
                r = cli_call_failed(ctx, conn, e, "metrics");
                goto out;
        }
        if (o.output && strcmp(o.output, "-") != 0)
                r = cli_write_file("metrics", "output", o.output, text, strlen(text));
        else
                r = fputs(text, stdout) < 0 ? CLI_EXIT_LOCAL : CLI_EXIT_OK;
out:
        free(text);
        provsign_close(conn);
        return r;
}
