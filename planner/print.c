/* The plan as a table for people. Colour only on a TTY (st_color). */
#include "planner/planner-impl.h"

#include <string.h>

static const char *B(uint64_t b, char *buf) { return st_format_bytes(b, buf, 24); }

static void print_shortfall(FILE *f, const st_plan *p) {
    const struct st_plan_shortfall *sf = &p->shortfall;
    fprintf(f, "%sdoes not fit:%s %s\n", st_color(f, "1;31"), st_color_reset(f), sf->detail);
    if (sf->n_suggestions) fprintf(f, "\nwhat would fit (each planned again):\n");
    for (int i = 0; i < sf->n_suggestions; i++) {
        const struct st_plan_suggestion *g = &sf->suggestions[i];
        char a[24];
        if (g->fits)
            fprintf(f, "  %s%-4s%s %s: %.1f tok/s decode\n", st_color(f, "32"), "yes", st_color_reset(f), g->what,
                    g->decode_tok_s);
        else if (g->bytes_short)
            fprintf(f, "  %s%-4s%s %s (still %s short)\n", st_color(f, "31"), "no", st_color_reset(f), g->what,
                    B(g->bytes_short, a));
        else
            fprintf(f, "  %s%-4s%s %s\n", st_color(f, "31"), "no", st_color_reset(f), g->what);
    }
}

/* "KV cache reach: ..." — how long a context an f16 and a q8_0 cache allow here. */
static void print_kv_reach(FILE *f, const st_plan *p) {
    const struct st_plan_kv_reach *k = &p->kv_reach;
    if (!k->known) return;
    char a[48], b[48];
    if (k->f16_ctx >= k->limit) snprintf(a, sizeof a, "all %lld tokens", (long long)k->limit);
    else snprintf(a, sizeof a, "%lld tokens", (long long)k->f16_ctx);
    if (k->q8_ctx >= k->limit) snprintf(b, sizeof b, "all %lld tokens", (long long)k->limit);
    else snprintf(b, sizeof b, "%lld tokens", (long long)k->q8_ctx);
    fprintf(f, "%skv cache reach%s: longest context at batch %lld with an f16 cache %s, with a q8_0 cache %s", st_color(f, "1"),
            st_color_reset(f), (long long)p->batch, a, b);
    if (k->q8_ctx > k->f16_ctx && k->f16_ctx > 0)
        fprintf(f, " (+%lld, %.2fx)", (long long)(k->q8_ctx - k->f16_ctx), (double)k->q8_ctx / (double)k->f16_ctx);
    else if (k->q8_ctx > k->f16_ctx)
        fprintf(f, " (+%lld)", (long long)(k->q8_ctx - k->f16_ctx));
    if (p->model.n_ctx_train > 0 && (k->q8_ctx > p->model.n_ctx_train || k->f16_ctx > p->model.n_ctx_train))
        fprintf(f, "; the model was trained for %lld", (long long)p->model.n_ctx_train);
    fputc('\n', f);
}

/* What each device's backend runs, against what the model holds (--explain). */
static void print_weight_types(FILE *f, const st_plan *p) {
    const uint32_t need = st_plan_model_dtypes(&p->model);
    char a[160], b[96];
    fprintf(f, "\n%sweight types%s: what each device's backend runs (the model holds %s)\n", st_color(f, "1"),
            st_color_reset(f), need ? st_dtype_mask_text(need, " ", a, sizeof a) : "types not known");
    for (int i = 0; i < p->n_devices; i++) {
        const uint32_t runs = pl_dev_dtypes(&p->devices[i]), lacks = need & ~runs;
        fprintf(f, "  %-20s %s", p->devices[i].label, st_dtype_mask_text(runs, " ", a, sizeof a));
        if (lacks) fprintf(f, "  %s(holds no %s)%s", st_color(f, "33"), st_dtype_mask_text(lacks, " ", b, sizeof b),
                           st_color_reset(f));
        fputc('\n', f);
    }
}

void st_plan_print(FILE *f, const st_plan *p, bool explain) {
    const struct st_plan_model *m = &p->model;
    char a[24], b[24], c[24], d[24], e[24];
    fprintf(f, "%splan%s: %s (%s, %s of weights, %lld layers) on %d device%s; context %lld, batch %lld, "
            "objective %s%s\n", st_color(f, "1"), st_color_reset(f), m->name, m->weights, B(m->total_bytes, a),
            (long long)m->n_layer, p->n_devices, p->n_devices == 1 ? "" : "s", (long long)p->context,
            (long long)p->batch, st_plan_objective_name(p->objective), p->manual ? " (manual placement)" : "");
    if (!p->feasible) {
        print_shortfall(f, p);
        if (p->kv_reach.known) fputc('\n', f);
        print_kv_reach(f, p);
        if (explain) {
            fprintf(f, "\ndevices:\n");
            for (int i = 0; i < p->n_devices; i++)
                fprintf(f, "  %-20s %-30s usable %s\n", p->devices[i].label, p->devices[i].info.name,
                        B(st_plan_device_usable(&p->devices[i]), a));
            print_weight_types(f, p);
        }
        return;
    }
    bool ranks = false;   /* several hosts: a rank column */
    for (int i = 0; i < p->n_devices; i++) ranks |= p->devices[i].rank != 0;
    fprintf(f, "\n%s%-5s %-20s %s%-12s %-5s %-6s %-5s %11s %11s %11s %11s / %-11s%s\n", st_color(f, "1"), "stage",
            "device", ranks ? "rank " : "", "layers", "prec", "attn", "kv", "weights", "KV", "workspace", "total", "usable",
            st_color_reset(f));
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        char layers[32];
        snprintf(layers, sizeof layers, "%lld-%lld%s%s", (long long)st->first, (long long)st->last,
                 st->has_embedding ? " E" : "", st->has_output ? " O" : "");
        double pct = st->mem.usable ? 100.0 * (double)st->mem.total / (double)st->mem.usable : 0;
        char rk[16] = "";
        if (ranks) snprintf(rk, sizeof rk, "%-4d ", p->devices[st->device].rank);
        fprintf(f, "%-5d %-20s %s%-12s %-5s %-6s %-5s %11s %11s %11s %11s / %-11s (%.0f%%)\n", s,
                p->devices[st->device].label, rk, layers, st_prec_name(st->prec), st_attn_name(st->attn),
                st_dtype_name(st->kv_dtype),
                B(st->mem.weights, a), B(st->mem.kv, b), B(st->mem.workspace, c), B(st->mem.total, d),
                B(st->mem.usable, e), pct);
    }
    fprintf(f, "      (E: embedding, O: final norm + lm_head; kv: the stage's KV cache type; usable = memory "
            "- runtime overhead - reserve)\n");
    if (p->n_hops) {
        fprintf(f, "\n%slinks%s\n", st_color(f, "1"), st_color_reset(f));
        for (int h = 0; h < p->n_hops; h++) {
            const struct st_plan_hop *hp = &p->hops[h];
            int ra = p->devices[p->stages[h].device].rank, rb = p->devices[p->stages[h + 1].device].rank;
            char across[32] = "";
            if (ra != rb) snprintf(across, sizeof across, "   rank %d -> %d", ra, rb);
            fprintf(f, "  %d -> %d  %-7s%-9s %7.2f GB/s %5.0f us   %10s/step %8.4f ms   %10s/chunk %8.3f ms%s\n", h,
                    h + 1, pl_link_name(hp->link.kind), hp->link.via_host ? " via host" : "",
                    hp->link.bandwidth_gbps, hp->link.latency_us, B(hp->decode_bytes, a), hp->decode_ms,
                    B(hp->prefill_bytes, b), hp->prefill_ms, across);
        }
    }
    fprintf(f, "\n%spredicted%s: decode %.1f tok/s (%.2f ms per step at %lld tokens of context%s), prefill %.0f "
            "tok/s (%lld-token prompt in chunks of %lld)\n", st_color(f, "1"), st_color_reset(f), p->decode_tok_s,
            p->decode_ms, (long long)p->decode_at,
            p->objective == ST_PLAN_THROUGHPUT ? "; tok/s with the pipeline full" : "", p->prefill_tok_s,
            (long long)p->prompt_tokens, (long long)p->prefill_chunk);
    fprintf(f, "%sbottleneck%s: %s\n", st_color(f, "1"), st_color_reset(f), p->bottleneck);
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        fprintf(f, "  stage %d: decode %.2f ms, prefill %.2f ms per chunk\n", s, st->decode_ms, st->prefill_ms);
    }
    print_kv_reach(f, p);
    if (explain) {
        print_weight_types(f, p);
        fprintf(f, "\n%swhy%s\n", st_color(f, "1"), st_color_reset(f));
        for (int i = 0; i < p->n_reasons; i++) fprintf(f, "  - %s\n", p->reasons[i]);
    }
}
