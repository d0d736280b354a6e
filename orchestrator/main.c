/* strata — run one transformer model across mismatched accelerators.
 * main() parses the global flags and hands over to a subcommand. */
#include "base/base.h"
#include "orchestrator/cli.h"
#include "orchestrator/mpi.h"

#include <stdlib.h>
#include <string.h>

struct st_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct st_command commands[] = {
    {"inventory",  st_cmd_inventory,  "GPUs, CPUs, NUMA nodes, PCIe/NVLink and P2P of this machine (--probe measures)"},
    {"plan",       st_cmd_plan,       "place layers, precision and attention per device; dry runs for catalog hardware"},
    {"generate",   st_cmd_generate,   "generate text (or token ids) across the planned devices"},
    {"serve",      st_cmd_serve,      "OpenAI-compatible HTTP API, many sequences in flight"},
    {"bench",      st_cmd_bench,      "measure prefill/decode tok/s, per stage and per link"},
    {"calibrate",  st_cmd_calibrate,  "measure which layers are numerically safe in fp16 (numerics profile)"},
    {"model",      st_cmd_model,      "describe a model file: architecture, parameters, bytes per dtype and layer"},
    {"perplexity", st_cmd_perplexity, "held-out perplexity of a model on a text file"},
    {"tokenize",   st_cmd_tokenize,   "text from stdin to token ids"},
    {"detokenize", st_cmd_detokenize, "token ids to text"},
};

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata [-v|-q] [--json] [--version] <command> [options]\n\n"
        "commands:\n");
    for (size_t i = 0; i < ST_ARRAY_LEN(commands); i++) {
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f,
        "\nglobal options (before or after the command):\n"
        "  -v, --verbose   more log output (repeat for debug)\n"
        "  -q, --quiet     errors only\n"
        "  --json          data as JSON, for every command that prints data (not generate)\n"
        "  --version       version, git commit, build options, CUDA/NCCL/MPI versions\n"
        "  -h, --help      this text; 'strata <command> --help' for a command\n"
        "\nmodel: every command that takes one reads -m MODEL (a GGUF file or a Hugging Face\n"
        "directory) or -c deploy.yaml; with neither it uses the bundled model (" ST_CLI_BUNDLED_MODEL "),\n"
        "found next to the binary, in <prefix>/share/strata or in the source tree\n"
        "\nexit codes: 0 ok, 1 runtime failure, 2 usage or configuration error\n"
        "colour: only on a terminal; NO_COLOR=1 turns it off\n");
}

static int run(int argc, char **argv);

int main(int argc, char **argv) {
    /* under mpirun every rank runs this same command line (docs/multihost.md) */
    st_status s = st_mpi_init(&argc, &argv);
    if (s) return st_cli_report(s);
    int rc = run(argc, argv);
    fflush(stdout);
    st_mpi_finalize(rc);
    return rc;
}

static int run(int argc, char **argv) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        int g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g == ST_CLI_GLOBAL_TAKEN) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        st_error_set(ST_ERR_USAGE, "unknown option '%s'", a);
        st_error_hint("see 'strata --help'");
        return st_cli_report(ST_ERR_USAGE);
    }
    if (i >= argc) { usage(stderr); return 2; }
    const char *name = argv[i];
    if (!strcmp(name, "help")) { usage(stdout); return 0; }
    for (size_t c = 0; c < ST_ARRAY_LEN(commands); c++) {
        if (strcmp(name, commands[c].name)) continue;
        /* these build a deployment in one process only; the rest run on each rank by itself */
        if (st_mpi_size() > 1 && (!strcmp(name, "calibrate") || !strcmp(name, "perplexity"))) {
            if (st_mpi_rank() > 0) return 2;
            st_error_set(ST_ERR_USAGE, "strata %s runs in one process, but mpirun started %d ranks", name,
                         st_mpi_size());
            st_error_hint("run it without mpirun; generate, bench, serve and plan run across ranks (docs/multihost.md)");
            return st_cli_report(ST_ERR_USAGE);
        }
        return commands[c].run(argc - i, argv + i);
    }
    const char *names[ST_ARRAY_LEN(commands)];
    for (size_t c = 0; c < ST_ARRAY_LEN(commands); c++) names[c] = commands[c].name;
    const char *near = st_nearest_word(name, names, ST_ARRAY_LEN(commands));
    st_error_set(ST_ERR_USAGE, "unknown command '%s'", name);
    if (near) st_error_hint("did you mean 'strata %s'?", near);
    else st_error_hint("see 'strata --help' for the commands");
    return st_cli_report(ST_ERR_USAGE);
}
