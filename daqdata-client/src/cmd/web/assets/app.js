// The live view's page: draws what `daqdata web` sends over its WebSocket.
// The first message is "rules" (colour maps, log floor, quabo layout, all
// from Rust). Then JSON: "hosts" (the status bar), "hashpipe" (each node's
// Hashpipe state and its last 10 minutes of packets/s and losses/s) and
// "phdist" (one module's pulse-height histograms); and binary frames, each
// the newest image of one module's movie or pulse-height panel. A module is a (node, module id): through a
// gateway two nodes may report one id, and each has its own panels, labelled
// as the server writes it (`label`, e.g. "daq1 · module 3"). Every buffer
// is reused, so a tab left open all night keeps a flat heap.
"use strict";

// ------------------------------------------------------------------ rules
// What every view draws by comes from Rust (daqdata_client::view::rules),
// in the socket's first message: colour maps as 256-entry tables, the log
// floor, and which quabo each pixel belongs to. Colour limits and every
// tick arrive with the data they belong to. Nothing here retypes them.
let RULES = null;
const LUTS = {};

function onRules(msg) {
  RULES = msg;
  const select = $("#cmap");
  select.replaceChildren();
  for (const [name, table] of Object.entries(msg.colour_maps)) {
    LUTS[name] = Uint8Array.from(table);
    const o = document.createElement("option");
    o.value = name;
    o.textContent = name;
    select.appendChild(o);
  }
  if (!LUTS[settings.cmap]) settings.cmap = msg.default_colour_map;
  select.value = settings.cmap;
  $("#scale option[value=pct]").textContent = msg.limits;
  redrawAll();
}

// An image arrives as one binary frame: the JSON header's length (u32,
// little-endian), the header, then the pixels as stored.
const TYPED = { u8: Uint8Array, u16: Uint16Array, i16: Int16Array };
const utf8 = new TextDecoder();

function decodeImage(buf) {
  const len = new DataView(buf).getUint32(0, true);
  const msg = JSON.parse(utf8.decode(new Uint8Array(buf, 4, len)));
  msg.pixels = new TYPED[msg.pixel_type](buf, 4 + len, msg.rows * msg.cols);
  return msg;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-2)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

// ------------------------------------------------------------------ state
const settings = { scale: "pct", cmap: "plasma", counts: "log" };
let paused = false;
const modules = new Map(); // "node/module id" -> its panel elements and newest data

const $ = (sel, root = document) => root.querySelector(sel);

// Panels in order of node, then module id.
function before(a, b) {
  return a.nodeName < b.nodeName || (a.nodeName === b.nodeName && a.id < b.id);
}

function moduleView(msg) {
  const key = `${msg.node}/${msg.module}`;
  let m = modules.get(key);
  if (m) return m;
  const empty = $("#empty");
  if (empty) empty.remove();
  const node = $("#module-template").content.firstElementChild.cloneNode(true);
  node.dataset.module = String(msg.module);
  node.dataset.node = msg.node;
  $(".name", node).textContent = msg.label;
  m = { id: msg.module, nodeName: msg.node, label: msg.label, node, maps: {}, phdist: null };
  for (const [kind, what] of [["movie", "Movie"], ["ph", "Pulse height"]]) {
    const fig = $("#map-template").content.firstElementChild.cloneNode(true);
    fig.dataset.kind = kind;
    $(".what", fig).textContent = what;
    $(".maps", node).appendChild(fig);
    const map = {
      fig, kind, msg: null, image: null,
      heat: $("canvas.heat", fig), cbar: $("canvas.cbar", fig),
      geometry: null, limits: [0, 1],
    };
    map.heat.addEventListener("click", (e) => showPixel(m, map, e));
    m.maps[kind] = map;
  }
  m.hist = $("canvas.hist", node);
  const next = [...modules.values()].filter((o) => before(m, o)).sort((a, b) => (before(a, b) ? -1 : 1))[0];
  $("#modules").insertBefore(node, next ? next.node : null);
  modules.set(key, m);
  return m;
}

// ------------------------------------------------------------ heat maps
const AXIS_LEFT = 40, AXIS_BOTTOM = 26, PAD_TOP = 6, PAD_RIGHT = 6;
// The side of a map, screen pixels (at most: whole screen pixels per pixel).
const MAP_SIDE = 216;

// The limits and colour-bar ticks Rust chose for this image and scale.
function scaleOf(map) {
  return map.msg.scales[settings.scale] || map.msg.scales.pct;
}

function drawMap(map) {
  const msg = map.msg;
  const lut = LUTS[settings.cmap];
  if (!msg || !lut) return;
  const { rows, cols, pixels } = msg;
  const scale = scaleOf(map);
  const lo = scale.lo, hi = scale.hi;
  map.limits = [lo, hi];
  if (!map.image || map.image.width !== cols || map.image.height !== rows) {
    map.image = new ImageData(cols, rows);
    map.small = document.createElement("canvas");
    map.small.width = cols;
    map.small.height = rows;
  }
  const d = map.image.data;
  const perLevel = 255 / (hi - lo);
  for (let i = 0; i < pixels.length; i++) {
    const k = Math.max(0, Math.min(255, Math.round((pixels[i] - lo) * perLevel))) * 3;
    d[i * 4] = lut[k];
    d[i * 4 + 1] = lut[k + 1];
    d[i * 4 + 2] = lut[k + 2];
    d[i * 4 + 3] = 255;
  }
  map.small.getContext("2d").putImageData(map.image, 0, 0);

  // Whole screen pixels per image pixel; the canvas fits the map.
  const c = map.heat;
  const cell = Math.max(1, Math.floor(MAP_SIDE / Math.max(rows, cols)));
  const w = cell * cols, h = cell * rows;
  const x0 = AXIS_LEFT, y0 = PAD_TOP;
  const width = x0 + w + PAD_RIGHT, height = y0 + h + AXIS_BOTTOM;
  if (c.width !== width || c.height !== height) {
    c.width = width;
    c.height = height;
    map.cbar.height = height;
  }
  const g = c.getContext("2d");
  map.geometry = { x0, y0, cell, rows, cols };
  g.clearRect(0, 0, c.width, c.height);
  g.imageSmoothingEnabled = false;
  g.drawImage(map.small, x0, y0, w, h);
  g.strokeStyle = "#1d1f23";
  g.strokeRect(x0 - 0.5, y0 - 0.5, w + 1, h + 1);
  // Axes: column across, row down, ticks at pixel centres.
  g.fillStyle = "#1d1f23";
  g.font = "11px system-ui, sans-serif";
  const step = cols > 16 ? 8 : 4;
  g.textAlign = "center";
  g.textBaseline = "top";
  for (let col = 0; col < cols; col += step) {
    const x = x0 + (col + 0.5) * cell;
    g.fillRect(x, y0 + h, 1, 4);
    g.fillText(String(col), x, y0 + h + 5);
  }
  g.fillText("column", x0 + w / 2, y0 + h + 14);
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let row = 0; row < rows; row += step) {
    const y = y0 + (row + 0.5) * cell;
    g.fillRect(x0 - 4, y, 4, 1);
    g.fillText(String(row), x0 - 6, y);
  }
  g.save();
  g.translate(10, y0 + h / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = "center";
  g.fillText("row", 0, 0);
  g.restore();
  drawColourBar(map, lo, hi, scale.ticks, y0, h);
}

function drawColourBar(map, lo, hi, ticks, y0, h) {
  const c = map.cbar, g = c.getContext("2d");
  const lut = LUTS[settings.cmap];
  const x = 8, w = 14;
  g.clearRect(0, 0, c.width, c.height);
  for (let i = 0; i < h; i++) {
    const k = Math.round((1 - i / Math.max(1, h - 1)) * 255) * 3;
    g.fillStyle = `rgb(${lut[k]},${lut[k + 1]},${lut[k + 2]})`;
    g.fillRect(x, y0 + i, w, 1);
  }
  g.strokeStyle = "#1d1f23";
  g.strokeRect(x - 0.5, y0 - 0.5, w + 1, h + 1);
  g.fillStyle = "#1d1f23";
  g.font = "11px system-ui, sans-serif";
  g.textAlign = "left";
  g.textBaseline = "middle";
  for (const t of ticks) {
    const y = y0 + (1 - (t - lo) / (hi - lo)) * (h - 1);
    g.fillRect(x + w, Math.round(y), 4, 1);
    g.fillText(fmt(t), x + w + 6, y);
  }
}

function showPixel(m, map, e) {
  const geo = map.geometry;
  if (!geo || !map.msg) return;
  const rect = map.heat.getBoundingClientRect();
  const px = (e.clientX - rect.left) * (map.heat.width / rect.width);
  const py = (e.clientY - rect.top) * (map.heat.height / rect.height);
  const col = Math.floor((px - geo.x0) / geo.cell);
  const row = Math.floor((py - geo.y0) / geo.cell);
  if (row < 0 || col < 0 || row >= geo.rows || col >= geo.cols) return;
  const msg = map.msg;
  const value = msg.pixels[row * geo.cols + col];
  // Which quabo, and its own pixel: pff's DataProduct::quabo_at, sent in
  // the rules. A ph256 image is the quabo its header names.
  const [q, qrow, qcol] = RULES.quabo_layout[msg.data_product][row * geo.cols + col];
  const quabo = q >= 0 ? q : msg.quabo == null ? "?" : msg.quabo;
  $("#pixel-info").textContent =
    `${m.label} ${map.kind === "ph" ? "pulse height" : "movie"} (${msg.data_product}), frame ${msg.frame}: ` +
    `row ${row}, column ${col} = ${value} — quabo ${quabo}, its pixel (row ${qrow}, column ${qcol})`;
}

function onImage(msg) {
  const m = moduleView(msg);
  const map = m.maps[msg.kind];
  if (!map) return;
  map.msg = msg;
  map.fig.hidden = false;
  $(".dp", map.fig).textContent = `(${msg.data_product})`;
  $(".frame", map.fig).textContent = String(msg.frame);
  $(".utc", map.fig).textContent = msg.utc || "no time stamp";
  $(".file", map.fig).textContent = msg.file;
  $(".rate", map.fig).textContent = msg.images_per_s.toFixed(1);
  drawMap(map);
}

// ---------------------------------------------------- pulse-height chart
const WINDOW_COLOURS = ["#cf222e", "#0969da", "#1a7f37"];

function onPhDist(msg) {
  const m = moduleView(msg);
  m.phdist = msg;
  m.hist.closest("figure").hidden = false;
  drawHist(m);
}

function drawHist(m) {
  const msg = m.phdist;
  if (!msg) return;
  const c = m.hist, g = c.getContext("2d");
  const L = 62, R = 170, T = 10, B = 40;
  const w = c.width - L - R, h = c.height - T - B;
  g.clearRect(0, 0, c.width, c.height);
  const log = settings.counts === "log";
  const axis = log ? msg.log_axis : msg.linear_axis;
  const yTop = axis.top;
  const logBottom = Math.log10(RULES.log_count_floor);
  const yOf = (n) => {
    if (log) return T + h - (n <= 0 ? 0 : ((Math.log10(n) - logBottom) / (Math.log10(yTop) - logBottom)) * h);
    return T + h - (n / yTop) * h;
  };
  const xOf = (v) => L + ((v - msg.lo) / (msg.hi - msg.lo)) * w;
  // Axes, ticks and labels.
  g.strokeStyle = "#1d1f23";
  g.fillStyle = "#1d1f23";
  g.font = "11px system-ui, sans-serif";
  g.strokeRect(L - 0.5, T - 0.5, w + 1, h + 1);
  g.textAlign = "center";
  g.textBaseline = "top";
  for (const t of msg.x_ticks) {
    const x = xOf(t);
    g.fillRect(Math.round(x), T + h, 1, 4);
    g.fillText(fmt(t), x, T + h + 6);
  }
  g.fillText("maximum pixel of the image (ADC counts)", L + w / 2, T + h + 22);
  g.textAlign = "right";
  g.textBaseline = "middle";
  const yTicks = axis.ticks;
  for (const t of yTicks) {
    const y = yOf(t);
    g.fillRect(L - 4, Math.round(y), 4, 1);
    g.fillText(fmt(t), L - 6, y);
  }
  g.save();
  g.translate(12, T + h / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = "center";
  g.fillText(log ? "images (log)" : "images", 0, 0);
  g.restore();
  // One step line per window.
  const bw = w / msg.bins;
  msg.windows.forEach((win, k) => {
    g.strokeStyle = WINDOW_COLOURS[k % WINDOW_COLOURS.length];
    g.lineWidth = 1.6;
    g.beginPath();
    g.moveTo(L, T + h);
    win.counts.forEach((n, i) => {
      const y = yOf(n);
      g.lineTo(L + i * bw, y);
      g.lineTo(L + (i + 1) * bw, y);
    });
    g.lineTo(L + w, T + h);
    g.stroke();
    g.lineWidth = 1;
    // Legend.
    const ly = T + 8 + k * 18;
    g.fillStyle = g.strokeStyle;
    g.fillRect(L + w + 12, ly - 1, 16, 3);
    g.fillStyle = "#1d1f23";
    g.textAlign = "left";
    g.fillText(`${win.seconds} s: ${win.events} (${win.rate.toFixed(1)}/s)`, L + w + 32, ly);
  });
}

// -------------------------------------------------------------- host bar
// The bar `selector` with exactly `n` chips of class `className`, kept in
// place (a chip's hover title survives an update).
function chipBar(selector, className, n) {
  const bar = $(selector);
  while (bar.children.length > n) bar.lastElementChild.remove();
  while (bar.children.length < n) {
    const chip = document.createElement("span");
    chip.className = className;
    bar.appendChild(chip);
  }
  return bar;
}

function onHosts(msg) {
  $("#total-rate").textContent = `${msg.images_per_s.toFixed(1)} images/s`;
  const bar = chipBar("#hosts", "host", msg.hosts.length);
  msg.hosts.forEach((h, i) => {
    const chip = bar.children[i];
    chip.dataset.state = h.state;
    chip.dataset.host = h.host;
    let what = h.state;
    if (h.state === "reconnecting") what = `reconnecting (attempt ${h.attempt})`;
    if (h.state === "refused") what = `refused: ${h.why}`;
    let text = `${h.host}: ${what}`;
    if (h.state === "streaming") {
      text += `, ${h.images_per_s.toFixed(1)} images/s`;
      if (h.age_s != null) text += `, newest frame ${h.age_s.toFixed(3)} s old`;
    }
    chip.textContent = text;
    chip.title = h.why || text;
  });
}

// ---------------------------------------------------------- Hashpipe
const NODE_COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bf3989"];
let hashpipe = null;

function onHashpipe(msg) {
  hashpipe = msg;
  const bar = chipBar("#hashpipe", "hashpipe", msg.nodes.length);
  msg.nodes.forEach((n, i) => {
    const chip = bar.children[i];
    chip.dataset.node = n.node;
    chip.dataset.bad = String(n.problems.length > 0);
    chip.replaceChildren(document.createTextNode(`${n.node} Hashpipe: `));
    n.threads.forEach((t, k) => {
      if (k > 0) chip.append(", ");
      const s = document.createElement("span");
      s.className = t.bad ? "bad thread" : "thread";
      s.dataset.thread = t.name;
      s.textContent = `${t.name} ${t.state}`;
      chip.append(s);
    });
    const rate = (v, what) => (v == null ? "" : `, ${fmt(Math.round(v))} ${what}`);
    chip.append(rate(n.packets_per_s, "pkt/s") + rate(n.losses_per_s, "lost/s"));
    if (n.net_drops != null) chip.append(`, NETDROPS ${n.net_drops}`);
    if (n.problems.length) {
      const why = document.createElement("span");
      why.className = "bad why";
      why.textContent = ` — ${n.problems.join("; ")}`;
      chip.append(why);
    }
    chip.title = n.age_s == null ? n.host : `${n.host}: read ${n.age_s.toFixed(1)} s ago`;
  });
  const any = msg.nodes.some((n) => n.series_t.length > 1);
  $("#hashpipe-plot").hidden = !any;
  if (any) drawHashpipe();
}

// Two charts on one canvas: packets/s above, losses/s below; one line per
// node over the last `span_s` seconds.
function drawHashpipe() {
  const msg = hashpipe;
  const c = $("#hashpipe-canvas"), g = c.getContext("2d");
  const L = 62, R = 150, T = 8, GAP = 30, B = 30;
  const w = c.width - L - R, h = (c.height - T - GAP - B) / 2;
  g.clearRect(0, 0, c.width, c.height);
  g.font = "11px system-ui, sans-serif";
  const xOf = (t) => L + (1 + t / msg.span_s) * w;
  [["series_packets", "packets/s", msg.packets_axis], ["series_losses", "lost/s", msg.losses_axis]].forEach(([field, label, axis], k) => {
    const top = T + k * (h + GAP);
    const yTop = axis.top;
    const yOf = (v) => top + h - (v / yTop) * h;
    g.strokeStyle = "#1d1f23";
    g.fillStyle = "#1d1f23";
    g.strokeRect(L - 0.5, top - 0.5, w + 1, h + 1);
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const t of axis.ticks) {
      g.fillRect(L - 4, Math.round(yOf(t)), 4, 1);
      g.fillText(fmt(t), L - 6, yOf(t));
    }
    g.save();
    g.translate(12, top + h / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = "center";
    g.fillText(label, 0, 0);
    g.restore();
    msg.nodes.forEach((n, i) => {
      const ts = n.series_t, vs = n[field];
      g.strokeStyle = NODE_COLOURS[i % NODE_COLOURS.length];
      g.lineWidth = 1.6;
      g.beginPath();
      ts.forEach((t, j) => (j ? g.lineTo(xOf(t), yOf(vs[j])) : g.moveTo(xOf(t), yOf(vs[j]))));
      g.stroke();
      g.lineWidth = 1;
      if (k === 0) {
        const ly = T + 8 + i * 16;
        g.fillStyle = g.strokeStyle;
        g.fillRect(L + w + 12, ly - 1, 16, 3);
        g.fillStyle = "#1d1f23";
        g.textAlign = "left";
        g.fillText(n.node, L + w + 32, ly);
      }
    });
  });
  g.fillStyle = "#1d1f23";
  g.textAlign = "center";
  g.textBaseline = "top";
  const bottom = T + 2 * h + GAP;
  for (const t of msg.t_ticks) {
    g.fillRect(Math.round(xOf(t)), bottom, 1, 4);
    g.fillText(fmt(t), xOf(t), bottom + 5);
  }
  g.fillText("seconds before now", L + w / 2, bottom + 17);
}

// ------------------------------------------------------------- controls
function redrawAll() {
  if (hashpipe) drawHashpipe();
  for (const m of modules.values()) {
    for (const map of Object.values(m.maps)) drawMap(map);
    drawHist(m);
  }
}

$("#scale").addEventListener("change", (e) => {
  settings.scale = e.target.value;
  redrawAll();
});
$("#cmap").addEventListener("change", (e) => {
  settings.cmap = e.target.value;
  redrawAll();
});
$("#counts").addEventListener("change", (e) => {
  settings.counts = e.target.value;
  redrawAll();
});
$("#pause").addEventListener("click", () => {
  paused = !paused;
  document.body.classList.toggle("paused", paused);
  $("#pause").textContent = paused ? "Resume" : "Pause";
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(paused ? "pause" : "resume");
});

// ------------------------------------------------------------ WebSocket
let socket = null;
let attempt = 0;

function setLink(state, text) {
  const el = $("#link-state");
  el.dataset.state = state;
  el.textContent = text;
}

function connect() {
  // Relative to the page, so that a forwarded port or a path prefix works.
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    attempt = 0;
    setLink("open", "live");
    if (paused) socket.send("pause");
  };
  socket.onmessage = (e) => {
    if (e.data instanceof ArrayBuffer) {
      if (!paused && RULES) onImage(decodeImage(e.data));
      return;
    }
    const msg = JSON.parse(e.data);
    if (msg.t === "rules") onRules(msg);
    else if (msg.t === "hosts") onHosts(msg);
    else if (msg.t === "hashpipe") onHashpipe(msg);
    else if (paused) return;
    else if (msg.t === "phdist") onPhDist(msg);
  };
  socket.onclose = () => {
    attempt += 1;
    const wait = Math.min(5000, 250 * Math.pow(2, attempt - 1));
    setLink("closed", `view server unreachable, retrying (attempt ${attempt})`);
    setTimeout(connect, wait);
  };
}
connect();
