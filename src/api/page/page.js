// weir's live page. Reads weir's own Prometheus query API (/api/v1/*) and
// /api/summary, so that what it shows is what the alert rules see; when the
// query API answers 503 (no `alerting:` section) it falls back to /metrics.
//
// Every number is in an element with a stable id (e.g. src-app_logs-lines,
// sink-local-events_rate, sum-rps, cost-day) carrying the raw value in
// data-value and, when it came from the query API, the PromQL in
// data-query; <body> carries data-mode (query_api | metrics), data-time
// (the evaluation time of every query of the last refresh, Unix seconds,
// one second behind the server: see refresh()) and data-refreshes. A refresh renders everything at once, after all its
// answers are in, so the page never mixes two refreshes.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(1, Number(params.get("refresh")) || 5) * 1000;
  const HOUR = 3600;
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
    "#db2777", "#65a30d", "#475569", "#ea580c"];
  const MAX_LINES = 10;

  // ---- DOM helpers (text only: label values and annotations are data) ----
  function h(tag, attrs, ...kids) {
    const e = tag.startsWith("svg:")
      ? document.createElementNS(SVGNS, tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
    }
    for (const k of kids.flat()) {
      if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }
  const $ = (id) => document.getElementById(id);
  // Ids from component, tool and model names: anything unusual becomes "_".
  const slug = (s) => String(s).replace(/[^A-Za-z0-9_.-]/g, "_");

  // ---- number formatting ----
  const num = (raw) => (raw === null || raw === undefined ? null : Number(raw));
  function fmtInt(v) {
    return v === null || !isFinite(v) ? "–" : Math.round(v).toLocaleString("en-US");
  }
  function fmtRate(v) {
    if (v === null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    if (a < 10) return v.toFixed(2);
    if (a < 1000) return v.toFixed(1);
    return Math.round(v).toLocaleString("en-US");
  }
  function fmtBytes(v) {
    if (v === null || !isFinite(v)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(1)) + " " + units[i];
  }
  const fmtBytesRate = (v) => (v === null || !isFinite(v) ? "–" : fmtBytes(v) + "/s");
  const fmtPct = (v) => (v === null || !isFinite(v) ? "–" : (v * 100).toFixed(1) + "%");
  const fmtUsd = (v) => (v === null || !isFinite(v) ? "–"
    : "$" + (Math.abs(v) < 1 ? v.toFixed(4) : v.toFixed(2)));
  const fmtMs = (v) => (v === null || !isFinite(v) ? "–" : v.toFixed(v < 10 ? 2 : 0) + " ms");
  function fmtSeconds(v) {
    if (v === null || !isFinite(v)) return "–";
    return v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s";
  }
  // An alert's value (written as Prometheus does, e.g. "3e+04").
  function fmtValue(raw) {
    const v = Number(raw);
    if (!isFinite(v)) return String(raw);
    return Number.isInteger(v) ? v.toLocaleString("en-US") : String(Number(v.toPrecision(4)));
  }
  function fmtDuration(s) {
    return s % 3600 === 0 ? s / 3600 + "h" : s % 60 === 0 ? s / 60 + "m" : s + "s";
  }
  const fmtTime = (secs) => new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";

  // A cell holding one number: id, the raw value, the query it came from.
  function valueCell(tag, id, raw, fmt, query, cls) {
    const v = num(raw);
    return h(tag, {
      id, class: cls || (raw === null || raw === undefined ? "na" : null),
      "data-value": raw === null || raw === undefined ? null : String(raw),
      "data-query": query || null, title: query || null,
    }, fmt(v));
  }

  // ---- fetching ----
  class Unavailable extends Error {}
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    return { status: r.status, body };
  }
  async function promql(path, args) {
    const r = await getJSON(path + "?" + new URLSearchParams(args));
    if (r.status === 503) throw new Unavailable((r.body && r.body.error) || "unavailable");
    if (r.status !== 200 || !r.body || r.body.status !== "success") {
      throw new Error(path + " " + (args.query || "") + ": " +
        ((r.body && r.body.error) || "HTTP " + r.status));
    }
    return r.body.data;
  }
  const instant = (q, t) => promql("/api/v1/query", { query: q, time: t }).then((d) => d.result);
  const range = (q, start, end, step) =>
    promql("/api/v1/query_range", { query: q, start, end, step }).then((d) => d.result);

  // Map label value → raw sample value of an instant vector.
  function byLabel(vector, label) {
    const m = new Map();
    for (const s of vector) m.set(s.metric[label] || "", s.value[1]);
    return m;
  }

  // ---- what is shown ----
  function sourceFields(w) {
    return [
      { f: "lines_rate", h: "lines/s", q: `sum by (source) (rate(weir_lines_read_total[${w}]))`, fmt: fmtRate, rateOf: "weir_lines_read_total" },
      { f: "bytes_rate", h: "bytes/s", q: `sum by (source) (rate(weir_bytes_read_total[${w}]))`, fmt: fmtBytesRate, rateOf: "weir_bytes_read_total" },
      { f: "lines", h: "lines read", q: "sum by (source) (weir_lines_read_total)", fmt: fmtInt, metric: "weir_lines_read_total" },
      { f: "bytes", h: "bytes read", q: "sum by (source) (weir_bytes_read_total)", fmt: fmtBytes, metric: "weir_bytes_read_total" },
      { f: "decode_errors", h: "decode errors", q: "sum by (source) (weir_decode_errors_total)", fmt: fmtInt, metric: "weir_decode_errors_total" },
      { f: "decode_errors_rate", h: "decode errors/s", q: `sum by (source) (rate(weir_decode_errors_total[${w}]))`, fmt: fmtRate, rateOf: "weir_decode_errors_total" },
      { f: "checkpoint_lag", h: "checkpoint lag", q: "sum by (source) (weir_checkpoint_lag_bytes)", fmt: fmtBytes, metric: "weir_checkpoint_lag_bytes",
        title: "bytes read that not every sink has delivered (or written to its disk buffer) yet; file sources only" },
    ];
  }
  function sinkFields(w) {
    return [
      { f: "events_rate", h: "events/s", q: `sum by (sink) (rate(weir_events_out_total[${w}]))`, fmt: fmtRate, rateOf: "weir_events_out_total" },
      { f: "bytes_rate", h: "bytes/s", q: `sum by (sink) (rate(weir_bytes_out_total[${w}]))`, fmt: fmtBytesRate, rateOf: "weir_bytes_out_total" },
      { f: "events", h: "events out", q: "sum by (sink) (weir_events_out_total)", fmt: fmtInt, metric: "weir_events_out_total" },
      { f: "errors", h: "failed attempts", q: "sum by (sink) (weir_sink_errors_total)", fmt: fmtInt, metric: "weir_sink_errors_total" },
      { f: "retries", h: "retries", q: "sum by (sink) (weir_sink_retries_total)", fmt: fmtInt, metric: "weir_sink_retries_total" },
      { f: "dead_letters", h: "dead letters", q: "sum by (sink) (weir_dead_letter_events_total)", fmt: fmtInt, metric: "weir_dead_letter_events_total" },
      { f: "buffer_events", h: "buffer events", q: "sum by (sink) (weir_buffer_events)", fmt: fmtInt, metric: "weir_buffer_events" },
      { f: "buffer_bytes", h: "buffer bytes", q: "sum by (sink) (weir_buffer_bytes)", fmt: fmtBytes, metric: "weir_buffer_bytes" },
    ];
  }
  const COST = {
    day: "llm_daily_costs_usd",
    budget: "llm_daily_budget_usd",
    models: "llm_daily_model_costs_usd",
    // One model's figure on one day, as each cell names its query.
    model: (date, m) => `sum by (model) (llm_daily_model_costs_usd{date="${date}",model="${m}"})`,
  };
  function chartDefs(w) {
    return [
      { id: "lines", title: "Lines read per second, by source", fmt: fmtRate,
        qs: [{ q: `sum by (source) (rate(weir_lines_read_total[${w}]))`, name: (m) => m.source }] },
      { id: "requests", title: "API requests per second, by endpoint", fmt: fmtRate,
        qs: [{ q: "sum by (endpoint) (rate(fastapi_requests_total[5m]))", name: (m) => m.endpoint }] },
      { id: "latency", title: "API latency p50 / p95", fmt: fmtSeconds,
        qs: [
          { q: "histogram_quantile(0.5, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m])))", name: () => "p50" },
          { q: "histogram_quantile(0.95, sum by (le) (rate(fastapi_request_duration_seconds_bucket[5m])))", name: () => "p95" },
        ] },
      { id: "tools", title: "Tool success rate, by tool", fmt: fmtPct, ymax: 1,
        qs: [{ q: '(sum by (tool_name) (rate(agent_tool_calls_total{status="success"}[5m])) or 0 * sum by (tool_name) (rate(agent_tool_calls_total[5m]))) / sum by (tool_name) (rate(agent_tool_calls_total[5m]))', name: (m) => m.tool_name }] },
      { id: "tokens", title: "LLM tokens per second, by model", fmt: fmtRate,
        qs: [{ q: "sum by (model) (rate(llm_tokens_used_total[5m]))", name: (m) => m.model }] },
    ];
  }

  // ---- rendering ----
  // rows: Map name → Map field → raw; queries: field → PromQL (or null).
  function table(kind, label, fields, rows, extra) {
    const names = [...rows.keys()].sort();
    if (names.length === 0) {
      return [h("tr", {}, h("td", { class: "empty" }, `no ${kind} metrics yet`))];
    }
    const head = h("tr", {}, h("th", {}, label), fields.map((f) => h("th", { title: f.title || null }, f.h)),
      extra ? h("th", {}, extra.h) : null);
    const body = names.map((n) => h("tr", { "data-name": n },
      h("td", {}, n),
      fields.map((f) => valueCell("td", `${kind}-${slug(n)}-${f.f}`, rows.get(n).get(f.f),
        f.fmt, f.live === false ? null : f.q)),
      extra ? h("td", { id: `${kind}-${slug(n)}-${extra.f}`, class: "na", title: extra.title }, "n/a") : null));
    return [head, ...body];
  }

  function rowsOf(fields, results, label) {
    const rows = new Map();
    fields.forEach((f, i) => {
      for (const [name, raw] of results[i]) {
        if (!rows.has(name)) rows.set(name, new Map());
        rows.get(name).set(f.f, raw);
      }
    });
    return rows;
  }

  function card(id, label, raw, fmt, hint, cls, query) {
    return h("div", { class: "card" },
      h("div", { class: "label" }, label),
      valueCell("div", id, raw, fmt, query, "value " + (cls || "")),
      hint ? h("div", { class: "hint" }, hint) : null);
  }

  function summaryView(s) {
    const sh = s.system_health, bm = s.business_metrics, cm = s.cost_metrics, ss = s.since_start;
    const d = s.definitions || {};
    const status = h("div", { class: "card" },
      h("div", { class: "label" }, "status"),
      h("div", { id: "sum-status", class: "value status-" + sh.status, "data-value": sh.status,
        title: d.status }, sh.status),
      h("div", { class: "hint" }, `healthy: success > ${s.thresholds.healthy_success_rate}`));
    const cards = [
      status,
      card("sum-rps", "requests/s", sh.rps, fmtRate, "5 min", "", d.rps),
      card("sum-avg_latency_ms", "mean latency", sh.avg_latency_ms, fmtMs, "5 min", "", d.avg_latency_ms),
      card("sum-success_rate", "success rate", sh.success_rate, fmtPct, "non-5xx, 5 min", "", d.success_rate),
      card("sum-conversations_1h", "conversations", bm.conversations_1h, fmtInt, "chat requests, 1 h", "", d.conversations_1h),
      card("sum-cost_per_conversation", "cost / conversation", cm.cost_per_conversation, fmtUsd, "1 h", "", d.cost_per_conversation),
      card("sum-daily_token_cost", "LLM cost " + (cm.date || ""), cm.daily_token_cost, fmtUsd,
        cm.daily_budget_usd === null ? "no budget set" : "budget " + fmtUsd(cm.daily_budget_usd), "", d.daily_token_cost),
      card("sum-requests", "requests since start", ss.requests, fmtInt, "counter value", "", d.since_start && d.since_start.requests),
    ];
    const tools = bm.tool_usage_top5.length === 0
      ? h("p", { class: "empty" }, "no tool calls in the last hour")
      : h("table", { id: "top-tools-table" },
        h("tr", {}, h("th", {}, "top tools, last hour"), h("th", {}, "calls"), h("th", {}, "success")),
        bm.tool_usage_top5.map((t) => h("tr", { "data-name": t.tool_name },
          h("td", {}, t.tool_name),
          valueCell("td", `tool-${slug(t.tool_name)}-calls`, t.calls, fmtInt),
          valueCell("td", `tool-${slug(t.tool_name)}-success_rate`, t.success_rate, fmtPct))));
    return { cards, tools };
  }

  function niceMax(v) {
    if (!(v > 0) || !isFinite(v)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // series: [{name, points: [[t, v], …]}], t in seconds.
  function chartView(def, series, start, end, step) {
    const W = 560, H = 170, L = 52, R = 10, T = 8, B = 22;
    const pw = W - L - R, ph = H - T - B;
    series = series
      .map((s) => ({ ...s, last: s.points.length ? s.points[s.points.length - 1][1] : NaN }))
      .sort((a, b) => (b.last || 0) - (a.last || 0) || a.name.localeCompare(b.name))
      .slice(0, MAX_LINES);
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (isFinite(v) && v > max) max = v;
    const ymax = def.ymax || niceMax(max);
    const x = (t) => L + ((t - start) / (end - start)) * pw;
    const y = (v) => T + ph - (Math.min(v, ymax) / ymax) * ph;
    const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, id: `chart-${def.id}`,
      "data-series": series.length, "data-query": def.qs.map((q) => q.q).join("\n"),
      role: "img", "aria-label": def.title });
    for (const f of [0, 0.5, 1]) {
      svg.append(h("svg:line", { class: "grid", x1: L, x2: W - R, y1: y(f * ymax), y2: y(f * ymax) }));
      svg.append(h("svg:text", { class: "axis", x: L - 4, y: y(f * ymax) + 3, "text-anchor": "end" },
        def.fmt(f * ymax)));
    }
    for (const [f, label] of [[0, "-60m"], [0.5, "-30m"], [1, "now"]]) {
      svg.append(h("svg:text", { class: "axis", x: L + f * pw, y: H - 6,
        "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, label));
    }
    series.forEach((s, i) => {
      // Gaps (no sample for over two steps) break the line; a point
      // alone is drawn as a dot (a zero-length segment with round caps).
      let d = "", prev = null, run = 0;
      const dot = () => (run === 1 ? "h0" : "");
      for (const [t, v] of s.points) {
        if (!isFinite(v)) { d += dot(); prev = null; run = 0; continue; }
        const gap = prev === null || t - prev > 2.5 * step;
        if (gap) { d += dot(); run = 0; }
        d += (gap ? "M" : "L") + x(t).toFixed(1) + "," + y(v).toFixed(1);
        prev = t;
        run++;
      }
      d += dot();
      if (d) {
        svg.append(h("svg:path", { class: "line", d, stroke: COLORS[i % COLORS.length],
          "data-name": s.name }));
      }
    });
    const legend = h("div", { class: "legend" }, series.length === 0
      ? h("span", { class: "empty" }, "no data in the last hour")
      : series.map((s, i) => {
        const sw = h("span", { class: "sw" });
        sw.style.background = COLORS[i % COLORS.length];
        return h("span", {}, sw, s.name + " ", h("b", {}, def.fmt(s.last)));
      }));
    return h("div", { class: "chart" }, h("h3", {}, def.title), svg, legend);
  }

  function costView(day, budgetRaw, models, source) {
    const out = [];
    const budget = num(budgetRaw);
    if (day === null) {
      out.push(h("p", { class: "empty", id: "cost-day" }, "no LLM cost booked yet"));
    } else {
      const v = Number(day.raw);
      const share = budget > 0 ? v / budget : null;
      const bar = h("div", { class: "bar" + (share !== null && share > 1 ? " over" : "") }, h("div"));
      bar.firstChild.style.width = (share === null ? 0 : Math.min(share, 1) * 100).toFixed(1) + "%";
      out.push(h("div", { class: "costline" },
        h("span", {}, "day " + day.date),
        h("b", { id: "cost-day", "data-value": day.raw, "data-date": day.date,
          "data-query": source === "query_api" ? COST.day : null }, fmtUsd(v)),
        bar));
    }
    out.push(h("p", { class: "note" }, "Daily budget ",
      budget === null
        ? h("span", { id: "cost-budget", class: "na" }, "not configured (costs.daily_budget_usd)")
        : h("b", { id: "cost-budget", "data-value": budgetRaw,
          "data-query": source === "query_api" ? COST.budget : null }, fmtUsd(budget)),
      ". The day is the newest one the cost counters booked, by the events' own time" +
      " (costs.timezone): llm_daily_costs_usd, what the DailyCostExceeded rule reads."));
    const names = [...models.keys()].sort();
    if (names.length) {
      out.push(h("h3", {}, "By model", h("small", {},
        "the same day's cost of each model (llm_daily_model_costs_usd); bars against the daily budget")));
      for (const m of names) {
        const v = Number(models.get(m));
        const share = budget > 0 ? v / budget : 0;
        const bar = h("div", { class: "bar" + (share > 1 ? " over" : "") }, h("div"));
        bar.firstChild.style.width = (Math.min(share, 1) * 100).toFixed(1) + "%";
        out.push(h("div", { class: "costline", "data-name": m },
          h("span", {}, m),
          h("b", { id: `cost-model-${slug(m)}`, "data-value": models.get(m),
            "data-query": source === "query_api" ? COST.model(day.date, m) : null }, fmtUsd(v)),
          bar));
      }
    }
    return out;
  }

  function newestDay(pairs) {
    // pairs: [[date, raw]]; the newest date wins.
    let best = null;
    for (const [date, raw] of pairs) if (best === null || date > best.date) best = { date, raw };
    return best;
  }

  function alertsView(alerts, rules) {
    const out = [];
    const alerting = rules.filter((r) => r.type === "alerting").length;
    const groups = new Set(rules.map((r) => r.group)).size;
    const firing = alerts.filter((a) => a.state === "firing").length;
    out.push(h("p", { class: "note", id: "alerts-count", "data-value": alerts.length,
      "data-firing": firing },
      `${alerts.length} active (${firing} firing) of ${alerting} alerting rules in ${groups} groups.`));
    const order = { firing: 0, pending: 1 };
    alerts = [...alerts].sort((a, b) => (order[a.state] ?? 2) - (order[b.state] ?? 2) ||
      String(a.labels.alertname).localeCompare(String(b.labels.alertname)));
    alerts.forEach((a, i) => {
      const ann = new Map(Object.entries(a.annotations || {}));
      const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname");
      const box = h("div", { class: "alert " + a.state, id: `alert-${i}`,
        "data-alertname": a.labels.alertname, "data-state": a.state },
        h("div", {},
          h("span", { class: "state" }, a.state),
          h("span", { class: "name" }, a.labels.alertname),
          h("span", { class: "meta" }, "since " + a.activeAt.replace("T", " ").slice(0, 19) +
            " UTC · value " + fmtValue(a.value))),
        ann.has("summary") ? h("p", { "data-annotation": "summary" }, h("b", {}, ann.get("summary"))) : null,
        ann.has("description") ? h("p", { "data-annotation": "description" }, ann.get("description")) : null,
        [...ann].filter(([k]) => k !== "summary" && k !== "description")
          .map(([k, v]) => h("p", { "data-annotation": k }, h("span", { class: "chip" }, k), v)),
        h("div", {}, labels.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))));
      out.push(box);
    });
    if (alerts.length === 0) out.push(h("p", { class: "empty" }, "no pending or firing alerts"));
    return out;
  }

  function setStatus(mode, text) {
    $("status").replaceChildren(h("span", { class: "mode" }, mode), " · " + text);
  }

  function notice(text, error) {
    const n = $("notice");
    if (!text) { n.hidden = true; n.replaceChildren(); return; }
    n.hidden = false;
    n.className = "notice" + (error ? " error" : "");
    n.replaceChildren(text);
  }

  function finish(mode, t) {
    document.body.dataset.mode = mode;
    document.body.dataset.time = t;
    document.body.dataset.state = "ready";
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
  }

  // ---- the query API mode ----
  async function live(summary, rulesData) {
    const t = String(summary.time);
    const end = Number(t);
    const intervals = rulesData.groups.map((g) => g.interval).filter((x) => x > 0);
    const interval = intervals.length ? Math.min(...intervals) : 15;
    const w = fmtDuration(Math.max(60, 4 * interval));
    const step = Math.max(10, interval);
    const start = end - HOUR;
    const src = sourceFields(w), snk = sinkFields(w), charts = chartDefs(w);
    const [srcRes, snkRes, costRes, chartRes, alertData] = await Promise.all([
      Promise.all(src.map((f) => instant(f.q, t).then((v) => byLabel(v, "source")))),
      Promise.all(snk.map((f) => instant(f.q, t).then((v) => byLabel(v, "sink")))),
      Promise.all([instant(COST.day, t), instant(COST.budget, t), instant(COST.models, t)]),
      Promise.all(charts.map((c) => Promise.all(c.qs.map((q) => range(q.q, start, end, step))))),
      promql("/api/v1/alerts", {}),
    ]);
    const rules = rulesData.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name })));

    // Everything is in: render in one go.
    notice(null);
    const sv = summaryView(summary);
    $("summary").replaceChildren(...sv.cards);
    $("top-tools").replaceChildren(sv.tools);
    $("sources").replaceChildren(...table("src", "source", src, rowsOf(src, srcRes)));
    $("sinks").replaceChildren(...table("sink", "sink", snk, rowsOf(snk, snkRes)));
    $("charts").replaceChildren(...charts.map((c, i) => {
      const series = [];
      c.qs.forEach((q, j) => {
        for (const m of chartRes[i][j]) {
          series.push({ name: q.name(m.metric) || "", points: m.values.map(([ts, v]) => [ts, Number(v)]) });
        }
      });
      return chartView(c, series, start, end, step);
    }));
    const day = newestDay(costRes[0].map((s) => [s.metric.date || "", s.value[1]]));
    const budget = costRes[1].length ? costRes[1][0].value[1] : null;
    const models = new Map(costRes[2].filter((s) => day && s.metric.date === day.date)
      .map((s) => [s.metric.model || "", s.value[1]]));
    $("cost").replaceChildren(...costView(day, budget, models, "query_api"));
    $("alerts").replaceChildren(...alertsView(alertData.alerts, rules));
    $("summary-section").hidden = false;
    setStatus("query API", `values as the rules see them, at ${fmtTime(end)} · rates over ${w}` +
      ` (charts 5m) · refreshed every ${REFRESH_MS / 1000} s`);
    finish("query_api", t);
  }

  // ---- the /metrics fallback ----
  function parseMetrics(text) {
    const out = [];
    const line = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const l of text.split("\n")) {
      if (!l || l[0] === "#") continue;
      const m = line.exec(l);
      if (!m) continue;
      const labels = {};
      for (const lm of (m[2] || "").matchAll(label)) {
        labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }
  function sumBy(samples, name, label) {
    const m = new Map();
    for (const s of samples) {
      if (s.name !== name) continue;
      const k = s.labels[label] || "";
      m.set(k, (m.get(k) || 0) + s.value);
    }
    return m;
  }
  let previous = null;
  async function fallback(why) {
    const r = await fetch("/metrics", { cache: "no-store" });
    if (!r.ok) throw new Error("/metrics: HTTP " + r.status);
    const samples = parseMetrics(await r.text());
    const now = Date.now() / 1000;
    const src = sourceFields("-"), snk = sinkFields("-");
    const rowsFrom = (fields, label) => {
      const res = fields.map((f) => {
        const cur = sumBy(samples, f.metric || f.rateOf, label);
        if (f.metric) return new Map([...cur].map(([k, v]) => [k, String(v)]));
        const out = new Map();
        for (const [k, v] of cur) {
          const before = previous ? previous.sums.get(f.rateOf + "\u0000" + label)?.get(k) : undefined;
          out.set(k, before === undefined || now <= previous.time ? null
            : String((v - before) / (now - previous.time)));
        }
        return out;
      });
      return rowsOf(fields, res);
    };
    for (const f of [...src, ...snk]) f.live = false;
    const srcRows = rowsFrom(src, "source"), snkRows = rowsFrom(snk, "sink");
    const sums = new Map();
    for (const [fields, label] of [[src, "source"], [snk, "sink"]]) {
      for (const f of fields) if (f.rateOf) sums.set(f.rateOf + "\u0000" + label, sumBy(samples, f.rateOf, label));
    }
    previous = { time: now, sums };

    notice("The query API is not available: " + (why || "HTTP 503") + ". This page shows what " +
      "/metrics says: totals, and rates between this page's own polls. The summary, the charts " +
      "and the alerts need weir's rule history: add an alerting: section to the pipeline " +
      "(pipelines/feynman.yaml has one).");
    $("summary").replaceChildren(h("p", { class: "empty", id: "sum-unavailable" },
      "/api/summary needs an alerting: section"));
    $("top-tools").replaceChildren();
    $("sources").replaceChildren(...table("src", "source", src, srcRows));
    $("sinks").replaceChildren(...table("sink", "sink", snk, snkRows));
    $("charts").replaceChildren(h("p", { class: "empty", id: "charts-unavailable" },
      "charts need the rule history of an alerting: section"));
    const days = samples.filter((s) => s.name === "llm_daily_costs_usd")
      .map((s) => [s.labels.date || "", String(s.value)]);
    const budget = samples.find((s) => s.name === "llm_daily_budget_usd");
    const day = newestDay(days);
    const models = new Map(samples.filter((s) => s.name === "llm_daily_model_costs_usd" && day && s.labels.date === day.date)
      .map((s) => [s.labels.model || "", String(s.value)]));
    $("cost").replaceChildren(...costView(day, budget ? String(budget.value) : null, models, "metrics"));
    $("alerts").replaceChildren(h("p", { class: "empty", id: "alerts-unavailable" },
      "no alert rules: the pipeline has no alerting: section"));
    setStatus("/metrics only", `fallback, read at ${fmtTime(now)} · refreshed every ${REFRESH_MS / 1000} s`);
    finish("metrics", String(now));
  }

  // One refresh evaluates everything at one time T: a whole second, one
  // second before the server's clock (its Date header). A scrape is stamped
  // when it starts and is in the history a moment later, so "now" could
  // still miss one that later shows up at or before it; a second back,
  // every query of the refresh (and anyone repeating them at T) sees the
  // same samples.
  async function refresh() {
    try {
      const r = await fetch("/api/v1/rules", { cache: "no-store" });
      let rules = null;
      try { rules = await r.json(); } catch (_) { rules = null; }
      if (r.status === 503) {
        await fallback(rules && rules.error);
      } else if (r.status !== 200 || !rules || rules.status !== "success") {
        throw new Error("/api/v1/rules: " + ((rules && rules.error) || "HTTP " + r.status));
      } else {
        const date = Date.parse(r.headers.get("Date") || "");
        const at = isFinite(date) ? "?time=" + (Math.floor(date / 1000) - 1) : "";
        const s = await getJSON("/api/summary" + at);
        if (s.status === 503) throw new Unavailable((s.body && s.body.error) || "unavailable");
        if (s.status !== 200 || !s.body) {
          throw new Error("/api/summary: " + ((s.body && s.body.error) || "HTTP " + s.status));
        }
        await live(s.body, rules.data);
      }
    } catch (e) {
      if (e instanceof Unavailable) {
        try { await fallback(e.message); } catch (e2) { notice(String(e2), true); }
      } else {
        notice("Could not refresh: " + e.message, true);
        document.body.dataset.state = "error";
      }
    }
    setTimeout(refresh, REFRESH_MS);
  }
  refresh();
})();
