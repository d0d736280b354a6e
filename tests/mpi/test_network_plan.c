/* Hosts of different ranks in the config and the planner, without MPI:
 *   - `rank:` and `network:` parse, and every bad value is a positioned error;
 *   - st_config_check_ranks: a rank past the ranks running, a real device on
 *     another rank without mpirun, a gap in the ranks;
 *   - the what-if of two hosts (configs/examples/whatif-m40-box-3090-box.yaml:
 *     two M40s on rank 0, a 3090 on rank 1, 10GbE): the hops between ranks are
 *     network hops whose cost is the documented formula (written out here from
 *     the preset's figures), shown in the table, the YAML and the SVG;
 *   - as the network slows the plan crosses it less often, down to one cut; at
 *     10GbE a second cut is worth it (it frees the 3090 for more layers), which
 *     the planner shows by beating the best plan that keeps each host's cards
 *     together. */
#include "config_check.h"
#include "orchestrator/deploy.h"
#include "planner/planner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT_ERROR(yaml, want) do { \
    struct st_deploy_config *_c = NULL; \
    st_status _s = st_config_parse((yaml), strlen(yaml), "t.yaml", &_c); \
    CHECK_MSG(_s == ST_ERR_CONFIG && !_c, "status %s", st_status_name(_s)); \
    CHECK_MSG(strcmp(st_last_error(), (want)) == 0, "\n  got:  %s\n  want: %s", st_last_error(), (want)); \
    st_config_free(_c); \
} while (0)

#define HEAD "version: 1\nmodel: {preset: qwen2.5-7b}\n"

static void test_config(void) {
    struct st_deploy_config *c = config_parse_ok(HEAD "devices:\n  - cpu\n  - {device: cuda:0, rank: 1}\n  - {catalog: rtx-3090, rank: 2}\n"
                                       "network: 25GbE\n");
    if (c) {
        CHECK(c->devices[0].rank == 0 && c->devices[1].rank == 1 && c->devices[2].rank == 2);
        CHECK(c->devices[1].rank_pos.line == 5 && c->devices[1].rank_pos.column == 28);
        CHECK(c->network.set && !strcmp(c->network.preset, "25gbe"));
        CHECK(c->network.bandwidth_gbps == 2.94 && c->network.latency_us == 20.0);
        /* under mpirun with 3 ranks all is well; with 2, rank 2 does not exist */
        CHECK_OK(st_config_check_ranks(c, 3));
        CHECK_ERR(st_config_check_ranks(c, 2), ST_ERR_CONFIG,
                  "t.yaml:6:31: devices[2].rank: catalog:rtx-3090 is on rank 2, but 2 ranks are running (0..1)\n"
                  "hint: launch with 'mpirun -np 3', or give the device a rank from 0 to 1");
        /* without mpirun a real device on rank 1 cannot be seen */
        CHECK_ERR(st_config_check_ranks(c, 0), ST_ERR_CONFIG,
                  "t.yaml:5:28: devices[1].rank: cuda:0 is on rank 1, another process whose devices only 'mpirun' "
                  "can show\nhint: launch one process per rank ('mpirun -np 3 strata ...', docs/multihost.md), or write "
                  "the other host's cards as {catalog: NAME} for a what-if plan");
        CHECK_ERR(st_config_check_ranks(c, 1), ST_ERR_CONFIG, "devices[1].rank: cuda:0 is on rank 1, but 1 rank is running");
        st_config_free(c);
    }
    /* figures override the preset; figures alone */
    c = config_parse_ok(HEAD "devices: [cpu]\nnetwork: {preset: 10gbe, latency_us: 80}\n");
    if (c) { CHECK(c->network.bandwidth_gbps == 1.175 && c->network.latency_us == 80.0); st_config_free(c); }
    c = config_parse_ok(HEAD "devices: [cpu]\nnetwork: {bandwidth_gb_s: 0.5, latency_us: 100}\n");
    if (c) { CHECK(!c->network.preset[0] && c->network.bandwidth_gbps == 0.5); st_config_free(c); }
    /* a what-if across ranks: catalog cards only, ranks without a gap */
    c = config_parse_ok(HEAD "devices:\n  - {catalog: tesla-m40}\n  - {catalog: rtx-3090, rank: 1}\n");
    if (c) { CHECK_OK(st_config_check_ranks(c, 0)); st_config_free(c); }
    c = config_parse_ok(HEAD "devices:\n  - {catalog: tesla-m40}\n  - {catalog: rtx-3090, rank: 2}\n");
    if (c) {
        CHECK_ERR(st_config_check_ranks(c, 0), ST_ERR_CONFIG,
                  "t.yaml:5:31: devices[1].rank: catalog:rtx-3090 is on rank 2, but no device is on rank 1\n"
                  "hint: number the hosts 0, 1, 2, ... without gaps: every rank owns at least one device");
        st_config_free(c);
    }

    EXPECT_ERROR(HEAD "devices: [{device: cpu, rank: -1}]\n",
                 "t.yaml:3:31: devices[0].rank: -1 is out of range: it must be in 0..1023\nhint: write it as, e.g., 'rank: 1'");
    EXPECT_ERROR(HEAD "devices: [{device: cpu, rank: one}]\n",
                 "t.yaml:3:31: devices[0].rank: expected a whole number, found the string 'one'\n"
                 "hint: write it as, e.g., 'rank: 1'");
    EXPECT_ERROR(HEAD "devices: [cpu]\nnetwork: 10gbit\n",
                 "t.yaml:4:10: network: unknown network '10gbit'\nhint: did you mean '10gbe'? presets: 1gbe, 10gbe, "
                 "25gbe, 40gbe, 100gbe, ib-edr, ib-hdr, ib-ndr (docs/multihost.md)");
    EXPECT_ERROR(HEAD "devices: [cpu]\nnetwork: {bandwidth_gb_s: 0, latency_us: 5}\n",
                 "t.yaml:4:27: network.bandwidth_gb_s: 0 is out of range: it must be in (0, 10000] GB/s\n"
                 "hint: GB/s are 10^9 bytes per second: a 10 Gbit/s link carries about 1.2");
    EXPECT_ERROR(HEAD "devices: [cpu]\nnetwork: {bandwidth_gb_s: 2}\n",
                 "t.yaml:4:10: network: needs a preset, or both bandwidth_gb_s and latency_us\n"
                 "hint: e.g. 'network: 25gbe' or 'network: {bandwidth_gb_s: 1.2, latency_us: 30}'");
    EXPECT_ERROR(HEAD "devices: [cpu]\nnetwork: {latncy_us: 2}\n",
                 "t.yaml:4:11: network: unknown key 'latncy_us'\nhint: did you mean 'latency_us'?");
}

static int network_hops(const st_plan *p) {
    int n = 0;
    for (int h = 0; h < p->n_hops; h++) n += p->hops[h].link.kind == ST_LINK_NETWORK;
    return n;
}

/* Plans the example with another network: (a preset name or a flow mapping). */
static st_plan *plan_with(const char *network, st_deploy **dout) {
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(st_read_file("configs/examples/whatif-m40-box-3090-box.yaml", &text, &len));
    if (!text) return NULL;
    char *at = strstr(text, "network: 10gbe\n");
    CHECK(at != NULL);
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%.*snetwork: %s\n%s", (int)(at - text), text, network, at + strlen("network: 10gbe\n"));
    free(text);
    FILE *f = fopen("build-network-plan.yaml", "w");
    fputs(yaml, f);
    fclose(f);
    struct st_deploy_options opt = {.config_path = "build-network-plan.yaml"};
    st_deploy *d = NULL;
    st_status s = st_deploy_open(&opt, &d);
    remove("build-network-plan.yaml");
    CHECK_MSG(s == ST_OK && d && d->plan && d->plan->feasible, "%s: %s", network, st_last_error());
    *dout = d;
    return d ? d->plan : NULL;
}

static void test_whatif(void) {
    st_deploy *d = NULL;
    st_plan *p = plan_with("10gbe", &d);
    if (!p) return;
    /* the network hop: 10gbe (1.175 GB/s, 30 us) plus 15 us of PCIe copy at each GPU end; bandwidth the lower
       of the network's and the cards' PCIe 3 x16 (12 GB/s): a decode step moves 8192 x 4 bytes */
    const double hop_ms = (30.0 + 15.0 + 15.0) * 1e-3 + 8192.0 * 4.0 / (1.175 * 1e6);
    CHECK_MSG(network_hops(p) >= 1, "%d network hops", network_hops(p));
    /* the link matrix: the two M40s share a host (PCIe), each of them and the 3090 do not (network, both ways) */
    CHECK(d->n_devs == 3 && d->devs[2].rank == 1 && d->devs[0].rank == 0 && d->devs[1].rank == 0);
    CHECK(d->links[0 * 3 + 1].kind == ST_LINK_PCIE && d->links[1 * 3 + 0].kind == ST_LINK_PCIE);
    for (int a = 0; a < 2; a++)
        CHECK(d->links[a * 3 + 2].kind == ST_LINK_NETWORK && d->links[2 * 3 + a].kind == ST_LINK_NETWORK);
    for (int h = 0; h < p->n_hops; h++) {
        const struct st_plan_hop *hp = &p->hops[h];
        const bool across = p->devices[p->stages[h].device].rank != p->devices[p->stages[h + 1].device].rank;
        CHECK_MSG(across == (hp->link.kind == ST_LINK_NETWORK), "hop %d: kind %d across %d", h, hp->link.kind, across);
        if (across) CHECK_MSG(fabs(hp->decode_ms - hop_ms) < 1e-9, "hop %d: %.6f ms, want %.6f", h, hp->decode_ms, hop_ms);
    }
    /* shown in the table, the plan file and the picture */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    st_plan_print(f, p, true);
    fclose(f);
    CHECK_MSG(strstr(buf, "network via host    1.18 GB/s    60 us") && strstr(buf, "0.0879 ms") &&
              strstr(buf, "rank 0 -> 1") && strstr(buf, "from rank 0 to rank 1 over the network"), "%s", buf);
    free(buf);
    f = open_memstream(&buf, &len);
    CHECK_OK(st_plan_write_svg(f, p));
    fclose(f);
    CHECK_MSG(strstr(buf, "class=\"link network\"") && strstr(buf, "(rank 1)") && strstr(buf, "1.18 GB/s") &&
              strstr(buf, "0.088 ms"), "the SVG lacks the network hop");
    free(buf);
    f = open_memstream(&buf, &len);
    CHECK_OK(st_plan_write_yaml(f, p));
    fclose(f);
    st_plan *back = NULL;
    CHECK_OK(st_plan_parse_yaml(buf, len, "mem.yaml", &back));
    if (back) {
        CHECK(back->devices[2].rank == 1 && back->devices[0].rank == 0);
        CHECK(back->hops[0].link.kind == p->hops[0].link.kind);
        st_plan_free(back);
    }
    CHECK(strstr(buf, "rank: 1") && strstr(buf, "kind: \"network\""));
    free(buf);

    /* at 10GbE each cut costs 0.09 ms and the second one frees the 3090 for more layers: the plan is faster than
       the best one that keeps each host's cards together (every order of the 3 cards with rank 0's adjacent,
       each planned exactly over contiguous ranges by giving the planner only those cards' order) */
    const int cuts_10g = network_hops(p);
    const double best_10g = p->decode_ms;
    if (cuts_10g > 1) {
        /* the same devices where the 3090 box is the same host: hops are free of the network, the plan no faster */
        st_plan *grouped = NULL;
        struct st_plan_request rq = d->req;
        struct st_plan_device devs[3];
        memcpy(devs, d->devs, sizeof devs);
        /* only rank 0's two cards and the 3090 in one block: the 3090 first or last, the M40s together */
        int64_t L = d->pm.n_layer;
        double best_grouped = 1e30;
        for (int64_t a = 0; a + 2 < L; a++) {
            for (int64_t b = a + 1; b + 1 < L; b++) {
                static const int orders[2][3] = {{0, 1, 2}, {2, 0, 1}};
                for (int o = 0; o < 2; o++) {
                    struct st_plan_range r[3] = {{orders[o][0], 0, a}, {orders[o][1], a + 1, b}, {orders[o][2], b + 1, L - 1}};
                    rq.manual = r;
                    rq.n_manual = 3;
                    rq.no_suggestions = true;
                    /* float KV caches only, as the planner's own plan: a split that fits only with a
                       q8_0 fallback (kv_dtype auto) is not among the plans the planner compares */
                    bool float_kv = false;
                    if (st_plan_make(&d->pm, devs, 3, d->links, &rq, &grouped) == ST_OK) {
                        float_kv = true;
                        for (int k = 0; k < grouped->n_stages; k++) float_kv &= grouped->stages[k].kv_dtype != ST_DTYPE_Q8_0;
                    }
                    if (float_kv && grouped->decode_ms < best_grouped) best_grouped = grouped->decode_ms;
                    st_plan_free(grouped);
                    grouped = NULL;
                    st_error_clear();
                }
            }
        }
        CHECK_MSG(best_10g < best_grouped, "the planner's %d-cut plan (%.3f ms) is no faster than one cut (%.3f ms)",
                  cuts_10g, best_10g, best_grouped);
        printf("10GbE: %d network cuts, %.3f ms per token; the best plan with one cut: %.3f ms\n", cuts_10g, best_10g,
               best_grouped);
    }
    st_deploy_free(d);

    /* slower networks: never more cuts; a slow one is crossed once */
    static const char *const nets[] = {"1gbe", "{bandwidth_gb_s: 0.05, latency_us: 500}",
                                       "{bandwidth_gb_s: 0.01, latency_us: 2000}"};
    int prev = cuts_10g;
    for (size_t i = 0; i < ST_ARRAY_LEN(nets); i++) {
        st_plan *q = plan_with(nets[i], &d);
        if (!q) continue;
        int cuts = network_hops(q);
        CHECK_MSG(cuts <= prev, "%s: %d cuts after %d", nets[i], cuts, prev);
        printf("network %s: %d cut%s, %.3f ms per token\n", nets[i], cuts, cuts == 1 ? "" : "s", q->decode_ms);
        prev = cuts;
        if (i + 1 == ST_ARRAY_LEN(nets)) {
            CHECK_MSG(cuts == 1, "a slow network is crossed %d times", cuts);
            /* rank 0's stages come first, then rank 1's: one contiguous block per host */
            int changes = 0;
            for (int s = 1; s < q->n_stages; s++)
                changes += q->devices[q->stages[s].device].rank != q->devices[q->stages[s - 1].device].rank;
            CHECK(changes == 1);
        }
        st_deploy_free(d);
    }
}

int main(void) {
    test_config();
    test_whatif();
    return st_test_finish("network plan");
}
