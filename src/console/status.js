/* mailtrail support console: the SNS wiring panel (GET /v1/status).
 *
 * On its own beside app.js (which owns the rest of the page): one request
 * when the page loads, again on "Refresh" and after the token prompt is
 * answered.  It shows, per SNS topic mailtrail has seen, whether it is
 * accepted, its subscription, its last accepted delivery and the refused
 * deliveries by reason, and above them every hint the API gives (what to
 * fix, in one line each).
 *
 * Same rule as app.js: what comes from the API (topic ARNs of refused
 * deliveries are whatever the sender wrote) reaches the page through
 * textContent only.
 */
'use strict';

(function () {
  var TOKEN_KEY = 'mailtrail.apiToken';
  var REASON_LABEL = {
    raw_delivery: 'raw delivery',
    topic_not_accepted: 'topic not accepted',
    bad_signature: 'bad signature',
    url_not_allowed: 'URL not allowed',
    cert_fetch_failed: 'certificate not fetched',
    confirm_failed: 'confirmation failed',
    too_old: 'too old',
    malformed: 'malformed',
    storage_unavailable: 'Redis unavailable',
    overloaded: 'overloaded'
  };
  var SUB_LABEL = {
    confirmed: 'confirmed', pending: 'pending: not confirmed', refused: 'refused',
    failed: 'confirmation failed', unsubscribed: 'unsubscribed'
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function token() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function when(iso) {
    if (typeof iso !== 'string') return '—';
    var d = new Date(iso);
    if (isNaN(d.getTime())) return '—';
    var s = Math.round((Date.now() - d.getTime()) / 1000);
    var ago = s < 90 ? s + ' s ago' : s < 5400 ? Math.round(s / 60) + ' min ago'
      : s < 129600 ? Math.round(s / 3600) + ' h ago' : Math.round(s / 86400) + ' days ago';
    return iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC') + ' (' + ago + ')';
  }
  function refusedText(counts) {
    var parts = [];
    Object.keys(counts || {}).sort().forEach(function (r) {
      var n = counts[r];
      if (typeof n === 'number' && n > 0) parts.push((REASON_LABEL[r] || r) + ' ' + n);
    });
    return parts.length ? parts.join(', ') : 'none';
  }

  var panel, summary, hints, details, toggle, table;

  function build() {
    panel = $('wiring');
    clear(panel);
    var head = el('div', 'wiring-head');
    head.appendChild(el('h2', null, 'SNS wiring'));
    head.firstChild.id = 'wiring-title';
    summary = el('p', 'wiring-summary muted');
    summary.id = 'wiring-summary';
    head.appendChild(summary);
    var refresh = el('button', 'wiring-button', 'Refresh');
    refresh.type = 'button';
    refresh.id = 'wiring-refresh';
    refresh.addEventListener('click', load);
    head.appendChild(refresh);
    toggle = el('button', 'wiring-button', 'Topics');
    toggle.type = 'button';
    toggle.id = 'wiring-toggle';
    toggle.setAttribute('aria-expanded', 'false');
    toggle.setAttribute('aria-controls', 'wiring-details');
    toggle.addEventListener('click', function () {
      var open = details.hidden;
      details.hidden = !open;
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    });
    head.appendChild(toggle);
    panel.appendChild(head);
    hints = el('ul', 'wiring-hints');
    hints.id = 'wiring-hints';
    panel.appendChild(hints);
    details = el('div', 'wiring-details');
    details.id = 'wiring-details';
    details.hidden = true;
    table = el('table', 'events wiring-topics');
    table.id = 'wiring-topics';
    var cap = el('caption', null, 'Topics seen (refused: the last day)');
    table.appendChild(cap);
    var thead = el('thead');
    var tr = el('tr');
    ['Topic', 'Accepted', 'Subscription', 'Last accepted delivery',
      'Deliveries (hour / day)', 'Refused'].forEach(function (h) {
      var th = el('th', null, h);
      th.scope = 'col';
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    table.appendChild(el('tbody'));
    details.appendChild(table);
    panel.appendChild(details);
  }

  function topicRow(t) {
    var tr = el('tr');
    tr.setAttribute('data-topic', String(t.topic));
    var name = el('td', 'wiring-topic');
    name.appendChild(el('code', null, t.topic));
    if (!t.verified && String(t.topic).charAt(0) !== '(') {
      name.appendChild(el('span', 'muted', ' (not verified)'));
    }
    tr.appendChild(name);
    tr.appendChild(el('td', null, t.accepted === true ? 'yes' : t.accepted === false ? 'no' : '—'));
    var sub = t.subscription && typeof t.subscription === 'object' ? t.subscription : null;
    tr.appendChild(el('td', 'wiring-sub', sub
      ? (SUB_LABEL[sub.state] || String(sub.state)) + (sub.time ? ', ' + when(sub.time) : '')
      : '—'));
    tr.appendChild(el('td', null, when(t.last_accepted)));
    var d = t.deliveries || {};
    tr.appendChild(el('td', null, String(d.hour || 0) + ' / ' + String(d.day || 0)));
    tr.appendChild(el('td', 'wiring-refused', refusedText(t.refused && t.refused.day)));
    return tr;
  }

  function render(body) {
    var topics = Array.isArray(body.topics) ? body.topics : [];
    var all = Array.isArray(body.hints) ? body.hints : [];
    clear(hints);
    all.forEach(function (h) {
      var li = el('li', 'wiring-hint');
      li.setAttribute('data-topic', String(h.topic));
      li.appendChild(el('code', 'wiring-hint-topic', h.topic));
      li.appendChild(document.createTextNode(': '));
      li.appendChild(el('span', 'wiring-hint-text', h.hint));
      hints.appendChild(li);
    });
    var tbody = table.tBodies[0];
    clear(tbody);
    topics.forEach(function (t) { tbody.appendChild(topicRow(t)); });
    toggle.hidden = topics.length === 0;
    panel.classList.toggle('wiring-problem', all.length > 0);
    if (topics.length === 0) {
      summary.textContent = 'No SNS delivery seen yet: subscribe this endpoint to your ' +
        'topic (README: Subscribing a real SNS topic).';
    } else {
      summary.textContent = topics.length + ' topic' + (topics.length === 1 ? '' : 's') +
        ' seen; ' + (all.length ? all.length + ' problem' + (all.length === 1 ? '' : 's') +
        ' to fix:' : 'no problem.');
    }
    panel.hidden = false;
  }

  function load() {
    var headers = { 'Accept': 'application/json' };
    var t = token();
    if (t) headers['Authorization'] = 'Bearer ' + t;
    return fetch('/v1/status', { headers: headers, cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) {
        /* 401: app.js asks for the token (then this loads again); 404: a
           mailtrail without the status route. */
        if (r.status === 401 || r.status === 404) { panel.hidden = true; return null; }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (body) { if (body) render(body); })
      .catch(function (err) {
        clear(hints);
        summary.textContent = 'The wiring status could not be read (' + err.message + ').';
        panel.hidden = false;
      });
  }

  function init() {
    if (!$('wiring')) return;
    build();
    var form = $('token-form');
    /* app.js's own listener (registered first) has stored the token. */
    if (form) form.addEventListener('submit', function () { window.setTimeout(load, 0); });
    load();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
