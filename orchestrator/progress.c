/* The weight-loading progress bar on a terminal (st_cli_load_progress). */
#include "orchestrator/cli.h"

#include <stdio.h>
#include <unistd.h>

void st_cli_load_progress(void *user, int stage, const char *device, uint64_t done, uint64_t total) {
    (void)user;
    static int cur_stage = -1;
    static double t0, last;
    if (!isatty(fileno(stderr))) return;   /* a bar only where someone watches it */
    const double now = st_time_s();
    if (stage != cur_stage) {
        cur_stage = stage;
        t0 = now;
        last = 0;
    }
    const bool end = done >= total;
    if (!end && now - last < 0.1) return;   /* ten updates a second at most */
    last = now;
    const double dt = now - t0, rate = dt > 0 ? (double)done / dt : 0;
    const int width = 28, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64], a[32], b[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '-';
    bar[width] = 0;
    fprintf(stderr, "\rloading stage %d (%.28s) [%s] %s / %s  %.1f GB/s", stage, device, bar,
            st_format_bytes(done, a, sizeof a), st_format_bytes(total, b, sizeof b), rate / 1e9);
    if (end) fprintf(stderr, " in %.1f s\033[K\n", dt);
    else if (rate > 0) fprintf(stderr, "  ETA %.0f s\033[K", (double)(total - done) / rate);
    fflush(stderr);
}
