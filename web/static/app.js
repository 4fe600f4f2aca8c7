// tandem's dashboard: polls the admin API every 1.5 s, with the token from sessionStorage. With no
// admin.token configured the API answers without one, and no token is asked for.
import { renderPeriodic } from './periodic.js';
import { limitsRows } from './limits.js';

const $ = (s) => document.querySelector(s);
const api = '/admin/api/v1';
const POLL_MS = 1500;
const HISTORY = 240; // samples kept for the charts: 6 minutes at 1.5 s

let token = sessionStorage.getItem('tandem-token') || '';
const history = {}; // pool -> [{running, waiting, size}]
const poolErrors = {}; // pool -> the last resize error, kept across re-renders
let lastSucceeded = null; // queue -> {n, t}
let cursors = ['']; // job list pages
let timer = null;

class APIError extends Error {
  constructor(status, msg, fields) { super(msg); this.status = status; this.fields = fields; }
}

async function call(method, path, body) {
  const opts = { method, headers: token ? { Authorization: 'Bearer ' + token } : {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new APIError(0, 'tandem is not reachable: ' + e.message);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const msg = (data && data.error) || text || resp.statusText;
    throw new APIError(resp.status, msg, data && data.fields);
  }
  return data;
}

function banner(msg, kind = 'error') {
  const b = $('#banner');
  if (!msg) { b.hidden = true; return; }
  b.textContent = msg;
  b.className = 'banner ' + kind;
  b.hidden = false;
}

function setStatus(ok, text) {
  const s = $('#status');
  s.textContent = text;
  s.className = 'status ' + (ok ? 'ok' : 'down');
}

function handleError(e) {
  if (e.status === 401) {
    // A first 401 without a token only means this tandem has one: ask for it, nothing was refused.
    if (token) banner('The admin token was refused (401). Enter the right one.');
    sessionStorage.removeItem('tandem-token');
    token = '';
    showLogin();
    return;
  }
  setStatus(false, e.status === 0 ? 'down' : 'error');
  banner(e.status === 0 ? e.message + ' — retrying…' : `Error ${e.status}: ${e.message}`);
}

const el = (tag, attrs = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return n;
};

function sparkline(samples, key, max) {
  const w = 240, h = 40;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('preserveAspectRatio', 'none');
  const pts = samples.map((s, i) => `${(i / Math.max(1, HISTORY - 1)) * w},${h - (s[key] / Math.max(1, max)) * (h - 2) - 1}`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', pts.join(' '));
  line.setAttribute('class', key);
  svg.append(line);
  return svg;
}

// Pool cards are built once and updated in place, so the size field and the Resize button an
// operator is using are never replaced under the pointer by a refresh.
const poolCards = {}; // pool -> the card's live elements

function poolCard(name) {
  const c = {};
  c.err = el('p', { class: 'field-error', id: `err-${name}`, role: 'alert' });
  // No min/max on the input: tandem validates, and its message is what the operator should see.
  c.input = el('input', { type: 'number', 'data-pool': name, id: `size-${name}`, 'aria-label': `${name} pool size` });
  // A typed size stays until it is submitted or Escape is pressed, even once the field lost the
  // focus (pressing Resize moves the focus before the click lands).
  c.editing = false;
  c.input.addEventListener('input', () => { c.editing = true; });
  c.input.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { c.editing = false; c.input.blur(); refresh(); } });
  const form = el('form', { class: 'resize', novalidate: '', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await call('PUT', `/admin/pools/${name}`, { size: Number(c.input.value) });
      delete poolErrors[name];
    } catch (e) {
      if (e.status === 401 || e.status === 0) return handleError(e);
      poolErrors[name] = e.fields ? Object.entries(e.fields).map(([k, v]) => `${k}: ${v}`).join('; ') : e.message;
    }
    c.editing = false;
    c.input.blur();
    refresh();
  } }, c.input, el('button', { type: 'submit', id: `resize-${name}` }, 'Resize'));
  const stat = (label, cls) => { c[cls] = el('b', { class: cls }); return el('span', {}, label + ' ', c[cls]); };
  c.title = el('h3');
  c.backlogStat = stat('backlog', 'backlog');
  c.chart = el('div');
  // The jobs pool's yield to HTTP (jobs.yield_to_http): how many workers take jobs, and why.
  c.yieldLine = el('p', { class: 'yield', id: `yield-${name}`, hidden: '' });
  c.root = el('div', { class: 'pool', id: `pool-${name}` }, c.title,
    el('div', { class: 'stats' }, stat('size', 'size'), stat('running', 'running'), stat('waiting', 'waiting'),
      c.backlogStat, stat('rejected', 'rejected')),
    c.yieldLine, c.chart, form, c.err);
  c.pinState = null;
  return c;
}

function renderPools(pools) {
  const box = $('#pools');
  const names = Object.keys(pools).sort();
  for (const name of Object.keys(poolCards)) {
    if (!(name in pools)) { poolCards[name].root.remove(); delete poolCards[name]; }
  }
  for (const name of names) {
    const p = pools[name];
    (history[name] ||= []).push(p);
    if (history[name].length > HISTORY) history[name].shift();
    const max = Math.max(...history[name].map((s) => Math.max(s.size, s.running + s.waiting)));
    const c = (poolCards[name] ||= poolCard(name));
    if (!c.root.isConnected) { // a new card, in sorted order; moving a live one would blur its field
      const next = names.slice(names.indexOf(name) + 1).map((n) => poolCards[n]?.root).find((r) => r?.isConnected);
      box.insertBefore(c.root, next || null);
    }
    for (const k of ['size', 'running', 'waiting', 'backlog', 'rejected']) c[k].textContent = p[k] ?? '';
    c.yieldLine.hidden = !p.yield;
    if (p.yield) {
      const y = p.yield;
      c.yieldLine.textContent = (y.limit > 0 ? `yielding to HTTP: ${y.limit} of ${p.size} workers take jobs` : 'HTTP first: every worker takes jobs')
        + (y.yields ? ` (${y.yields} yield${y.yields === 1 ? '' : 's'} so far)` : '');
      c.yieldLine.title = y.reason;
      c.yieldLine.classList.toggle('active', y.limit > 0);
    }
    c.backlogStat.hidden = p.backlog === undefined;
    if (!c.editing && document.activeElement !== c.input) c.input.value = p.size; // never under the operator's typing
    c.err.textContent = poolErrors[name] || '';
    c.chart.replaceChildren(sparkline(history[name], 'running', max));
    // Who owns the size: an autoscaler (pinned or not), the CPU limit (auto), or an operator, who
    // can hand it back to the limit.
    const pinState = p.autoscale ? (p.pinned ? 'pinned' : 'auto') : (p.follows_limits ? 'limits' : 'set');
    if (pinState !== c.pinState) {
      c.pinState = pinState;
      const act = (method, path, body) => async () => {
        try { await call(method, path, body); delete poolErrors[name]; } catch (e) {
          if (e.status === 401 || e.status === 0) return handleError(e);
          poolErrors[name] = e.message;
        }
        refresh();
      };
      const pin = {
        pinned: () => el('button', { type: 'button', class: 'link', onclick: act('DELETE', `/admin/pools/${name}/pin`, {}) }, 'pinned — hand back to autoscale'),
        auto: () => el('span', { class: 'tag' }, 'autoscaling'),
        limits: () => el('span', { class: 'tag', id: `follows-${name}`, title: 'sized from the CPU limit, and following it' }, 'auto'),
        set: () => el('button', { type: 'button', class: 'link', id: `auto-${name}`, title: 'size it from the CPU limit again, and follow it',
          onclick: act('PUT', `/admin/pools/${name}`, { size: 'auto' }) }, `set by ${p.size_source} — back to auto`),
      }[pinState]();
      c.title.replaceChildren(name, ' ', pin);
    }
  }
}

function bytes(n) {
  if (n === null || n === undefined) return 'no limit';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function renderRuntime(r) {
  const rows = [
    ['GOMAXPROCS', `${r.gomaxprocs} (from ${r.gomaxprocs_source})`],
    ['CPU quota', r.cpu_quota === null ? 'no limit' : `${r.cpu_quota} cores`],
    ['CPUs allowed', `${r.cpus_allowed} of ${r.num_cpu}`],
    ['memory limit', bytes(r.memory_limit)], ['GOMEMLIMIT', `${bytes(r.gomemlimit)} (from ${r.gomemlimit_source})`],
    ...limitsRows(r, { ago, bytes }),
    ['goroutines', r.goroutines], ['heap', bytes(r.heap_alloc_bytes)],
    ['uptime', `${Math.floor(r.uptime_seconds)} s`], ['version', `${r.version} (${r.go_version})`],
  ];
  $('#runtime').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function renderQueues(queues) {
  const now = Date.now();
  const prev = lastSucceeded;
  lastSucceeded = {};
  const body = $('#queues tbody');
  body.replaceChildren(...queues.map((q) => {
    lastSucceeded[q.name] = { n: q.succeeded, t: now };
    let rate = '';
    if (prev && prev[q.name] && now > prev[q.name].t) {
      rate = ((q.succeeded - prev[q.name].n) / ((now - prev[q.name].t) / 1000)).toFixed(1);
    }
    const action = q.paused ? 'resume' : 'pause';
    const btn = el('button', { type: 'button', id: `${action}-${q.name}`, onclick: async () => {
      try { await call('POST', `/admin/queues/${encodeURIComponent(q.name)}/${action}`, {}); refresh(); } catch (e) { handleError(e); }
    } }, action === 'pause' ? 'Pause' : 'Resume');
    return el('tr', { class: q.paused ? 'paused' : '' },
      el('td', {}, q.name, q.paused ? el('span', { class: 'tag' }, 'paused') : ''),
      ...['scheduled', 'ready', 'prefetched', 'running', 'retrying', 'succeeded', 'dead', 'canceled'].map((s) =>
        el('td', {}, s === 'dead' && q[s] > 0 ? el('a', { href: `#/jobs?queue=${encodeURIComponent(q.name)}&state=dead` }, q[s]) : q[s])),
      el('td', {}, q.oldest_ready_age_seconds ? `${q.oldest_ready_age_seconds.toFixed(1)} s` : '—'),
      el('td', {}, rate), el('td', {}, btn));
  }));
}

// ago formats the time since an RFC 3339 timestamp, as the browser's clock sees it.
function ago(ts) {
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

// renderNodes lists the replicas sharing the job store (GET /admin/nodes): on bbolt, this one.
function renderNodes(n) {
  $('#nodes-mode').textContent = n.shared ? `${n.nodes.length} sharing one Postgres queue` : 'bbolt: this process alone';
  const pool = (p) => (p ? `${p.running}/${p.size}` : '—');
  $('#nodes tbody').replaceChildren(...n.nodes.map((node) => el('tr', { 'data-node': node.name },
    el('td', { class: 'node-name' }, node.name, node.leader ? el('span', { class: 'tag leader', title: 'runs the maintenance: promotions, rescues, retention' }, 'leader') : ''),
    el('td', {}, node.version), el('td', { class: 'node-http' }, pool(node.pools.http)), el('td', { class: 'node-jobs' }, pool(node.pools.jobs)),
    el('td', { class: 'node-running' }, node.running), el('td', { class: 'node-heartbeat' }, ago(node.heartbeat_at)),
    el('td', {}, new Date(node.started_at).toLocaleString()))));
}

async function refreshOverview() {
  const [pools, rt, qs, nodes, periodic] = await Promise.all([call('GET', '/admin/pools'), call('GET', '/admin/runtime'), call('GET', api + '/queues'), call('GET', '/admin/nodes'),
    call('GET', api + '/periodic')]);
  renderPools(pools);
  renderRuntime(rt);
  renderQueues(qs.queues);
  renderNodes(nodes);
  renderPeriodic(periodic.periodic);
}

function filterQuery() {
  const f = new FormData($('#filters'));
  const q = new URLSearchParams();
  // A datetime-local value is the browser's local time, which the API takes as RFC 3339.
  for (const [k, v] of f) if (v) q.set(k, k.startsWith('created_') ? new Date(v).toISOString() : v);
  return q;
}

async function refreshJobs() {
  const q = filterQuery();
  q.set('limit', '25');
  const cursor = cursors[cursors.length - 1];
  if (cursor) q.set('cursor', cursor);
  const page = await call('GET', `${api}/jobs?${q}`);
  $('#job-list tbody').replaceChildren(...page.jobs.map((j) => el('tr', { class: 'state-' + j.state },
    el('td', {}, el('a', { href: `#/job/${j.id}`, title: j.id, class: 'id' }, '…' + j.id.slice(-12))), el('td', {}, j.kind), el('td', {}, j.queue),
    el('td', {}, el('span', { class: 'tag ' + j.state }, j.state)), el('td', {}, `${j.attempt}/${j.max_attempts}`),
    el('td', {}, new Date(j.created_at).toLocaleString()))));
  const next = $('#next-page');
  next.disabled = !page.next_cursor;
  next.onclick = () => { cursors.push(page.next_cursor); refresh(); };
  $('#first-page').disabled = cursors.length === 1;
}

async function refreshJob(id) {
  const j = await call('GET', `${api}/jobs/${id}`);
  $('#job-id').textContent = j.id;
  const fields = ['kind', 'queue', 'state', 'attempt', 'max_attempts', 'attempted_by', 'priority', 'timeout', 'unique_key', 'periodic', 'slot', 'run_at', 'created_at', 'started_at', 'finished_at', 'updated_at'];
  // attempted_by: the node of each attempt, oldest first; a rescued job names two.
  const shown = { ...j, attempted_by: (j.attempted_by || []).length ? j.attempted_by.join(' → ') : '—' };
  $('#job-fields').replaceChildren(...fields.filter((f) => shown[f] !== undefined && shown[f] !== '').flatMap((f) => [el('dt', {}, f), el('dd', { id: `job-${f}` }, shown[f])]));
  $('#job-payload').textContent = JSON.stringify(j.payload ?? null, null, 2);
  $('#job-result').textContent = j.result === undefined ? '—' : JSON.stringify(j.result, null, 2);
  $('#job-errors tbody').replaceChildren(...(j.errors || []).map((e) => el('tr', {}, el('td', {}, e.attempt), el('td', {}, new Date(e.at).toLocaleString()), el('td', {}, e.error))));
  const finished = ['succeeded', 'dead', 'canceled'].includes(j.state);
  $('#job-cancel').disabled = finished;
  $('#job-retry').disabled = !['dead', 'canceled'].includes(j.state);
  $('#job-delete').disabled = !finished;
  window.tandemFollow?.job(j, { api, token }); // live state and progress (follow.js)
}

async function jobAction(method, suffix) {
  const id = $('#job-id').textContent;
  try {
    await call(method, `${api}/jobs/${id}${suffix}`, {});
    if (method === 'DELETE') { location.hash = '#/jobs'; return; }
    banner('');
    refresh();
  } catch (e) {
    if (e.status === 401 || e.status === 0) return handleError(e);
    banner(`Error ${e.status}: ${e.message}`);
  }
}

function route() {
  const h = location.hash || '#/';
  if (h.startsWith('#/job/')) return { view: 'job', id: h.slice(6) };
  if (h.startsWith('#/jobs')) {
    const params = new URLSearchParams(h.split('?')[1] || '');
    for (const k of ['queue', 'state', 'kind']) if (params.has(k)) $(`#filters [name=${k}]`).value = params.get(k);
    return { view: 'jobs' };
  }
  return { view: 'overview' };
}

async function refresh() {
  const r = route();
  for (const v of ['overview', 'jobs', 'job']) $('#' + v).hidden = v !== r.view;
  if (r.view !== 'job') window.tandemFollow?.stop();
  $('#login').hidden = true;
  try {
    if (r.view === 'overview') await refreshOverview();
    if (r.view === 'jobs') await refreshJobs();
    if (r.view === 'job') await refreshJob(r.id);
    setStatus(true, 'live');
    $('#logout').hidden = !token; // no token to change when this tandem needs none
    if ($('#banner').classList.contains('error')) banner('');
  } catch (e) {
    handleError(e);
  }
}

function showLogin() {
  for (const v of ['overview', 'jobs', 'job']) $('#' + v).hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  setStatus(false, 'signed out');
  $('#token').value = '';
  $('#token').focus();
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('#token').value.trim();
  sessionStorage.setItem('tandem-token', token);
  banner('');
  refresh();
});
$('#logout').addEventListener('click', () => { sessionStorage.removeItem('tandem-token'); token = ''; showLogin(); });
$('#filters').addEventListener('submit', (ev) => { ev.preventDefault(); cursors = ['']; refresh(); });
$('#first-page').addEventListener('click', () => { cursors = ['']; refresh(); });
$('#job-cancel').addEventListener('click', () => jobAction('POST', '/cancel'));
$('#job-retry').addEventListener('click', () => jobAction('POST', '/retry'));
$('#job-delete').addEventListener('click', () => jobAction('DELETE', ''));
window.addEventListener('hashchange', () => { cursors = ['']; refresh(); });

// For the panels in their own files (bulk.js).
export { call, banner, handleError, filterQuery, refresh };

refresh();
timer = setInterval(() => { if ($('#login').hidden) refresh(); }, POLL_MS);
