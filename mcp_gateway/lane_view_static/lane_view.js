// skill_lanes lane view: live lane state from /lanes/events (server-sent events).
// Plain JS, no build step, no external assets. The server's lane state is the truth; the
// timeline also remembers goals it has seen since the page opened (the lane state keeps
// only the last endings and refusals).
'use strict';

const WINDOWS_S = [30, 60, 300]; // timeline widths offered
let WINDOW_S = 60;
const LOST_AFTER_MS = 3500;    // the lane state is re-published every second
const view = {canStop: false, canTake: false, lanes: [], stopLanes: null};
let latest = null;             // the last lane state
let offset = 0;                // server clock - browser clock, seconds
let lastMessage = 0;
const history = {};            // lane -> Map(goal_id -> {skill, start, end, outcome, reason})
const cards = {};              // lane -> {root, parts...}

// Everything from the lane state is text: escaped for element content and attributes.
const ESCAPES = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
function esc(text) {
  return text == null ? '' : String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}
function short(id) { return id ? String(id).slice(0, 8) : '?'; }
// Reasons name goals by their full UUID: shortened on screen, whole in the tooltip.
const UUID_RE = /\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g;
function shortIds(text) { return String(text).replace(UUID_RE, '$1…'); }
function serverNow() { return Date.now() / 1000 + offset; }
function ago(t) {
  const s = Math.max(0, serverNow() - t);
  return s < 60 ? `${s.toFixed(s < 10 ? 1 : 0)} s ago` : `${Math.floor(s / 60)} min ago`;
}
function agentText(agent) {
  if (!agent) return null;
  if (typeof agent === 'string') return agent;
  const name = agent.name || agent.client || agent.agent || 'agent';
  const version = agent.version ? ` ${agent.version}` : '';
  const session = agent.session ? ` (session ${short(agent.session)}…)` : '';
  return `${name}${version}${session}`;
}

// ------------------------------------------------------------------ history
function remember(laneName, lane) {
  const goals = history[laneName] || (history[laneName] = new Map());
  const now = serverNow();
  const holder = lane.holder;
  for (const [id, goal] of goals) {       // a holder gone without an ending yet
    if (goal.outcome === 'running' && (!holder || holder.goal_id !== id)) {
      goal.end = goal.end || now;
      goal.outcome = 'ended';
    }
  }
  if (holder) {
    const goal = goals.get(holder.goal_id) || {skill: holder.skill};
    goal.start = holder.since;
    goal.end = null;
    goal.outcome = holder.state === 'canceling' || holder.cancel_reason ? 'canceling' : 'running';
    goal.agent = agentText(holder.agent) || holder.asked_by || null;
    goals.set(holder.goal_id, goal);
  }
  for (const ending of lane.last_endings || []) {
    const goal = goals.get(ending.goal_id) || {skill: ending.skill, start: null};
    goal.end = ending.at;
    goal.outcome = ending.outcome;
    goal.reason = ending.reason;
    goals.set(ending.goal_id, goal);
  }
  for (const [id, goal] of goals) {        // forget what left the window
    if (goal.end !== null && goal.end !== undefined && goal.end < now - WINDOW_S * 2) goals.delete(id);
  }
}

// ------------------------------------------------------------------ rendering
function card(laneName) {
  if (cards[laneName]) return cards[laneName];
  const root = document.createElement('article');
  root.className = 'lane';
  root.dataset.lane = laneName;
  root.innerHTML = `
    <div class="lane-head">
      <span class="lane-name">${esc(laneName)}</span>
      <span class="badge policy"></span>
      <span class="badge state"></span>
      <span class="spacer"></span>
      <span class="health"></span>
    </div>
    <div class="timeline"></div>
    <div class="lane-body">
      <div class="col holder"></div>
      <div class="col queue"></div>
      <div class="col recent"></div>
    </div>
    <div class="counters"></div>`;
  const button = document.createElement('button');
  button.className = 'stop';
  button.dataset.stopLane = laneName;
  button.textContent = '■ Stop lane';
  button.title = `Cancel the running goal and everything queued in lane ${laneName}`;
  button.addEventListener('click', () => stopLane(laneName, button));
  root.querySelector('.lane-head').appendChild(button);
  const takeButtons = [['take', '✋ Take', 'Take the lane from the agents (operator)'],
    ['give_back', '↩ Give back', 'Give the lane back to the agents']].map(([verb, text, title]) => {
    const b = document.createElement('button');
    b.className = `operator ${verb}`;
    b.dataset.operatorLane = laneName;
    b.dataset.verb = verb;
    b.textContent = text;
    b.title = title;
    b.hidden = true;
    b.addEventListener('click', () => operatorAction(laneName, verb, b));
    root.querySelector('.lane-head').appendChild(b);
    return b;
  });
  // Approve / Deny buttons of goals awaiting approval (re-rendered with the queue).
  root.querySelector('.queue').addEventListener('click', (event) => {
    const b = event.target.closest('button[data-decide]');
    if (b) {
      operatorAction(laneName, b.dataset.decide, b,
        `${encodeURIComponent(laneName)}/goals/${encodeURIComponent(b.dataset.goalId)}/${b.dataset.decide}`);
    }
  });
  document.getElementById('lanes').appendChild(root);
  return (cards[laneName] = {
    root, button, takeButtons,
    policy: root.querySelector('.policy'), state: root.querySelector('.state'),
    health: root.querySelector('.health'), timeline: root.querySelector('.timeline'),
    holder: root.querySelector('.holder'), queue: root.querySelector('.queue'),
    recent: root.querySelector('.recent'), counters: root.querySelector('.counters'),
  });
}

function driverHealth(laneName, lane) {
  const items = [];
  const drivers = lane.drivers;
  if (drivers && typeof drivers === 'object') {
    const entries = Array.isArray(drivers)
      ? drivers.map((d) => [d.driver || d.name || '?', d]) : Object.entries(drivers);
    for (const [name, d] of entries) {
      const up = d.reachable === undefined ? null : !!d.reachable;
      const active = d.active_goals || d.goals_active || d.active;
      const count = Array.isArray(active) ? active.length : active;
      items.push({name, up, note: count ? `${count} active` : ''});
    }
  } else if (latest && latest.skills) {
    for (const [skill, s] of Object.entries(latest.skills)) {
      if (s.lane !== laneName) continue;
      items.push({name: s.driver || skill, up: s.driver_available, note: ''});
    }
  }
  return items.map((d) => {
    const cls = d.up === true ? 'up' : d.up === false ? 'down' : 'unknown';
    const word = d.up === true ? 'up' : d.up === false ? 'unreachable' : 'unknown';
    return `<span title="driver ${esc(d.name)}: ${word}"><span class="dot ${cls}"></span>` +
      `<span class="mono">${esc(d.name)}</span>${d.note ? ` · ${esc(d.note)}` : ''}</span>`;
  }).join('');
}

function renderTimeline(c, laneName, lane) {
  const now = serverNow();
  const start = now - WINDOW_S;
  const x = (t) => Math.max(0, Math.min(100, ((t - start) / WINDOW_S) * 100));
  let html = '';
  const step = WINDOW_S / 6;
  for (let s = 0; s < WINDOW_S; s += step) {
    const left = 100 - (s / WINDOW_S) * 100;
    const label = s === 0 ? 'now' : s >= 60 ? `-${s / 60} min` : `-${s} s`;
    html += `<div class="grid" style="left:${left}%"><span>${label}</span></div>`;
  }
  html += '<div class="now"></div>';
  for (const [id, g] of history[laneName] || []) {
    const end = g.end == null ? now : g.end;
    if (end < start) continue;
    // Without a known start (ended before the page opened, or never left the queue): a
    // thin mark at its end rather than a bar of invented length.
    const left = x(g.start == null ? end : g.start);
    const width = g.start == null ? 0 : Math.max(0.4, x(end) - left);
    const who = g.agent ? ` · ${g.agent}` : '';
    const tip = `${g.skill} ${id}\n${g.outcome}${g.reason ? `: ${g.reason}` : ''}${who}`;
    const mark = g.start == null ? ' mark' : '';
    html += `<div class="bar ${esc(g.outcome)}${mark}" data-goal-id="${esc(id)}" data-outcome="${esc(g.outcome)}"` +
      ` style="left:${left}%;width:${width}%" title="${esc(tip)}">${mark ? '' : esc(g.skill)}</div>`;
  }
  for (const q of lane.queue || []) {
    const left = x(q.since);
    html += `<div class="bar queued" data-goal-id="${esc(q.goal_id)}" data-outcome="queued"` +
      ` style="left:${left}%;width:${Math.max(0.4, 100 - left)}%" title="queued: ${esc(q.skill)} ${esc(q.goal_id)}">${esc(q.skill)}</div>`;
  }
  for (const r of lane.last_refusals || []) {
    if (r.at < start) continue;
    html += `<span class="tick" style="left:${x(r.at)}%" title="refused ${esc(r.skill)}: ${esc(r.reason)}">▼</span>`;
  }
  c.timeline.innerHTML = html;
}

function renderHolder(c, lane) {
  const h = lane.holder;
  let html = '<h3>Holder</h3>';
  if (!h) {
    html += '<div class="empty">free</div>';
  } else {
    const rows = [['skill', `<b>${esc(h.skill)}</b>`],
      ['goal', `<span class="mono">${esc(short(h.goal_id))}…</span>`],
      ['state', esc(h.state)], ['held', `${Number(h.held_s || 0).toFixed(1)} s`]];
    const agent = agentText(h.agent) || h.asked_by;
    if (agent) rows.push(['agent', esc(agent)]);
    if (h.origin) rows.push(['origin', esc(h.origin)]);
    if (h.driver) rows.push(['driver', `<span class="mono">${esc(h.driver)}</span>`]);
    if (h.driver_goal_id) rows.push(['driver goal', `<span class="mono">${esc(short(h.driver_goal_id))}…</span>`]);
    if (h.priority) rows.push(['priority', esc(h.priority)]);
    if (h.cancel_reason) rows.push(['cancel', `<span class="warn">${esc(shortIds(h.cancel_reason))}</span>`]);
    html += `<div class="kv" data-holder-goal-id="${esc(h.goal_id)}">` +
      rows.map(([k, v]) => `<span class="k">${k}</span><span>${v}</span>`).join('') + '</div>';
  }
  if (lane.held_because) html += `<div class="warn">⚠ held: ${esc(shortIds(lane.held_because))}</div>`;
  if (lane.blocked_because) html += `<div class="warn">⛔ ${esc(lane.blocked_because)}</div>`;
  c.holder.innerHTML = html;
}

function renderQueue(c, lane) {
  const queue = lane.queue || [];
  let html = `<h3>Queue (${queue.length}${lane.max_queue != null ? ` / ${lane.max_queue}` : ''})</h3>`;
  html += queue.length ? '<ul class="events">' + queue.map((q) =>
    `<li data-goal-id="${esc(q.goal_id)}"><b>${esc(q.skill)}</b> <span class="mono muted">${esc(short(q.goal_id))}</span>` +
    `${agentText(q.agent) ? ` · ${esc(agentText(q.agent))}` : ''}<span class="when">${ago(q.since)}</span></li>`).join('') + '</ul>'
    : '<div class="empty">empty</div>';
  // Goals of approval skills: they hold nothing and wait for an operator's decision.
  const waiting = lane.awaiting_approval || [];
  if (waiting.length) {
    html += `<h3>Awaiting approval (${waiting.length})</h3><ul class="events awaiting">` + waiting.map((w) =>
      `<li data-awaiting-goal-id="${esc(w.goal_id)}"><b>${esc(w.skill)}</b> <span class="mono muted">${esc(short(w.goal_id))}</span>` +
      `${agentText(w.agent) ? ` · ${esc(agentText(w.agent))}` : ''}` +
      `<span class="when">${Math.max(0, w.deadline - serverNow()).toFixed(0)} s left</span>` +
      (view.canTake ? ` <button class="operator approve" data-decide="approve" data-goal-id="${esc(w.goal_id)}"` +
        ` title="Approve: it may run now">✓ Approve</button><button class="operator deny" data-decide="deny"` +
        ` data-goal-id="${esc(w.goal_id)}" title="Deny: it ends aborted, never sent">✗ Deny</button>` : '') +
      '</li>').join('') + '</ul>';
  }
  c.queue.innerHTML = html;
}

function renderRecent(c, lane) {
  const items = [];
  for (const e of lane.last_endings || []) items.push({...e, kind: 'ending'});
  for (const r of lane.last_refusals || []) items.push({...r, kind: 'refusal', outcome: 'refused'});
  items.sort((a, b) => b.at - a.at);
  let html = '<h3>Endings and refusals</h3>';
  html += items.length ? '<ul class="events">' + items.slice(0, 30).map((e) =>
    `<li class="${e.kind}" data-goal-id="${esc(e.goal_id)}" data-outcome="${esc(e.outcome)}">` +
    `<span class="outcome ${esc(e.outcome)}">${esc(e.outcome)}</span> <b>${esc(e.skill)}</b> ` +
    `<span class="mono muted">${esc(short(e.goal_id))}</span>` +
    `${e.reason ? ` <span class="reason" title="${esc(e.reason)}">${esc(shortIds(e.reason))}</span>` : ''}` +
    `<span class="when">${ago(e.at)}</span></li>`).join('') + '</ul>'
    : '<div class="empty">nothing yet</div>';
  c.recent.innerHTML = html;
}

// ------------------------------------------------------------------ emergency stop
// Every stop source with its state: who holds the stop and why, its last word and when.
function renderStopSources() {
  const el = document.getElementById('estop');
  const stop = latest.emergency_stop || {};
  const sources = stop.sources || (stop.topic ? [{topic: stop.topic, lanes: stop.lanes,
    active: stop.active}] : []);
  if (!sources.length) { el.innerHTML = ''; return; }
  const rows = sources.map((s) => {
    const beat = s.heartbeat_s != null ? `heartbeat ${esc(s.heartbeat_s)} s` : 'no heartbeat';
    const heard = s.last_value == null ? 'never heard'
      : `last <b>${s.last_value ? 'true' : 'false'}</b> ${s.age_s != null
        ? `${Number(s.age_s).toFixed(s.age_s < 10 ? 1 : 0)} s ago` : ''}` +
        (s.publisher ? ` from <span class="mono">${esc(s.publisher)}</span>` : '');
    const on = (s.publishers || []).length
      ? `on the graph: ${s.publishers.map((p) => `<span class="mono">${esc(p)}</span>`).join(', ')}`
      : 'no publisher on the graph';
    return `<li class="stop-source ${s.active ? 'stop-on' : 'stop-off'}">` +
      `<span class="badge">${s.active ? 'STOP' : 'clear'}</span> ` +
      `<span class="mono">${esc(s.topic)}</span> ` +
      `<span class="muted">lanes ${esc((s.lanes || []).join(', '))} · ${beat}` +
      `${s.required ? ' · required' : ''}</span>` +
      (s.why ? `<div class="stop-why">${esc(s.why)}</div>` : '') +
      `<div class="muted">${heard} · ${on}</div></li>`;
  }).join('');
  el.className = `estop ${stop.active ? 'stop-on' : 'stop-off'}`;
  el.innerHTML = `<div class="estop-head">Emergency stop: <b>${stop.active ? 'ON' : 'off'}</b>` +
    `<span class="muted"> (on while any source holds it; clearing it restarts nothing)</span>` +
    `</div><ul class="stop-sources">${rows}</ul>`;
}

function render() {
  if (!latest || !latest.lanes) return;
  renderStopSources();
  document.getElementById('waiting').hidden = true;
  document.getElementById('node').textContent = `${latest.node || ''} · seq ${latest.seq ?? ''}`;
  for (const [name, lane] of Object.entries(latest.lanes)) {
    const c = card(name);
    const held = !!lane.held_because;
    const state = held ? 'held' : lane.holder ? 'busy' : 'idle';
    c.root.className = `lane ${state}`;
    c.policy.textContent = lane.policy || '';
    c.state.textContent = state;
    c.state.className = `badge state state-${state}`;
    c.health.innerHTML = driverHealth(name, lane);
    // stop_lanes (named clients): only the lanes this viewer has a skill in.
    c.button.hidden = !view.canStop || (view.stopLanes !== null && !view.stopLanes.includes(name));
    for (const b of c.takeButtons) b.hidden = !view.canTake;
    renderTimeline(c, name, lane);
    renderHolder(c, lane);
    renderQueue(c, lane);
    renderRecent(c, lane);
    const k = lane.counters || {};
    c.counters.textContent = Object.keys(k).length
      ? `submitted ${k.submitted ?? 0} · started ${k.started ?? 0} · succeeded ${k.succeeded ?? 0}` +
        ` · canceled ${k.canceled ?? 0} · aborted ${k.aborted ?? 0} · refused ${k.rejected ?? 0}` +
        ` · preempted ${k.preempted ?? 0}` : '';
  }
  const unlaned = Object.entries(latest.skills || {}).filter(([, s]) => !s.lane);
  document.getElementById('unlaned').innerHTML = unlaned.length
    ? `<p class="unlaned">Skills without a lane (never arbitrated): ${unlaned.map(([n, s]) =>
      `<span class="dot ${s.driver_available ? 'up' : 'down'}"></span>${esc(n)}`).join(' · ')}</p>` : '';
}

// ------------------------------------------------------------------ actions
function toast(text, bad) {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.className = bad ? 'toast bad' : 'toast';
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function stopLane(laneName, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/lanes/${encodeURIComponent(laneName)}/stop`, {
      method: 'POST', credentials: 'same-origin', body: '{}',
      headers: {'Content-Type': 'application/json', 'X-Skill-Lanes': '1'},
    });
    let body = {};
    try { body = await response.json(); } catch (e) { body = {message: response.statusText}; }
    toast(`${laneName}: ${body.message || response.status}`, !response.ok);
  } catch (e) {
    toast(`${laneName}: the gateway did not answer (${e})`, true);
  } finally {
    button.disabled = false;
  }
}

async function operatorAction(laneName, verb, button, path) {
  let token = sessionStorage.getItem('skillLanesOperator');
  if (!token) {
    token = window.prompt('Operator token (gateway.operator_token_env)') || '';
    if (!token) return;
    sessionStorage.setItem('skillLanesOperator', token);
  }
  button.disabled = true;
  try {
    const response = await fetch(`/lanes/${path || `${encodeURIComponent(laneName)}/${verb}`}`, {
      method: 'POST', credentials: 'same-origin', body: '{}',
      headers: {'Content-Type': 'application/json', 'X-Skill-Lanes': '1',
                'X-Skill-Lanes-Operator': token},
    });
    let body = {};
    try { body = await response.json(); } catch (e) { body = {message: response.statusText}; }
    if (response.status === 403 && body.error === 'operator_token') {
      sessionStorage.removeItem('skillLanesOperator');
    }
    toast(`${laneName}: ${body.message || response.status}`, !response.ok);
  } catch (e) {
    toast(`${laneName}: the gateway did not answer (${e})`, true);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ live stream
function setLive(mode, text) {
  const el = document.getElementById('live');
  el.dataset.live = mode;
  el.className = `pill ${mode === 'live' ? 'pill-live' : mode === 'lost' ? 'pill-lost' : 'pill-wait'}`;
  el.textContent = text;
}

let source = null;
function connect() {
  source = new EventSource('/lanes/events');
  source.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data);
    view.canStop = !!hello.can_stop;
    view.canTake = !!hello.can_take;
    view.stopLanes = Array.isArray(hello.stop_lanes) ? hello.stop_lanes : null;
    view.lanes = hello.lanes || [];
    lastMessage = Date.now();
  });
  source.addEventListener('state', (event) => {
    lastMessage = Date.now();
    const state = JSON.parse(event.data);
    if (!state) { setLive('wait', 'no lane manager yet'); return; }
    if (state.stamp) offset = state.stamp - Date.now() / 1000;
    latest = state;
    for (const [name, lane] of Object.entries(state.lanes || {})) remember(name, lane);
    setLive('live', 'live');
    render();
  });
}

let closedSince = 0;
setInterval(() => {
  if (source && source.readyState === EventSource.CLOSED) {
    // The browser gave up (e.g. 401: the gateway restarted with another token): try again
    // now and then, without hammering the gateway.
    setLive('lost', 'disconnected: reload the page (token?)');
    closedSince = closedSince || Date.now();
    if (Date.now() - closedSince > 5000) { closedSince = 0; connect(); }
  } else if (lastMessage && Date.now() - lastMessage > LOST_AFTER_MS) {
    setLive('lost', 'no lane state');
  }
  render();  // keeps the timeline moving between states
}, 500);

function windowChooser() {
  const el = document.getElementById('window');
  for (const seconds of WINDOWS_S) {
    const button = document.createElement('button');
    button.className = 'window';
    button.dataset.window = seconds;
    button.textContent = seconds >= 60 ? `${seconds / 60} min` : `${seconds} s`;
    button.addEventListener('click', () => {
      WINDOW_S = seconds;
      el.querySelectorAll('button').forEach((b) => b.classList.toggle('on', b === button));
      render();
    });
    button.classList.toggle('on', seconds === WINDOW_S);
    el.appendChild(button);
  }
}

windowChooser();
connect();
