/* orchestrator/cli.h — the `strata` subcommands. Each st_cmd_* parses its own
 * arguments (argv[0] is the subcommand name), prints its own --help and returns
 * the process exit code: 0 ok, 1 runtime failure, 2 usage or configuration
 * error (st_status_exit_code). Only main() exits. */
#ifndef STRATA_CLI_H
#define STRATA_CLI_H

#include "base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

int st_cmd_inventory(int argc, char **argv);
int st_cmd_plan(int argc, char **argv);
int st_cmd_generate(int argc, char **argv);
int st_cmd_serve(int argc, char **argv);
int st_cmd_bench(int argc, char **argv);
int st_cmd_calibrate(int argc, char **argv);
int st_cmd_model(int argc, char **argv);
int st_cmd_perplexity(int argc, char **argv);
int st_cmd_tokenize(int argc, char **argv);
int st_cmd_detokenize(int argc, char **argv);

/* Prints st_last_error() as "error: ..." (hint lines coloured on a TTY) to
 * stderr and returns st_status_exit_code(s). */
int st_cli_report(st_status s);

/* Prints a usage error ("error: <cmd>: ...", then "hint: strata <cmd> --help")
 * and returns 2. */
int st_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses s as a whole decimal number in [lo, hi] into *out; false (and *out
 * untouched) when s is empty, has trailing characters or is out of range. */
bool st_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* Reads all of standard input into a malloc'ed, NUL-terminated buffer (*len
 * bytes before the NUL; len may be NULL). ST_ERR_NOMEM when it does not fit:
 * a cut input is never returned. */
st_status st_cli_read_stdin(char **out, size_t *len);

/* A progress bar for weight loading on stderr, only when stderr is a
 * terminal: bytes, rate and time left per stage (st_engine_params.progress). */
void st_cli_load_progress(void *user, int stage, const char *device, uint64_t done, uint64_t total);

/* Prints that a feature is not in this build yet and returns 2. */
int st_cli_not_built(const char *cmd, const char *what);

/* ---- global options -------------------------------------------------------------
 * -v/--verbose (repeatable; -vv = twice), -q/--quiet, --json and --version are
 * accepted before the subcommand (main) and anywhere among its options: every
 * command's parser calls st_cli_global() on an argument before its own options,
 * so the value of an option ("-p -v") is never taken for a global flag. */
enum { ST_CLI_NOT_GLOBAL = 0, ST_CLI_GLOBAL_TAKEN = 1, ST_CLI_GLOBAL_VERSION = 2 };

/* Applies `a` when it is a global option: ST_CLI_GLOBAL_TAKEN (log level or
 * --json recorded), ST_CLI_GLOBAL_VERSION (--version: the caller prints
 * st_cli_print_version() and returns 0), else ST_CLI_NOT_GLOBAL. */
int st_cli_global(const char *a);

/* True when --json was given (before or after the subcommand). */
bool st_cli_json(void);

/* Prints the version, git commit, build options and CUDA/NCCL/MPI versions. */
void st_cli_print_version(void);

/* Prints the usage error for --json given to a command that prints no data and returns 2. */
int st_cli_no_json(const char *cmd, const char *why);

/* ---- numbers --------------------------------------------------------------------
 * One rule for every numeric option (docs/sampling.md, "Command-line numbers"):
 * each option has one range, the same on the command line as in the config; an
 * "off" value is a value inside the range, written exactly (temperature 0 =
 * greedy, top-p 1, top-k 0, ...); a value outside the range is a usage error
 * that states the range and what the off value is. Both return -1 when *out was
 * set, else the exit code (2) after printing the error. */

/* A whole number in [lo, hi]; `what` names it in the message ("a token count"),
 * `note` says what special values mean ("0 = off"; NULL for none). */
int st_cli_int(const char *cmd, const char *flag, const char *value, int64_t lo, int64_t hi, const char *what,
               const char *note, int64_t *out);

/* A finite number in the interval lo..hi; *_open excludes that end. */
int st_cli_real(const char *cmd, const char *flag, const char *value, double lo, bool lo_open, double hi,
                bool hi_open, const char *note, double *out);

/* ---- the model ------------------------------------------------------------------
 * Without -m and -c every command that takes a model uses the bundled one
 * (models/tiny-kjv), looked for, in order: next to the binary (<bin>/models/),
 * in the install prefix's data directory relative to the binary
 * (<bin>/../share/strata/models/), in the source tree this binary was built
 * from (STRATA_SOURCE_DIR), and in the data directory of the configured
 * install prefix (STRATA_DATA_DIR). */
#define ST_CLI_BUNDLED_MODEL "models/tiny-kjv"

/* The bundled model's path into buf; ST_ERR_USAGE naming every place looked at
 * when none holds it. */
st_status st_cli_bundled_model(char *buf, size_t cap);

/* A model named on the command line must exist: ST_ERR_USAGE ("model 'X' does
 * not exist", exit code 2, the same as a config's missing model.path) otherwise.
 * `what` names it in the message (NULL: "model"; anything else gets the
 * tokenizer hint: tokenizer.json, a directory holding one, or a GGUF file). */
st_status st_cli_model_exists(const char *what, const char *path);

/* Prints "wrote FILE" on stderr (not with -q). */
void st_cli_wrote(const char *path);

#ifdef __cplusplus
}
#endif
#endif
