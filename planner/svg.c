/* The plan drawn as SVG: a strip of layers coloured by device, one box per
 * stage with its precision and attention, the links between them, and a
 * memory bar per device in stage order (weights / KV / workspace in shades of
 * the device's colour, overhead + reserve in grey, a red line at the end of
 * usable memory) under a colour key. */
#include "planner/planner-impl.h"

#include <string.h>

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                                      "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

static const char *colour(int d) { return palette[d % (int)ST_ARRAY_LEN(palette)]; }

static void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* text in lines of at most ~150 characters, broken at spaces */
static void wrap(FILE *f, double x, double y, double dy, const char *fill, const char *prefix, const char *text,
                 int max_lines) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", prefix, text);
    const char *p = buf;
    for (int line = 0; *p && line < max_lines; line++) {
        size_t n = strlen(p);
        if (n > 150 && line + 1 < max_lines) {
            n = 150;
            while (n > 60 && p[n] != ' ') n--;
        }
        char seg[1024];
        snprintf(seg, sizeof seg, "%.*s", (int)n, p);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\" font-size=\"11\">", x, y + dy * line, fill);
        esc(f, seg);
        fprintf(f, "</text>\n");
        p += n;
        while (*p == ' ') p++;
    }
}

static double gib(uint64_t b) { return (double)b / 1073741824.0; }

st_status st_plan_write_svg(FILE *f, const st_plan *p) {
    const struct st_plan_model *m = &p->model;
    const double W = 960, left = 30, right = 30, strip_w = W - left - right;
    const double y_strip = 84, h_strip = 36, y_stage = 144, h_stage = 74;
    double y_mem = y_stage + h_stage + 78;
    const double h_bar = 22, gap_bar = 40;
    if (!p->feasible && y_stage + 30 + 14 * p->shortfall.n_suggestions > y_mem - 30)
        y_mem = y_stage + 78 + 14 * p->shortfall.n_suggestions;
    double H = y_mem + p->n_devices * gap_bar + 40;
    char a[24];
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", left);
    esc(f, m->name);
    fprintf(f, " (%s, %s) on %d device%s</text>\n", m->weights, st_format_bytes(m->total_bytes, a, sizeof a),
            p->n_devices, p->n_devices == 1 ? "" : "s");
    if (p->feasible)
        fprintf(f, "<text x=\"%.0f\" y=\"44\">objective %s, context %lld, batch %lld: decode %.1f tok/s, prefill %.0f "
                "tok/s</text>\n<text x=\"%.0f\" y=\"62\">bottleneck: ", left, st_plan_objective_name(p->objective),
                (long long)p->context, (long long)p->batch, p->decode_tok_s, p->prefill_tok_s, left);
    if (p->feasible) {
        esc(f, p->bottleneck);
        fprintf(f, "</text>\n");
    } else {
        wrap(f, left, 44, 13, "#c00", "does not fit: ", p->shortfall.detail, 3);
    }

    /* layer strip */
    double lw = strip_w / (double)m->n_layer;
    fprintf(f, "<g class=\"layers\">\n");
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        for (int64_t l = st->first; l <= st->last; l++)
            fprintf(f, "<rect class=\"layer\" x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" fill=\"%s\" "
                    "stroke=\"white\" stroke-width=\"%.2f\"><title>layer %lld: stage %d</title></rect>\n",
                    left + lw * (double)l, y_strip, lw, h_strip, colour(st->device), lw > 4 ? 0.5 : 0.0,
                    (long long)l, s);
    }
    if (!p->feasible)
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#eee\" stroke=\"#c00\"/>\n",
                left, y_strip, strip_w, h_strip);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\">layer 0</text>\n", left, y_strip - 4);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\">layer %lld</text>\n", W - right,
            y_strip - 4, (long long)(m->n_layer - 1));
    fprintf(f, "</g>\n");

    /* stage boxes and links; with several hosts each box names its rank and a network hop is dashed */
    bool multi = false;
    for (int i = 0; i < p->n_devices; i++) multi |= p->devices[i].rank != 0;
    int ns = p->n_stages > 0 ? p->n_stages : 1;
    double gap = 70, bw = (strip_w - gap * (ns - 1)) / ns;
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        const struct st_plan_device *d = &p->devices[st->device];
        double x = left + s * (bw + gap);
        double sx0 = left + lw * (double)st->first, sx1 = left + lw * (double)(st->last + 1);
        fprintf(f, "<g class=\"stage\" data-device=\"");
        esc(f, d->label);
        fprintf(f, "\">\n");
        fprintf(f, "<path d=\"M%.2f %.0f L%.2f %.0f L%.2f %.0f L%.2f %.0f Z\" fill=\"%s\" opacity=\"0.15\"/>\n", sx0,
                y_strip + h_strip, sx1, y_strip + h_strip, x + bw, y_stage, x, y_stage, colour(st->device));
        fprintf(f, "<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" rx=\"6\" fill=\"%s\" "
                "fill-opacity=\"0.18\" stroke=\"%s\" stroke-width=\"2\"/>\n", x, y_stage, bw, h_stage,
                colour(st->device), colour(st->device));
        fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" font-weight=\"bold\">stage %d: ", x + 8, y_stage + 18, s);
        esc(f, d->label);
        if (multi) fprintf(f, " (rank %d)", d->rank);
        fprintf(f, "</text>\n<text x=\"%.2f\" y=\"%.0f\">layers %lld-%lld%s%s</text>\n", x + 8, y_stage + 34,
                (long long)st->first, (long long)st->last, st->has_embedding ? " +embd" : "",
                st->has_output ? " +head" : "");
        fprintf(f, "<text x=\"%.2f\" y=\"%.0f\">%s, %s attention, KV %s</text>\n", x + 8, y_stage + 50,
                st_prec_name(st->prec), st_attn_name(st->attn), st_dtype_name(st->kv_dtype));
        fprintf(f, "<text x=\"%.2f\" y=\"%.0f\">decode %.2f ms, prefill %.1f ms</text>\n", x + 8, y_stage + 66,
                st->decode_ms, st->prefill_ms);
        fprintf(f, "</g>\n");
        if (s + 1 < p->n_stages) {
            const struct st_plan_hop *h = &p->hops[s];
            double ax = x + bw, ay = y_stage + h_stage / 2;
            const bool net = h->link.kind == ST_LINK_NETWORK;
            fprintf(f, "<g class=\"link%s\"><line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"%s\" "
                    "stroke-width=\"2\"%s/><path d=\"M%.2f %.0f l-8 -5 l0 10 Z\" fill=\"%s\"/>", net ? " network" : "",
                    ax + 2, ay, ax + gap - 4, ay, net ? "#c00" : "#333", net ? " stroke-dasharray=\"5 3\"" : "",
                    ax + gap - 2, ay, net ? "#c00" : "#333");
            fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">%s%s</text>",
                    ax + gap / 2, ay - 8, pl_link_name(h->link.kind), h->link.via_host ? "/host" : "");
            fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">%s/step</text>",
                    ax + gap / 2, ay + 16, st_format_bytes(h->decode_bytes, a, sizeof a));
            fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">%.3f ms</text>",
                    ax + gap / 2, ay + 28, h->decode_ms);
            if (net)
                fprintf(f, "<text x=\"%.2f\" y=\"%.0f\" font-size=\"9\" text-anchor=\"middle\">%.2f GB/s</text>",
                        ax + gap / 2, ay + 40, h->link.bandwidth_gbps);
            fprintf(f, "<title>%s/step, %.4f ms; %.2f GB/s, %.0f us latency</title></g>\n", a, h->decode_ms,
                    h->link.bandwidth_gbps, h->link.latency_us);
        }
    }

    if (!p->feasible) {
        const struct st_plan_shortfall *sf = &p->shortfall;
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">what would fit (each planned again)</text>\n",
                left, y_stage);
        for (int i = 0; i < sf->n_suggestions; i++) {
            const struct st_plan_suggestion *g = &sf->suggestions[i];
            char line[300];
            if (g->fits) snprintf(line, sizeof line, "yes  %s: %.1f tok/s", g->what, g->decode_tok_s);
            else snprintf(line, sizeof line, "no   %s", g->what);
            fprintf(f, "<text class=\"suggestion\" x=\"%.0f\" y=\"%.0f\" fill=\"%s\">", left + 10,
                    y_stage + 18 + 14 * i, g->fits ? "#262" : "#a22");
            esc(f, line);
            fprintf(f, "</text>\n");
        }
    }

    /* memory per device, in stage order (the device of stage 0 first, unused devices last); a
     * device holding several stages shows their sum */
    int order[64], n_order = 0;
    bool seen[64] = {false};
    for (int s = 0; s < p->n_stages && n_order < 64; s++) {
        int d = p->stages[s].device;
        if (d >= 0 && d < 64 && !seen[d]) { seen[d] = true; order[n_order++] = d; }
    }
    for (int d = 0; d < p->n_devices && n_order < 64; d++)
        if (!seen[d]) order[n_order++] = d;
    uint64_t scale = 1;
    for (int d = 0; d < p->n_devices; d++) {
        const struct st_plan_device *dv = &p->devices[d];
        uint64_t cap = st_plan_device_usable(dv) + dv->overhead_bytes + dv->reserve_bytes, used = 0;
        for (int s = 0; s < p->n_stages; s++)
            if (p->stages[s].device == d) used += p->stages[s].mem.total;
        if (used + dv->overhead_bytes + dv->reserve_bytes > cap) cap = used + dv->overhead_bytes + dv->reserve_bytes;
        if (cap > scale) scale = cap;
    }
    const double label_w = 180, bar_w = strip_w - label_w - 150;
    static const char *const nm[3] = {"weights", "KV cache", "workspace"};
    static const double op[3] = {1.0, 0.6, 0.3};
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">memory per device (GiB), in stage order</text>\n",
            left, y_mem - 34);
    /* the colour key: the shades of a device's colour, then the grey and the red line */
    fprintf(f, "<g class=\"key\">\n");
    double kx = left;
    for (int i = 0; i < 3; i++) {
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"10\" fill=\"#555\" fill-opacity=\"%.1f\" "
                "stroke=\"#555\" stroke-width=\"0.5\"/><text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%s</text>\n", kx,
                y_mem - 24, op[i], kx + 18, y_mem - 15, nm[i]);
        kx += 18 + 6.5 * (double)strlen(nm[i]) + 20;
    }
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"10\" fill=\"#888\" fill-opacity=\"0.5\"/>"
            "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">runtime overhead + reserve</text>\n", kx, y_mem - 24, kx + 18,
            y_mem - 15);
    kx += 18 + 6.5 * 26 + 20;
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#c00\" stroke-width=\"1.5\"/>"
            "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">end of usable memory</text>\n", kx + 7, y_mem - 26, kx + 7,
            y_mem - 12, kx + 18, y_mem - 15);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" fill=\"#555\">(shades of each device's colour)</text>\n",
            kx + 18 + 6.5 * 20 + 20, y_mem - 15);
    fprintf(f, "</g>\n");
    for (int r = 0; r < n_order; r++) {
        int d = order[r];
        const struct st_plan_device *dv = &p->devices[d];
        double y = y_mem + r * gap_bar;
        uint64_t parts[3] = {0, 0, 0}, total = 0;
        char stages[96] = "";
        int n_st = 0;
        for (int s = 0; s < p->n_stages; s++) {
            const struct st_plan_stage *st = &p->stages[s];
            if (st->device != d) continue;
            parts[0] += st->mem.weights;
            parts[1] += st->mem.kv;
            parts[2] += st->mem.workspace;
            total += st->mem.total;
            size_t n = strlen(stages);
            snprintf(stages + n, sizeof stages - n, "%s%d", n_st++ ? ", " : "", s);
        }
        uint64_t usable = st_plan_device_usable(dv);
        uint64_t dev_total = usable + dv->overhead_bytes + dv->reserve_bytes;
        double k = bar_w / (double)scale, x = left + label_w;
        fprintf(f, "<g class=\"membar\" data-device=\"");
        esc(f, dv->label);
        fprintf(f, "\">\n<text x=\"%.0f\" y=\"%.0f\">", left, y + 15);
        esc(f, dv->label);
        if (n_st) fprintf(f, " (stage%s %s)", n_st > 1 ? "s" : "", stages);
        fprintf(f, "</text>\n<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" fill=\"#f4f4f4\" "
                "stroke=\"#999\"/>\n", x, y, k * (double)dev_total, h_bar);
        double cx = x;
        for (int i = 0; i < 3 && n_st; i++) {
            fprintf(f, "<rect class=\"mem-%s\" x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" fill=\"%s\" "
                    "fill-opacity=\"%.1f\"><title>%s %.2f GiB</title></rect>\n", i == 0 ? "weights" : i == 1 ? "kv"
                    : "workspace", cx, y, k * (double)parts[i], h_bar, colour(d), op[i], nm[i], gib(parts[i]));
            cx += k * (double)parts[i];
        }
        double ox = x + k * (double)usable;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"%.0f\" fill=\"#888\" fill-opacity=\"0.5\">"
                "<title>runtime overhead + reserve</title></rect>\n", ox, y,
                k * (double)(dv->overhead_bytes + dv->reserve_bytes), h_bar);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"#c00\" stroke-width=\"1.5\"/>\n",
                ox, y - 3, ox, y + h_bar + 3);
        fprintf(f, "<text x=\"%.2f\" y=\"%.0f\">%.1f / %.1f GiB%s</text>\n</g>\n", x + bar_w + 8, y + 15, gib(total),
                gib(usable), n_st ? "" : " (unused)");
    }
    fprintf(f, "</svg>\n");
    if (ferror(f)) return st_error_set(ST_ERR_IO, "plan: writing SVG failed");
    return ST_OK;
}
