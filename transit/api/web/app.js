// transit control room: the live map, the alert panel, a transit's detail and replay.
// Plain JavaScript and Leaflet (served by the API, no internet needed). Trucks are drawn
// on one canvas (not one DOM element each), so ten thousand stay smooth.
(() => {
  'use strict';

  const COLORS = { on_route: '#2e7d32', deviated: '#e65100', stopped: '#1565c0', alert: '#b71c1c', silent: '#757575' };
  const ACK_ROLES = ['admin', 'control_room', 'officer'];
  const RESOLVE_ROLES = ['admin', 'control_room'];
  const S = {
    key: sessionStorage.getItem('transit.key') || '',
    me: null,
    trucks: new Map(), // mrn -> {mrn, device, lon, lat, speed, state, corridor, countries, mx, my}
    alerts: new Map(), // id -> alert
    drafts: new Map(), // alert id -> the resolve note being written; kept across re-renders
    lastAlertId: 0,
    filters: { country: '', corridor: '', state: '' },
    ws: null,
    retry: 0,
    reconnects: 0,
    selected: null,
    frames: 0,
    drawMs: [],
    messages: 0,
    bytes: 0,
  };
  window.transitMap = S; // the browser tests and the benchmark read this

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  async function api(path, opts = {}) {
    const r = await fetch(path, {
      ...opts,
      headers: { 'X-API-Key': S.key, 'Content-Type': 'application/json', ...(opts.headers || {}) },
    });
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = JSON.stringify((await r.json()).detail); } catch (_) { /* not JSON */ }
      throw new Error(`${r.status} ${msg}`);
    }
    return r;
  }
  const json = async (path, opts) => (await api(path, opts)).json();

  // ---- the map and its basemap (country borders from the project's own dataset)
  const map = L.map('map', { preferCanvas: true, worldCopyJump: false }).setView([9.5, 102], 5);
  const canvas = L.canvas({ padding: 0.3 });
  S.map = map;
  fetch('/web-data/borders.geojson').then((r) => r.json()).then((g) => {
    L.geoJSON(g, {
      renderer: canvas,
      interactive: false,
      style: { color: '#6b7380', weight: 1, fillColor: '#f3f0e6', fillOpacity: 1 },
    }).addTo(map).bringToBack();
    const codes = [...new Set(g.features.map((f) => f.properties.country))].sort();
    for (const c of codes) $('f-country').add(new Option(c, c));
  });

  // ---- trucks: one canvas, positions kept in Web Mercator so a redraw is arithmetic
  function mercator(lon, lat) {
    const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
    return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
  }

  function shown(t) {
    const f = S.filters;
    return (!f.state || t.state === f.state) && (!f.corridor || t.corridor === f.corridor)
      && (!f.country || (t.countries || []).includes(f.country));
  }

  const TruckLayer = L.Layer.extend({
    onAdd(m) {
      this._c = L.DomUtil.create('canvas', 'leaflet-zoom-hide');
      this._c.style.pointerEvents = 'none';
      // Its own pane above the vector layers (borders, corridors, offices).
      const pane = m.getPane('trucks') || m.createPane('trucks');
      pane.style.zIndex = 450;
      pane.style.pointerEvents = 'none';
      pane.appendChild(this._c);
      m.on('move zoomend resize viewreset', this.schedule, this);
      this.schedule();
    },
    onRemove(m) { this._c.remove(); m.off('move zoomend resize viewreset', this.schedule, this); },
    schedule() {
      if (!this._raf) this._raf = requestAnimationFrame(() => { this._raf = null; this.draw(); });
    },
    draw() {
      const t0 = performance.now();
      const m = this._map;
      const size = m.getSize();
      const c = this._c;
      L.DomUtil.setPosition(c, m.containerPointToLayerPoint([0, 0]));
      const dpr = window.devicePixelRatio || 1;
      if (c.width !== size.x * dpr || c.height !== size.y * dpr) {
        c.width = size.x * dpr; c.height = size.y * dpr;
        c.style.width = `${size.x}px`; c.style.height = `${size.y}px`;
      }
      const ctx = c.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, size.x, size.y);
      const world = 256 * 2 ** m.getZoom();
      const origin = m.getPixelBounds().min;
      const r = m.getZoom() >= 9 ? 6 : m.getZoom() >= 6 ? 4 : 3;
      const byState = {};
      for (const t of S.trucks.values()) {
        if (!shown(t)) continue;
        const x = t.mx * world - origin.x;
        const y = t.my * world - origin.y;
        if (x < -r || y < -r || x > size.x + r || y > size.y + r) continue;
        (byState[t.state] || (byState[t.state] = [])).push(x, y);
      }
      for (const [state, xy] of Object.entries(byState)) {
        ctx.beginPath();
        for (let i = 0; i < xy.length; i += 2) { ctx.moveTo(xy[i] + r, xy[i + 1]); ctx.arc(xy[i], xy[i + 1], r, 0, 6.2832); }
        ctx.fillStyle = COLORS[state] || '#000';
        ctx.fill();
        ctx.lineWidth = 1; ctx.strokeStyle = '#fff'; ctx.stroke();
      }
      const sel = S.selected && S.trucks.get(S.selected);
      if (sel) {
        ctx.beginPath();
        ctx.arc(sel.mx * world - origin.x, sel.my * world - origin.y, r + 5, 0, 6.2832);
        ctx.lineWidth = 3; ctx.strokeStyle = '#000'; ctx.stroke();
      }
      S.frames += 1;
      S.drawMs.push(performance.now() - t0);
      if (S.drawMs.length > 600) S.drawMs.splice(0, 300);
    },
  });
  const trucks = new TruckLayer().addTo(map);

  map.on('click', (e) => {
    const world = 256 * 2 ** map.getZoom();
    const origin = map.getPixelBounds().min;
    let best = null; let bestD = 100;
    for (const t of S.trucks.values()) {
      if (!shown(t)) continue;
      const dx = t.mx * world - origin.x - e.containerPoint.x;
      const dy = t.my * world - origin.y - e.containerPoint.y;
      const d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = t; }
    }
    if (best) select(best.mrn);
  });

  function upsertTruck(item) {
    const [mrn, device, lon, lat, speed, state, corridor, countries] = item;
    const [mx, my] = mercator(lon, lat);
    const t = S.trucks.get(mrn) || {};
    Object.assign(t, { mrn, device, lon, lat, speed, state, corridor, countries, mx, my });
    S.trucks.set(mrn, t);
  }

  function counts() {
    const n = { on_route: 0, deviated: 0, stopped: 0, alert: 0, silent: 0 };
    for (const t of S.trucks.values()) n[t.state] = (n[t.state] || 0) + 1;
    $('counts').textContent = `${S.trucks.size} trucks · ${n.alert + n.deviated} in alert · ${n.silent} silent`;
  }

  // ---- alerts
  function addAlert(a) {
    S.alerts.set(a.id, a);
    if (a.id > S.lastAlertId) S.lastAlertId = a.id;
    renderAlerts();
  }

  function alertShown(a) {
    const t = S.trucks.get(a.mrn);
    const f = S.filters;
    if (!t) return !f.country && !f.corridor && !f.state;
    return shown(t);
  }

  function renderAlerts() {
    const list = [...S.alerts.values()].filter(alertShown).sort((a, b) => b.id - a.id).slice(0, 300);
    const role = S.me && S.me.role;
    $('alert-count').textContent = `(${[...S.alerts.values()].filter((a) => a.status !== 'resolved').length} open)`;
    // A new alert re-renders the list; the note an officer is typing must survive it.
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#alerts li');
    const focusId = focused ? Number(focused.dataset.id) : null;
    const caret = focusId !== null && document.activeElement.tagName === 'TEXTAREA' ? document.activeElement.selectionStart : null;
    $('alerts').innerHTML = list.map((a) => {
      const buttons = [];
      if (a.status === 'open' && ACK_ROLES.includes(role)) buttons.push(`<button data-act="ack" data-id="${a.id}">Acknowledge</button>`);
      if (a.status !== 'resolved' && RESOLVE_ROLES.includes(role)) buttons.push(`<button data-act="resolve" data-id="${a.id}">Resolve…</button>`);
      if (a.status !== 'resolved' && S.drafts.has(a.id)) {
        buttons.push(`<textarea placeholder="What was found and done (required)">${esc(S.drafts.get(a.id))}</textarea><button data-act="confirm">Confirm resolve</button>`);
      }
      const cleared = a.cleared_at ? '<span class="badge">cleared</span>' : '';
      const evidence = a.details && a.details.evidence_count ? `<span class="badge">+${a.details.evidence_count} evidence</span>` : '';
      return `<li class="${esc(a.severity)} ${esc(a.status)}" data-id="${a.id}" data-mrn="${esc(a.mrn)}">
        <strong>${esc(a.type.replace(/_/g, ' '))}</strong> <span class="badge">${esc(a.severity)}</span>
        <span class="badge">${esc(a.status)}</span>${cleared}${evidence}
        <div class="meta">${esc(a.mrn)} · ${esc(a.device_id)} · ${esc((a.event_time || '').replace('T', ' ').slice(0, 19))}</div>
        ${a.note ? `<div class="meta">note: ${esc(a.note)}</div>` : ''}
        <div>${buttons.join('')}</div></li>`;
    }).join('');
    if (focusId !== null) {
      const li = $('alerts').querySelector(`li[data-id='${focusId}']`);
      const area = li && li.querySelector('textarea');
      if (area && caret !== null) { area.focus(); area.setSelectionRange(caret, caret); }
    }
  }

  $('alerts').addEventListener('input', (e) => {
    const li = e.target.closest('li');
    if (li && e.target.tagName === 'TEXTAREA') S.drafts.set(Number(li.dataset.id), e.target.value);
  });

  $('alerts').addEventListener('click', async (e) => {
    const b = e.target.closest('button');
    const li = e.target.closest('li');
    if (!li) return;
    const id = Number(li.dataset.id);
    if (!b) { if (S.trucks.has(li.dataset.mrn)) select(li.dataset.mrn); return; }
    try {
      if (b.dataset.act === 'ack') {
        addAlert(await json(`/api/v1/alerts/${id}/acknowledge`, { method: 'POST' }));
      } else if (b.dataset.act === 'resolve') {
        if (!S.drafts.has(id)) { S.drafts.set(id, ''); renderAlerts(); }
        const area = $('alerts').querySelector(`li[data-id='${id}'] textarea`);
        if (area) area.focus();
      } else if (b.dataset.act === 'confirm') {
        const note = li.querySelector('textarea').value.trim();
        if (!note) { li.querySelector('textarea').focus(); return; }
        const done = await json(`/api/v1/alerts/${id}/resolve`, { method: 'POST', body: JSON.stringify({ note }) });
        S.drafts.delete(id);
        addAlert(done);
      }
    } catch (err) { alert(`Not done: ${err.message}`); }
  });

  // ---- a transit's detail, timeline and replay
  let trackLine = null; let replayMarker = null; let track = null;
  async function select(mrn) {
    S.selected = mrn;
    trucks.schedule();
    $('detail').hidden = false;
    $('d-title').textContent = mrn;
    const t = await json(`/api/v1/transits/${mrn}`);
    const facts = [['status', t.status], ['vehicle', t.vehicle], ['corridor', t.corridor_id],
      ['departure', t.office_departure], ['transit', (t.offices_transit || []).join(', ')],
      ['destination', t.office_destination], ['countries', (t.countries || []).join(' › ')],
      ['time limit', t.time_limit], ['open alerts', t.open_alerts]];
    $('d-facts').innerHTML = facts.filter(([, v]) => v !== undefined).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('');
    if (window.transitRisk) window.transitRisk.detail(t); // risk.js: reasons, the closure
    $('d-seals').innerHTML = (t.seal_ids || []).map((s) => `<li>${esc(s)}</li>`).join('') || '<li>none declared</li>';
    if (trackLine) { trackLine.remove(); trackLine = null; }
    if (replayMarker) { replayMarker.remove(); replayMarker = null; }
    if (S.me.role === 'partner') { $('d-events').innerHTML = ''; $('d-exports').hidden = true; return; }
    $('d-exports').hidden = false;
    const [events, fc] = await Promise.all([json(`/api/v1/transits/${mrn}/events`), json(`/api/v1/transits/${mrn}/track?points=3000`)]);
    $('d-events').innerHTML = events.items.map((e) => `<li>${esc(e.at.replace('T', ' ').slice(0, 19))} <strong>${esc(e.kind)}</strong> ${esc(e.actor)}</li>`).join('');
    const f = fc.features[0];
    track = { coords: f.geometry.coordinates, times: f.properties.times };
    if (track.coords.length) {
      trackLine = L.polyline(track.coords.map(([x, y]) => [y, x]), { color: '#000', weight: 2, opacity: 0.7 }).addTo(map);
      replayMarker = L.circleMarker([track.coords[0][1], track.coords[0][0]], { radius: 7, color: '#000', fillColor: '#ffeb3b', fillOpacity: 1 }).addTo(map);
    }
    const slider = $('d-slider');
    slider.max = Math.max(0, track.coords.length - 1);
    slider.value = slider.max;
    replay();
  }
  function replay() {
    if (!track || !track.coords.length) { $('d-time').textContent = 'no track yet'; return; }
    const i = Number($('d-slider').value);
    const [x, y] = track.coords[i];
    replayMarker.setLatLng([y, x]);
    $('d-time').textContent = `${track.times[i].replace('T', ' ').slice(0, 19)} (${i + 1} of ${track.coords.length})`;
  }
  S.select = select; // risk.js opens a transit from its list
  $('d-slider').addEventListener('input', replay);
  $('d-close').addEventListener('click', () => {
    $('detail').hidden = true; S.selected = null; trucks.schedule();
    if (trackLine) trackLine.remove(); if (replayMarker) replayMarker.remove();
  });
  $('d-exports').addEventListener('click', async (e) => {
    const a = e.target.closest('a');
    if (!a || !S.selected) return;
    e.preventDefault();
    const r = await api(`/api/v1/transits/${S.selected}/${a.dataset.fmt}`);
    const url = URL.createObjectURL(await r.blob());
    if (a.dataset.fmt === 'report') { window.open(url, '_blank'); return; }
    const ext = { track: 'geojson', 'track.gpx': 'gpx', 'track.csv': 'csv' }[a.dataset.fmt];
    const link = Object.assign(document.createElement('a'), { href: url, download: `${S.selected}.${ext}` });
    link.click();
  });

  // ---- filters
  for (const [id, k] of [['f-country', 'country'], ['f-corridor', 'corridor'], ['f-state', 'state']]) {
    $(id).addEventListener('change', () => { S.filters[k] = $(id).value; trucks.schedule(); renderAlerts(); });
  }

  // ---- the live feed, reconnecting by itself and catching up on what it missed
  function setLink(up) { $('link').textContent = up ? 'live' : 'reconnecting…'; $('link').className = `link ${up ? 'up' : 'down'}`; }
  function sendView() {
    if (!S.ws || S.ws.readyState !== 1) return;
    const b = map.getBounds().pad(0.2);
    S.ws.send(JSON.stringify({ type: 'view', bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()] }));
  }
  map.on('moveend', sendView);

  function connect() {
    if (!S.key) return;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    // Everything after the newest alert this page has: none is missed across reconnects.
    const since = S.me.role === 'partner' ? '' : `&since=${S.lastAlertId}`;
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/live?key=${encodeURIComponent(S.key)}${since}`);
    S.ws = ws;
    ws.onopen = () => { S.retry = 0; setLink(true); sendView(); };
    ws.onmessage = (ev) => {
      S.messages += 1; S.bytes += ev.data.length;
      const m = JSON.parse(ev.data);
      if (m.type === 'trucks') {
        for (const it of m.items) upsertTruck(it);
        counts(); trucks.schedule();
        const f = S.filters;
        if (S.alerts.size && (f.country || f.corridor || f.state)) renderAlerts();
      } else if (m.type === 'alert') {
        addAlert(m.alert);
      }
    };
    ws.onclose = (ev) => {
      setLink(false);
      if (ev.code === 4401) {
        // The key was revoked or expired: reconnecting cannot help, ask for another.
        S.key = '';
        sessionStorage.removeItem('transit.key');
        $('signin-error').textContent = `Signed out: ${ev.reason || 'the API key is no longer valid'}`;
        $('signin').hidden = false;
        return;
      }
      if (S.ws !== ws || !S.key) return;
      S.reconnects += 1;
      setTimeout(connect, Math.min(10000, 500 * 2 ** S.retry++));
    };
  }

  // ---- sign-in; the role decides what is shown and allowed
  async function start() {
    $('signin').hidden = true;
    $('who').textContent = `${S.me.role}${S.me.office ? ` · ${S.me.office}` : ''}${S.me.country ? ` · ${S.me.country}` : ''}`;
    const fc = await json('/api/v1/corridors');
    for (const f of fc.features) {
      const ll = f.geometry.coordinates.map(([x, y]) => [y, x]);
      L.polyline(ll, { renderer: canvas, color: '#1e88e5', weight: 8, opacity: 0.3, interactive: false }).addTo(map);
      L.polyline(ll, { renderer: canvas, color: '#0d47a1', weight: 1.5 }).bindTooltip(`${f.id}: ${f.properties.name}`).addTo(map);
      $('f-corridor').add(new Option(f.id, f.id));
    }
    const offices = await json('/api/v1/offices');
    for (const o of offices.items) {
      const parking = o.roles.includes('parking');
      L.circle([o.lat, o.lon], { renderer: canvas, radius: o.radius_m, color: parking ? '#6a1b9a' : '#37474f', weight: 1, fillOpacity: 0.15 })
        .bindTooltip(`${o.ref} ${o.name} (${o.roles.join(', ')})`).addTo(map);
      L.circleMarker([o.lat, o.lon], { renderer: canvas, radius: 3, color: parking ? '#6a1b9a' : '#37474f', weight: 2 })
        .bindTooltip(`${o.ref} ${o.name}`).addTo(map);
    }
    if (S.me.role === 'partner') {
      $('alerts-section').hidden = true;
    } else {
      const recent = await json('/api/v1/alerts?limit=200');
      for (const a of recent.items) addAlert(a);
    }
    connect();
  }

  async function signIn(key) {
    S.key = key;
    try {
      S.me = await json('/api/v1/me');
    } catch (err) {
      S.key = '';
      $('signin-error').textContent = `Sign-in refused: ${err.message}`;
      return;
    }
    sessionStorage.setItem('transit.key', key);
    await start();
  }
  $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn($('key').value.trim()); });
  $('signout').addEventListener('click', () => { sessionStorage.removeItem('transit.key'); S.key = ''; if (S.ws) S.ws.close(); location.reload(); });
  if (S.key) signIn(S.key);

  // ---- for the benchmark: many synthetic trucks along the corridors
  S.loadSynthetic = (n) => {
    const lines = [];
    map.eachLayer((l) => { if (l instanceof L.Polyline && !(l instanceof L.Polygon) && l.options.weight === 1.5) lines.push(l.getLatLngs()); });
    const states = Object.keys(COLORS);
    for (let i = 0; i < n; i += 1) {
      const line = lines[i % lines.length];
      const a = line[Math.floor(Math.random() * (line.length - 1))];
      upsertTruck([`SYN${i}`, `SYN${i}`, a.lng + (Math.random() - 0.5) * 0.2, a.lat + (Math.random() - 0.5) * 0.2, 60, states[i % states.length], 'SYN', []]);
    }
    counts(); trucks.schedule();
  };
  S.redraw = () => trucks.draw();
})();
