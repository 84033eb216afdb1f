/* provsign provenance: an in-toto Statement v1 with a SLSA Provenance v1
 * predicate for build artifacts, signed as a DSSE envelope
 * (cli_attest_output), in one command for CI runners.
 *
 * What goes into the statement comes from flags and from the CI
 * environment it recognises (GitHub Actions, GitLab CI), through a fixed
 * list of variable names (docs/runners.md "Provenance"). Nothing secret-looking is
 * ever copied: variables whose names look like secrets are never read, URL
 * user-info (GitLab's CI_REPOSITORY_URL carries the job token there) is
 * never used, and a value that looks like a known token is dropped with a
 * warning. Every buffer is freed before return. */

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hex.h"

#include "cli.h"

#define INTOTO_TYPE "application/vnd.in-toto+json"
#define STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define SLSA_TYPE "https://slsa.dev/provenance/v1"
#define GITHUB_BUILD_TYPE "https://actions.github.io/buildtypes/workflow/v1"
#define GITLAB_BUILD_TYPE "urn:provsign:buildtype:gitlab-ci:v1"
#define GENERIC_BUILD_TYPE "urn:provsign:buildtype:generic:v1"
#define MAX_ARTIFACTS 1000u

static void provenance_help(void) {
        printf("Usage: provsign provenance [--principal P] --artifact PATH... [OPTIONS]\n"
               "\n"
               "Writes a signed SLSA provenance for build artifacts: an in-toto\n"
               "Statement v1 (https://in-toto.io/Statement/v1) whose subjects are the\n"
               "artifacts (name and SHA-256, computed here) and whose predicate is SLSA\n"
               "Provenance v1 (https://slsa.dev/provenance/v1), in a DSSE envelope\n"
               "(payloadType application/vnd.in-toto+json) signed by the agent. Each\n"
               "artifact's digest is also logged as an annotation artifact:NAME=sha256:HEX,\n"
               "so 'provsign audit find --digest sha256:HEX' finds the build.\n"
               "\n"
               "Builder, build type, source and invocation come from the CI environment\n"
               "(GitHub Actions: GITHUB_ACTIONS=true; GitLab CI: GITLAB_CI=true; the\n"
               "variables read are listed in provsign(1)) and from these flags, which\n"
               "take precedence. Variables whose names look secret (TOKEN, SECRET,\n"
               "PASSWORD, KEY, ...) are never read.\n"
               "\n"
               "  -p, --principal P        sign as principal P\n"
               "  -A, --artifact PATH      an artifact (repeatable; at least one)\n"
               "  -o, --output FILE        write the envelope to FILE, not stdout\n"
               "  -r, --receipt FILE       write the receipt to FILE (keep it with the\n"
               "                           envelope)\n"
               "      --builder-id URI     runDetails.builder.id\n"
               "      --build-type URI     buildDefinition.buildType\n"
               "      --repository URL     the source repository\n"
               "      --commit HEX         the source commit (git SHA-1 or SHA-256)\n"
               "      --ref REF            the source ref (e.g. refs/heads/main)\n"
               "      --invocation-id ID   runDetails.metadata.invocationId\n"
               "      --param K=V          an external parameter (repeatable)\n"
               "  -e, --env NAME           also record variable NAME (repeatable; refused\n"
               "                           for secret-looking names)\n"
               "      --no-ci              ignore the CI environment\n"
               "  -a, --annotation K=V     logged with the signature; repeatable\n"
               "  -h, --help               show this help\n");
}

/* ---- Secrets -------------------------------------------------------------- */

/* A variable name that may hold a secret, by the words CI systems and
 * people use for them. Such a variable is never read. */
static bool name_looks_secret(const char *name) {
        static const char *const words[] = { "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "KEY",
                                             "CREDENTIAL", "AUTH", "COOKIE", "PRIVATE", "SESSION", "SIGNATURE" };

        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
                if (strcasestr(name, words[i]))
                        return true;
        return false;
}

/* A value that looks like a credential: known token prefixes, or a URL
 * with user-info. */
static bool value_looks_secret(const char *v) {
        static const char *const prefixes[] = { "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
                                                "gldt-", "glrt-", "glcbt-", "AKIA", "xox" };
        const char *scheme = strstr(v, "://");

        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
                if (strstr(v, prefixes[i]))
                        return true;
        if (scheme) {
                const char *host = scheme + 3;
                size_t n = strcspn(host, "/?#");

                if (memchr(host, '@', n))
                        return true;
        }
        return false;
}

/* A CI variable, or NULL when unset, empty, secret-looking by name, or
 * secret-looking by value (then with a warning). */
static const char *ci_var(const char *name) {
        const char *v;

        if (name_looks_secret(name))
                return NULL;
        v = getenv(name);
        if (!v || !*v)
                return NULL;
        if (value_looks_secret(v)) {
                fprintf(stderr, "provsign: provenance: ignoring %s: its value looks like a credential\n", name);
                return NULL;
        }
        return v;
}

/* ---- The statement ------------------------------------------------------- */

struct provenance {
        const char *builder_id, *build_type, *repository, *commit, *ref, *invocation_id;
        json_t *external;   /* externalParameters */
        json_t *internal;   /* internalParameters */
};

/* json_object_set_new that skips NULL strings. */
static int set_str(json_t *o, const char *key, const char *v) {
        if (!v)
                return 0;
        return json_object_set_new(o, key, json_string(v));
}

static json_t *object_at(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);

        if (!v) {
                v = json_object();
                if (json_object_set_new(o, key, v) < 0)
                        return NULL;
        }
        return v;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* Strings made from the environment live until the command ends. */
static char *owned[16];
static size_t n_owned;

static const char *keep(char *s) {
        if (!s || n_owned == sizeof owned / sizeof owned[0]) {
                free(s);
                return NULL;
        }
        return owned[n_owned++] = s;
}

/* GitHub Actions, as GitHub's own build provenance describes a workflow run
 * (buildType https://actions.github.io/buildtypes/workflow/v1). */
static void from_github(struct provenance *p) {
        const char *server = ci_var("GITHUB_SERVER_URL"), *repo = ci_var("GITHUB_REPOSITORY");
        const char *wf = ci_var("GITHUB_WORKFLOW_REF"), *run = ci_var("GITHUB_RUN_ID");
        const char *attempt = ci_var("GITHUB_RUN_ATTEMPT"), *env = ci_var("RUNNER_ENVIRONMENT");
        json_t *workflow, *gh;

        if (!server)
                server = "https://github.com";
        p->build_type = GITHUB_BUILD_TYPE;
        p->builder_id = keep(str_printf("https://github.com/actions/runner/%s",
                                        env && strcmp(env, "github-hosted") == 0 ? "github-hosted" : "self-hosted"));
        if (repo)
                p->repository = keep(str_printf("%s/%s", server, repo));
        p->commit = ci_var("GITHUB_SHA");
        p->ref = ci_var("GITHUB_REF");
        if (repo && run)
                p->invocation_id = keep(str_printf("%s/%s/actions/runs/%s/attempts/%s", server, repo, run,
                                                   attempt ? attempt : "1"));

        workflow = object_at(p->external, "workflow");
        if (workflow && wf) {
                /* owner/repo/.github/workflows/build.yml@refs/heads/main */
                const char *at = strrchr(wf, '@');
                const char *path = repo && strncmp(wf, repo, strlen(repo)) == 0 && wf[strlen(repo)] == '/'
                                           ? wf + strlen(repo) + 1
                                           : NULL;
                if (at)
                        set_str(workflow, "ref", at + 1);
                if (p->repository)
                        set_str(workflow, "repository", p->repository);
                if (path && at && at > path)
                        json_object_set_new(workflow, "path", json_stringn(path, (size_t) (at - path)));
        }
        gh = object_at(p->internal, "github");
        if (gh) {
                set_str(gh, "event_name", ci_var("GITHUB_EVENT_NAME"));
                set_str(gh, "repository_id", ci_var("GITHUB_REPOSITORY_ID"));
                set_str(gh, "repository_owner_id", ci_var("GITHUB_REPOSITORY_OWNER_ID"));
                set_str(gh, "runner_environment", env);
        }
}

/* GitLab CI. CI_REPOSITORY_URL is not used: it carries the job token. */
static void from_gitlab(struct provenance *p) {
        const char *server = ci_var("CI_SERVER_URL"), *project = ci_var("CI_PROJECT_PATH");
        const char *runner = ci_var("CI_RUNNER_ID"), *ref = ci_var("CI_COMMIT_REF_NAME");
        json_t *pipeline, *gl;

        p->build_type = GITLAB_BUILD_TYPE;
        if (server && project && runner)
                p->builder_id = keep(str_printf("%s/%s/-/runners/%s", server, project, runner));
        p->repository = ci_var("CI_PROJECT_URL");
        p->commit = ci_var("CI_COMMIT_SHA");
        if (ref)
                p->ref = keep(str_printf("%s/%s", ci_var("CI_COMMIT_TAG") ? "refs/tags" : "refs/heads", ref));
        p->invocation_id = ci_var("CI_JOB_URL");

        pipeline = object_at(p->external, "pipeline");
        if (pipeline) {
                set_str(pipeline, "repository", p->repository);
                set_str(pipeline, "ref", p->ref);
                set_str(pipeline, "path", ci_var("CI_CONFIG_PATH"));
                set_str(pipeline, "job", ci_var("CI_JOB_NAME"));
        }
        gl = object_at(p->internal, "gitlab");
        if (gl) {
                set_str(gl, "pipeline_source", ci_var("CI_PIPELINE_SOURCE"));
                set_str(gl, "project_id", ci_var("CI_PROJECT_ID"));
                set_str(gl, "pipeline_id", ci_var("CI_PIPELINE_ID"));
                set_str(gl, "job_id", ci_var("CI_JOB_ID"));
                set_str(gl, "runner_id", runner);
        }
}

/* The subject name of an artifact path: as given, without leading "./". */
static const char *subject_name(const char *path) {
        while (strncmp(path, "./", 2) == 0)
                path += 2;
        return path;
}

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static json_t *statement_json(const struct provenance *p, json_t *subjects) {
        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        json_t *deps, *dep = NULL, *meta;

        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        deps = json_array();
        if (p->repository) {
                char *uri = p->ref ? str_printf("git+%s@%s", p->repository, p->ref) : str_printf("git+%s", p->repository);

                dep = uri ? json_pack("{s:s}", "uri", uri) : NULL;
                free(uri);
                if (dep && p->commit)
                        json_object_set_new(dep, "digest", json_pack("{s:s}", "gitCommit", p->commit));
                json_array_append_new(deps, dep);
        }
        meta = json_object();
        set_str(meta, "invocationId", p->invocation_id);
        set_str(meta, "finishedOn", now);

        return json_pack("{s:s, s:O, s:s, s:{s:{s:s, s:O, s:O, s:o}, s:{s:{s:s}, s:o}}}",
                         "_type", STATEMENT_TYPE,
                         "subject", subjects,
                         "predicateType", SLSA_TYPE,
                         "predicate",
                         "buildDefinition",
                         "buildType", p->build_type,
                         "externalParameters", p->external,
                         "internalParameters", p->internal,
                         "resolvedDependencies", deps,
                         "runDetails",
                         "builder", "id", p->builder_id,
                         "metadata", meta);
}

/* ---- The verb: options, then the action ----------------------------------- */

/* What the command line asked for. Strings are borrowed from argv. */
struct provenance_opts {
        const char *principal, *out_path, *receipt_path;
        const char **artifacts, **env_names;
        size_t n_art, n_env, n_ann;
        struct provsign_annotation *ann; /* room for the artifacts' too */
        struct provenance flags;         /* override the CI environment */
        json_t *params;
        bool no_ci;
};

static void provenance_opts_free(struct provenance_opts *o) {
        free(o->artifacts);
        free(o->env_names);
        free(o->ann);
        json_decref(o->params);
}

static bool lower_hex_commit(const char *s) {
        size_t n = strlen(s);
        bool ok = n == 40 || n == 64;

        for (size_t i = 0; ok && i < n; i++)
                ok = isxdigit((unsigned char) s[i]) && !isupper((unsigned char) s[i]);
        return ok;
}

/* --param KEY=VALUE (arg is ours to split). */
static int add_param(struct provenance_opts *o, char *arg) {
        static const char verb[] = "provenance";
        char *eq = strchr(arg, '=');

        if (!eq || eq == arg)
                return cli_usage_error(verb, "invalid --param '%s': expected KEY=VALUE", arg);
        *eq = '\0';
        if (name_looks_secret(arg))
                return cli_usage_error(verb, "--param %s: the name looks like a secret; not recorded", arg);
        if (json_object_set_new(o->params, arg, json_string(eq + 1)) < 0)
                return cli_usage_error(verb, "--param %s: not UTF-8", arg);
        return CLI_EXIT_OK;
}

enum { ARG_BUILDER = 0x100, ARG_BUILD_TYPE, ARG_REPOSITORY, ARG_COMMIT, ARG_REF, ARG_INVOCATION, ARG_PARAM, ARG_NO_CI };

/* One option into o: CLI_EXIT_OK or the usage error. */
static int provenance_option(struct provenance_opts *o, int c, char *arg) {
        static const char verb[] = "provenance";

        switch (c) {
        case 'p':
                if (!*arg)
                        return cli_usage_error(verb, "--principal needs a non-empty name");
                o->principal = arg;
                return CLI_EXIT_OK;
        case 'A':
                if (!*arg || !printable(arg))
                        return cli_usage_error(verb, "--artifact needs a path without control characters");
                o->artifacts[o->n_art++] = arg;
                return CLI_EXIT_OK;
        case 'o':
                o->out_path = arg;
                return CLI_EXIT_OK;
        case 'r':
                o->receipt_path = arg;
                return CLI_EXIT_OK;
        case ARG_BUILDER:
                o->flags.builder_id = arg;
                return CLI_EXIT_OK;
        case ARG_BUILD_TYPE:
                o->flags.build_type = arg;
                return CLI_EXIT_OK;
        case ARG_REPOSITORY:
                if (value_looks_secret(arg))
                        return cli_usage_error(verb, "--repository must not carry credentials");
                o->flags.repository = arg;
                return CLI_EXIT_OK;
        case ARG_COMMIT:
                if (!lower_hex_commit(arg))
                        return cli_usage_error(verb, "--commit needs 40 or 64 lowercase hex digits");
                o->flags.commit = arg;
                return CLI_EXIT_OK;
        case ARG_REF:
                o->flags.ref = arg;
                return CLI_EXIT_OK;
        case ARG_INVOCATION:
                o->flags.invocation_id = arg;
                return CLI_EXIT_OK;
        case ARG_PARAM:
                return add_param(o, arg);
        case 'e':
                if (name_looks_secret(arg))
                        return cli_usage_error(verb, "--env %s: the name looks like a secret; not recorded", arg);
                o->env_names[o->n_env++] = arg;
                return CLI_EXIT_OK;
        case ARG_NO_CI:
                o->no_ci = true;
                return CLI_EXIT_OK;
        case 'a': {
                int r = cli_parse_annotation(verb, arg, &o->ann[o->n_ann]);

                if (r == CLI_EXIT_OK)
                        o->n_ann++;
                return r;
        }
        }
        return CLI_EXIT_USAGE;
}

/* CLI_EXIT_OK to go on, -1 after --help, else the exit code. */
static int provenance_parse(int argc, char **argv, struct provenance_opts *o) {
        static const struct option options[] = {
                { "principal",     required_argument, NULL, 'p' },
                { "artifact",      required_argument, NULL, 'A' },
                { "output",        required_argument, NULL, 'o' },
                { "receipt",       required_argument, NULL, 'r' },
                { "builder-id",    required_argument, NULL, ARG_BUILDER },
                { "build-type",    required_argument, NULL, ARG_BUILD_TYPE },
                { "repository",    required_argument, NULL, ARG_REPOSITORY },
                { "commit",        required_argument, NULL, ARG_COMMIT },
                { "ref",           required_argument, NULL, ARG_REF },
                { "invocation-id", required_argument, NULL, ARG_INVOCATION },
                { "param",         required_argument, NULL, ARG_PARAM },
                { "env",           required_argument, NULL, 'e' },
                { "no-ci",         no_argument,       NULL, ARG_NO_CI },
                { "annotation",    required_argument, NULL, 'a' },
                { "help",          no_argument,       NULL, 'h' },
                {}
        };
        static const char verb[] = "provenance";
        int c, r;

        o->artifacts = calloc((size_t) argc, sizeof *o->artifacts);
        o->env_names = calloc((size_t) argc, sizeof *o->env_names);
        /* user annotations first; the artifact ones are added after */
        o->ann = calloc((size_t) argc + MAX_ARTIFACTS, sizeof *o->ann);
        o->params = json_object();
        if (!o->artifacts || !o->env_names || !o->ann || !o->params) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        while ((c = getopt_long(argc, argv, ":p:A:o:r:e:a:h", options, NULL)) >= 0) {
                if (c == 'h') {
                        provenance_help();
                        return -1;
                }
                r = c == '?' || c == ':' ? cli_getopt_error(verb, c, argv) : provenance_option(o, c, optarg);
                if (r != CLI_EXIT_OK)
                        return r;
        }
        r = cli_extra_args(verb, argc, argv);
        if (r != CLI_EXIT_OK)
                return r;
        if (o->n_art == 0)
                return cli_usage_error(verb, "missing --artifact PATH");
        if (o->n_art > MAX_ARTIFACTS)
                return cli_usage_error(verb, "at most %u artifacts", MAX_ARTIFACTS);
        return CLI_EXIT_OK;
}

/* The statement's fields: the CI environment first, the flags over it,
 * then parameters, source and the variables asked for. CLI_EXIT_OK, a
 * usage error (no builder), or CLI_EXIT_LOCAL (printed). */
static int gather(const struct provenance_opts *o, struct provenance *p) {
        if (!o->no_ci && ci_var("GITHUB_ACTIONS") && strcmp(ci_var("GITHUB_ACTIONS"), "true") == 0)
                from_github(p);
        else if (!o->no_ci && ci_var("GITLAB_CI") && strcmp(ci_var("GITLAB_CI"), "true") == 0)
                from_gitlab(p);
#define OVERRIDE(f) if (o->flags.f) p->f = o->flags.f
        OVERRIDE(builder_id);
        OVERRIDE(build_type);
        OVERRIDE(repository);
        OVERRIDE(commit);
        OVERRIDE(ref);
        OVERRIDE(invocation_id);
#undef OVERRIDE
        if (!p->build_type)
                p->build_type = GENERIC_BUILD_TYPE;
        if (!p->builder_id)
                return cli_usage_error("provenance", "missing --builder-id URI (no CI environment recognised)");
        if (json_object_size(o->params) > 0 && json_object_set(p->external, "parameters", o->params) < 0)
                goto oom;
        if (!json_object_get(p->external, "source") && p->repository) {
                json_t *src = json_pack("{s:s}", "repository", p->repository);

                if (!src)
                        goto oom;
                set_str(src, "ref", p->ref);
                set_str(src, "commit", p->commit);
                json_object_set_new(p->external, "source", src);
        }
        for (size_t i = 0; i < o->n_env; i++) {
                const char *v = getenv(o->env_names[i]);
                json_t *e;

                if (v && value_looks_secret(v)) {
                        fprintf(stderr, "provsign: provenance: not recording %s: its value looks like a credential\n",
                                o->env_names[i]);
                        continue;
                }
                e = object_at(p->internal, "environment");
                if (!e)
                        goto oom;
                json_object_set_new(e, o->env_names[i], v ? json_string(v) : json_null());
        }
        return CLI_EXIT_OK;
oom:
        fprintf(stderr, "provsign: out of memory\n");
        return CLI_EXIT_LOCAL;
}

/* The artifacts as subjects (name, SHA-256), and as annotations
 * artifact:NAME=sha256:HEX appended to o->ann (their strings kept in
 * owned until the caller frees it). */
static int add_subjects(struct provenance_opts *o, json_t *subjects, char **owned_strings) {
        static const char verb[] = "provenance";

        for (size_t i = 0; i < o->n_art; i++) {
                const char *name = subject_name(o->artifacts[i]);
                char hex[65];
                int r;

                for (size_t j = 0; j < i; j++)
                        if (strcmp(subject_name(o->artifacts[j]), name) == 0)
                                return cli_usage_error(verb, "artifact %s given twice", name);
                r = cli_file_sha256(verb, "artifact", o->artifacts[i], hex);
                if (r != CLI_EXIT_OK)
                        return r;
                if (json_array_append_new(subjects, json_pack("{s:s, s:{s:s}}", "name", name, "digest", "sha256", hex)) < 0)
                        return cli_usage_error(verb, "artifact %s: the name is not UTF-8", o->artifacts[i]);
                owned_strings[2 * i] = str_printf("artifact:%s", name);
                owned_strings[2 * i + 1] = str_printf("sha256:%s", hex);
                if (!owned_strings[2 * i] || !owned_strings[2 * i + 1]) {
                        fprintf(stderr, "provsign: out of memory\n");
                        return CLI_EXIT_LOCAL;
                }
                o->ann[o->n_ann++] = (struct provsign_annotation) { .key = owned_strings[2 * i],
                                                                    .value = owned_strings[2 * i + 1] };
        }
        return CLI_EXIT_OK;
}

static int provenance_run(const struct cli_ctx *ctx, struct provenance_opts *o) {
        struct provenance p = { .external = json_object(), .internal = json_object() };
        json_t *subjects = json_array(), *st = NULL;
        char **strings = calloc(2 * o->n_art, sizeof *strings), *payload = NULL;
        int r = CLI_EXIT_LOCAL;

        if (!p.external || !p.internal || !subjects || !strings) {
                fprintf(stderr, "provsign: out of memory\n");
                goto out;
        }
        r = gather(o, &p);
        if (r == CLI_EXIT_OK)
                r = add_subjects(o, subjects, strings);
        if (r != CLI_EXIT_OK)
                goto out;
        st = statement_json(&p, subjects);
        payload = st ? json_dumps(st, JSON_COMPACT) : NULL;
        if (!payload) {
                fprintf(stderr, "provsign: provenance: cannot build the statement (a value is not UTF-8?)\n");
                r = CLI_EXIT_LOCAL;
                goto out;
        }
        r = cli_attest_output(ctx, "provenance", o->principal, INTOTO_TYPE, (const uint8_t *) payload,
                              strlen(payload), o->ann, o->n_ann, o->out_path, o->receipt_path);
out:
        for (size_t i = 0; strings && i < 2 * o->n_art; i++)
                free(strings[i]);
        free(strings);
        free(payload);
        json_decref(st);
        json_decref(subjects);
        json_decref(p.external);
        json_decref(p.internal);
        for (size_t i = 0; i < n_owned; i++)
                free(owned[i]);
        n_owned = 0;
        return r;
}

int cmd_provenance(const struct cli_ctx *ctx, int argc, char **argv) {
        struct provenance_opts o = {};
        int r = provenance_parse(argc, argv, &o);

        if (r == CLI_EXIT_OK)
                r = provenance_run(ctx, &o);
        provenance_opts_free(&o);
        return r < 0 ? CLI_EXIT_OK : r;
}
