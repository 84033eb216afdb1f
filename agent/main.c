/* provsign-agent: holds the token session and signs for CI runners. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "origin.h"
#include "pin.h"
#include "ratelimit.h"
#include "dispatch.h"
#include "keyops.h"
#include "refusals.h"
#include "reload.h"
#include "requests.h"
#include "server.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: provsign-agent [--config FILE]\n"
                "\n"
                "Runs in the foreground. Takes its socket from systemd socket activation\n"
                "or creates the config's socket.\n"
                "\n"
                "  -c, --config FILE   configuration (default %s)\n"
                "      --allow-root    run even as uid 0 (refused otherwise: the agent\n"
                "                      belongs under its own user, see provsign-agent(8))\n"
                "  -h, --help          this text\n"
                "      --version       print the version\n",
                PROVSIGN_DEFAULT_CONFIG);
}

/* Soft limits raised to the hard ones. RLIMIT_NOFILE: connections cost a
 * descriptor each (the unit sets LimitNOFILE=); nothing in the agent or the
 * libraries it loads uses select(), which is why a soft limit stays at 1024
 * by default. RLIMIT_NICE: the key generator leaves SCHED_IDLE for nice 0
 * when a generation starves (generator.h; the unit's LimitNICE=+0), never
 * more. Where setrlimit is filtered (SystemCallFilter=~@resources) the
 * unit's limits apply as they are. */
static void raise_limit(int resource, const char *what) {
        struct rlimit rl;
        if (getrlimit(resource, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(resource, &rl) < 0)
                log_notice("cannot raise the %s limit from %llu to %llu: %s", what, (unsigned long long) was,
                           (unsigned long long) rl.rlim_max, strerror(errno));
}

static void cloexec_inherited(void) {
        if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
                return;
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                int fd = atoi(de->d_name);
                if (fd > 2 && fd != dirfd(d))
                        (void) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
        }
        closedir(d);
}

/* The token threads: `workers` from the config, else two per CPU (4..32).
 * A CPU-bound token (SoftHSM2) needs one per CPU to be busy, and a second
 * keeps the CPU signing while the first waits: on a group commit it leads
 * (fdatasync), on the token library's locks, preempted. Measured at 32
 * clients on 2 CPUs: 2 workers 10.2k sig/s, 3 10.9k, 4 11.2k, 6 10.9k, 8
 * 10.7k (tests/bench/RESULTS.md "Issue 16, session 7"); a lone client is
 * not slowed, since an idle pool wakes its warmest thread (workers.c). A
 * network HSM that spends its time waiting wants more (docs/benchmarks.md). */
static size_t worker_count(const agent_config *cfg) {
        if (cfg->workers)
                return cfg->workers;
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 2)
                n = 2;
        if (n > 16)
                n = 16;
        return (size_t) (2 * n);
}

/* What the event loop calls back: it knows no handler of its own. */
static void on_reload(agent *a) {
        (void) agent_reload(a);
}

static void on_tick(agent *a) {
        refusals_tick(a, false);
        keyops_tick(a);
}

static const server_callbacks callbacks = {
        .frame = requests_frame,
        .log_progress = dispatch_audit_progress,
        .reload = on_reload,
        .tick = on_tick,
};

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "allow-root", no_argument, NULL, 'R' },
                {},
        };
        const char *config_path = PROVSIGN_DEFAULT_CONFIG;
        bool allow_root = false;
        int c;
        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("provsign-agent %s\n", PROVSIGN_VERSION);
                        return 0;
                case 'R':
                        allow_root = true;
                        break;
                default:
                        fprintf(stderr, "Try 'provsign-agent --help'.\n");
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "provsign-agent: unexpected argument \"%s\"\nTry 'provsign-agent --help'.\n",
                        argv[optind]);
                return 2;
        }

        /* As root, a bug in the agent or in the vendor's PKCS#11 module is a
         * bug with every privilege; the packaged unit runs it as "provsign". */
        if (geteuid() == 0 && !allow_root) {
                fprintf(stderr, "provsign-agent: refusing to run as root (uid 0): run it under its own user "
                                "(see provsign-agent(8), \"Without systemd\"), or pass --allow-root\n");
                return 1;
        }

        /* No core dumps, no ptrace by same-uid processes: the process holds a
         * logged-in token session and, briefly, the PIN. */
        prctl(PR_SET_DUMPABLE, 0);
        /* Descriptors inherited from whoever started us must not leak into
         * anything the process ever executes (ours are all O_CLOEXEC). */
        cloexec_inherited();
        signal(SIGPIPE, SIG_IGN);
        /* A write past RLIMIT_FSIZE must fail (EFBIG: the log fails closed),
         * not kill the agent. */
        signal(SIGXFSZ, SIG_IGN);
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        agent_log_init();
        raise_limit(RLIMIT_NOFILE, "descriptor");
        raise_limit(RLIMIT_NICE, "nice");
        metrics_init();

        agent a = { .started_us = agent_now_us() };
        agent_job *left = NULL;
        char *err = NULL;
        int r = agent_config_load(config_path, &a.config, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", err ? err : "out of memory");
                free(err);
                return 1;
        }

        agent_pin pin = { 0 };
        r = agent_pin_read(a.config, &pin, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", err ? err : strerror(-r));
                goto fail;
        }
        /* One agent per state_dir, before anything in it (or on the token)
         * is touched: held until the process exits. After the PIN, which
         * touches neither, so that a config check without the state_dir
         * (the package's, before systemd made it) still gets that far. */
        int state_lock = -1;
        r = agent_state_lock(a.config, &state_lock, &err);
        if (r < 0) {
                agent_pin_wipe(&pin);
                fprintf(stderr, "%s\n", err ? err : strerror(-r));
                goto fail;
        }
        /* The namespace is claimed (its owner marker) before anything on the
         * token is touched; docs/fleet.md. */
        if (!a.config->log_origin) {
                agent_pin_wipe(&pin);
                fprintf(stderr, "%s: log_origin is not set: add \"log_origin = <this host's name>/provsign\" under "
                                "[agent] (it names this log in its signed checkpoints and its keys' namespace)\n",
                        a.config->path);
                goto fail;
        }
        if (!a.config->key_namespace) {
                agent_pin_wipe(&pin);
                fprintf(stderr, "%s: log_origin \"%s\" does not start with a key namespace (1..%u of A-Z a-z 0-9 . _ - "
                                "before its first \"/\"): set key_namespace under [agent]\n",
                        a.config->path, a.config->log_origin, KEYS_NAMESPACE_MAX);
                goto fail;
        }
        char *owner = NULL;
        size_t owner_len = 0;
        r = agent_namespace_bind(a.config, &owner, &owner_len, &err);
        if (r >= 0) {
                keys_open_options o = { .ns = a.config->key_namespace, .owner = (const uint8_t *) owner,
                                        .owner_len = owner_len, .adopt_legacy = true };
                r = keys_store_open_ns(a.config->pkcs11_module, a.config->token_label, pin.data, pin.len, &o,
                                       &a.store, &err);
        }
        free(owner);
        agent_pin_wipe(&pin);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", a.config->path, err ? err : strerror(-r));
                goto fail;
        }
        const char *rk, *rl;
        for (size_t i = 0; keys_store_relabelled(a.store, i, &rk, &rl) == 0; i++)
                log_notice("key %s: first-round label \"%s\" adopted into key namespace \"%s\"", rk, rl,
                           a.config->key_namespace);
        r = registry_init(&a.registry, a.store);
        if (r < 0)
                goto fail;
        agent_journal_configure(&a, a.config);
        a.registry.observe = agent_journal_key_event;
        a.registry.observe_ctx = &a;
        r = audit_open(a.config, a.store, registry_replay_event, &a.registry, &a.audit, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", err ? err : strerror(-r));
                goto fail;
        }
        agent_audit_lifecycle(&a, PROVSIGN__AUDIT_EVENT__AGENT_START, "provsign-agent " PROVSIGN_VERSION " started");
        agent_audit_policy_load(&a, a.config->path, PROVSIGN__STATUS__OK, "loaded at start");
        r = registry_attach(&a.registry, a.audit, &err);
        if (r >= 0)
                r = registry_ensure_keys(&a.registry, a.config, a.audit, &err);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", a.config->path, err ? err : strerror(-r));
                goto fail;
        }
        r = workers_start(worker_count(a.config), "provsign-worker", &a.workers);
        if (r < 0) {
                fprintf(stderr, "%s: cannot start workers: %s\n", a.config->path, strerror(-r));
                goto fail;
        }
        r = generator_start(&a.generator);
        if (r < 0) {
                fprintf(stderr, "%s: cannot start the key generator: %s\n", a.config->path, strerror(-r));
                goto fail;
        }
        r = server_open(&a, &err);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", a.config->path, err ? err : strerror(-r));
                goto fail;
        }

        log_notice("provsign-agent %s ready: token \"%s\", %zu principals, %zu keys", PROVSIGN_VERSION,
                   a.config->token_label, a.config->n_principals, a.registry.n_keys);
        sd_notifyf(0, "READY=1\nSTATUS=serving %zu principals", a.config->n_principals);

        r = server_run(&a, &callbacks);
        /* The generator first: it hands its jobs to the workers. */
        generator_stop(a.generator);
        a.generator = NULL;
        left = workers_stop(a.workers);
        a.workers = NULL;
        server_abandon_jobs(&a, left);
        refusals_tick(&a, true);
        ratelimit_free();
        agent_audit_lifecycle(&a, PROVSIGN__AUDIT_EVENT__AGENT_STOP, "provsign-agent stopped");
        audit_close(a.audit); /* commits what is pending: one last sync */
        a.audit = NULL;
        /* Replies still waiting after the grace period are not sent: their
         * connections close with the server. */
        dispatch_abandon_parked(&a);
        log_notice("provsign-agent stopped");
        server_free(a.server);
        registry_done(&a.registry);
        keys_store_free(a.store);
        agent_config_free(a.config);
        metrics_free();
        close(state_lock); /* after the log's last sync */
        return r < 0 ? 1 : 0;

fail:
        free(err);
        generator_stop(a.generator);
        a.generator = NULL;
        left = workers_stop(a.workers);
        a.workers = NULL;
        server_abandon_jobs(&a, left);
        audit_close(a.audit);
        server_free(a.server);
        registry_done(&a.registry);
        keys_store_free(a.store);
        agent_config_free(a.config);
        return 1;
}
