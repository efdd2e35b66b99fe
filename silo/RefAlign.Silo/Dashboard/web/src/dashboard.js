// The run dashboard: polls /api/runs and /api/cluster, follows the selected run's events over server-sent events.
// Plain JS on purpose: one page, a few tables and uPlot charts.
'use strict';

const KEY_STORE = 'refalign-api-key';
const PHASES = ['generate', 'score', 'reference', 'learn', 'weight_sync', 'checkpoint'];
const PHASE_COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#9c755f'];
// Chart groups: the first key of a group that a run reports gets a chart (RefAlign: reward; preference: loss,
// accuracy, marginal; SFT: loss). Eval events plot "eval/<key>" as points on the same axes.
const METRIC_GROUPS = [
  ['reward/mean'],
  ['loss'],
  ['rewards/accuracies', 'accuracy'],
  ['refine/marginal', 'rewards/margins'],
];
const CHART_ORDER = [...METRIC_GROUPS.flat(), 'tokens_per_second', 'phases'];
const MAX_LOG = 300;

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem(KEY_STORE) || '';
let runs = [];
let selected = decodeURIComponent((location.hash.match(/run=([^&]+)/) || [])[1] || '') || null;
let follow = null; // the selected run's stream and chart state
let timers = [];

class SignInNeeded extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: apiKey ? { 'x-api-key': apiKey } : {}, cache: 'no-store' });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    showSignIn(body.reason === 'invalid' ? 'The API key is not valid. Enter a viewer\'s or an operator\'s key.' :
      'This silo requires an API key (a viewer\'s or an operator\'s, as for refalign --api-key).');
    throw new SignInNeeded();
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

function showSignIn(message) {
  stop();
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-message').textContent = message;
  $('connection').textContent = 'signed out';
  $('key').focus();
}

function stop() {
  timers.forEach(clearInterval);
  timers = [];
  if (follow) follow.close();
  follow = null;
}

async function start() {
  stop();
  try {
    await refreshRuns();
  } catch (e) {
    if (e instanceof SignInNeeded) return;
    $('connection').textContent = `error: ${e.message}`;
  }
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = !apiKey;
  refreshCluster();
  timers.push(setInterval(() => refreshRuns().catch(report), 2000));
  timers.push(setInterval(() => refreshCluster(), 3000));
}

function report(e) {
  if (!(e instanceof SignInNeeded)) $('connection').textContent = `error: ${e.message}`;
}

// ---- runs table -------------------------------------------------------------------------------------------------

const fmt = (v) => typeof v === 'number' ? (Math.abs(v) >= 1000 || v === Math.round(v) ? String(Math.round(v * 100) / 100) : v.toPrecision(4)) : String(v);

// Axis ticks: uPlot's default rounds a loss of 1e-4 to "0"; small values get an exponent instead.
const tick = (v) => (v === 0 || Math.abs(v) >= 0.01 ? String(Number(v.toPrecision(3))) : v.toExponential(1));

function headline(metrics) {
  const keys = ['reward/mean', 'loss', 'rewards/accuracies', 'refine/marginal', 'tokens_per_second'];
  return keys.filter((k) => k in metrics).map((k) => `${k} ${fmt(metrics[k])}`).join(' · ');
}

async function refreshRuns() {
  runs = await api('api/runs');
  $('connection').textContent = `updated ${new Date().toLocaleTimeString()}`;
  const body = $('runs').tBodies[0];
  body.replaceChildren(...runs.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.runId = r.run_id;
    tr.className = r.run_id === selected ? 'selected' : '';
    const cells = [r.run_id, r.status, `${r.step}/${r.total_steps}`, r.algorithm, r.weight_version, headline(r.last_metrics)];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) td.className = `status ${r.status}`;
      tr.appendChild(td);
    });
    tr.addEventListener('click', () => select(r.run_id));
    return tr;
  }));
  $('runs').dataset.count = String(runs.length);
  $('no-runs').hidden = runs.length > 0;
  // Nothing chosen yet: follow the newest run (the list comes newest first).
  if (!runs.some((r) => r.run_id === selected)) selected = runs.length > 0 ? runs[0].run_id : null;
  if (selected && (!follow || follow.id !== selected)) select(selected);
  const run = runs.find((r) => r.run_id === selected);
  if (run) showRunHeader(run);
}

function select(id) {
  // The same run: keep its view, unless its stream failed for good (e.g. a 503 while a silo went away): then rebuild it.
  if (follow && follow.id === id && (follow.ended || follow.source.readyState !== EventSource.CLOSED)) return;
  selected = id;
  history.replaceState(null, '', `#run=${encodeURIComponent(id)}`);
  for (const tr of $('runs').tBodies[0].rows) tr.className = tr.dataset.runId === id ? 'selected' : '';
  if (follow) follow.close();
  follow = new RunView(id);
  const run = runs.find((r) => r.run_id === id);
  if (run) showRunHeader(run);
}

function showRunHeader(run) {
  $('run').hidden = false;
  $('run-title').textContent = run.run_id;
  $('run-status').textContent = run.status;
  $('run-status').className = `status ${run.status}`;
  $('run-algorithm').textContent = `${run.algorithm}, weights v${run.weight_version}`;
  $('run-error').textContent = run.error || '';
  if (follow) follow.setTotal(run.total_steps, run.step);
}

// ---- one run: events, charts ------------------------------------------------------------------------------------

class RunView {
  constructor(id) {
    this.id = id;
    this.steps = new Map(); // step -> { metrics, eval, phases }
    this.total = 0;
    this.lastStep = 0;
    this.charts = new Map(); // key -> { plot, element, kind }
    this.dirty = false;
    $('charts').replaceChildren();
    $('events').replaceChildren();
    $('events').dataset.count = '0';
    this.setStep(0);
    const url = `api/runs/${encodeURIComponent(id)}/events` + (apiKey ? `?key=${encodeURIComponent(apiKey)}` : '');
    this.source = new EventSource(url);
    this.source.addEventListener('run', (m) => this.onEvent(JSON.parse(m.data)));
    this.source.addEventListener('trimmed', (m) => this.log({ kind: 'trimmed', step: '', time: new Date().toISOString(),
      message: `older events were dropped from the run's log (oldest kept: ${JSON.parse(m.data).oldest_sequence})` }));
    // The run ended: without closing, EventSource would reconnect and replay.
    this.ended = false;
    this.source.addEventListener('end', () => { this.ended = true; this.source.close(); });
    this.source.onerror = () => { if (this.source.readyState === EventSource.CLOSED) refreshRuns().catch(report); };
  }

  close() {
    this.source.close();
    for (const c of this.charts.values()) c.plot.destroy();
  }

  setTotal(total, step) {
    this.total = total;
    if (step > this.lastStep) this.lastStep = step;
    this.setStep(this.lastStep);
  }

  setStep(step) {
    const el = $('run-step');
    el.dataset.step = String(step);
    el.textContent = this.total ? `step ${step} / ${this.total}` : `step ${step}`;
  }

  row(step) {
    if (!this.steps.has(step)) this.steps.set(step, { metrics: null, eval: null, phases: {} });
    return this.steps.get(step);
  }

  onEvent(e) {
    if (e.kind === 'step') {
      this.row(e.step).metrics = e.metrics;
      if (typeof e.metrics.total_steps === 'number') this.total = e.metrics.total_steps;
      this.lastStep = Math.max(this.lastStep, e.step);
      this.setStep(this.lastStep);
    } else if (e.kind === 'phase' && e.phase) {
      this.row(e.step).phases[e.phase] = e.phase_seconds;
    } else if (e.kind === 'eval') {
      this.row(e.step).eval = e.metrics;
    }
    if (e.kind !== 'phase') this.log(e);
    if (!this.dirty) {
      this.dirty = true;
      requestAnimationFrame(() => { this.dirty = false; this.draw(); });
    }
  }

  log(e) {
    const li = document.createElement('li');
    li.className = `event ${e.kind}`;
    const what = e.kind === 'step' ? headline(e.metrics) : e.kind === 'eval' ? Object.entries(e.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(' · ')
      : e.kind === 'status' ? `${e.status}${e.message ? ': ' + e.message : ''}` : e.message || '';
    li.textContent = `${new Date(e.time).toLocaleTimeString()} · ${e.kind} ${e.step} · ${what}`;
    const list = $('events');
    list.prepend(li);
    while (list.children.length > MAX_LOG) list.lastChild.remove();
    list.dataset.count = String(Number(list.dataset.count) + 1);
  }

  draw() {
    const xs = [...this.steps.keys()].sort((a, b) => a - b);
    const rows = xs.map((s) => this.steps.get(s));
    const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const reported = new Set(rows.flatMap((r) => [...Object.keys(r.metrics || {}), ...Object.keys(r.eval || {}).map((k) => k.replace(/^eval\//, ''))]));
    for (const group of METRIC_GROUPS) {
      const key = group.find((k) => reported.has(k));
      if (!key) continue;
      const series = [{ label: key, stroke: '#4e79a7', width: 2 }];
      const data = [xs, rows.map((r) => num(r.metrics?.[key]))];
      if (rows.some((r) => num(r.eval?.[`eval/${key}`]) !== null)) {
        series.push({ label: `eval/${key}`, stroke: '#e15759', width: 0, points: { show: true, size: 9, fill: '#e15759' } });
        data.push(rows.map((r) => num(r.eval?.[`eval/${key}`])));
      }
      this.chart(key, key, series, data, rows.filter((r) => num(r.metrics?.[key]) !== null).length);
    }
    if (reported.has('tokens_per_second')) {
      const tps = rows.map((r) => num(r.metrics?.tokens_per_second));
      this.chart('tokens_per_second', 'tokens/s', [{ label: 'tokens/s', stroke: '#59a14f', width: 2 }], [xs, tps],
        tps.filter((v) => v !== null).length);
    }
    const phases = PHASES.filter((p) => rows.some((r) => p in r.phases));
    if (phases.length > 0) {
      // Stacked bars: each series is the running sum up to its phase, drawn largest first so the smaller cover it.
      const stacked = phases.map((_, i) => rows.map((r) => phases.slice(0, i + 1).reduce((sum, p) => sum + (num(r.phases[p]) || 0), 0)));
      const order = phases.map((_, i) => phases.length - 1 - i);
      this.chart('phases', 'phase seconds per step (stacked)', order.map((i) => ({
        label: phases[i], stroke: PHASE_COLORS[PHASES.indexOf(phases[i])], fill: PHASE_COLORS[PHASES.indexOf(phases[i])],
        width: 0, paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false },
        value: (u, v, si, idx) => (idx == null ? '' : fmt(rows[idx].phases[phases[i]] || 0)),
      })), [xs, ...order.map((i) => stacked[i])], rows.filter((r) => Object.keys(r.phases).length > 0).length);
    }
  }

  chart(key, title, series, data, points) {
    let c = this.charts.get(key);
    // A series appeared (the first eval point, a new phase): uPlot's series are fixed, so the chart is built anew.
    const shape = series.map((x) => x.label).join('|');
    if (c && c.shape !== shape) {
      c.plot.destroy();
      c.element.remove();
      this.charts.delete(key);
      c = null;
    }
    if (!c) {
      const element = document.createElement('figure');
      element.className = 'chart';
      element.dataset.chart = key;
      const caption = document.createElement('figcaption');
      caption.textContent = title;
      element.appendChild(caption);
      const next = [...$('charts').children].find((f) => CHART_ORDER.indexOf(f.dataset.chart) > CHART_ORDER.indexOf(key));
      $('charts').insertBefore(element, next || null);
      const width = Math.max(320, Math.min(560, $('charts').clientWidth / 2 - 24));
      const plot = new uPlot({
        width, height: 220, legend: { live: false },
        scales: { x: { time: false } },
        axes: [{ label: 'step' }, { size: 60, values: (u, ticks) => ticks.map(tick) }],
        series: [{ label: 'step' }, ...series],
      }, data, element);
      c = { plot, element, shape };
      this.charts.set(key, c);
    } else {
      c.plot.setData(data);
    }
    c.element.dataset.points = String(points);
  }
}

// ---- cluster ----------------------------------------------------------------------------------------------------

async function refreshCluster() {
  let cluster;
  try { cluster = await api('api/cluster'); } catch (e) { report(e); return; }
  const names = new Map(cluster.silos.map((s) => [s.address, s.name]));
  fill($('silos'), cluster.silos.map((s) => [s.name, s.address, s.status, s.roles.join(', '), s.device, s.libtorch, s.active_grains < 0 ? '?' : s.active_grains]));
  fill($('placements'), cluster.placements.map((p) => [p.kind, p.grain_key, p.run_id, names.get(p.silo) || p.silo, p.weight_version < 0 ? '' : `v${p.weight_version}`]));
}

function fill(table, rows) {
  table.tBodies[0].replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = String(text);
      tr.appendChild(td);
    }
    return tr;
  }));
  table.dataset.count = String(rows.length);
}

// ---- sign-in ----------------------------------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', (e) => {
  e.preventDefault();
  apiKey = $('key').value.trim();
  sessionStorage.setItem(KEY_STORE, apiKey);
  $('key').value = '';
  start();
});

$('sign-out').addEventListener('click', () => {
  apiKey = '';
  sessionStorage.removeItem(KEY_STORE);
  showSignIn('Signed out. Enter an API key to open the dashboard again.');
});

start();
