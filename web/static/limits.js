// The runtime panel's rows about following the container's limits (GET /admin/runtime): how often
// they are read again, and the last change tandem followed, old -> new. app.js adds them to its
// runtime panel.

// arrow shows a value before and after a change; one value when it did not change.
function arrow(a, b, fmt = String) {
  return a === b ? fmt(a) : `${fmt(a)} → ${fmt(b)}`;
}

// limitsRows returns [label, text] rows for r, formatting times with ago and byte counts with bytes.
export function limitsRows(r, { ago, bytes }) {
  const rows = [['limits watch', r.limits_watch_interval === 'off' ? 'off (the limits of the start stay)' : `every ${r.limits_watch_interval}`]];
  const c = r.last_limits_change;
  if (!c) {
    rows.push(['limits changes', 'none since start']);
    return rows;
  }
  const quota = (q) => (q === null ? 'no limit' : `${q} cores`);
  const parts = [
    `CPU quota ${arrow(c.old.cpu_quota, c.new.cpu_quota, quota)}`,
    `GOMAXPROCS ${arrow(c.old.gomaxprocs, c.new.gomaxprocs)}`,
    `threads ${arrow(c.old.threads, c.new.threads)}`,
    `concurrency ${arrow(c.old.concurrency, c.new.concurrency)}`,
  ];
  if (c.old.memory_limit !== c.new.memory_limit) parts.push(`memory ${arrow(c.old.memory_limit, c.new.memory_limit, bytes)}`);
  rows.push(['limits changes', `${r.limits_changes}, the last ${ago(c.at)}`], ['last change', parts.join(', ')]);
  return rows;
}
