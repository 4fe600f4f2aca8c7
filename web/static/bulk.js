// The bulk action form of the job list: it takes the list's current filter, counts the jobs the
// action would take (a dry run), asks to confirm in a dialog, then runs the action and says what
// it did. POST /admin/jobs/bulk works for a few seconds per call and hands back a cursor; the
// form calls again until it is done, showing the progress.
import { call, banner, handleError, filterQuery, refresh } from './app.js';

const $ = (s) => document.querySelector(s);
const past = { retry: 'retried', cancel: 'canceled', delete: 'deleted', purge: 'purged' };
const MAX_CALLS = 100000; // a bound on the loop: a million jobs take a few hundred calls
let pending = null; // the action the dialog asks about

function filterBody() {
  const q = filterQuery();
  const f = {};
  for (const k of ['queue', 'kind', 'state', 'created_after', 'created_before']) if (q.get(k)) f[k] = q.get(k);
  return f;
}

function describe(f) {
  const parts = Object.entries(f).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(', ') : 'any queue, kind, state or time';
}

function say(text, kind = '') {
  const r = $('#bulk-result');
  r.textContent = text;
  r.className = kind;
}

function fail(e) {
  if (e.status === 401 || e.status === 0) return handleError(e);
  say(`Error ${e.status}: ${e.message}`, 'field-error');
}

// runAll calls the bulk API until its cursor ends and adds up the counts.
async function runAll(action, filter, dryRun, progress) {
  const tot = { matched: 0, changed: 0, skipped: 0 };
  let cursor = '';
  for (let i = 0; i < MAX_CALLS; i++) {
    const r = await call('POST', '/admin/jobs/bulk', { action, filter, dry_run: dryRun, cursor });
    tot.matched += r.matched;
    tot.changed += r.changed;
    tot.skipped += r.skipped;
    if (!r.next_cursor) return tot;
    cursor = r.next_cursor;
    if (progress) progress(tot);
  }
  throw new Error('the bulk action did not end');
}

$('#bulk').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const action = $('#bulk-action').value;
  const filter = filterBody();
  const start = $('#bulk-start');
  start.disabled = true;
  say('Counting…');
  try {
    const n = await runAll(action, filter, true, (t) => say(`Counting… ${t.matched} so far`));
    if (n.matched === 0) {
      say(`No job matches (${describe(filter)}): none to ${action}.`);
      return;
    }
    say('');
    pending = { action, filter };
    const undo = action === 'delete' || action === 'purge' ? ' This cannot be undone.' : '';
    $('#bulk-question').textContent = `${n.matched} jobs will be ${past[action]} (${describe(filter)}).${undo}`;
    $('#bulk-confirm').textContent = `${action[0].toUpperCase() + action.slice(1)} ${n.matched} jobs`;
    const dialog = $('#bulk-dialog');
    dialog.returnValue = '';
    dialog.showModal();
  } catch (e) {
    fail(e);
  } finally {
    start.disabled = false;
  }
});

$('#bulk-dialog').addEventListener('close', async () => {
  const p = pending;
  pending = null;
  if (!p || $('#bulk-dialog').returnValue !== 'confirm') {
    say('Nothing was changed.');
    return;
  }
  const start = $('#bulk-start');
  start.disabled = true;
  say(`Working: ${p.action}…`);
  try {
    const t = await runAll(p.action, p.filter, false, (s) => say(`Working: ${s.changed} ${past[p.action]} so far…`));
    const skipped = t.skipped ? ` (${t.skipped} skipped: their state changed meanwhile)` : '';
    say(`Done: ${t.changed} of ${t.matched} matching jobs ${past[p.action]}${skipped}.`, 'done');
    banner('');
    refresh();
  } catch (e) {
    fail(e);
  } finally {
    start.disabled = false;
  }
});
