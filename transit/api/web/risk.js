// transit control room, the risk score: the "to inspect" list ranked by risk, a
// transit's reasons (each feature's value, weight and contribution), and the exit
// officer's closure, which shows the level and reasons before the officer decides and
// records whether an inspection found anything. app.js calls transitRisk.detail(t)
// when a transit is opened; this file reads the page's state from window.transitMap.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const S = () => window.transitMap;
  const FINISHED = ['closed', 'cancelled'];
  const LABELS = {
    stops_near_limit: 'stops near the limit',
    stop_minutes: 'minutes stopped outside zones',
    night_stop_minutes: 'of which at night',
    gaps_near_limit: 'signal gaps near the limit',
    gap_seconds: 'seconds without signal',
    pace_ratio: 'pace against the corridor (log2)',
    rendezvous: 'rendezvous',
    seal_events: 'seal events',
    alerts: 'alerts raised',
    vehicle_incidents: "vehicle's earlier incidents",
    tracker_incidents: "tracker's earlier incidents",
    trader_incidents: "trader's earlier incidents",
    withheld: 'withheld from this view',
  };

  async function json(path, opts = {}) {
    const r = await fetch(path, {
      ...opts,
      headers: { 'X-API-Key': S().key, 'Content-Type': 'application/json' },
    });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error(`${r.status} ${JSON.stringify(body && body.detail)}`);
    return body;
  }

  const num = (v, d) => (v === null || v === undefined ? '' : Number(v).toFixed(d));
  const pct = (p) => `${Math.round(p * 100)} %`;
  const badge = (risk) => `<span class="risk ${esc(risk.level)}">${esc(risk.level)} ${pct(risk.probability)}</span>`;

  function reasons(risk, n) {
    const rows = risk.reasons.slice(0, n).map((r) => `<tr data-feature="${esc(r.feature)}">
      <td>${esc(LABELS[r.feature] || r.feature)}</td><td>${num(r.value, 2)}</td>
      <td>${num(r.weight, 2)}</td><td class="${r.contribution > 0 ? 'up' : 'down'}">${num(r.contribution, 2)}</td></tr>`);
    return `<table class="reasons"><tr><th>reason</th><th>value</th><th>weight</th><th>adds</th></tr>${rows.join('')}</table>`;
  }

  // ---- the list to inspect: open transits, highest risk first
  async function refresh() {
    if (!S() || !S().key || !S().me) return;
    try {
      const body = await json('/api/v1/transits?sort=-risk&finished=false&limit=20');
      const items = body.items.filter((t) => t.risk);
      $('risk-list').innerHTML = items.map((t) => `<li data-mrn="${esc(t.mrn)}">${badge(t.risk)}
        <strong>${esc(t.mrn)}</strong> <span class="meta">${esc(t.vehicle || '')} · ${esc(t.status)}</span>
        <div class="meta">${esc(LABELS[t.risk.reasons[0].feature] || t.risk.reasons[0].feature)}: ${num(t.risk.reasons[0].value, 1)}</div></li>`).join('')
        || '<li class="meta">no transit scored yet</li>';
    } catch (err) { $('risk-list').innerHTML = `<li class="error">${esc(err.message)}</li>`; }
  }
  $('risk-list').addEventListener('click', (e) => {
    const li = e.target.closest('li[data-mrn]');
    if (li) S().select(li.dataset.mrn);
  });
  setInterval(refresh, 10000);
  const first = setInterval(() => { if (S() && S().me) { clearInterval(first); refresh(); } }, 200);

  // ---- a transit's risk, and the closure at the office of destination or exit
  function detail(t) {
    const risk = t.risk;
    $('d-risk').innerHTML = risk
      ? `<h3>Risk ${badge(risk)}</h3>${reasons(risk, 8)}`
      : '<h3>Risk</h3><p class="meta">not scored yet</p>';
    const me = S().me;
    const closing = me.role === 'officer' && me.office === t.office_destination && !FINISHED.includes(t.status);
    $('d-closing').hidden = !closing;
    if (!closing) return;
    $('c-summary').innerHTML = risk
      ? `Risk of this transit: ${badge(risk)}, most of all for: ${risk.reasons.slice(0, 3).map((r) => esc(LABELS[r.feature] || r.feature)).join(', ')}.`
      : 'This transit has no risk score yet.';
    $('c-form').dataset.mrn = t.mrn;
    $('c-form').reset();
    $('c-result').textContent = '';
  }

  $('c-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target;
    const inspection = { inspected: f.inspected.checked, found: f.found.checked, note: f.note.value.trim() || null };
    const body = { inspection };
    if (f.finding.value.trim()) body.finding = f.finding.value.trim();
    try {
      const t = await json(`/api/v1/transits/${f.dataset.mrn}/close`, { method: 'POST', body: JSON.stringify(body) });
      $('c-result').textContent = `Closed: ${t.status}`;
      $('c-result').className = '';
      refresh();
    } catch (err) {
      $('c-result').textContent = `Not closed: ${err.message}`;
      $('c-result').className = 'error';
    }
  });

  window.transitRisk = { detail, refresh };
})();
