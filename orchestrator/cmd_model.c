/* strata model — placeholder until its issue lands: says so and exits 2. */
#include "orchestrator/cli.h"

int st_cmd_model(int argc, char **argv) {
    (void)argc; (void)argv;
    return st_cli_not_built("model", "this subcommand");
}
