/* slurmctl dashboard: renders the data document (dashboard/data.py) with SVG charts drawn here.
   No library, no network in a written file; live pages (slurmctl serve) refresh from the JSON API. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = {succeeded: "#1a7f37", failed: "#cf222e", running: "#0969da", queued: "#8c959f",
    pending: "#afb8c1", cancelled: "#9a6700", transient: "#bf8700", permanent: "#cf222e",
    infrastructure: "#0969da", resources: "#8250df", unknown: "#6e7781"};
  const $ = (sel, root) => (root || document).querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  };
  const sv = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.append(e);
    return e;
  };
  const fmtN = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US", {maximumFractionDigits: 2});
  const fmtS = (s) => {
    if (s === null || s === undefined || s < 0) return "–";
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
    s = Math.round(s);
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  };
  const fmtT = (t) => t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–";
  const fmtB = (mb) => mb === null || mb === undefined || mb < 0 ? "–" : mb >= 1024 ? (mb / 1024).toFixed(1) + " GiB" : mb >= 10 ? Math.round(mb) + " MiB" : mb >= 0.1 ? mb.toFixed(1) + " MiB" : Math.round(mb * 1024) + " KiB";
  const fmtBytes = (b) => b === null || b === undefined ? null : b < 1024 ? b + " B" : b < 1048576 ? (b / 1024).toFixed(1) + " KiB" : fmtB(b / 1048576);
  const tid = (i) => "t" + String(i).padStart(7, "0");
  const tip = el("div", {class: "tip"});
  const tipOn = (node, text) => {
    node.addEventListener("mousemove", (ev) => {
      tip.textContent = text; tip.style.display = "block";
      tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
    });
    node.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    sv("title", {}, node).textContent = text;
  };
  const none = (text) => el("div", {class: "none"}, text);
  const nice = (v) => {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  };

  /* Horizontal bars: [{label, value, color}] */
  function hbars(rows, opts) {
    opts = opts || {};
    const shown = rows.filter((r) => r.value > 0 || opts.keepZero);
    if (!shown.length) return none(opts.empty || "nothing to show");
    const W = 420, rowH = 20, lab = 110, H = shown.length * rowH + 4;
    const svg = sv("svg", {class: "chart hbars", viewBox: `0 0 ${W} ${H}`, "data-points": shown.length, style: `max-width:${W * 1.4}px`});
    const max = Math.max(...shown.map((r) => r.value), 1);
    shown.forEach((r, i) => {
      const y = i * rowH + 2, w = Math.max((W - lab - 70) * r.value / max, r.value > 0 ? 2 : 0);
      const t = sv("text", {x: lab - 6, y: y + 13, "text-anchor": "end"}, svg); t.textContent = r.label;
      const b = sv("rect", {class: "pt", x: lab, y: y + 2, width: w, height: rowH - 6, rx: 2, fill: r.color || "#0969da"}, svg);
      tipOn(b, `${r.label}: ${fmtN(r.value)}`);
      if (opts.onClick) { b.style.cursor = "pointer"; b.addEventListener("click", () => opts.onClick(r)); }
      sv("text", {x: lab + w + 4, y: y + 13}, svg).textContent = fmtN(r.value);
    });
    return svg;
  }

  /* A time chart over the series bins: layers [{values, color, kind: "bar"|"line", label, right}] */
  function timeChart(series, layers, opts) {
    opts = opts || {};
    const n = series.ok.length, W = 640, H = 190, L = 46, R = opts.right ? 46 : 10, T = 8, B = 22;
    const svg = sv("svg", {class: "chart time", viewBox: `0 0 ${W} ${H}`});
    const pw = W - L - R, ph = H - T - B, bw = pw / n;
    const left = layers.filter((l) => !l.right), right = layers.filter((l) => l.right);
    const maxOf = (ls) => nice(Math.max(1e-9, ...ls.map((l) => Math.max(...l.values))));
    const lmax = maxOf(left), rmax = right.length ? (opts.rightMax || maxOf(right)) : 1;
    sv("line", {class: "axis", x1: L, y1: T + ph, x2: L + pw, y2: T + ph}, svg);
    for (let i = 0; i <= 4; i++) {
      const y = T + ph - ph * i / 4;
      sv("line", {class: "axis", x1: L, y1: y, x2: L + pw, y2: y, "stroke-dasharray": "2 3", opacity: 0.6}, svg);
      sv("text", {x: L - 4, y: y + 3, "text-anchor": "end"}, svg).textContent = fmtN(lmax * i / 4);
      if (right.length) sv("text", {x: L + pw + 4, y: y + 3}, svg).textContent = fmtN(rmax * i / 4) + (opts.rightUnit || "");
    }
    for (let i = 0; i <= 4; i++) {
      const t = series.step * n * i / 4;
      sv("text", {x: L + pw * i / 4, y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"}, svg).textContent = "+" + fmtS(t);
    }
    let points = 0;
    const bars = left.filter((l) => l.kind === "bar");
    const base = new Array(n).fill(0);
    for (const l of bars) {
      l.values.forEach((v, i) => {
        if (!(v > 0)) return;
        const h = ph * v / lmax, y = T + ph - ph * base[i] / lmax - h;
        const r = sv("rect", {class: "pt", x: L + i * bw + 0.5, y: y, width: Math.max(bw - 1, 0.8), height: h, fill: l.color}, svg);
        tipOn(r, `${l.label}: ${fmtN(v)} at +${fmtS(series.step * i)}`);
        base[i] += v; points++;
      });
    }
    for (const l of layers.filter((x) => x.kind === "line")) {
      const max = l.right ? rmax : lmax;
      const d = l.values.map((v, i) => `${i ? "L" : "M"}${(L + (i + 0.5) * bw).toFixed(1)},${(T + ph - ph * Math.min(v, max) / max).toFixed(1)}`).join("");
      const p = sv("path", {class: "line", d: d, fill: "none", stroke: l.color, "stroke-width": 1.8, "data-points": l.values.length}, svg);
      if (l.dash) p.setAttribute("stroke-dasharray", l.dash);
      tipOn(p, l.label);
      points += l.values.filter((v) => v > 0).length;
    }
    svg.setAttribute("data-points", points);
    const legend = el("div", {class: "legend"}, ...layers.map((l) => el("span", {}, el("i", {style: `background:${l.color}`}), l.label)));
    return el("div", {}, svg, legend);
  }

  /* Vertical histogram: edges (n+1), counts (n), optional marker value */
  function hist(edges, counts, opts) {
    opts = opts || {};
    if (!counts.length || !counts.some((c) => c > 0)) return none(opts.empty || "no data");
    const W = 420, H = 150, L = 36, T = 8, B = 30, pw = W - L - 8, ph = H - T - B, n = counts.length, bw = pw / n;
    const svg = sv("svg", {class: "chart hist", viewBox: `0 0 ${W} ${H}`, style: `max-width:${W * 1.4}px`});
    const max = nice(Math.max(...counts));
    sv("line", {class: "axis", x1: L, y1: T + ph, x2: L + pw, y2: T + ph}, svg);
    sv("text", {x: L - 4, y: T + 8, "text-anchor": "end"}, svg).textContent = fmtN(max);
    sv("text", {x: L - 4, y: T + ph, "text-anchor": "end"}, svg).textContent = "0";
    let points = 0;
    counts.forEach((c, i) => {
      const lab = `${opts.fmt ? opts.fmt(edges[i]) : edges[i]}${i === n - 1 && opts.openTop ? "+" : "–" + (opts.fmt ? opts.fmt(edges[i + 1]) : edges[i + 1])}`;
      if (c > 0) {
        const h = Math.max(ph * c / max, 1);
        const r = sv("rect", {class: "pt", x: L + i * bw + 1, y: T + ph - h, width: bw - 2, height: h, fill: opts.color || "#0969da"}, svg);
        tipOn(r, `${lab}: ${fmtN(c)} task(s)`); points++;
      }
      if (i % Math.ceil(n / 6) === 0) sv("text", {x: L + i * bw, y: H - 16}, svg).textContent = opts.fmt ? opts.fmt(edges[i]) : edges[i];
    });
    sv("text", {x: L + pw, y: H - 4, "text-anchor": "end"}, svg).textContent = opts.xlabel || "";
    if (opts.marker !== null && opts.marker !== undefined) {
      const top = edges[edges.length - 1], x = L + pw * Math.min(opts.marker / top, 1);
      sv("line", {x1: x, y1: T, x2: x, y2: T + ph, stroke: "#cf222e", "stroke-dasharray": "4 3"}, svg);
      sv("text", {x: x - 3, y: T + 8, "text-anchor": "end", fill: "#cf222e"}, svg).textContent = opts.markerLabel || "";
    }
    svg.setAttribute("data-points", points);
    return svg;
  }

  function card(title, sub, body, cls) {
    return el("section", {class: "card " + (cls || ""), id: "card-" + title.toLowerCase().replace(/[^a-z]+/g, "-")},
      el("h2", {}, title, sub ? el("small", {}, sub) : null), body);
  }
  const kv = (obj) => {
    const dl = el("dl", {class: "kv"});
    for (const [k, v] of Object.entries(obj)) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
    }
    return dl;
  };

  /* ---------------- the job page ---------------- */
  function jobPage(D, ctx) {
    const J = D.job, root = $("#app");
    root.replaceChildren();
    document.title = `${J.name || J.id} · ${J.state} · slurmctl`;
    $("#title").textContent = `${J.name || "job"} · ${J.id}`;
    $("#meta").textContent = `${J.state}${J.paused ? " (paused)" : ""} · ${J.executor} · ${D.backend} · started ${fmtT(J.started_at)} · data of ${fmtT(D.generated_at)}`;
    const pct = J.items_total ? 100 * J.items_done / J.items_total : 0;
    const fpct = J.items_total ? 100 * J.items_failed / J.items_total : 0;
    root.append(el("div", {class: "kpis"},
      ...[["state", J.state + (J.paused ? " ⏸" : "")], ["tasks", fmtN(J.tasks) + (J.retry_tasks ? ` (${J.retry_tasks} retry)` : "")],
        ["items done", `${fmtN(J.items_done)} / ${fmtN(J.items_total)}`], ["progress", pct.toFixed(1) + " %"],
        ["items failed", fmtN(J.items_failed)], ["failed tasks", fmtN(D.failed_tasks)],
        ["throughput", J.items_per_s ? fmtN(J.items_per_s) + " items/s" : "–"], ["elapsed", fmtS(J.elapsed_s)],
        ["ETA", J.eta_s ? fmtS(J.eta_s) : "–"]]
        .map(([k, v]) => el("div", {class: "kpi"}, el("span", {}, k), el("b", {}, v)))));
    const bar = el("div", {class: "bar", title: `${pct.toFixed(1)} % done, ${fpct.toFixed(1)} % failed`},
      el("i", {style: `width:${Math.max(pct - fpct, 0)}%;background:${COLORS.succeeded}`}), el("i", {style: `width:${fpct}%;background:${COLORS.failed}`}));
    root.append(bar);
    if (J.message) root.append(el("div", {class: "card", style: "margin-bottom:10px"}, J.message));
    const grid = el("div", {class: "grid"});
    root.append(grid);
    const S = D.series, perS = (v) => v.map((x) => x / S.step);
    const anyTime = S.ok.some((x) => x > 0) || S.running.some((x) => x > 0);
    grid.append(card("Throughput", `items/s, bins of ${fmtS(S.step)}`, anyTime ? timeChart(S, [
      {values: perS(S.ok), color: COLORS.succeeded, kind: "bar", label: "items ok/s"},
      {values: perS(S.failed), color: COLORS.failed, kind: "bar", label: "items failed/s"}]) : none("no task has finished yet")));
    const total = J.items_total || 1;
    grid.append(card("Progress", "items done (% of the job) and tasks running", anyTime ? timeChart(S, [
      {values: S.running, color: COLORS.running, kind: "line", label: "tasks running (mean per bin)"},
      {values: S.cumulative.map((c) => 100 * c / total), color: COLORS.succeeded, kind: "line", label: "% items done (ok or failed)", right: true}],
    {right: true, rightMax: 100, rightUnit: "%"}) : none("no task has started yet")));
    grid.append(card("Tasks by state", `${fmtN(J.tasks)} tasks`, hbars(D.table.states.map((s) => ({label: s, value: D.states[s] || 0, color: COLORS[s], state: s})),
      {onClick: (r) => ctx.table.setFilter({state: r.state})})));
    const cats = Object.entries(D.categories).map(([c, n]) => ({label: c, value: n, color: COLORS[c]}));
    grid.append(card("Errors by category", `${fmtN(D.failed_items)} failed items, ${fmtN(D.failed_tasks)} failed tasks`,
      hbars(cats, {empty: "no failures"})));
    grid.append(card("Queue wait", "Slurm Submit → Start", queueWait(D)));
    grid.append(card("Rate limits", "tokens/s acquired vs the limit's rate", ratelimits(D)));
    grid.append(card("Errors by signature", `${D.signatures_total} signature(s)${D.signatures_total > D.signatures.length ? `, top ${D.signatures.length} shown` : ""}`,
      signatures(D, ctx), "wide"));
    grid.append(card("Resource use", D.resources.tasks_with_metrics ? `${fmtN(D.resources.tasks_with_metrics)} task(s) with metrics` : "", resources(D)));
    grid.append(card("Slowest tasks", "", slowest(D, ctx)));
    if (D.retries.length || J.events.length) grid.append(card("Retries and events", "", retriesEvents(D)));
    const tcard = card("Tasks", "", ctx.table.node, "wide");
    grid.append(tcard);
    ctx.table.load(D);
  }

  function taskLink(t, ctx) {
    return el("a", {class: "task", href: "#task=" + t, "data-task": t, on: {click: (ev) => { ev.preventDefault(); ctx.drill(t); }}}, t);
  }

  function signatures(D, ctx) {
    if (!D.signatures.length) return none("no failures");
    const box = el("div", {class: "sigs"});
    for (const g of D.signatures) {
      const what = g.message ? `${g.type}: ${g.message}` : g.type;
      const det = el("details", {class: "sig", "data-sig": g.id, open: g === D.signatures[0]},
        el("summary", {}, el("b", {}, `${fmtN(g.count)}×`), " ", el("span", {class: "cat cat-" + g.category}, g.category + (g.kind ? "/" + g.kind : "")),
          " ", el("code", {}, what), el("span", {style: "color:var(--mut)"}, ` — ${fmtN(g.items)} item(s) in ${fmtN(g.tasks)} task(s)`)),
        el("div", {style: "padding:4px 0 0 18px"},
          g.frame ? el("div", {}, "at ", el("code", {}, g.frame)) : null,
          el("div", {}, `seen ${fmtT(g.first_seen)} … ${fmtT(g.last_seen)}`),
          Object.keys(g.hosts).length ? el("div", {}, "hosts: " + Object.entries(g.hosts).map(([h, n]) => `${h} (${n})`).join(", ")) : null,
          el("div", {}, "samples: ", ...g.samples.flatMap((s, i) => [i ? ", " : "", taskLink(s.task, ctx), s.item !== null ? ` item ${s.item}` : ""])),
          el("div", {}, "action: ", g.action),
          g.sample_traceback ? el("pre", {}, g.sample_traceback) : null));
      box.append(det);
    }
    return box;
  }

  function resources(D) {
    const R = D.resources, box = el("div");
    if (!R.tasks_with_metrics) box.append(none("no task left a metrics file (jobs run before per-task metrics have none)"));
    else {
      const c = R.cpu_eff, m = R.rss_mb;
      box.append(el("div", {}, c ? `CPU efficiency (CPU time / wall / ${R.cpus} CPU): median ${c.p50.toFixed(0)} %, p95 ${c.p95.toFixed(0)} %` : "no CPU times"));
      box.append(hist(R.cpu_edges, R.cpu_hist, {color: "#0969da", fmt: (x) => x + "%", openTop: true, xlabel: "CPU efficiency"}));
      box.append(el("div", {}, m ? `Peak RSS: median ${fmtB(m.p50)}, p95 ${fmtB(m.p95)}, max ${fmtB(m.max)}` +
        (R.mem_requested_mb ? `; requested ${fmtB(R.mem_requested_mb)}, ${R.over_request} task(s) above it` : "; no memory requested (resources.mem_gb)") : "no peak RSS"));
      box.append(hist(R.rss_edges, R.rss_hist, {color: "#8250df", fmt: (x) => fmtB(x), xlabel: "peak RSS", marker: R.mem_requested_mb, markerLabel: "requested"}));
      if (R.store_calls) box.append(el("div", {}, `store: ${fmtN(R.store_calls)} calls, ${fmtS(R.store_s)} in all`));
      const custom = Object.entries(R.custom_counters);
      if (custom.length) box.append(el("div", {id: "custom-counters"}, "handler counters: " + custom.map(([k, v]) => `${k} ${fmtN(v)}`).join(", ")));
    }
    const sl = Object.entries(R.slurm_states), cs = Object.entries(R.causes);
    if (sl.length || cs.length) box.append(el("div", {}, "Slurm ends of failed attempts: " + sl.map(([k, v]) => `${k} ${v}`).join(", ") +
      (cs.length ? "; causes: " + cs.map(([k, v]) => `${k} ${v}`).join(", ") : "")));
    return box;
  }

  function ratelimits(D) {
    const names = Object.keys(D.ratelimit);
    if (!names.length) return none("the job declares no rate limit");
    const box = el("div");
    for (const name of names) {
      const L = D.ratelimit[name];
      box.append(el("div", {}, el("b", {}, name), ` rate ${L.rate === null ? "–" : fmtN(L.rate) + "/s"} · ` +
        (L.tokens === null ? "no task reported token use" : `${fmtN(L.tokens)} tokens, ${fmtS(L.wait_s)} waited by ${fmtN(L.tasks)} task(s)` +
          (L.peak_use !== null ? `, peak ${(100 * L.peak_use).toFixed(0)} % of the rate` : ""))));
      if (L.per_s && L.per_s.some((x) => x > 0)) {
        const layers = [{values: L.per_s, color: "#bf8700", kind: "bar", label: "tokens/s"}];
        if (L.rate) layers.push({values: L.per_s.map(() => L.rate), color: "#cf222e", kind: "line", label: "rate", dash: "4 3"});
        box.append(timeChart(D.series, layers));
      }
    }
    return box;
  }

  function queueWait(D) {
    const Q = D.queue_wait;
    if (!Q.stats) return none("no queue wait recorded (it comes from sacct, in each task's metrics file)");
    return el("div", {}, el("div", {}, `median ${fmtS(Q.stats.p50)}, p95 ${fmtS(Q.stats.p95)}, max ${fmtS(Q.stats.max)} over ${fmtN(Q.stats.n)} task(s)`),
      hist(Q.edges, Q.hist, {color: "#8c959f", fmt: (x) => fmtS(x), openTop: true, xlabel: "queue wait"}));
  }

  function slowest(D, ctx) {
    if (!D.slowest.length) return none("no task has finished yet");
    const t = el("table", {}, el("tr", {}, el("th", {}, "task"), el("th", {class: "num"}, "time"), el("th", {class: "num"}, "items"),
      el("th", {class: "num"}, "items/s"), el("th", {}, "state"), el("th", {}, "host")));
    for (const s of D.slowest) t.append(el("tr", {}, el("td", {}, taskLink(s.task, ctx)), el("td", {class: "num"}, fmtS(s.seconds)),
      el("td", {class: "num"}, fmtN(s.items)), el("td", {class: "num"}, fmtN(s.items_per_s)), el("td", {}, el("span", {class: "st st-" + s.state}, s.state)), el("td", {}, s.host)));
    return t;
  }

  function retriesEvents(D) {
    const box = el("div");
    if (D.retries.length) {
      const t = el("table", {}, el("tr", {}, ...["#", "when", "tasks", "items", "categories", "reason"].map((h) => el("th", {}, h))));
      for (const r of D.retries) t.append(el("tr", {}, el("td", {}, r.number), el("td", {}, fmtT(r.created_at)), el("td", {class: "num"}, r.tasks),
        el("td", {class: "num"}, r.items), el("td", {}, Object.entries(r.categories).map(([k, v]) => `${k} ${v}`).join(", ")), el("td", {}, r.reason)));
      box.append(el("div", {}, el("b", {}, "retries")), t);
    }
    if (D.job.events.length) {
      const t = el("table", {}, el("tr", {}, ...["when", "who", "what", "detail"].map((h) => el("th", {}, h))));
      for (const e of D.job.events) t.append(el("tr", {}, el("td", {}, fmtT(e.at)), el("td", {}, e.who || ""), el("td", {}, e.what || ""), el("td", {class: "wrap"}, e.detail || "")));
      box.append(el("div", {}, el("b", {}, "events")), t);
    }
    return box;
  }

  /* ---------------- the task table: columnar data, filtered/sorted/paged client-side ---------------- */
  function Table(ctx) {
    const PAGE = 50;
    const cols = [["id", "task"], ["st", "state"], ["att", "attempt", 1], ["items", "items", 1], ["ok", "ok", 1], ["fail", "failed", 1],
      ["start", "started", 1], ["dur", "time", 1], ["qw", "queue wait", 1], ["cpu", "CPU %", 1], ["rss", "peak RSS", 1], ["host", "host"], ["err", "error"]];
    let T = null, ids = null, err = null, order = null, page = 0, sortKey = "id", sortDir = 1;
    const f = {state: "", host: "", text: "", failedItems: false};
    const stateSel = el("select", {id: "f-state", on: {change: () => { f.state = stateSel.value; refresh(); }}});
    const hostSel = el("select", {id: "f-host", on: {change: () => { f.host = hostSel.value; refresh(); }}});
    const text = el("input", {id: "f-text", type: "search", placeholder: "task id or error text", on: {input: () => { f.text = text.value.trim().toLowerCase(); refresh(); }}});
    const failed = el("input", {id: "f-failed", type: "checkbox", on: {change: () => { f.failedItems = failed.checked; refresh(); }}});
    const count = el("span", {id: "t-count"});
    const table = el("table", {id: "tasks"});
    const pageInfo = el("span", {id: "t-page"});
    const prev = el("button", {id: "t-prev", on: {click: () => { page--; draw(); }}}, "‹ prev");
    const next = el("button", {id: "t-next", on: {click: () => { page++; draw(); }}}, "next ›");
    const node = el("div", {}, el("div", {class: "filters"}, "state ", stateSel, " host ", hostSel, " ", text, el("label", {}, failed, " with failed items"), count),
      table, el("div", {class: "pager"}, prev, pageInfo, next));
    const val = (k, i) => {
      if (k === "id") return ids[i];
      if (k === "err") return err[i];
      const c = T.cols[k];
      return c && c.length ? c[i] : -1;
    };
    function load(D) {
      T = D.table;
      const n = T.cols.id.length;
      ids = new Int32Array(n);
      let acc = 0;
      for (let i = 0; i < n; i++) { acc += T.cols.id[i]; ids[i] = acc; }
      err = new Int32Array(n).fill(-1);
      T.err_at.forEach((row, j) => { err[row] = T.err_code[j]; });
      stateSel.replaceChildren(el("option", {value: ""}, "all"), ...T.states.map((s, i) => el("option", {value: String(i)}, s)));
      hostSel.replaceChildren(el("option", {value: ""}, "all"), ...T.hosts.map((h, i) => el("option", {value: String(i)}, h || "(none)")));
      stateSel.value = f.state; hostSel.value = f.host;
      refresh(true);
    }
    function refresh(keepPage) {
      const n = ids.length, st = f.state === "" ? -1 : +f.state, host = f.host === "" ? -1 : +f.host;
      const errs = T.errors.map((e) => e.toLowerCase()), q = f.text;
      const out = [];
      for (let i = 0; i < n; i++) {
        if (st >= 0 && T.cols.st[i] !== st) continue;
        if (host >= 0 && T.cols.host[i] !== host) continue;
        if (f.failedItems && !(T.cols.fail[i] > 0)) continue;
        if (q) {
          const e = errs.length ? err[i] : -1;
          if (!(tid(ids[i]).includes(q) || (e >= 0 && errs[e].includes(q)))) continue;
        }
        out.push(i);
      }
      order = Int32Array.from(out);
      sort();
      if (!keepPage) page = 0;
      draw();
    }
    function sort() {
      const k = sortKey, d = sortDir;
      if (k === "id") { order.sort((a, b) => (ids[a] - ids[b]) * d); return; }
      const key = new Float64Array(ids.length);
      for (const i of order) key[i] = val(k, i);
      order.sort((a, b) => (key[a] - key[b]) * d || ids[a] - ids[b]);
    }
    function draw() {
      const pages = Math.max(1, Math.ceil(order.length / PAGE));
      page = Math.min(Math.max(page, 0), pages - 1);
      count.textContent = `${fmtN(order.length)} of ${fmtN(ids.length)} task(s)`;
      pageInfo.textContent = `page ${page + 1} of ${fmtN(pages)}`;
      prev.disabled = page === 0; next.disabled = page >= pages - 1;
      const shown = cols.filter(([k]) => k === "id" || (k === "err" ? T.err_at.length : T.cols[k] && T.cols[k].length));
      const head = el("tr", {}, ...shown.map(([k, label, num]) => el("th", {class: "sort" + (num ? " num" : ""), "data-col": k,
        "aria-sort": sortKey === k ? (sortDir > 0 ? "ascending" : "descending") : null,
        on: {click: () => { if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = k === "id" ? 1 : -1; } sort(); page = 0; draw(); }}}, label)));
      const body = [head];
      for (const i of order.subarray(page * PAGE, page * PAGE + PAGE)) {
        const cells = shown.map(([k, , num]) => {
          const v = val(k, i);
          let c;
          if (k === "id") c = taskLink(tid(ids[i]), ctx);
          else if (k === "st") c = el("span", {class: "st st-" + T.states[v]}, T.states[v]);
          else if (k === "start") c = v < 0 ? "–" : "+" + fmtS(v * T.unit_s);
          else if (k === "dur" || k === "qw") c = fmtS(v < 0 ? null : v * T.unit_s);
          else if (k === "cpu") c = v < 0 ? "–" : v + " %";
          else if (k === "rss") c = fmtB(v);
          else if (k === "host") c = T.hosts[v];
          else if (k === "err") c = v < 0 ? "" : T.errors[v];
          else c = fmtN(v);
          return el("td", {class: (num ? "num" : "") + (k === "err" ? " wrap" : "")}, c);
        });
        body.push(el("tr", {"data-task": tid(ids[i])}, ...cells));
      }
      table.replaceChildren(...body);
    }
    function setFilter(x) {
      if ("state" in x) { f.state = String(T.states.indexOf(x.state)); stateSel.value = f.state; }
      refresh();
      node.scrollIntoView({block: "start"});
    }
    return {node, load, setFilter};
  }

  /* ---------------- drill-down ---------------- */
  function Drill(D0, ctx) {
    const panel = el("aside", {id: "drill", "aria-live": "polite"});
    document.body.append(panel);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") panel.classList.remove("open"); });
    function show(t, d) {
      const close = el("button", {id: "drill-close", on: {click: () => { panel.classList.remove("open"); history.replaceState(null, "", location.pathname + location.search); }}}, "close ✕");
      panel.replaceChildren(el("div", {style: "display:flex;justify-content:space-between"}, el("h2", {style: "margin:0"}, "task " + t), close));
      if (!d) {
        panel.append(none(`this file carries the full record of ${Object.keys(ctx.data.details).length} task(s) (failed, sampled by an error signature, slowest); for ${t} run: slurmctl inspect ${ctx.data.job.id} ${t}, slurmctl logs ${ctx.data.job.id} ${t}`));
        const row = ctx.row(t);
        if (row) panel.append(kv(row));
      } else {
        const r = d.record || {};
        panel.append(el("h3", {}, "state"), kv({state: r.state, attempt: r.attempt, failures: r.failures, owner: r.owner, "Slurm job": r.slurm_job_id,
          "Slurm state": r.slurm_state, "Slurm exit": r.slurm_exit, cause: r.cause, resources: r.resources, started: fmtT(r.started_at), finished: fmtT(r.finished_at),
          items: `${fmtN(r.items_done)} of ${fmtN(r.items_total)} done (${fmtN(r.items_failed)} failed)`, "exit code": r.exit_code}));
        if (r.error) panel.append(el("h3", {}, "task error"), el("pre", {class: "task-error"}, r.error));
        panel.append(el("h3", {}, "manifest"), kv(d.batch));
        if (d.result) panel.append(el("h3", {}, `result (attempt ${d.published_attempt})`), kv({rows: d.result.rows, items_ok: d.result.items_ok,
          items_failed: d.result.items_failed, resumed: d.result.items_resumed, handler: fmtS(d.result.handler_seconds), worker: d.result.worker,
          data: d.result.data_key, sha256: d.result.data_sha256, categories: d.result.failure_categories}));
        if (d.metrics) {
          const m = d.metrics;
          panel.append(el("h3", {}, `metrics (attempt ${m.attempt})`), kv({host: m.host, wall: fmtS(m.wall_s), cpu: fmtS(m.cpu_s), "items/s": fmtN(m.items_per_s),
            "peak RSS": fmtBytes(m.peak_rss_bytes), read: fmtBytes(m.read_bytes), written: fmtBytes(m.written_bytes), "queue wait": fmtS(m.queue_wait_s),
            "rate limits": m.ratelimit, store: m.store, "failed by category": m.failed_by_category}));
        }
        panel.append(el("h3", {}, `failed items (first ${d.errors.length})`));
        if (!d.errors.length) panel.append(none("none in the published attempt"));
        for (const e of d.errors) panel.append(el("div", {class: "item-error"}, el("b", {}, `item ${e.item}`), " ", el("span", {class: "cat cat-" + e.category}, e.category),
          ` ${e.type}: ${e.message}`), e.traceback ? el("pre", {}, e.traceback) : null);
        panel.append(el("h3", {}, d.log_attempt ? `log tail (attempt ${d.log_attempt}, last ${d.log.length} lines)` : "log"));
        if (!d.log.length) panel.append(none("no log stored for this task (jobs run before per-task logs have none)"));
        else {
          const t = el("table", {class: "log", id: "log"});
          for (const l of d.log) {
            t.append(el("tr", {class: "lv-" + l.level}, el("td", {}, typeof l.ts === "number" ? new Date(l.ts * 1000).toISOString().slice(11, 23) : String(l.ts || "").slice(11, 23)), el("td", {}, l.level),
              el("td", {}, l.item === null || l.item === undefined ? "" : "item " + l.item), el("td", {class: "wrap"}, l.msg, l.exc ? el("pre", {}, l.exc) : null)));
          }
          panel.append(t);
        }
      }
      panel.classList.add("open");
      panel.scrollTop = 0;
    }
    async function open(t) {
      history.replaceState(null, "", "#task=" + t);
      let d = ctx.data.details[t];
      if (!d && ctx.api) {
        try {
          const r = await fetch(`${ctx.api}/tasks/${t}`);
          if (r.ok) d = await r.json();
        } catch (e) { /* offline: the table row is shown */ }
      }
      show(t, d);
    }
    return open;
  }

  function rowOf(D, t) {
    const T = D.table, want = parseInt(t.slice(1), 10);
    let acc = 0;
    for (let i = 0; i < T.cols.id.length; i++) {
      acc += T.cols.id[i];
      if (acc === want) {
        const r = {state: T.states[T.cols.st[i]], attempt: T.cols.att[i], items: T.cols.items[i], ok: T.cols.ok[i], failed: T.cols.fail[i],
          time: T.cols.dur[i] < 0 ? null : fmtS(T.cols.dur[i] * T.unit_s), host: T.hosts[T.cols.host[i]]};
        const e = T.err_at.indexOf(i);
        if (e >= 0) r.error = T.errors[T.err_code[e]];
        return r;
      }
    }
    return null;
  }

  /* ---------------- the job list (slurmctl serve) ---------------- */
  function jobsPage(jobs) {
    const root = $("#app");
    root.replaceChildren();
    const names = [...new Set(jobs.map((j) => j.name))];
    const nameSel = el("select", {id: "f-name"}, el("option", {value: ""}, "all jobs"), ...names.map((n) => el("option", {value: n}, n)));
    const histBox = el("div", {id: "history"});
    const table = el("table", {id: "jobs"});
    function draw() {
      const rows = jobs.filter((j) => !nameSel.value || j.name === nameSel.value);
      table.replaceChildren(el("tr", {}, ...["job", "name", "state", "executor", "created", "tasks", "items", "failed", "elapsed", "items/s"].map((h) => el("th", {}, h))),
        ...rows.map((j) => el("tr", {"data-job": j.id}, el("td", {}, el("a", {class: "task", href: `jobs/${encodeURIComponent(j.id)}`}, j.id)), el("td", {}, j.name),
          el("td", {}, el("span", {class: "st st-" + j.state}, j.state + (j.paused ? " ⏸" : ""))), el("td", {}, j.executor || ""), el("td", {}, fmtT(j.created_at)),
          el("td", {class: "num"}, fmtN(j.tasks)), el("td", {class: "num"}, `${fmtN(j.items_done)} / ${fmtN(j.items_total)}`),
          el("td", {class: "num"}, fmtN(j.items_failed)), el("td", {class: "num"}, fmtS(j.elapsed_s)), el("td", {class: "num"}, fmtN(j.items_per_s)))));
      histBox.replaceChildren();
      const runs = rows.filter((j) => j.elapsed_s).slice().reverse();
      if (nameSel.value && runs.length) {
        histBox.append(el("div", {}, `history of ${nameSel.value}: ${runs.length} run(s), oldest first — bars: elapsed seconds, red: the run had failed items`),
          hbars(runs.map((j) => ({label: fmtT(j.created_at).slice(0, 16), value: Math.round(j.elapsed_s), color: j.items_failed ? COLORS.failed : COLORS.succeeded})), {}));
      }
    }
    nameSel.addEventListener("change", draw);
    root.append(el("section", {class: "card"}, el("h2", {}, `Jobs`, el("small", {}, `${jobs.length} job(s) in this backend`)),
      el("div", {class: "filters"}, "name ", nameSel), table, histBox));
    draw();
  }

  /* ---------------- boot ---------------- */
  function boot() {
    document.body.append(tip);
    const cfg = JSON.parse($("#config").textContent);
    if (cfg.page === "jobs") {
      jobsPage(JSON.parse($("#data").textContent));
      document.body.dataset.ready = "1";
      return;
    }
    const ctx = {api: cfg.api || null, data: JSON.parse($("#data").textContent)};
    ctx.table = Table(ctx);
    ctx.row = (t) => rowOf(ctx.data, t);
    ctx.drill = Drill(ctx.data, ctx);
    jobPage(ctx.data, ctx);
    const m = /^#task=(t\d{7})$/.exec(location.hash);
    if (m) ctx.drill(m[1]);
    document.body.dataset.ready = "1";
    if (cfg.api && cfg.refresh_s && !["succeeded", "failed", "cancelled"].includes(ctx.data.job.state)) {
      setInterval(async () => {
        try {
          const r = await fetch(cfg.api);
          if (!r.ok) return;
          ctx.data = await r.json();
          jobPage(ctx.data, ctx);
        } catch (e) { /* the server went away: keep the last data */ }
      }, cfg.refresh_s * 1000);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
