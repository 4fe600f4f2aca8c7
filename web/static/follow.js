// The job page follows its job live: GET /admin/api/v1/jobs/{id}/events, a Server-Sent Event
// stream of the job's state and its handler's progress. It is read with fetch rather than
// EventSource, which cannot send the admin token. app.js calls tandemFollow.job(j, {api, token})
// each time it renders a job; the stream ends by itself after the finished state, and is
// reopened (after a pause) if the server drops it while the job runs.
(() => {
  let current = null; // {id, ctrl}: the stream open now

  function render(j) {
    const box = document.querySelector('#job-progress');
    if (!box) return;
    const p = j.progress;
    box.hidden = !p;
    if (p) {
      box.querySelector('progress').value = p.percent;
      box.querySelector('.percent').textContent = p.percent + '%';
      box.querySelector('.message').textContent = p.message || '';
    }
    const state = document.querySelector('#job-state');
    if (state) state.textContent = j.state;
  }

  // parse splits the stream's text into events; it returns the rest, an event not yet complete.
  function parse(buf, onEvent) {
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
    return buf;
  }

  async function stream(id, opts, ctrl) {
    const headers = opts.token ? { Authorization: 'Bearer ' + opts.token } : {};
    const resp = await fetch(`${opts.api}/jobs/${id}/events`, { headers, signal: ctrl.signal });
    if (!resp.ok || !resp.body) return false;
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let finished = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return finished;
      buf = parse(buf + dec.decode(value, { stream: true }), (name, j) => {
        if (current && current.id === id) render(j);
        finished = ['succeeded', 'dead', 'canceled'].includes(j.state);
      });
    }
  }

  function stop() {
    if (current) current.ctrl.abort();
    current = null;
  }

  window.tandemFollow = {
    // job renders j's progress and follows j while it is unfinished and its page is open.
    job(j, opts) {
      render(j);
      const finished = ['succeeded', 'dead', 'canceled'].includes(j.state);
      if (current && current.id === j.id) return;
      stop();
      if (finished) return;
      const ctrl = new AbortController();
      current = { id: j.id, ctrl };
      const loop = async () => {
        while (current && current.ctrl === ctrl) {
          let done = false;
          try { done = await stream(j.id, opts, ctrl); } catch { /* dropped: reopen below */ }
          if (done || ctrl.signal.aborted) break;
          await new Promise((r) => setTimeout(r, 2000));
        }
        if (current && current.ctrl === ctrl) current = null;
      };
      loop();
    },
    stop,
  };
})();
