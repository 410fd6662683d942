/* mailtrail support console.
 *
 * Plain JavaScript, no framework, no build step.  Served with a strict
 * Content-Security-Policy (script-src 'self', no inline code, no eval).
 *
 * Rule of this file: everything that comes from an event (and so, in the
 * end, from a remote mail server) reaches the page through textContent or
 * createTextNode only.  No innerHTML, no insertAdjacentHTML.  Links in
 * events (click events) are shown as text, never as anchors; the only
 * anchors are the console's own "?address=..." links in the recent and
 * message views, whose href is built with encodeURIComponent and always
 * stays on this page.
 *
 * The search box takes an address or an SES message id, told apart by
 * shape: with an '@' it is an address, else a message id (letters, digits
 * and '-', as the API accepts them).
 */
'use strict';

(function () {
  var TOKEN_KEY = 'mailtrail.apiToken';
  var PAGE_SIZE = 50;
  /* What GET /v1/messages/{id} accepts (STORE_MESSAGE_ID_MAX). */
  var MESSAGE_ID_RE = /^[A-Za-z0-9-]{1,128}$/;

  var TYPE_ORDER = ['Bounce', 'Complaint', 'Reject', 'Rendering Failure',
    'DeliveryDelay', 'Delivery', 'Send', 'Open', 'Click', 'Subscription'];
  var TYPE_LABEL = {
    'Bounce': 'Bounce', 'Complaint': 'Complaint', 'Delivery': 'Delivery',
    'Send': 'Send', 'Reject': 'Reject', 'Open': 'Open', 'Click': 'Click',
    'Rendering Failure': 'Rendering failure', 'DeliveryDelay': 'Delivery delay',
    'Subscription': 'Subscription'
  };

  /* ---- plain-language explanations -------------------------------------- */

  var BOUNCE_EXPLAIN = {
    'Permanent/General': 'Hard bounce: the receiving mail server permanently rejected this address. SES will not retry; do not send to it again until the customer confirms or corrects it.',
    'Permanent/NoEmail': 'The address does not exist; SES will not retry. The customer probably mistyped it or the mailbox was closed.',
    'Permanent/Suppressed': 'SES did not even try: the address is on the SES global suppression list because it recently hard-bounced for another sender.',
    'Permanent/OnAccountSuppressionList': 'SES did not even try: the address is on this AWS account\'s own suppression list (an earlier hard bounce or complaint put it there). Remove it from that list only if the customer confirms it works.',
    'Transient/General': 'Soft bounce: a temporary problem at the receiving side (or an automatic reply such as "out of office"). SES gave up on this message, but later mail may get through.',
    'Transient/MailboxFull': 'Soft bounce: the recipient\'s mailbox is full. Mail will get through once they make room.',
    'Transient/MessageTooLarge': 'Soft bounce: the message was larger than the receiving server accepts. Send a smaller message (fewer or smaller attachments).',
    'Transient/ContentRejected': 'Soft bounce: the receiving server refused the content of this message (for example it looked like spam). Changing the content may help.',
    'Transient/AttachmentRejected': 'Soft bounce: the receiving server refused an attachment (often a file type it does not allow).',
    'Undetermined/Undetermined': 'SES could not tell why the message bounced: the bounce it got back was not clear. Read the diagnostic code if there is one.'
  };

  var BOUNCE_TYPE_EXPLAIN = {
    'Permanent': 'Hard bounce: the address will not accept mail; SES will not retry.',
    'Transient': 'Soft bounce: a temporary problem; later mail may get through.',
    'Undetermined': 'SES could not tell why the message bounced.'
  };

  var COMPLAINT_EXPLAIN = {
    'abuse': 'The recipient reported this message as spam or unwanted mail.',
    'auth-failure': 'The recipient\'s mail provider reported an email authentication failure (SPF, DKIM or DMARC did not check out).',
    'fraud': 'The recipient reported this message as fraud or phishing.',
    'not-spam': 'The recipient said this message is NOT spam (for example they moved it out of the spam folder). Usually no action is needed.',
    'other': 'The recipient complained, for a reason their mail provider did not put in a category.',
    'virus': 'The recipient\'s mail provider reported a virus in this message.'
  };
  var COMPLAINT_MISSING = 'The recipient marked this message as spam. Their mail provider did not say why (most providers send no details).';

  var DELAY_EXPLAIN = {
    'InternalFailure': 'An internal problem at Amazon SES delayed this message. SES keeps trying.',
    'General': 'Something went wrong while talking to the receiving mail server. SES keeps trying.',
    'MailboxFull': 'The recipient\'s mailbox is full. SES keeps trying until they make room or the message expires.',
    'SpamDetected': 'The receiving server sees a lot of spam from this sending account and is holding mail back. SES keeps trying.',
    'RecipientServerError': 'The receiving mail server has a temporary problem. SES keeps trying.',
    'IPFailure': 'The receiving server is blocking or throttling the IP address that sends the mail. SES keeps trying.',
    'TransientCommunicationFailure': 'A temporary communication failure with the receiving server. SES keeps trying.',
    'BYOIPHostNameLookupUnavailable': 'SES could not look up the host name of the sender\'s own (BYOIP) IP addresses. SES keeps trying.',
    'Undetermined': 'SES could not tell why delivery is delayed. SES keeps trying.',
    'SendingDeferral': 'SES itself deferred sending this message for now. SES keeps trying.'
  };

  var TYPE_EXPLAIN = {
    'Delivery': 'The receiving mail server accepted the message. What happens after that (inbox or spam folder) is up to the recipient\'s provider.',
    'Send': 'SES accepted the message from the sender and will try to deliver it.',
    'Reject': 'SES refused to send this message (usually because it contained a virus). It was never delivered.',
    'Open': 'The recipient (or their mail app) opened the message and loaded its images.',
    'Click': 'The recipient clicked a link in the message.',
    'Rendering Failure': 'SES could not build the message from its template, so nothing was sent.',
    'Subscription': 'The recipient changed their subscription preferences.'
  };

  /* Routine events: their explanation is shown quietly. */
  var MINOR_TYPES = { 'Delivery': true, 'Send': true, 'Open': true, 'Click': true, 'Subscription': true };

  function explainBounce(d) {
    var t = str(d.bounceType), s = str(d.bounceSubType);
    var key = t + '/' + s;
    var label = (t || '?') + ' / ' + (s || '?');
    if (BOUNCE_EXPLAIN[key]) return label + ': ' + BOUNCE_EXPLAIN[key];
    if (BOUNCE_TYPE_EXPLAIN[t]) return label + ': ' + BOUNCE_TYPE_EXPLAIN[t];
    return label + ': not a bounce type SES documents; read the diagnostic code.';
  }

  function explainComplaint(d) {
    if (d.complaintSubType === 'OnAccountSuppressionList') {
      return 'OnAccountSuppressionList: SES did not send this message because the address is on this account\'s suppression list.';
    }
    var f = str(d.complaintFeedbackType);
    if (!f) return 'No feedback type: ' + COMPLAINT_MISSING;
    if (COMPLAINT_EXPLAIN[f]) return f + ': ' + COMPLAINT_EXPLAIN[f];
    return f + ': the recipient complained (an uncommon feedback type).';
  }

  function explainDelay(d) {
    var t = str(d.delayType);
    var text = (t || 'Unknown delay') + ': ' +
      (DELAY_EXPLAIN[t] || 'Delivery is delayed. SES keeps trying.');
    if (d.expirationTime) text += ' It gives up at ' + fmtUtc(d.expirationTime) + '.';
    return text;
  }

  function explain(ev) {
    var d = isObj(ev.detail) ? ev.detail : {};
    switch (ev.type) {
      case 'Bounce': return explainBounce(d);
      case 'Complaint': return explainComplaint(d);
      case 'DeliveryDelay': return explainDelay(d);
      default: return TYPE_EXPLAIN[ev.type] || '';
    }
  }

  function suppressionText(reason, summary) {
    if (reason === 'Complaint') {
      return 'The recipient reported mail from us as spam (a complaint). Do not send them more mail unless they sign up again.';
    }
    if (reason === 'Bounce/Permanent') {
      var extra = '';
      var last = summary && summary.last_event;
      if (last && last.type === 'Bounce' && isObj(last.detail) &&
          last.detail.bounceType === 'Permanent') {
        extra = ' Latest: ' + explainBounce(last.detail);
      }
      return 'Mail to this address hard-bounced (a permanent bounce): the receiving server says it will never accept mail for it. Check the address with the customer.' + extra;
    }
    return 'Reason given by the server: ' + (reason == null ? 'none' : String(reason)) + '.';
  }

  /* ---- detail fields per type --------------------------------------------- */

  /* [field, label, kind]; kind 'code' renders monospace, wrapped. */
  var FIELDS = {
    'Bounce': [['bounceType', 'Bounce type'], ['bounceSubType', 'Subtype'],
      ['action', 'Action'], ['status', 'Status'],
      ['diagnosticCode', 'Diagnostic code', 'code'], ['reportingMTA', 'Reporting MTA', 'code'],
      ['remoteMtaIp', 'Remote MTA IP', 'code']],
    'Complaint': [['complaintFeedbackType', 'Feedback type'],
      ['complaintSubType', 'Complaint subtype'], ['userAgent', 'Reported by'],
      ['arrivalDate', 'Arrived']],
    'Delivery': [['smtpResponse', 'SMTP response', 'code'],
      ['processingTimeMillis', 'Processing time', 'ms'],
      ['reportingMTA', 'Reporting MTA', 'code'], ['remoteMtaIp', 'Remote MTA IP', 'code']],
    'DeliveryDelay': [['delayType', 'Delay type'], ['expirationTime', 'Gives up at', 'time'],
      ['status', 'Status'], ['diagnosticCode', 'Diagnostic code', 'code'],
      ['reportingMTA', 'Reporting MTA', 'code']],
    'Open': [['ipAddress', 'IP address', 'code'], ['userAgent', 'User agent']],
    'Click': [['link', 'Link', 'code'], ['ipAddress', 'IP address', 'code'],
      ['userAgent', 'User agent']],
    'Reject': [['reason', 'Reason']],
    'Rendering Failure': [['templateName', 'Template', 'code'],
      ['errorMessage', 'Error', 'code']],
    'Subscription': [['contactList', 'Contact list'],
      ['newTopicPreferences', 'New preferences', 'code'],
      ['oldTopicPreferences', 'Old preferences', 'code']]
  };

  /* ---- small helpers ------------------------------------------------------ */

  function $(id) { return document.getElementById(id); }
  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function str(v) { return v == null ? '' : String(v); }

  /* Creates an element; text (if given) goes in as a text node. */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.appendChild(document.createTextNode(String(text)));
    return e;
  }

  function show(id, on) { $(id).hidden = !on; }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function valueText(v) {
    if (v == null) return '';
    if (typeof v === 'object') {
      try { return JSON.stringify(v); } catch (e) { return String(v); }
    }
    return String(v);
  }

  function typeSlug(t) {
    return str(t).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'unknown';
  }

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = '0' + n; return n; }

  function parseTime(s) {
    var d = new Date(str(s));
    return isNaN(d.getTime()) ? null : d;
  }

  function fmtUtc(s) {
    var d = parseTime(s);
    if (!d) return str(s);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) +
      ' ' + pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' +
      pad(d.getUTCSeconds()) + '.' + pad(d.getUTCMilliseconds(), 3) + ' UTC';
  }

  var localFmt = null;
  try {
    localFmt = new Intl.DateTimeFormat(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit',
      minute: '2-digit', second: '2-digit', timeZoneName: 'short'
    });
  } catch (e) { localFmt = null; }

  function fmtLocal(s) {
    var d = parseTime(s);
    if (!d) return '';
    return localFmt ? localFmt.format(d) : d.toString();
  }

  var relFmt = null;
  try { relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }); } catch (e) { relFmt = null; }

  function fmtAgo(s) {
    var d = parseTime(s);
    if (!d || !relFmt) return '';
    var sec = Math.round((d.getTime() - Date.now()) / 1000);
    var abs = Math.abs(sec);
    if (abs < 60) return relFmt.format(sec, 'second');
    if (abs < 3600) return relFmt.format(Math.round(sec / 60), 'minute');
    if (abs < 86400) return relFmt.format(Math.round(sec / 3600), 'hour');
    if (abs < 86400 * 60) return relFmt.format(Math.round(sec / 86400), 'day');
    return relFmt.format(Math.round(sec / (86400 * 30)), 'month');
  }

  /* ---- URL state (deep links) ----------------------------------------------- */

  /* The query string is read by hand so that a literal '+' in an address
   * (alice+tag@example.com) stays a '+' instead of turning into a space. */
  function readQuery() {
    var out = { address: '', type: '', message: '' };
    var q = window.location.search.replace(/^\?/, '');
    if (!q) return out;
    q.split('&').forEach(function (part) {
      var i = part.indexOf('=');
      var k = i < 0 ? part : part.slice(0, i);
      var v = i < 0 ? '' : part.slice(i + 1);
      try { k = decodeURIComponent(k); v = decodeURIComponent(v); } catch (e) { return; }
      if (k === 'address' || k === 'type' || k === 'message') out[k] = v;
    });
    return out;
  }

  function queryString(state) {
    var parts = [];
    if (state.message && !state.address) parts.push('message=' + encodeURIComponent(state.message));
    if (state.address) parts.push('address=' + encodeURIComponent(state.address));
    if (state.address && state.type) parts.push('type=' + encodeURIComponent(state.type));
    return parts.length ? '?' + parts.join('&') : window.location.pathname;
  }

  function normaliseInput(s) {
    s = str(s).trim();
    var m = /<([^<>]+)>\s*$/.exec(s);       /* "Alice <alice@example.com>" */
    if (m) s = m[1].trim();
    return s;
  }

  /* What the search box holds: an address when it has an '@', else an SES
   * message id. */
  function searchTarget(s) {
    s = normaliseInput(s);
    if (s.indexOf('@') >= 0) return { address: s, message: '' };
    return { address: '', message: s };
  }

  /* ---- API access ------------------------------------------------------------ */

  function getToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(t) {
    try { window.sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* private mode */ }
  }

  var tokenWaiters = null;   /* pending resolvers while the prompt is open */

  function askToken(rejected) {
    if (!tokenWaiters) {
      tokenWaiters = [];
      $('token-msg').textContent = rejected
        ? 'That token was not accepted. Check it and try again. It is kept only for this browser tab\'s session.'
        : 'The mailtrail API is protected. Enter the token your administrator gave you. It is kept only for this browser tab\'s session.';
      $('token').value = '';
      show('token-prompt', true);
      setStatus('Waiting for the API token…');
      $('token').focus();
    }
    return new Promise(function (resolve) { tokenWaiters.push(resolve); });
  }

  function onTokenSubmit(e) {
    e.preventDefault();
    var t = $('token').value.trim();
    if (!t) { $('token').focus(); return; }
    setToken(t);
    show('token-prompt', false);
    var waiters = tokenWaiters || [];
    tokenWaiters = null;
    waiters.forEach(function (w) { w(); });
  }

  function ApiError(message, status, parameter) {
    this.message = message;
    this.status = status;
    this.parameter = parameter;
  }

  /* GET a JSON document from the API; on 401 asks for the token and retries. */
  function api(path) {
    var sentToken = getToken();
    var headers = { 'Accept': 'application/json' };
    if (sentToken) headers['Authorization'] = 'Bearer ' + sentToken;
    return fetch(path, { headers: headers, cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (res.status === 401) {
          return askToken(!!sentToken).then(function () { return api(path); });
        }
        return res.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (e) { body = null; }
          if (!res.ok) {
            var msg = body && body.error ? String(body.error) : (res.status + ' ' + res.statusText);
            throw new ApiError(msg, res.status, body && body.parameter ? String(body.parameter) : '');
          }
          if (!isObj(body)) throw new ApiError('the API answered something that is not JSON', res.status, '');
          return body;
        });
      }, function (err) {
        throw new ApiError('cannot reach the mailtrail API (' + str(err && err.message) + ')', 0, '');
      });
  }

  function recipientPath(address) {
    return 'v1/recipients/' + encodeURIComponent(address);
  }

  function eventsPath(address, type, before) {
    var q = ['limit=' + PAGE_SIZE];
    if (before != null) q.push('before=' + encodeURIComponent(String(before)));
    if (type) q.push('type=' + encodeURIComponent(type));
    return recipientPath(address) + '/events?' + q.join('&');
  }

  function messagePath(id) {
    return 'v1/messages/' + encodeURIComponent(id);
  }

  function recentPath(before) {
    var q = ['limit=' + PAGE_SIZE];
    if (before != null) q.push('before=' + encodeURIComponent(String(before)));
    return 'v1/events?' + q.join('&');
  }

  /* ---- status and errors -------------------------------------------------- */

  function setStatus(text) { $('status').textContent = text || ''; }

  function showError(err) {
    var box = $('error');
    clear(box);
    var msg;
    if (err instanceof ApiError) {
      msg = err.status ? 'The API answered ' + err.status + ': ' + err.message : err.message;
      if (err.parameter) msg += ' (parameter "' + err.parameter + '")';
    } else {
      msg = 'Something went wrong: ' + str(err && err.message ? err.message : err);
    }
    box.appendChild(el('strong', null, 'Could not load. '));
    box.appendChild(document.createTextNode(msg));
    box.hidden = false;
    setStatus('');
  }

  function hideError() { $('error').hidden = true; clear($('error')); }

  /* ---- rendering ------------------------------------------------------------ */

  function badge(type) {
    var b = el('span', 'badge badge-' + typeSlug(type), TYPE_LABEL[type] || str(type) || 'unknown');
    b.setAttribute('data-type', str(type));
    return b;
  }

  function timeCell(ev) {
    var td = el('td', 'col-time');
    var t = el('time', 'utc', fmtUtc(ev.time));
    var d = parseTime(ev.time);
    if (d) t.setAttribute('datetime', d.toISOString());
    td.appendChild(t);
    var local = fmtLocal(ev.time);
    if (local) td.appendChild(el('span', 'local', local));
    var ago = fmtAgo(ev.time);
    if (ago) td.appendChild(el('span', 'ago', ago));
    return td;
  }

  function detailCell(ev) {
    var td = el('td', 'col-detail');
    var d = isObj(ev.detail) ? ev.detail : {};
    var dl = el('dl', 'kv');
    var used = {};
    var fields = FIELDS[ev.type] || [];
    fields.forEach(function (f) {
      var key = f[0], label = f[1], kind = f[2];
      used[key] = true;
      if (!(key in d) || d[key] === null || d[key] === '') return;
      var v = d[key];
      var text;
      if (kind === 'ms' && typeof v === 'number') text = v + ' ms';
      else if (kind === 'time') text = fmtUtc(v);
      else text = valueText(v);
      addKv(dl, label, text, kind === 'code', key);
    });
    Object.keys(d).forEach(function (key) {
      if (used[key] || d[key] === null || d[key] === '') return;
      addKv(dl, key, valueText(d[key]), typeof d[key] === 'object', key);
    });
    if (dl.firstChild) td.appendChild(dl);
    var why = explain(ev);
    if (why) td.appendChild(el('p', MINOR_TYPES[ev.type] ? 'explain explain-minor' : 'explain', why));
    return td;
  }

  /* One label/value pair; short values flow side by side, long ones and
   * machine text (codes, responses, links) get a line of their own. */
  function addKv(dl, label, text, code, key) {
    var item = el('div', code || text.length > 32 ? 'kv-item wide' : 'kv-item');
    var dt = el('dt', null, label);
    var dd = el('dd');
    dd.setAttribute('data-field', key);
    dd.appendChild(code ? el('code', null, text) : document.createTextNode(text));
    item.appendChild(dt);
    item.appendChild(dd);
    dl.appendChild(item);
  }

  /* A same-page link to a recipient's timeline, built only from our own
   * query string. */
  function recipientLink(rcpt) {
    var a = el('a', 'rcpt-link', rcpt);
    a.href = queryString({ address: rcpt, type: '' });
    a.addEventListener('click', function (e) {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate({ address: rcpt, type: '' });
    });
    return a;
  }

  function eventRow(ev, withRecipient) {
    var tr = el('tr', 'ev ev-' + typeSlug(ev.type));
    tr.setAttribute('data-id', str(ev.id));
    tr.setAttribute('data-type', str(ev.type));
    tr.appendChild(timeCell(ev));
    var tdType = el('td', 'col-type');
    tdType.appendChild(badge(ev.type));
    tr.appendChild(tdType);
    var mail = isObj(ev.mail) ? ev.mail : {};
    if (withRecipient) {
      var tdR = el('td', 'col-rcpt');
      var rcpt = str(ev.recipient);
      if (rcpt) tdR.appendChild(recipientLink(rcpt));
      tr.appendChild(tdR);
    }
    tr.appendChild(el('td', 'col-sender', str(mail.source)));
    var tdId = el('td', 'col-msgid');
    if (mail.messageId) tdId.appendChild(el('code', 'msgid', str(mail.messageId)));
    tr.appendChild(tdId);
    tr.appendChild(detailCell(ev));
    return tr;
  }

  function renderCounts(counts) {
    var ul = $('counts');
    clear(ul);
    var keys = Object.keys(isObj(counts) ? counts : {});
    keys.sort(function (a, b) {
      var ia = TYPE_ORDER.indexOf(a), ib = TYPE_ORDER.indexOf(b);
      if (ia < 0) ia = 99;
      if (ib < 0) ib = 99;
      return ia - ib || (a < b ? -1 : a > b ? 1 : 0);
    });
    keys.forEach(function (k) {
      var li = el('li', 'count');
      li.setAttribute('data-type', k);
      li.appendChild(badge(k));
      li.appendChild(el('span', 'count-n', valueText(counts[k])));
      ul.appendChild(li);
    });
  }

  function renderSummary(sum, address) {
    $('summary-address').textContent = str(sum.recipient) || address;
    var last = isObj(sum.last_event) ? sum.last_event : null;
    $('summary-last').textContent = last
      ? 'Last event: ' + (TYPE_LABEL[last.type] || str(last.type)) + ', ' + fmtUtc(last.time) +
        (fmtAgo(last.time) ? ' (' + fmtAgo(last.time) + ')' : '')
      : '';
    renderCounts(sum.counts);
    if (sum.suppressed === true) {
      $('banner-title').textContent = sum.reason === 'Complaint'
        ? 'Suppressed: the recipient complained'
        : sum.reason === 'Bounce/Permanent'
          ? 'Suppressed: the address hard-bounced'
          : 'Suppressed';
      $('banner-text').textContent = suppressionText(sum.reason, sum);
      show('banner', true);
      show('clear', false);
    } else {
      show('banner', false);
      show('clear', !!last);
    }
    show('summary', true);
  }

  /* One sent mail: a card per recipient (the API's order: the recipient
   * with the newest event first), each with its events as a timeline. */
  function renderMessage(id, groups) {
    var box = $('message-groups');
    clear(box);
    var total = 0;
    groups.forEach(function (g, i) {
      if (!isObj(g)) return;
      var rcpt = str(g.recipient);
      var events = Array.isArray(g.events) ? g.events.filter(isObj) : [];
      total += events.length;
      var sec = el('section', 'msg-group');
      sec.setAttribute('data-recipient', rcpt);
      var head = el('div', 'msg-group-head');
      var h = el('h3');
      h.id = 'msg-rcpt-' + i;
      h.appendChild(rcpt ? recipientLink(rcpt) : document.createTextNode('(no address)'));
      head.appendChild(h);
      if (events.length) {
        head.appendChild(badge(events[0].type));
        head.appendChild(el('span', 'muted', 'latest, ' + fmtUtc(events[0].time)));
      }
      sec.appendChild(head);
      var table = el('table', 'events');
      table.setAttribute('aria-labelledby', h.id);
      var tr = el('tr');
      [['col-time', 'Time'], ['col-type', 'Event'], ['col-sender', 'Sender'],
        ['col-msgid', 'SES message id'], ['col-detail', 'Details']].forEach(function (c) {
        var th = el('th', c[0], c[1]);
        th.setAttribute('scope', 'col');
        tr.appendChild(th);
      });
      table.appendChild(el('thead')).appendChild(tr);
      var tbody = table.appendChild(el('tbody'));
      events.forEach(function (ev) { tbody.appendChild(eventRow(ev, false)); });
      sec.appendChild(table);
      box.appendChild(sec);
    });
    $('message-id').textContent = id;
    var n = groups.length;
    $('message-count').textContent = n + ' recipient' + (n === 1 ? '' : 's') + ', ' + total +
      ' event' + (total === 1 ? '' : 's') + '; the recipient with the newest event first, each one\'s events newest first.';
    show('message-section', true);
    setStatus('Showing ' + total + ' event' + (total === 1 ? '' : 's') + ' of ' + n +
      ' recipient' + (n === 1 ? '' : 's') + '.');
  }

  /* ---- views ----------------------------------------------------------------- */

  var state = { address: '', type: '', message: '' };
  var generation = 0;          /* bumps on every new view; stale answers are dropped */
  var timeline = { seen: {}, next: null };
  var recent = { seen: {}, next: null };

  function resetViews() {
    ['summary', 'empty', 'timeline-section', 'recent', 'no-match', 'end-note', 'older',
      'recent-older', 'recent-empty', 'banner', 'clear', 'message-section'].forEach(function (id) { show(id, false); });
    clear($('timeline').tBodies[0]);
    clear($('message-groups'));
    clear($('recent-table').tBodies[0]);
    timeline = { seen: {}, next: null };
    recent = { seen: {}, next: null };
    hideError();
  }

  function appendEvents(tbody, store, events, withRecipient) {
    var added = 0;
    (Array.isArray(events) ? events : []).forEach(function (ev) {
      if (!isObj(ev)) return;
      var id = str(ev.id);
      if (id && store.seen[id]) return;
      if (id) store.seen[id] = true;
      tbody.appendChild(eventRow(ev, withRecipient));
      added++;
    });
    return added;
  }

  function nextCursor(body) {
    var n = body.next_before;
    return (typeof n === 'number' || (typeof n === 'string' && n !== '')) ? n : null;
  }

  function loadAddress(address, type) {
    var gen = ++generation;
    resetViews();
    document.title = address + ' · mailtrail';
    setStatus('Loading ' + address + '…');
    $('search').disabled = true;
    return Promise.all([api(recipientPath(address)), api(eventsPath(address, type, null))])
      .then(function (res) {
        if (gen !== generation) return;
        var sum = res[0], page = res[1];
        var counts = isObj(sum.counts) ? sum.counts : {};
        var events = Array.isArray(page.events) ? page.events : [];
        var neverSeen = Object.keys(counts).length === 0 && !sum.last_event && events.length === 0;
        if (neverSeen) {
          $('empty-text').textContent = 'mailtrail has never seen an event for ' + address +
            '. Either no mail was sent to it through SES, the address is spelled differently, or its events are older than the retention period.';
          show('empty', true);
          setStatus('No events for ' + address + '.');
          return;
        }
        renderSummary(sum, address);
        appendEvents($('timeline').tBodies[0], timeline, events, false);
        timeline.next = nextCursor(page);
        $('timeline-caption').textContent = type
          ? 'Timeline, newest first: ' + (TYPE_LABEL[type] || type) + ' events only'
          : 'Timeline, newest first';
        if (events.length === 0) {
          $('no-match').textContent = type
            ? 'No ' + (TYPE_LABEL[type] || type) + ' events for this address.'
            : 'No events in the timeline.';
          show('no-match', true);
        }
        show('timeline-section', true);
        updateOlder();
        setStatus(countText(timeline));
      })
      .catch(function (err) { if (gen === generation) showError(err); })
      .then(function () { if (gen === generation) $('search').disabled = false; });
  }

  function loadMessage(id) {
    var gen = ++generation;
    resetViews();
    document.title = id + ' · mailtrail';
    if (!MESSAGE_ID_RE.test(id)) {
      showError(new ApiError('"' + id + '" is neither an email address (it has no @) nor an SES message id (up to 128 letters, digits and dashes).', 0, ''));
      return Promise.resolve();
    }
    setStatus('Loading message ' + id + '…');
    $('search').disabled = true;
    return api(messagePath(id))
      .then(function (body) {
        if (gen !== generation) return;
        var groups = Array.isArray(body.recipients) ? body.recipients : [];
        if (groups.length === 0) {
          $('empty-text').textContent = 'mailtrail has no events for the SES message ' + id +
            '. Either the id is mistyped, the mail was not sent through the SES account that reports here, or its events are older than the retention period.';
          show('empty', true);
          setStatus('No events for message ' + id + '.');
          return;
        }
        renderMessage(id, groups);
      })
      .catch(function (err) { if (gen === generation) showError(err); })
      .then(function () { if (gen === generation) $('search').disabled = false; });
  }

  function countText(store) {
    var n = Object.keys(store.seen).length;
    return 'Showing ' + n + ' event' + (n === 1 ? '' : 's') + (store.next != null ? ' (older ones available)' : '') + '.';
  }

  function updateOlder() {
    show('older', timeline.next != null);
    show('end-note', timeline.next == null && Object.keys(timeline.seen).length > 0);
  }

  function loadOlder() {
    if (timeline.next == null) return;
    var gen = generation;
    var btn = $('older');
    btn.disabled = true;
    setStatus('Loading older events…');
    api(eventsPath(state.address, state.type, timeline.next))
      .then(function (page) {
        if (gen !== generation) return;
        var tbody = $('timeline').tBodies[0];
        var first = tbody.rows.length;
        appendEvents(tbody, timeline, page.events, false);
        timeline.next = nextCursor(page);
        updateOlder();
        setStatus(countText(timeline));
        var row = tbody.rows[first];
        if (row) { row.setAttribute('tabindex', '-1'); row.focus({ preventScroll: false }); }
      })
      .catch(function (err) { if (gen === generation) showError(err); })
      .then(function () { btn.disabled = false; });
  }

  function loadRecent() {
    var gen = ++generation;
    resetViews();
    document.title = 'mailtrail · support console';
    setStatus('Loading the newest events…');
    return api(recentPath(null))
      .then(function (page) {
        if (gen !== generation) return;
        var added = appendEvents($('recent-table').tBodies[0], recent, page.events, true);
        recent.next = nextCursor(page);
        show('recent', true);
        show('recent-empty', added === 0);
        show('recent-older', recent.next != null);
        setStatus(countText(recent));
      })
      .catch(function (err) { if (gen === generation) showError(err); });
  }

  function loadRecentOlder() {
    if (recent.next == null) return;
    var gen = generation;
    var btn = $('recent-older');
    btn.disabled = true;
    api(recentPath(recent.next))
      .then(function (page) {
        if (gen !== generation) return;
        appendEvents($('recent-table').tBodies[0], recent, page.events, true);
        recent.next = nextCursor(page);
        show('recent-older', recent.next != null);
        setStatus(countText(recent));
      })
      .catch(function (err) { if (gen === generation) showError(err); })
      .then(function () { btn.disabled = false; });
  }

  /* Show the view for a state (from the URL or the form). */
  function render() {
    $('address').value = state.address || state.message;
    $('type-filter').value = state.type;
    if ($('type-filter').value !== state.type) $('type-filter').value = '';
    if (state.address) return loadAddress(state.address, state.type);
    if (state.message) return loadMessage(state.message);
    return loadRecent();
  }

  function navigate(next) {
    state = { address: next.address, type: next.address ? next.type : '',
      message: next.address ? '' : str(next.message) };
    var url = queryString(state);
    var current = window.location.search || window.location.pathname;
    if (url !== current) window.history.pushState(state, '', url);
    return render();
  }

  /* ---- wiring ----------------------------------------------------------------- */

  function init() {
    $('search-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var t = searchTarget($('address').value);
      navigate({ address: t.address, message: t.message, type: $('type-filter').value });
    });
    $('type-filter').addEventListener('change', function () {
      var address = searchTarget($('address').value).address;
      if (address) navigate({ address: address, type: $('type-filter').value });
    });
    $('home').addEventListener('click', function (e) {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate({ address: '', type: '' });
    });
    $('older').addEventListener('click', loadOlder);
    $('recent-older').addEventListener('click', loadRecentOlder);
    $('token-form').addEventListener('submit', onTokenSubmit);
    window.addEventListener('popstate', function () {
      state = readQuery();
      render();
    });
    state = readQuery();
    state.address = normaliseInput(state.address);
    state.message = state.address ? '' : normaliseInput(state.message);
    render();
    if (!state.address && !state.message) $('address').focus();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
