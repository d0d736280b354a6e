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

#ifdef __cplusplus
}
#endif
#endif
