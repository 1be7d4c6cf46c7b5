// Metric charts (uPlot). Each card asks the server for its metric at its pixel width: min-max buckets, drawn
// as a line (the bucket's mean) in a band (its min..max), so no spike is ever hidden. Dragging zooms by
// asking again for the x range (full resolution once few points are left); a double-click resets. Only
// cards in (or near) the viewport load. Settings live in the URL: x, log, smooth, nooutliers.
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const cards = new Map();
let sync = null;
let observer = null;

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
function palette() { return css("--series").split(/\s+/).filter(Boolean); }
function faded(color, alpha) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  return m ? `rgba(${parseInt(m[1], 16)},${parseInt(m[2], 16)},${parseInt(m[3], 16)},${alpha})` : color;
}

export function settings() {
  const form = document.getElementById("chart-controls");
  const get = (name) => (form ? form.elements[name] : null);
  return {
    x: get("x") ? get("x").value : "step",
    log: get("log") ? get("log").checked : false,
    smooth: get("smooth") ? Number(get("smooth").value) : 0,
    outliers: get("nooutliers") ? !get("nooutliers").checked : true,
  };
}

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0.
export function ema(values, weight) {
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = weight === 1 ? last : last / (1 - Math.pow(weight, n));
  }
  return out;
}

function quantileRange(columns, log) {
  const all = [];
  columns.forEach((c) => c.forEach((v) => { if (v !== null && Number.isFinite(v)) all.push(v); }));
  if (all.length < 10) return null;
  all.sort((a, b) => a - b);
  const lo = all[Math.floor(all.length * 0.02)], hi = all[Math.ceil(all.length * 0.98) - 1];
  if (log) return lo > 0 ? [lo / 1.25, hi * 1.25] : null;
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
  return [lo - pad, hi + pad];
}

class Card {
  constructor(el) {
    this.el = el;
    this.key = el.dataset.key;
    this.runs = el.dataset.runs.split(",").filter(Boolean);
    this.plotEl = el.querySelector(".plot");
    this.statusEl = el.querySelector(".status");
    this.plot = null;
    this.data = null;
    this.range = null;
    this.requests = 0;
    const png = el.querySelector("button.png");
    if (png) png.addEventListener("click", () => this.png());
  }

  status(text) { this.statusEl.textContent = text; }

  async load(range) {
    const s = settings();
    const width = Math.max(200, Math.min(4096, Math.round(this.plotEl.clientWidth || 600)));
    const q = new URLSearchParams({ key: this.key, width: String(width), x: s.x });
    this.runs.forEach((r) => q.append("run", r));
    if (range) { q.set("x0", String(range[0])); q.set("x1", String(range[1])); }
    const ticket = ++this.requests;
    this.el.dataset.state = "loading";
    const answer = await fetch("/ui/series?" + q.toString(), { headers: { Accept: "application/json" } });
    if (ticket !== this.requests) return;  // a newer request (zoom, reset) went out meanwhile
    if (!answer.ok) {
      let message = answer.statusText;
      try { message = (await answer.json()).error.message; } catch (e) { /* not JSON */ }
      this.status("could not load: " + message);
      this.el.dataset.state = "error";
      return;
    }
    this.data = await answer.json();
    this.range = range;
    this.draw();
  }

  draw() {
    const s = settings();
    const series = this.data.series;
    if (!series.length) { this.status("no points"); this.el.dataset.state = "empty"; return; }
    const colors = palette();
    const tables = series.map((d) => [d.x, d.y, d.low, d.high]);
    let data = tables.length === 1 ? tables[0].slice() : uPlot.join(tables);
    let dropped = 0;
    let log = s.log;
    if (log) {  // a log axis has no place for 0 or less: those points become gaps (and are counted)
      const positive = data.map((column, i) => i === 0 ? column : column.map((v) => {
        if (v !== null && v !== undefined && v <= 0) { dropped++; return null; }
        return v;
      }));
      if (positive.slice(1).some((column) => column.some((v) => v !== null && v !== undefined))) data = positive;
      else { log = false; dropped = 0; }  // nothing above 0: drawn on a linear axis
    }
    const grid = css("--grid"), muted = css("--muted");
    const config = [{ label: s.x === "step" ? "step" : s.x === "wall" ? "time" : "seconds" }];
    const bands = [];
    const lines = [];
    series.forEach((d, i) => {
      const color = colors[i % colors.length];
      const base = 1 + i * 3;
      lines.push(base);
      config.push({ label: d.name, stroke: s.smooth > 0 ? faded(color, 0.35) : color, width: 1.25, spanGaps: true,
                    points: { show: d.x.length < 60, size: 5, fill: color } });
      config.push({ label: d.name + " min", stroke: "transparent", points: { show: false }, spanGaps: true });
      config.push({ label: d.name + " max", stroke: "transparent", points: { show: false }, spanGaps: true });
      if (!d.full) bands.push({ series: [base + 2, base + 1], fill: faded(color, 0.16) });
    });
    if (s.smooth > 0) {
      series.forEach((d, i) => {
        data.push(ema(data[1 + i * 3], s.smooth));
        config.push({ label: d.name + " (smoothed)", stroke: colors[i % colors.length], width: 1.75, spanGaps: true,
                      points: { show: false } });
      });
    }
    const outliers = s.outliers ? null : quantileRange(lines.map((i) => data[i]), log);
    const self = this;
    const options = {
      width: Math.max(200, this.plotEl.clientWidth || 600),
      height: 240,
      series: config,
      bands,
      scales: {
        x: { time: s.x === "wall" },
        y: { distr: log ? 3 : 1, ...(outliers ? { range: () => outliers } : {}) },
      },
      axes: [
        { stroke: muted, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: muted, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60 },
      ],
      legend: { live: true },
      cursor: { sync: { key: sync.key, setSeries: false }, drag: { x: true, y: false, setScale: false } },
      hooks: {
        draw: [(u) => { self.el.dataset.ymax = String(u.scales.y.max); }],  // what the y axis shows (tests read it)
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const x0 = u.posToVal(u.select.left, "x"), x1 = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          self.zoom([x0, x1]);
        }],
      },
    };
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(options, data, this.plotEl);
    this.plot.over.addEventListener("dblclick", () => { if (self.range) self.zoom(null); });
    // the min and max of each run are the band: not rows of the legend
    const legendRows = this.plot.root.querySelectorAll(".u-legend .u-series");
    series.forEach((d, i) => { [2, 3].forEach((k) => { const row = legendRows[i * 3 + k]; if (row) row.classList.add("hidden"); }); });
    const points = series.reduce((n, d) => n + d.points, 0);
    const full = series.every((d) => d.full);
    const total = series.reduce((n, d) => n + d.total, 0);
    this.status(`${points.toLocaleString()} of ${total.toLocaleString()} points` +
                (full ? " (every point)" : ` in min-max buckets of ${series[0].x.length.toLocaleString()}`) +
                (this.range ? " · zoomed, double-click to reset" : "") +
                (dropped ? ` · ${dropped.toLocaleString()} values ≤ 0 not on the log axis` : "") +
                (s.log && !log ? " · no value above 0: linear axis" : ""));
    this.el.dataset.state = "drawn";
    this.el.dataset.full = String(full);
    this.el.dataset.zoomed = String(Boolean(this.range));
    this.el.dataset.draws = String(Number(this.el.dataset.draws || 0) + 1);
  }

  zoom(range) { this.load(range); }

  png() {
    if (!this.plot) return;
    const canvas = this.plot.ctx.canvas;
    const ratio = canvas.width / (this.plot.width || canvas.width);
    const rows = this.data.series.map((d, i) => [d.name, palette()[i % palette().length]]);
    const lineHeight = 18 * ratio;
    const out = document.createElement("canvas");
    out.width = canvas.width;
    out.height = canvas.height + (rows.length + 2) * lineHeight;
    const ctx = out.getContext("2d");
    ctx.fillStyle = css("--bg") || "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = css("--fg") || "#000";
    ctx.font = `${13 * ratio}px sans-serif`;
    ctx.fillText(this.key, 8 * ratio, lineHeight);
    ctx.drawImage(canvas, 0, lineHeight * 1.3);
    rows.forEach(([name, color], i) => {
      const y = canvas.height + lineHeight * (i + 2);
      ctx.fillStyle = color;
      ctx.fillRect(8 * ratio, y - 10 * ratio, 12 * ratio, 4 * ratio);
      ctx.fillStyle = css("--fg") || "#000";
      ctx.fillText(name, 26 * ratio, y);
    });
    out.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = this.key.replace(/[^\w.-]+/g, "_") + ".png";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 5000);
    });
  }
}

function writeSettings() {
  const s = settings();
  const url = new URL(location.href);
  ["x", "log", "smooth", "nooutliers"].forEach((k) => url.searchParams.delete(k));
  if (s.x !== "step") url.searchParams.set("x", s.x);
  if (s.log) url.searchParams.set("log", "1");
  if (s.smooth > 0) url.searchParams.set("smooth", String(s.smooth));
  if (!s.outliers) url.searchParams.set("nooutliers", "1");
  history.replaceState(null, "", url);
}

export function initCharts(root) {
  if (typeof uPlot === "undefined") return;
  if (!sync) sync = uPlot.sync("labtrack");
  if (!observer) {
    observer = new IntersectionObserver((entries) => entries.forEach((entry) => {
      const card = cards.get(entry.target);
      if (entry.isIntersecting && card && !card.data && !card.requests) card.load(null);
    }), { rootMargin: "200px" });
  }
  $$(".card.chart", root).forEach((el) => {
    if (cards.has(el)) return;
    cards.set(el, new Card(el));
    observer.observe(el);
  });
  const form = document.getElementById("chart-controls");
  if (form && !form.dataset.wired) {
    form.dataset.wired = "1";
    form.addEventListener("submit", (e) => e.preventDefault());
    form.addEventListener("input", (event) => {
      const out = form.querySelector("output");
      if (out) out.textContent = form.elements.smooth.value;
      writeSettings();
      const refetch = event.target.name === "x";
      cards.forEach((card) => { if (card.data) refetch ? card.load(null) : card.draw(); });
    });
  }
}

document.addEventListener("labtrack:theme", () => cards.forEach((card) => { if (card.data) card.draw(); }));
window.addEventListener("resize", () => cards.forEach((card) => {
  if (card.plot) card.plot.setSize({ width: Math.max(200, card.plotEl.clientWidth), height: 240 });
}));
