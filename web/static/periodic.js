// The Periodic panel: each schedule of jobs.periodic (GET /admin/api/v1/periodic) with its next
// run, and the last slot fired (by any replica) with that job's state, linking to the job.
const el = (tag, attrs = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) n.setAttribute(k, v);
  for (const k of kids) n.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return n;
};

const when = (ts) => (ts ? new Date(ts).toLocaleString() : '—');

// renderPeriodic fills #periodic; the card stays hidden while no schedule is configured.
export function renderPeriodic(list) {
  document.querySelector('#periodic-card').hidden = list.length === 0;
  document.querySelector('#periodic tbody').replaceChildren(...list.map((p) => el('tr', { 'data-periodic': p.name },
    el('td', { class: 'periodic-name' }, p.name),
    el('td', {}, p.kind), el('td', {}, p.queue),
    el('td', { class: 'periodic-schedule' }, el('code', {}, p.schedule), p.timezone !== 'UTC' ? ` (${p.timezone})` : ''),
    el('td', { class: 'periodic-catch-up' }, p.catch_up),
    el('td', { class: 'periodic-next' }, when(p.next_run)),
    el('td', { class: 'periodic-last' }, when(p.last_slot)),
    el('td', { class: 'periodic-state' }, p.last_job_id
      ? el('a', { href: `#/job/${encodeURIComponent(p.last_job_id)}`, class: `tag ${p.last_state || 'gone'}` }, p.last_state || 'deleted')
      : '—'))));
}
