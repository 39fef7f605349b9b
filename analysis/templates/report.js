/* otmarl charts: the one small hand-written SVG chart kit of every otmarl page (the run report,
   the comparison report, the sweep report). No library, no network: the data come from the JSON
   element #report-data in this same file. Each [data-chart] element is drawn by the renderer
   named in its data-kind (default: its data-chart), then marked data-rendered. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const NS = "http://www.w3.org/2000/svg";  // an XML namespace name, never fetched
  // Okabe & Ito's colour-blind-safe palette; black is kept out: it marks a down node alone
  const OI = { blue: "#0072B2", orange: "#E69F00", green: "#009E73", purple: "#CC79A7",
               sky: "#56B4E9", vermillion: "#D55E00", yellow: "#F0E442", grey: "#999999" };
  const PAL = [OI.blue, OI.orange, OI.green, OI.purple, OI.sky, OI.vermillion, OI.yellow];
  const W = 640, H = 290, M = { l: 58, r: 14, t: 10, b: 38 };
  const tip = document.createElement("div");
  tip.className = "tip";
  document.body.appendChild(tip);

  // ------------------------------------------------------------------------------ helpers
  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }
  function fmt(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return String(+v.toPrecision(3));
  }
  function ticks(lo, hi, n) {
    const step0 = (hi - lo || 1) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const e = step0 / mag, step = mag * (e >= 7.5 ? 10 : e >= 3.5 ? 5 : e >= 1.5 ? 2 : 1);
    const out = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function scale(d0, d1, r0, r1) {
    const k = (r1 - r0) / ((d1 - d0) || 1), f = v => r0 + (v - d0) * k;
    f.inv = p => d0 + (p - r0) / k;
    return f;
  }
  function nearest(xs, v) {  // index of the value in sorted xs closest to v
    let lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (xs[m] <= v) lo = m; else hi = m; }
    return Math.abs(xs[hi] - v) < Math.abs(xs[lo] - v) ? hi : lo;
  }
  function showTip(ev, html) {
    tip.innerHTML = html;
    tip.style.display = "block";
    const pad = 14, w = tip.offsetWidth, vw = document.documentElement.clientWidth;
    let x = ev.pageX + pad;
    if (x + w > window.scrollX + vw) x = ev.pageX - w - pad;
    tip.style.left = x + "px";
    tip.style.top = (ev.pageY + pad) + "px";
  }
  function hideTip() { tip.style.display = "none"; }
  function svgIn(host, w, h) {
    return el("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img",
                       preserveAspectRatio: "xMidYMid meet" }, host);
  }
  // a line style per policy (with its colour), so lines stay apart in grey print too
  const DASH = ["none", "7 4", "2 3", "9 3 2 3", "4 2", "1 4", "12 4"];
  function swatch(it) {
    if (it.dash == null) return `<i style="background:${it.color}"></i>`;
    return `<svg class="swatch" width="26" height="10" aria-hidden="true"><line x1="1" y1="5" x2="25" y2="5" ` +
      `stroke="${it.color}" stroke-width="2.4" stroke-dasharray="${it.dash}"/></svg>`;
  }
  function legend(host, items, onToggle) {
    const lg = document.createElement("div");
    lg.className = "legend";
    items.forEach((it, i) => {
      const s = document.createElement("span");
      s.className = "key" + (it.off ? " off" : "") + (onToggle ? " toggle" : "");
      s.innerHTML = swatch(it) + esc(it.name);
      if (onToggle) s.onclick = () => onToggle(i);
      lg.appendChild(s);
    });
    host.appendChild(lg);
  }
  function axes(svg, x, y, xt, yt, o) {
    const g = el("g", { class: "axis" }, svg);
    yt.forEach(v => {
      el("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), class: "grid" }, g);
      el("text", { x: M.l - 6, y: y(v) + 4, "text-anchor": "end" }, g).textContent = (o.fy || fmt)(v);
    });
    xt.forEach(v => {
      el("line", { x1: x(v), x2: x(v), y1: H - M.b, y2: H - M.b + 4, class: "tick" }, g);
      el("text", { x: x(v), y: H - M.b + 16, "text-anchor": "middle" }, g).textContent = (o.fx || fmt)(v);
    });
    el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "base" }, g);
    if (o.xlabel) el("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle", class: "label" }, g).textContent = o.xlabel;
    if (o.ylabel) el("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle", class: "label",
                               transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` }, g).textContent = o.ylabel;
  }
  function padded(vals, pad) {  // [lo, hi] of vals widened by pad of the range (0..1 if none)
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const p = (hi - lo) * pad || Math.abs(hi) * 0.1 || 1;
    return [lo - p, hi + p];
  }
  function pathOf(xs, ys, x, y) {
    let d = "", pen = false;
    for (let i = 0; i < xs.length; i++) {
      if (ys[i] == null) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(xs[i]).toFixed(1) + "," + y(ys[i]).toFixed(1);
      pen = true;
    }
    return d;
  }

  // ---------------------------------------------------------------------- the x-y chart
  // cfg: {x, series: [{name, y, color, type: "line"|"bar", dash}], bands: [{name, lo, hi, color}],
  //       xlabel, ylabel, ymin, ymax, fy}; bar series are stacked.
  function xyChart(host, cfg) {
    const series = cfg.series.filter(s => s.y && s.y.length);
    const draw = () => {
      host.innerHTML = "";
      const keys = series.map(s => (s.type === "bar" ? s : Object.assign({}, s, { dash: s.dash || "none" })));
      legend(host, keys.concat(cfg.bands || []), i => {
        if (i < series.length) { series[i].off = !series[i].off; draw(); }
      });
      const svg = svgIn(host, W, H), xs = cfg.x, n = xs.length;
      if (!n) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no data"; return; }
      const on = series.filter(s => !s.off), bars = on.filter(s => s.type === "bar");
      const dx = n > 1 ? xs[1] - xs[0] : 1, x1 = xs[n - 1] + (bars.length ? dx : 0);
      const stack = new Array(n).fill(0);
      let hi = cfg.ymax != null ? cfg.ymax : -Infinity, lo = cfg.ymin != null ? cfg.ymin : 0;
      bars.forEach(s => s.y.forEach((v, i) => { stack[i] += v || 0; }));
      if (cfg.ymax == null) {
        stack.forEach(v => { hi = Math.max(hi, v); });
        on.filter(s => s.type !== "bar").forEach(s => s.y.forEach(v => { if (v != null) hi = Math.max(hi, v); }));
        (cfg.bands || []).forEach(b => b.hi.forEach(v => { if (v != null) hi = Math.max(hi, v); }));
        hi = hi > lo ? hi * 1.05 : lo + 1;
      }
      const x = scale(xs[0], x1, M.l, W - M.r), y = scale(lo, hi, H - M.b, M.t);
      axes(svg, x, y, ticks(xs[0], x1, 8), ticks(lo, hi, 5), cfg);
      (cfg.bands || []).forEach(b => {
        const up = pathOf(xs, b.hi, x, y), down = pathOf(xs.slice().reverse(), b.lo.slice().reverse(), x, y);
        el("path", { d: up + "L" + down.slice(1) + "Z", fill: b.color, stroke: "none" }, svg);
      });
      const base = new Array(n).fill(0), bw = Math.max(0.5, x(xs[0] + dx) - x(xs[0]) - (n < 200 ? 1 : 0));
      bars.forEach(s => {
        const g = el("g", { fill: s.color }, svg);
        s.y.forEach((v, i) => {
          if (!v) return;
          el("rect", { x: x(xs[i]).toFixed(1), y: y(base[i] + v).toFixed(1), width: bw.toFixed(2),
                       height: Math.max(0.3, y(base[i]) - y(base[i] + v)).toFixed(1) }, g);
          base[i] += v;
        });
      });
      on.filter(s => s.type !== "bar").forEach(s => {
        el("path", { d: pathOf(xs, s.y, x, y), fill: "none", stroke: s.color, "stroke-width": s.width || 1.8,
                     "stroke-dasharray": s.dash || "none" }, svg);
      });
      hover(svg, x, y, i => {
        let h = `<b>${esc(cfg.xlabel || "x")} ${fmt(xs[i])}</b>`;
        (cfg.bands || []).forEach(b => { h += `<br><i style="background:${b.color}"></i>${esc(b.name)}: ${fmt(b.lo[i])} – ${fmt(b.hi[i])}`; });
        on.forEach(s => { h += `<br><i style="background:${s.color}"></i>${esc(s.name)}: ${(cfg.fy || fmt)(s.y[i])}`; });
        return h;
      }, xs, bars.length ? dx / 2 : 0);
    };
    draw();
  }
  function hover(svg, x, y, html, xs, shift) {
    const guide = el("line", { y1: M.t, y2: H - M.b, class: "guide", visibility: "hidden" }, svg);
    const area = el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "transparent" }, svg);
    area.addEventListener("mousemove", ev => {
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const p = pt.matrixTransform(svg.getScreenCTM().inverse());
      const i = nearest(xs, x.inv(p.x) - shift);
      guide.setAttribute("x1", x(xs[i] + shift)); guide.setAttribute("x2", x(xs[i] + shift));
      guide.setAttribute("visibility", "visible");
      showTip(ev, html(i));
    });
    area.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); hideTip(); });
  }

  // ------------------------------------------------------------------------ run charts
  const F = D.fleet, B = D.baseline;
  const bl = (key, name, color) => (B ? [{ name: `${name} (baseline)`, y: B[key], color, dash: "5 4", width: 1.4 }] : []);
  // baseline series live on their own time axis; align them to ours by index when they match
  const aligned = B && B.t.length === (F ? F.t.length : -1);
  const R = {
    soc_band: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "state of charge", ymin: 0, ymax: 1,
      bands: [{ name: "min – max", lo: F.soc_min, hi: F.soc_max, color: "rgba(0,114,178,0.14)" },
              { name: "p10 – p90", lo: F.soc_p10, hi: F.soc_p90, color: "rgba(0,114,178,0.38)" }],
      series: [{ name: "median", y: F.soc_p50, color: OI.blue }, { name: "mean", y: F.soc_mean, color: OI.green, dash: "2 3" }]
        .concat(aligned ? bl("soc_p50", "median", OI.vermillion) : []) }),
    energy: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "Wh per step",
      series: [{ name: "harvested", y: F.harvested_wh, color: OI.orange, width: 2.2 },
               { name: "consumed", y: F.consumed_wh, color: OI.vermillion, width: 2.2 },
               { name: "curtailed", y: F.curtailed_wh, color: OI.grey },
               { name: "consumed by tasks", y: F.consumed_tasks_wh, color: OI.purple, dash: "4 3" }]
        .concat(aligned ? bl("harvested_wh", "harvested", OI.grey).concat(bl("consumed_wh", "consumed", OI.purple)) : []) }),
    queue: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "count",
      series: [{ name: "queued tasks (fleet)", y: F.queue_len, color: OI.blue },
               { name: "nodes browned out", y: F.nodes_browned, color: OI.vermillion, dash: "3 3" }]
        .concat(aligned ? bl("queue_len", "queued", OI.sky) : []) }),
    drops: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "tasks dropped per step",
      series: (F.reasons.length ? F.reasons : ["expired"]).map((r, i) => ({ name: r.replace("_", " "), y: F["dropped_" + r], color: PAL[(i + 2) % PAL.length], type: "bar" }))
        .concat([{ name: "completed late", y: F.completed_late, color: OI.grey }]) }),
    energy_flows: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "Wh per step",
      series: [{ name: "delivered", y: F.delivered_wh, color: OI.green, type: "bar" },
               { name: "sent", y: F.sent_wh, color: OI.orange }] }),
    task_flows: h => xyChart(h, {
      x: F.t, xlabel: "hours", ylabel: "tasks per step",
      series: [{ name: "tasks routed", y: F.tasks_routed, color: OI.blue, type: "bar" },
               { name: "generated", y: F.generated, color: OI.grey },
               { name: "completed on time", y: F.completed_on_time, color: OI.green }] }),
    map: mapChart, lorenz: lorenzChart, sorted: sortedChart, classes: classChart, cmp: cmpChart,
    band: bandChart,
  };

  // ---------------------------------------------------------------------- network map
  const VIR = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];
  // a frame's SoC in thousandths, two base-64 digits a node (report_assets.pack_thousandths)
  const DIGIT = {};
  [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"].forEach((c, i) => { DIGIT[c] = i; });
  const unpack = s => Array.from({ length: s.length >> 1 }, (_, j) => DIGIT[s[2 * j]] * 64 + DIGIT[s[2 * j + 1]]);
  function socColor(v) {  // viridis-like, v in [0, 1]
    v = Math.min(1, Math.max(0, v)) * (VIR.length - 1);
    const i = Math.min(VIR.length - 2, Math.floor(v)), f = v - i;
    const a = parseInt(VIR[i].slice(1), 16), b = parseInt(VIR[i + 1].slice(1), 16);
    const mix = s => Math.round(((a >> s) & 255) * (1 - f) + ((b >> s) & 255) * f);
    return `rgb(${mix(16)},${mix(8)},${mix(0)})`;
  }
  function mapChart(host) {
    const G = D.map, MW = 900, MH = 640, pad = 20, n = G.shown.length, xs = G.x, ys = G.y;
    const SOC = G.soc.map(unpack);
    // each frame's flows come as columns (src, dst, amount, kind): rows [a, b, v, kind] here
    const FLOWS = G.flows.map(([a, b, v, k]) => a.map((_, i) => [a[i], b[i], v[i], k[i]]));
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const k = Math.min((MW - 2 * pad) / ((x1 - x0) || 1), (MH - 2 * pad - 30) / ((y1 - y0) || 1));
    const ox = (MW - (x1 - x0) * k) / 2;
    const px = i => ox + (xs[i] - x0) * k, py = i => MH - pad - 30 - (ys[i] - y0) * k;
    const ctl = document.createElement("div");
    ctl.className = "controls";
    ctl.innerHTML = `<button type="button">▶</button> <input type="range" min="0" max="${G.t.length - 1}" value="0" step="1">
      <span class="t"></span><span class="muted"> ${n < G.n_total ? `showing ${n} of ${G.n_total} nodes` : `${n} nodes`}; energy flows orange, task flows blue</span>`;
    host.appendChild(ctl);
    const row = document.createElement("div");
    row.className = "maprow";
    host.appendChild(row);
    const left = document.createElement("div"), side = document.createElement("div");
    left.className = "mapbox"; side.className = "side";
    row.appendChild(left); row.appendChild(side);
    const svg = svgIn(left, MW, MH);
    let d = "";
    G.links.forEach(([a, b]) => { d += `M${px(a).toFixed(1)},${py(a).toFixed(1)}L${px(b).toFixed(1)},${py(b).toFixed(1)}`; });
    el("path", { d, class: "link" }, svg);
    const flowG = el("g", { opacity: n > 300 ? 0.55 : 0.8 }, svg), nodeG = el("g", {}, svg);
    const r = n <= 30 ? 9 : n <= 300 ? 5 : n <= 1200 ? 3.4 : 2.6;
    const circles = G.shown.map((p, j) => {
      const c = el("circle", { cx: px(p).toFixed(1), cy: py(p).toFixed(1), r, stroke: PAL[G.cls[p] % PAL.length] }, nodeG);
      c._j = j;
      return c;
    });
    const maxA = [0, 0];
    FLOWS.forEach(fr => fr.forEach(f => { maxA[f[3]] = Math.max(maxA[f[3]], f[2]); }));
    const wmax = n > 300 ? 3 : 6;
    const input = ctl.querySelector("input"), label = ctl.querySelector(".t");
    let frame = 0;
    const paint = () => {
      const soc = SOC[frame], down = G.down[frame] || "";
      circles.forEach((c, j) => {
        c.setAttribute("fill", socColor(soc[j] / 1000));
        c.setAttribute("class", down[j] === "1" ? "down" : "");
      });
      flowG.innerHTML = "";
      (FLOWS[frame] || []).forEach(([a, b, v, kind]) => {
        el("line", { x1: px(a), y1: py(a), x2: px(b), y2: py(b), class: kind ? "flow task" : "flow energy",
                     "stroke-width": (0.5 + wmax * Math.sqrt(v / (maxA[kind] || 1))).toFixed(2) }, flowG);
      });
      label.textContent = ` t = ${fmt(G.t[frame])} h`;
      histogram(side, soc, down, FLOWS[frame] || []);
    };
    input.oninput = () => { frame = +input.value; paint(); };
    let timer = null;
    const btn = ctl.querySelector("button");
    btn.onclick = () => {
      if (timer) { clearInterval(timer); timer = null; btn.textContent = "▶"; return; }
      btn.textContent = "❚❚";
      timer = setInterval(() => { frame = (frame + 1) % G.t.length; input.value = frame; paint(); }, 250);
    };
    nodeG.addEventListener("mousemove", ev => {
      const j = ev.target._j;
      if (j === undefined) return;
      const p = G.shown[j], nm = G.name ? G.name[p] : `node ${G.shown_ids[j]}`;
      showTip(ev, `<b>${esc(nm)}</b> (${esc(G.classes[G.cls[p]])})<br>SoC ${fmt(SOC[frame][j] / 1000)}` +
                  ((G.down[frame] || "")[j] === "1" ? "<br><b>down</b> (failed or browned out)" : ""));
    });
    nodeG.addEventListener("mouseleave", hideTip);
    const defs = el("defs", {}, svg), grad = el("linearGradient", { id: "socgrad" }, defs);
    VIR.forEach((c, i) => el("stop", { offset: i / (VIR.length - 1), "stop-color": c }, grad));
    const ly = MH - 22;
    el("rect", { x: pad, y: ly, width: 160, height: 10, fill: "url(#socgrad)" }, svg);
    el("text", { x: pad, y: ly + 21, class: "small" }, svg).textContent = "SoC 0";
    el("text", { x: pad + 160, y: ly + 21, "text-anchor": "end", class: "small" }, svg).textContent = "1";
    G.classes.concat(["down"]).forEach((c, i) => {   // ring keys: each class, then "down"
      const down = i === G.classes.length;
      el("circle", { cx: pad + 200 + i * 110, cy: ly + 5, r: 5, fill: "#fff", class: down ? "down" : "",
                     stroke: down ? "#000" : PAL[i % PAL.length], "stroke-width": 2 }, svg);
      el("text", { x: pad + 210 + i * 110, y: ly + 9, class: "small" }, svg).textContent = c;
    });
    paint();
  }
  function histogram(side, soc, down, flows) {  // the map's side panel: SoC of the shown nodes now
    const bins = new Array(10).fill(0);
    let sum = 0, nd = 0;
    soc.forEach((v, j) => { bins[Math.min(9, Math.floor(v / 100))]++; sum += v; if (down[j] === "1") nd++; });
    const HW = 300, HH = 230, hm = { l: 40, r: 8, t: 8, b: 34 }, top = Math.max(...bins, 1);
    side.innerHTML = "";
    const svg = svgIn(side, HW, HH), y = scale(0, top * 1.1, HH - hm.b, hm.t), bw = (HW - hm.l - hm.r) / 10;
    ticks(0, top * 1.1, 4).forEach(v => {
      el("line", { x1: hm.l, x2: HW - hm.r, y1: y(v), y2: y(v), class: "grid" }, svg);
      el("text", { x: hm.l - 5, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(v);
    });
    bins.forEach((c, i) => {
      el("rect", { x: hm.l + i * bw + 1, y: y(c), width: bw - 2, height: y(0) - y(c), fill: socColor((i + 0.5) / 10) }, svg);
      if (i % 2 === 0) el("text", { x: hm.l + i * bw, y: HH - hm.b + 14, "text-anchor": "middle" }, svg).textContent = fmt(i / 10);
    });
    el("text", { x: HW - hm.r, y: HH - hm.b + 14, "text-anchor": "end" }, svg).textContent = "1";
    el("text", { x: (HW + hm.l) / 2, y: HH - 4, "text-anchor": "middle", class: "label" }, svg).textContent = "SoC of the nodes shown";
    const energy = flows.filter(f => !f[3]).reduce((a, f) => a + f[2], 0), tasks = flows.filter(f => f[3]).reduce((a, f) => a + f[2], 0);
    const info = document.createElement("p");
    info.innerHTML = `mean SoC <b>${fmt(sum / 1000 / (soc.length || 1))}</b><br>nodes down <b>${nd}</b> of ${soc.length}` +
      `<br>largest flows drawn: <b>${fmt(energy)}</b> Wh, <b>${fmt(tasks)}</b> tasks`;
    side.appendChild(info);
  }

  // ------------------------------------------------------------------------- fairness
  const ONAME = { service_ratio: "service ratio", uptime: "up-time", final_soc: "final SoC" };
  function lorenzChart(host) {
    const O = D.fair.outcomes, keys = Object.keys(O);
    const cfgs = keys.map((k, i) => ({ name: `${ONAME[k] || k} (Gini ${fmt(O[k].fleet.gini)})`, p: O[k].lorenz[0], L: O[k].lorenz[1], color: PAL[i] }));
    legend(host, cfgs.concat([{ name: "equality", color: "#999" }]));
    const svg = svgIn(host, W, H), x = scale(0, 1, M.l, W - M.r), y = scale(0, 1, H - M.b, M.t);
    axes(svg, x, y, ticks(0, 1, 5), ticks(0, 1, 5), { xlabel: "share of nodes, worst off first", ylabel: "share of the total" });
    el("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: "#999", "stroke-dasharray": "4 4" }, svg);
    cfgs.forEach(c => el("path", { d: pathOf(c.p, c.L, x, y), fill: "none", stroke: c.color, "stroke-width": 2 }, svg));
    const grid = cfgs[0] ? cfgs[0].p : [0, 1];
    hover(svg, x, y, i => {
      let h = `<b>worst ${fmt(100 * grid[i])}% of nodes hold</b>`;
      cfgs.forEach(c => { const j = nearest(c.p, grid[i]); h += `<br><i style="background:${c.color}"></i>${esc(c.name.split(" (")[0])}: ${fmt(100 * c.L[j])}%`; });
      return h;
    }, grid, 0);
  }
  function sortedChart(host) {
    const O = D.fair.outcomes, keys = Object.keys(O), classes = D.fair.classes;
    const sel = document.createElement("select");
    keys.forEach(k => { const o = document.createElement("option"); o.value = k; o.textContent = ONAME[k] || k; sel.appendChild(o); });
    const box = document.createElement("div");
    host.appendChild(sel);
    host.appendChild(box);
    const draw = () => {
      box.innerHTML = "";
      const S = O[sel.value].sorted, v = S.v, n = v.length, st = O[sel.value].fleet;
      legend(box, S.cls ? classes.map((c, i) => ({ name: c, color: PAL[i % PAL.length] })) :
        [{ name: `rank bins of ${S.bins[S.bins.length - 1]} nodes`, color: PAL[0] }]);
      const svg = svgIn(box, W, H), x = scale(0, Math.max(n, 1), M.l, W - M.r);
      const hi = Math.max(1e-12, ...v.filter(u => u != null)) * 1.05, y = scale(0, hi, H - M.b, M.t);
      axes(svg, x, y, [], ticks(0, hi, 5), { xlabel: "nodes, sorted", ylabel: ONAME[sel.value] || sel.value });
      const bw = Math.max(0.4, x(1) - x(0) - (n < 120 ? 1 : 0));
      v.forEach((u, i) => el("rect", { x: x(i).toFixed(1), y: y(u).toFixed(1), width: bw.toFixed(2), height: (y(0) - y(u)).toFixed(1),
                                       fill: S.cls ? PAL[S.cls[i] % PAL.length] : PAL[0] }, svg));
      el("line", { x1: M.l, x2: W - M.r, y1: y(st.mean), y2: y(st.mean), class: "mean" }, svg);
      el("text", { x: W - M.r - 4, y: y(st.mean) - 4, "text-anchor": "end", class: "small halo" }, svg).textContent = `mean ${fmt(st.mean)}`;
      hover(svg, x, y, i => S.cls ? `<b>${esc(S.name[i])}</b> (${esc(classes[S.cls[i]])})<br>${esc(ONAME[sel.value])}: ${fmt(v[i])}`
        : `<b>nodes ranked ${S.bins[i] + 1}–${S.bins[i + 1]}</b><br>mean ${esc(ONAME[sel.value])}: ${fmt(v[i])}`,
        v.map((_, i) => i), 0.5);
    };
    sel.onchange = draw;
    draw();
  }
  function classChart(host) {
    const O = D.fair.outcomes, keys = Object.keys(O), classes = D.fair.classes;
    legend(host, classes.map((c, i) => ({ name: c, color: PAL[i % PAL.length] })));
    const svg = svgIn(host, W, H), gw = (W - M.l - M.r) / keys.length, bw = Math.min(40, gw * 0.8 / classes.length);
    const y = scale(0, 1.05, H - M.b, M.t);
    axes(svg, v => v, y, [], ticks(0, 1, 5), { ylabel: "class mean (whisker: min – max)" });
    keys.forEach((k, gi) => {
      const gx = M.l + gi * gw + (gw - bw * classes.length) / 2;
      el("text", { x: M.l + gi * gw + gw / 2, y: H - M.b + 16, "text-anchor": "middle" }, svg).textContent = ONAME[k] || k;
      classes.forEach((c, ci) => {
        const s = O[k].by_class[c];
        if (!s || s.mean == null) return;
        const bx = gx + ci * bw;
        const r = el("rect", { x: bx + 1, y: y(s.mean), width: bw - 2, height: y(0) - y(s.mean), fill: PAL[ci % PAL.length] }, svg);
        el("line", { x1: bx + bw / 2, x2: bx + bw / 2, y1: y(s.min), y2: y(s.max), class: "whisker" }, svg);
        r.addEventListener("mousemove", ev => showTip(ev, `<b>${esc(c)}</b>: ${esc(ONAME[k] || k)}<br>n ${s.n}, mean ${fmt(s.mean)}, min ${fmt(s.min)}, max ${fmt(s.max)}` +
          `<br>Jain ${fmt(s.jain)}, Gini ${fmt(s.gini)}, worst decile ${fmt(s.worst_decile_mean)}`));
        r.addEventListener("mouseleave", hideTip);
      });
    });
  }

  // ------------------------------------------------------------ comparison (one metric)
  function cmpChart(host) {
    const rows = D.cmp[host.dataset.metric] || [], n = rows.length, RH = 26, CH = M.t + M.b + n * RH;
    const svg = svgIn(host, W, CH);
    let lo = Infinity, hi = -Infinity;
    rows.forEach(r => [r.mean, r.ci_low, r.ci_high].forEach(v => { if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }));
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const padv = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1, L = 150;
    // the axis stays within the metric's range (data-min, data-max), e.g. no negative count
    const a0 = host.dataset.min != null ? Math.max(+host.dataset.min, lo - padv) : lo - padv;
    const a1 = host.dataset.max != null ? Math.min(+host.dataset.max, hi + padv) : hi + padv;
    const x = scale(a0, a1 > a0 ? a1 : a0 + 1, L, W - M.r);
    ticks(a0, a1 > a0 ? a1 : a0 + 1, 6).forEach(v => {
      el("line", { x1: x(v), x2: x(v), y1: M.t, y2: CH - M.b, class: "grid" }, svg);
      el("text", { x: x(v), y: CH - M.b + 16, "text-anchor": "middle", class: "small" }, svg).textContent = fmt(v);
    });
    if (host.dataset.label) el("text", { x: (L + W - M.r) / 2, y: CH - 4, "text-anchor": "middle", class: "label" }, svg).textContent = host.dataset.label;
    rows.forEach((r, i) => {
      const yy = M.t + i * RH + RH / 2, c = PAL[i % PAL.length];
      el("text", { x: L - 8, y: yy + 4, "text-anchor": "end" }, svg).textContent = r.policy;
      if (r.ci_low != null && r.ci_high != null) {
        el("line", { x1: x(r.ci_low), x2: x(r.ci_high), y1: yy, y2: yy, stroke: c, "stroke-width": 2 }, svg);
        [r.ci_low, r.ci_high].forEach(v => el("line", { x1: x(v), x2: x(v), y1: yy - 6, y2: yy + 6, stroke: c, "stroke-width": 2 }, svg));
      }
      const dot = el("circle", { cx: x(r.mean), cy: yy, r: 5, fill: c }, svg);
      dot.addEventListener("mousemove", ev => showTip(ev, `<b>${esc(r.policy)}</b><br>mean ${fmt(r.mean)}<br>95% CI ${fmt(r.ci_low)} – ${fmt(r.ci_high)}<br>n = ${r.n}`));
      dot.addEventListener("mouseleave", hideTip);
    });
  }

  // ------------------------------------------- lines with confidence bands (sweep report)
  // D.charts[name]: {x, labels, categorical, xlabel, ylabel, ymin, ymax, series: [{name, k, y, lo,
  // hi, n}]}; a line per series through its means (colour and line style by its style index k),
  // a shaded band and whiskers for its intervals; the y axis stays within [ymin, ymax].
  function bandChart(host) {
    const c = D.charts[host.dataset.chart], xs = c.x, n = xs.length, idx = xs.map((_, i) => i);
    const style = s => ({ name: s.name, color: PAL[s.k % PAL.length], dash: DASH[s.k % DASH.length] });
    legend(host, c.series.map(style));
    const svg = svgIn(host, W, H);
    const ys = [].concat(...c.series.map(s => s.y.concat(s.lo, s.hi))).filter(v => v != null);
    const [x0, x1] = c.categorical || n < 2 ? [-0.5, Math.max(n - 0.5, 0.5)] : padded(xs, 0.04);
    let [y0, y1] = padded(ys, 0.06);
    if (c.ymin != null && y0 < c.ymin) y0 = c.ymin;
    if (c.ymax != null && y1 > c.ymax) y1 = c.ymax;
    if (!(y1 > y0)) y1 = y0 + 1;
    const x = scale(x0, x1, M.l, W - M.r), y = scale(y0, y1, H - M.b, M.t);
    const byPoint = c.categorical || n <= 6;
    axes(svg, x, y, byPoint ? xs : ticks(x0, x1, 6), ticks(y0, y1, 5),
         { xlabel: c.xlabel, ylabel: c.ylabel, fx: byPoint ? v => c.labels[xs.indexOf(v)] : fmt });
    c.series.forEach(s => {
      const { color: col, dash } = style(s), on = idx.filter(i => s.y[i] != null);
      const band = idx.filter(i => s.lo[i] != null && s.hi[i] != null);
      if (band.length > 1) {
        const pts = band.map(i => `${x(xs[i])},${y(s.hi[i])}`)
          .concat(band.slice().reverse().map(i => `${x(xs[i])},${y(s.lo[i])}`));
        el("polygon", { points: pts.join(" "), fill: col, "fill-opacity": 0.14, stroke: "none" }, svg);
      }
      band.forEach(i => el("line", { x1: x(xs[i]), x2: x(xs[i]), y1: y(s.lo[i]), y2: y(s.hi[i]),
                                     stroke: col, "stroke-opacity": 0.5 }, svg));
      if (on.length > 1) {
        el("polyline", { points: on.map(i => `${x(xs[i])},${y(s.y[i])}`).join(" "), fill: "none",
                         stroke: col, "stroke-width": 2.2, "stroke-dasharray": dash }, svg);
      }
      on.forEach(i => {
        const dot = el("circle", { cx: x(xs[i]), cy: y(s.y[i]), r: 3.5, fill: col }, svg);
        dot.addEventListener("mousemove", ev => showTip(ev, `<b>${esc(s.name)}</b>, ${esc(c.xlabel)} = ` +
          `${esc(c.labels[i])}<br>mean ${fmt(s.y[i])}<br>95% CI ${fmt(s.lo[i])} – ${fmt(s.hi[i])}<br>n = ${s.n[i]}`));
        dot.addEventListener("mouseleave", hideTip);
      });
    });
  }

  // --------------------------------------------------------------------- sortable tables
  // A click on a column head of a table.sortable sorts its rows by that column: by the cell's
  // data-v number when it has one (empty: no value, always last), else by its text.
  function sortRows(table, col, th) {
    const asc = th.dataset.sort !== "asc";
    table.querySelectorAll("thead th").forEach(h => { delete h.dataset.sort; });
    th.dataset.sort = asc ? "asc" : "desc";
    const key = r => { const td = r.cells[col]; return "v" in td.dataset ? (td.dataset.v === "" ? null : +td.dataset.v) : td.textContent; };
    const body = table.tBodies[0], rows = Array.from(body.rows).map(r => [key(r), r]);
    rows.sort(([a], [b]) => {
      if (a == null || b == null) return (a == null) - (b == null);
      const d = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
      return asc ? d : -d;
    });
    rows.forEach(([, r]) => body.appendChild(r));
  }
  document.querySelectorAll("table.sortable").forEach(t => t.querySelectorAll("thead th").forEach((th, i) => {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortRows(t, i, th));
    th.addEventListener("keydown", ev => { if (ev.key === "Enter") sortRows(t, i, th); });
  }));

  // ------------------------------------------------------------------------- mount all
  document.querySelectorAll("[data-chart]").forEach(host => {
    const kind = host.dataset.kind || host.dataset.chart;
    try {
      R[kind](host);
      host.setAttribute("data-rendered", "1");
    } catch (err) {
      host.setAttribute("data-error", String(err));
      host.insertAdjacentHTML("beforeend", `<p class="bad">chart failed: ${esc(err)}</p>`);
    }
  });
})();
