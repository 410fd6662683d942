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
 *
 * The "Sending health" view (?view=health) draws its charts as SVG built
 * here with createElementNS and setAttribute: only numbers computed by this
 * file go into attributes, names from the API go in as text nodes, and no
 * style attribute is ever set (the CSP's style-src has no 'unsafe-inline';
 * colours come from classes in app.css).
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

  /* reason_text is the server's words for the reason (README, Query
   * API): always set as textContent, never as HTML. */
  function suppressionText(reason, summary) {
    var text = summary && typeof summary.reason_text === 'string' ? summary.reason_text : '';
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
    if (reason === 'Bounce/Status') {
      return 'Mail to this address bounced with a status that mailbox providers use for a permanent condition, although Amazon SES called the bounce temporary: ' +
        text + '. Check the address with the customer.';
    }
    if (reason === 'Bounce/Repeated') {
      return 'Mail to this address kept bouncing temporarily (soft bounces), with no delivery since: ' +
        text + '. A delivery lifts this.';
    }
    return 'Reason given by the server: ' + (reason == null ? 'none' : String(reason)) +
      (text ? ' (' + text + ')' : '') + '.';
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
    var out = { address: '', type: '', message: '', view: '', name: '', domain: '' };
    var q = window.location.search.replace(/^\?/, '');
    if (!q) return out;
    q.split('&').forEach(function (part) {
      var i = part.indexOf('=');
      var k = i < 0 ? part : part.slice(0, i);
      var v = i < 0 ? '' : part.slice(i + 1);
      try { k = decodeURIComponent(k); v = decodeURIComponent(v); } catch (e) { return; }
      if (Object.prototype.hasOwnProperty.call(out, k)) out[k] = v;
    });
    return out;
  }

  function queryString(state) {
    if (state.view === 'health') {
      return '?view=health' + (state.name ? '&name=' + encodeURIComponent(state.name) : '');
    }
    if (state.domain && !state.address && !state.message) {
      return '?domain=' + encodeURIComponent(state.domain);
    }
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

  function recentPath(before, domain) {
    var q = ['limit=' + PAGE_SIZE];
    if (before != null) q.push('before=' + encodeURIComponent(String(before)));
    if (domain) q.push('domain=' + encodeURIComponent(domain));
    return 'v1/events?' + q.join('&');
  }

  /* ---- status and errors -------------------------------------------------- */

  function setStatus(text) { $('status').textContent = text || ''; }

  function errorText(err) {
    var msg;
    if (err instanceof ApiError) {
      msg = err.status ? 'The API answered ' + err.status + ': ' + err.message : err.message;
      if (err.parameter) msg += ' (parameter "' + err.parameter + '")';
    } else {
      msg = 'Something went wrong: ' + str(err && err.message ? err.message : err);
    }
    return msg;
  }

  /* Shows err in the box with that id (the page's own error box by default). */
  function showError(err, id) {
    var box = $(id || 'error');
    clear(box);
    box.appendChild(el('strong', null, 'Could not load. '));
    box.appendChild(document.createTextNode(errorText(err)));
    box.hidden = false;
    if (!id) setStatus('');
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
          : sum.reason === 'Bounce/Status'
            ? 'Suppressed: a bounce status that means the address is gone'
            : sum.reason === 'Bounce/Repeated'
              ? 'Suppressed: repeated soft bounces'
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

  var state = { address: '', type: '', message: '', view: '', name: '', domain: '' };
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
    recent = { seen: {}, next: null, domain: '' };
    resetHealth();
    hideError();
  }

  /* Appends the events not shown yet.  An event is one SNS message's
   * event for one recipient: a message about several recipients (a Send or
   * Delivery to many, a bounce of several) gives events with the same id,
   * so the id alone does not tell them apart. */
  function appendEvents(tbody, store, events, withRecipient) {
    var added = 0;
    (Array.isArray(events) ? events : []).forEach(function (ev) {
      if (!isObj(ev)) return;
      var id = str(ev.id) ? str(ev.id) + ' ' + str(ev.recipient) : '';
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

  /* The newest events across all recipients, or (domain) those of the
   * recipients at one domain: where the health view's domains link to. */
  function loadRecent(domain) {
    var gen = ++generation;
    resetViews();
    recent.domain = domain || '';
    document.title = domain ? domain + ' · mailtrail' : 'mailtrail · support console';
    $('recent-caption').textContent = domain
      ? 'Newest events for recipients at ' + domain
      : 'Newest events across all recipients';
    $('recent-empty').textContent = domain
      ? 'No stored events for recipients at ' + domain + '.'
      : 'No events have been stored yet.';
    setStatus(domain ? 'Loading the newest events for ' + domain + '…' : 'Loading the newest events…');
    return api(recentPath(null, recent.domain))
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
    api(recentPath(recent.next, recent.domain))
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
    var healthView = state.view === 'health';
    if (healthView) $('nav-health').setAttribute('aria-current', 'page');
    else $('nav-health').removeAttribute('aria-current');
    if (!healthView && !state.address && !state.message && !state.domain) {
      $('nav-recipients').setAttribute('aria-current', 'page');
    } else {
      $('nav-recipients').removeAttribute('aria-current');
    }
    if (state.address) return loadAddress(state.address, state.type);
    if (state.message) return loadMessage(state.message);
    if (healthView) return loadHealth(state.name);
    return loadRecent(state.domain);
  }

  /* One view at a time: an address (with a type), a message id, the health
   * view (with an identity), or the newest events (of one domain). */
  function normState(next) {
    var s = { address: str(next.address), type: '', message: '', view: '', name: '', domain: '' };
    if (s.address) s.type = str(next.type);
    else if (next.message) s.message = str(next.message);
    else if (next.view === 'health') { s.view = 'health'; s.name = str(next.name); }
    else s.domain = str(next.domain);
    return s;
  }

  function pushUrl() {
    var url = queryString(state);
    var current = window.location.search || window.location.pathname;
    if (url !== current) window.history.pushState(state, '', url);
  }

  function navigate(next) {
    state = normState(next);
    pushUrl();
    return render();
  }

  /* ---- sending health ------------------------------------------------------------ */
  /* GET /v1/health lists the sending identities with their 24 h, 7 d and
   * 30 d rates and status; /v1/health/series gives one identity's counts per
   * hour or day (the charts); /v1/health/domains ranks the recipient domains
   * by bounces or complaints, each linking to ?domain= (its newest events). */

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var HOUR_MS = 3600 * 1000;
  var DAY_MS = 24 * HOUR_MS;
  var HEALTH_LIMIT = 100;        /* identities listed */
  var DOMAINS_LIMIT = 10;        /* domains per list */
  var POINTS_MAX = 2000;         /* what one series answer may hold (the API's own limit) */
  /* A name the API accepts as an identity, and a domain that
   * /v1/events?domain= accepts; anything else is shown as text and never
   * linked or asked for.  The overflow name "(other)" (names past the daily
   * cap, or not valid) has a series of its own but no events feed. */
  var NAME_RE = /^[a-z0-9._@+-]{1,253}$/;
  var DOMAIN_RE = /^[a-z0-9._+-]{1,253}$/;
  var OTHER_NAME = '(other)';
  var DEFAULT_THRESHOLDS = {
    bounce: { warning: 0.025, review: 0.05, pause: 0.1 },
    complaint: { warning: 0.0005, review: 0.001, pause: 0.005 }
  };
  var STATUS_LABEL = {
    'pause_risk': 'Pause risk', 'at_risk': 'At risk', 'warning': 'Warning',
    'ok': 'OK', 'low_volume': 'Low volume'
  };
  /* Stacking order of the daily bars, bottom first: the problems first. */
  var COUNT_TYPES = ['Bounce/Permanent', 'Bounce/Transient', 'Bounce/Undetermined', 'Complaint',
    'Reject', 'Rendering Failure', 'DeliveryDelay', 'Delivery', 'Send', 'Open', 'Click'];
  var COUNT_LABEL = {
    'Bounce/Permanent': 'Hard bounce', 'Bounce/Transient': 'Soft bounce',
    'Bounce/Undetermined': 'Undetermined bounce', 'Complaint': 'Complaint', 'Reject': 'Reject',
    'Rendering Failure': 'Rendering failure', 'DeliveryDelay': 'Delivery delay',
    'Delivery': 'Delivery', 'Send': 'Send', 'Open': 'Open', 'Click': 'Click'
  };
  /* The rate charts' periods: step and number of buckets, the current one last. */
  var RANGES = {
    '30d': { step: 'day', n: 30, label: 'per day, the last 30 days' },
    '7d': { step: 'hour', n: 7 * 24, label: 'per hour, the last 7 days' },
    '48h': { step: 'hour', n: 48, label: 'per hour, the last 48 hours' }
  };
  var MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  var health = {
    items: [], thresholds: DEFAULT_THRESHOLDS, minVolume: null,
    skew: 0,            /* the API's clock minus this browser's */
    name: '', range: '30d', detailGen: 0, domainsGen: 0
  };

  function has(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function count(counts, type) {
    var v = isObj(counts) && has(counts, type) ? num(counts[type]) : null;
    return v != null && v > 0 ? v : 0;
  }

  function fmtInt(n) {
    n = num(n);
    if (n == null) return '?';
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  /* A measured rate: 6.00%, 0.667%, 12.5%; a dash when there is none. */
  function fmtPct(r) {
    r = num(r);
    if (r == null) return '–';
    var v = r * 100;
    if (v === 0) return '0%';
    return (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3)) + '%';
  }

  /* A level (threshold, axis tick): 5%, 0.1%, 2.5%. */
  function fmtLevel(r) {
    return String(parseFloat((r * 100).toPrecision(3))) + '%';
  }

  function fmtDay(ms) {
    var d = new Date(ms);
    return MONTHS[d.getUTCMonth()] + ' ' + d.getUTCDate();
  }

  function fmtBucket(ms, step) {
    var d = new Date(ms);
    var day = fmtDay(ms) + ', ' + d.getUTCFullYear();
    return step === 'day' ? day + ' (UTC)' : day + ' ' + pad(d.getUTCHours()) + ':00 UTC';
  }

  function plural(n, one, many) { return fmtInt(n) + ' ' + (n === 1 ? one : many); }

  function thresholdsOf(t) {
    var out = {};
    ['bounce', 'complaint'].forEach(function (k) {
      var d = DEFAULT_THRESHOLDS[k];
      var g = isObj(t) && isObj(t[k]) ? t[k] : {};
      out[k] = {};
      ['warning', 'review', 'pause'].forEach(function (level) {
        var v = num(g[level]);
        out[k][level] = v != null && v > 0 && v <= 1 ? v : d[level];
      });
    });
    return out;
  }

  function statusKey(s) { return typeof s === 'string' && has(STATUS_LABEL, s) ? s : 'unknown'; }

  function statusExplain(key) {
    var b = health.thresholds.bounce, c = health.thresholds.complaint;
    switch (key) {
      case 'pause_risk': return 'A rate is above the level at which SES may pause sending (bounce ' +
        fmtLevel(b.pause) + ', complaint ' + fmtLevel(c.pause) + ').';
      case 'at_risk': return 'A rate is above the level at which SES puts the account under review (bounce ' +
        fmtLevel(b.review) + ', complaint ' + fmtLevel(c.review) + ').';
      case 'warning': return 'A rate is above half the SES review level (bounce ' +
        fmtLevel(b.warning) + ', complaint ' + fmtLevel(c.warning) + ').';
      case 'ok': return 'Both rates are below half the SES review level.';
      case 'low_volume': return 'Too few sends to judge' +
        (health.minVolume != null ? ' (fewer than ' + fmtInt(health.minVolume) + ')' : '') + '.';
      default: return 'A status this console does not know.';
    }
  }

  function statusBadge(s, small) {
    var key = statusKey(s);
    var b = el('span', 'badge status status-' + key.replace('_', '-') + (small ? ' badge-small' : ''),
      key === 'unknown' ? (str(s) || 'unknown') : STATUS_LABEL[key]);
    b.setAttribute('data-status', str(s));
    b.setAttribute('title', statusExplain(key));
    return b;
  }

  /* A window's rate, marked when above the review or pause level unless
   * the window is too small to judge (low_volume: two bounces out of three
   * mails are not an alarm). */
  function rateSpan(r, th, cls, judged) {
    var v = judged ? num(r) : null;
    return el('span', 'rate ' + cls + (judged ? '' : ' not-judged') +
      (v != null && v > th.pause ? ' over-pause' : v != null && v > th.review ? ' over-review' : ''),
      fmtPct(r));
  }

  function windowCell(w, key) {
    var td = el('td', 'col-window');
    td.setAttribute('data-window', key);
    if (!isObj(w)) {
      td.appendChild(el('span', 'muted', '–'));
      return td;
    }
    var top = el('div', 'win-top');
    var sends = num(w.sends);
    top.appendChild(el('span', 'win-sends', sends == null ? '? sends' : plural(sends, 'send', 'sends')));
    top.appendChild(statusBadge(w.status, true));
    td.appendChild(top);
    var judged = w.status !== 'low_volume';
    var rates = el('div', 'win-rates');
    rates.appendChild(document.createTextNode('bounce '));
    rates.appendChild(rateSpan(w.bounce_rate, health.thresholds.bounce, 'rate-bounce', judged));
    rates.appendChild(document.createTextNode(' · complaint '));
    rates.appendChild(rateSpan(w.complaint_rate, health.thresholds.complaint, 'rate-complaint', judged));
    td.appendChild(rates);
    return td;
  }

  /* A same-page link built from our own query string only. */
  function viewLink(text, next, cls) {
    var a = el('a', cls, text);
    a.setAttribute('href', queryString(normState(next)));
    a.addEventListener('click', function (e) {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      if (next.view === 'health' && state.view === 'health') selectIdentity(next.name, true);
      else navigate(next);
    });
    return a;
  }

  /* A row's name: the link when linkable, else the name as text; what
   * says what "(other)" gathers. */
  function nameCell(name, linkable, link, what) {
    var th = el('th', 'col-identity');
    th.setAttribute('scope', 'row');
    if (linkable) th.appendChild(link);
    else th.appendChild(el('span', 'other-name', name || '(no name)'));
    if (name === OTHER_NAME) th.appendChild(el('span', 'other-note', what));
    return th;
  }

  function identityOk(name) { return NAME_RE.test(name) || name === OTHER_NAME; }

  function healthRow(item) {
    var name = str(item.name);
    var tr = el('tr', 'hrow');
    tr.setAttribute('data-name', name);
    tr.appendChild(nameCell(name, identityOk(name),
      viewLink(name, { view: 'health', name: name }, 'identity-link'),
      'identities past the daily limit of names, or not valid as names'));
    var tdS = el('td', 'col-hstatus');
    tdS.appendChild(statusBadge(item.status));
    tr.appendChild(tdS);
    var w = isObj(item.windows) ? item.windows : {};
    ['24h', '7d', '30d'].forEach(function (k) {
      tr.appendChild(windowCell(has(w, k) ? w[k] : null, k));
    });
    return tr;
  }

  function resetHealth() {
    ['health', 'health-empty', 'health-table', 'health-detail', 'health-domains', 'health-note',
      'health-series-error', 'domains-error', 'domains-bounces-empty',
      'domains-complaints-empty'].forEach(function (id) { show(id, false); });
    clear($('health-table').tBodies[0]);
    clearCharts();
    clear($('domains-bounces').tBodies[0]);
    clear($('domains-complaints').tBodies[0]);
    health.items = [];
    health.detailGen++;
    health.domainsGen++;
  }

  function clearCharts() {
    ['chart-bounce', 'chart-complaint', 'chart-counts', 'counts-legend'].forEach(function (id) { clear($(id)); });
  }

  function apiNow() { return Date.now() + health.skew; }

  function loadHealth(name) {
    var gen = ++generation;
    resetViews();
    document.title = 'Sending health · mailtrail';
    setStatus('Loading sending health…');
    $('health-range').value = health.range;
    return api('v1/health?dimension=identity&limit=' + HEALTH_LIMIT)
      .then(function (body) {
        if (gen !== generation) return;
        var items = Array.isArray(body.items) ? body.items.filter(isObj) : [];
        health.thresholds = thresholdsOf(body.thresholds);
        health.minVolume = num(body.min_volume);
        health.skew = num(body.now) != null ? body.now - Date.now() : 0;
        health.items = items;
        $('health-volume').textContent = 'Each identity\'s status is its worst window: OK, Warning (above half the review level), At risk (above the review level) or Pause risk (above the pause level). A window with ' +
          (health.minVolume != null ? 'fewer than ' + plural(health.minVolume, 'send', 'sends') : 'too few sends') +
          ' is Low volume and not judged. The rates count every event mailtrail stored, hour by hour, in UTC.';
        show('health', true);
        if (items.length === 0) {
          show('health-empty', true);
          setStatus('No events counted yet.');
          return;
        }
        var tbody = $('health-table').tBodies[0];
        items.forEach(function (item) { tbody.appendChild(healthRow(item)); });
        show('health-table', true);
        show('health-domains', true);
        loadDomains();
        var pick = name ? name.toLowerCase() : '';   /* identities are lower-case */
        for (var i = 0; !pick && i < items.length; i++) {
          if (identityOk(str(items[i].name))) pick = str(items[i].name);
        }
        setStatus('Showing ' + plural(items.length, 'sending identity', 'sending identities') + '.');
        if (pick) selectIdentity(pick, false);
      })
      .catch(function (err) { if (gen === generation) showError(err); });
  }

  /* Shows one identity's charts; push: a new history entry (a click). */
  function selectIdentity(name, push) {
    if (push) {
      state = normState({ view: 'health', name: name });
      pushUrl();
    }
    health.name = name;
    var item = null;
    health.items.forEach(function (it) { if (!item && str(it.name) === name) item = it; });
    Array.prototype.forEach.call($('health-table').tBodies[0].rows, function (tr) {
      var on = tr.getAttribute('data-name') === name;
      tr.classList.toggle('selected', on);
      if (on) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    });
    $('health-name').textContent = name;
    clear($('health-status'));
    if (item) $('health-status').appendChild(statusBadge(item.status));
    $('health-note').textContent = item ? '' : 'mailtrail counted no event of this identity in the last 30 days.';
    show('health-note', !item);
    show('health-detail', true);
    document.title = name + ' · sending health · mailtrail';
    return loadSeries();
  }

  function seriesPath(name, range) {
    var r = RANGES[range];
    var unit = r.step === 'day' ? DAY_MS : HOUR_MS;
    var now = apiNow();
    var from = Math.floor(now / unit) * unit - (r.n - 1) * unit;
    return 'v1/health/series?dimension=identity&name=' + encodeURIComponent(name) +
      '&from=' + from + '&to=' + (Math.floor(now) + 1) + '&step=' + r.step;
  }

  function seriesPoints(body) {
    var pts = Array.isArray(body.points) ? body.points : [];
    return pts.filter(function (p) { return isObj(p) && num(p.time) != null; }).slice(0, POINTS_MAX);
  }

  function loadSeries() {
    var gen = ++health.detailGen;
    var name = health.name;
    clearCharts();
    show('health-series-error', false);
    if (!identityOk(name)) {
      showError(new ApiError('"' + name + '" is not an identity name (lower-case letters, digits and . _ @ + -, at most 253).', 0, ''),
        'health-series-error');
      return Promise.resolve();
    }
    var range = has(RANGES, health.range) ? health.range : '30d';
    var daily = api(seriesPath(name, '30d'));
    var rates = range === '30d' ? daily : api(seriesPath(name, range));
    $('chart-counts').appendChild(el('p', 'chart-empty', 'Loading…'));
    return Promise.all([daily, rates])
      .then(function (res) {
        if (gen !== health.detailGen) return;
        clearCharts();
        var pts = seriesPoints(res[1]);
        var step = RANGES[range].step;
        $('chart-bounce').appendChild(rateChart(pts, step, 'bounce', RANGES[range].label));
        $('chart-complaint').appendChild(rateChart(pts, step, 'complaint', RANGES[range].label));
        countsChart(seriesPoints(res[0]));
      })
      .catch(function (err) {
        if (gen !== health.detailGen) return;
        clearCharts();
        showError(err, 'health-series-error');
      });
  }

  /* ---- SVG charts ---------------------------------------------------------------- */

  /* An SVG element with attributes; every value given here is a number or
   * a fixed word of this file, never text from the API. */
  function svg(tag, attrs, cls) {
    var e = document.createElementNS(SVG_NS, tag);
    if (cls) e.setAttribute('class', cls);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  function svgText(x, y, text, cls, anchor) {
    var t = svg('text', { x: x, y: y }, cls);
    if (anchor) t.setAttribute('text-anchor', anchor);
    t.textContent = text;
    return t;
  }

  function svgTitle(node, text) {
    var t = svg('title');
    t.textContent = text;
    node.appendChild(t);
    return node;
  }

  /* The smallest 1, 2, 4 or 8 times a power of ten that is >= v: an axis
   * top whose quarters read well (0.25%, 0.5%, 1%, 2%...). */
  function niceTop(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var steps = [1, 2, 4, 8, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * p >= v * (1 - 1e-9)) return steps[i] * p;
    }
    return 10 * p;
  }

  /* Labels under the x axis: days (every few) or hours (at midnight UTC,
   * or every six hours when there are few). */
  function xLabels(g, pts, step, x, y) {
    var n = pts.length;
    if (step === 'day') {
      var every = Math.max(1, Math.ceil(n / 10));
      for (var i = n - 1; i >= 0; i -= every) g.appendChild(svgText(x(i), y, fmtDay(pts[i].time), 'axis-label', 'middle'));
      return;
    }
    pts.forEach(function (p, j) {
      var h = new Date(p.time).getUTCHours();
      if (h === 0) g.appendChild(svgText(x(j), y, fmtDay(p.time), 'axis-label', 'middle'));
      else if (n <= 48 && h % 6 === 0) g.appendChild(svgText(x(j), y, pad(h) + ':00', 'axis-label', 'middle'));
    });
  }

  /* A rate over time (kind: 'bounce' or 'complaint'): a line with a dot
   * per bucket that has a rate (none where nothing was sent), and the SES
   * review and pause levels as labelled lines. */
  function rateChart(pts, step, kind, periodLabel) {
    var W = 600, H = 240, L = 54, R = 92, T = 14, B = 28;
    var pw = W - L - R, ph = H - T - B;
    var th = health.thresholds[kind];
    var key = kind + '_rate';
    var what = kind === 'bounce' ? 'Bounce rate' : 'Complaint rate';
    var n = pts.length;
    var vals = pts.map(function (p) { var v = num(p[key]); return v != null && v >= 0 ? v : null; });
    var max = 0, last = null, seen = 0;
    vals.forEach(function (v) { if (v != null) { seen++; last = v; if (v > max) max = v; } });
    var top = niceTop(Math.max(th.pause * 1.25, max * 1.05));
    var x = function (i) { return L + (i + 0.5) * pw / Math.max(n, 1); };
    var y = function (v) { return T + ph - v / top * ph; };

    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' }, 'chart-svg rate-chart');
    root.setAttribute('data-kind', kind);
    root.setAttribute('aria-label', what + ', ' + periodLabel + ': ' +
      (seen ? 'latest ' + fmtPct(last) + ', highest ' + fmtPct(max) : 'no sends') +
      '; SES review level ' + fmtLevel(th.review) + ', pause level ' + fmtLevel(th.pause) + '.');
    svgTitle(root, what + ', ' + periodLabel);

    var grid = root.appendChild(svg('g', {}, 'grid'));
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4;
      grid.appendChild(svg('line', { x1: L, x2: L + pw, y1: y(v), y2: y(v) }, i ? 'grid-line' : 'axis-line'));
      grid.appendChild(svgText(L - 6, y(v) + 4, fmtLevel(v), 'axis-label', 'end'));
    }
    xLabels(grid, pts, step, x, H - 8);

    /* The threshold labels sit right of the plot; 13 units apart at least. */
    var yPause = y(th.pause), yReview = y(th.review);
    var lyPause = Math.min(yPause, yReview - 13);
    [['review', th.review, yReview, yReview], ['pause', th.pause, yPause, lyPause]].forEach(function (t) {
      var g = svg('g', {}, 'threshold threshold-' + t[0]);
      g.setAttribute('data-threshold', t[0]);
      g.setAttribute('data-value', String(t[1]));
      g.appendChild(svg('line', { x1: L, x2: L + pw, y1: t[2], y2: t[2] }));
      g.appendChild(svgText(L + pw + 6, Math.max(t[3] + 4, T + 4), 'SES ' + t[0] + ' ' + fmtLevel(t[1]), 'threshold-label'));
      root.appendChild(g);
    });

    var d = '';
    var pen = false;
    vals.forEach(function (v, j) {
      if (v == null) { pen = false; return; }
      d += (pen ? ' L' : ' M') + x(j).toFixed(1) + ' ' + y(v).toFixed(1);
      pen = true;
    });
    if (d) root.appendChild(svg('path', { d: d.trim() }, 'rate-line rate-line-' + kind));
    var dots = root.appendChild(svg('g', {}, 'dots'));
    vals.forEach(function (v, j) {
      if (v == null) return;
      var p = pts[j];
      var c = p.counts;
      var part = kind === 'bounce' ? count(c, 'Bounce/Permanent') : count(c, 'Complaint');
      var base = kind === 'bounce' ? num(p.sends)
        : (count(c, 'Send') > 0 ? count(c, 'Send') : count(c, 'Delivery'));
      var dot = svg('circle', { cx: x(j).toFixed(1), cy: y(v).toFixed(1), r: n > 60 ? 2.2 : 3.5 },
        'rate-dot' + (v > th.pause ? ' over-pause' : v > th.review ? ' over-review' : ''));
      dot.setAttribute('data-time', String(p.time));
      dot.setAttribute('data-rate', String(v));
      svgTitle(dot, fmtBucket(p.time, step) + ': ' + what.toLowerCase() + ' ' + fmtPct(v) + ' (' +
        plural(part, kind === 'bounce' ? 'hard bounce' : 'complaint', kind === 'bounce' ? 'hard bounces' : 'complaints') +
        (base != null ? ' of ' + plural(base, 'send', 'sends') : '') + ')');
      dots.appendChild(dot);
    });
    if (!seen) root.appendChild(svgText(L + pw / 2, T + ph / 2, 'Nothing sent in this period', 'chart-note', 'middle'));
    return root;
  }

  /* Events per day, stacked by type, and a legend with the period's totals. */
  function countsChart(pts) {
    var W = 1000, H = 230, L = 54, R = 12, T = 12, B = 28;
    var pw = W - L - R, ph = H - T - B;
    var n = pts.length;
    var totals = {};
    var max = 0;
    pts.forEach(function (p) {
      var sum = 0;
      COUNT_TYPES.forEach(function (t) {
        var c = count(p.counts, t);
        sum += c;
        totals[t] = (totals[t] || 0) + c;
      });
      if (sum > max) max = sum;
    });
    /* Whole numbers on the four ticks. */
    var top = Math.max(4, Math.ceil(niceTop(max) / 4) * 4);
    var slot = pw / Math.max(n, 1);
    var bw = Math.max(1, slot * 0.72);
    var x = function (i) { return L + (i + 0.5) * slot; };
    var y = function (v) { return T + ph - v / top * ph; };
    var all = 0;
    COUNT_TYPES.forEach(function (t) { all += totals[t]; });

    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' }, 'chart-svg counts-chart');
    root.setAttribute('aria-label', 'Events per day, the last ' + n + ' days, stacked by type: ' +
      plural(all, 'event', 'events') + ' in all.');
    svgTitle(root, 'Events per day, stacked by type');
    var grid = root.appendChild(svg('g', {}, 'grid'));
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4;
      grid.appendChild(svg('line', { x1: L, x2: L + pw, y1: y(v), y2: y(v) }, i ? 'grid-line' : 'axis-line'));
      grid.appendChild(svgText(L - 6, y(v) + 4, fmtInt(v), 'axis-label', 'end'));
    }
    xLabels(grid, pts, 'day', x, H - 8);
    var bars = root.appendChild(svg('g', {}, 'bars'));
    pts.forEach(function (p, j) {
      var g = svg('g', {}, 'bar');
      g.setAttribute('data-time', String(p.time));
      var cum = 0;
      COUNT_TYPES.forEach(function (t) {
        var c = count(p.counts, t);
        if (!c) return;
        var rect = svg('rect', {
          x: (x(j) - bw / 2).toFixed(1), y: y(cum + c).toFixed(2),
          width: bw.toFixed(1), height: (y(cum) - y(cum + c)).toFixed(2)
        }, 'seg seg-' + typeSlug(t));
        rect.setAttribute('data-type', t);
        rect.setAttribute('data-count', String(c));
        svgTitle(rect, fmtBucket(p.time, 'day') + ': ' + COUNT_LABEL[t] + ' ' + fmtInt(c));
        g.appendChild(rect);
        cum += c;
      });
      bars.appendChild(g);
    });
    if (!all) root.appendChild(svgText(L + pw / 2, T + ph / 2, 'No events in the last 30 days', 'chart-note', 'middle'));
    $('chart-counts').appendChild(root);

    var legend = $('counts-legend');
    COUNT_TYPES.forEach(function (t) {
      if (!totals[t]) return;
      var li = el('li', 'legend-item');
      li.setAttribute('data-type', t);
      li.setAttribute('data-count', String(totals[t]));
      li.appendChild(el('span', 'swatch seg-' + typeSlug(t)));
      li.appendChild(el('span', null, COUNT_LABEL[t] + ' '));
      li.appendChild(el('strong', null, fmtInt(totals[t])));
      legend.appendChild(li);
    });
  }

  /* ---- recipient domains ---------------------------------------------------------- */

  function domainsPath(window, by) {
    return 'v1/health/domains?window=' + encodeURIComponent(window) + '&by=' + by + '&limit=' + DOMAINS_LIMIT;
  }

  function fillDomains(by, list) {
    var id = by === 'bounces' ? 'domains-bounces' : 'domains-complaints';
    var tbody = $(id).tBodies[0];
    clear(tbody);
    var rows = (Array.isArray(list) ? list : []).filter(isObj).slice(0, DOMAINS_LIMIT);
    rows.forEach(function (d) {
      var name = str(d.domain);
      var tr = el('tr');
      tr.setAttribute('data-domain', name);
      tr.appendChild(nameCell(name, DOMAIN_RE.test(name), viewLink(name, { domain: name }, 'domain-link'),
        'domains past the daily limit, or not plain host names'));
      var cells = by === 'bounces'
        ? [fmtInt(d.bounces), fmtInt(d.permanent_bounces), fmtPct(d.bounce_rate)]
        : [fmtInt(d.complaints), fmtInt(d.sends), fmtPct(d.complaint_rate)];
      cells.forEach(function (c, i) {
        var td = el('td', 'num', c);
        td.setAttribute('data-col', String(i));
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    show(id, rows.length > 0);
    show(id + '-empty', rows.length === 0);
  }

  function loadDomains() {
    var gen = ++health.domainsGen;
    var w = $('domains-window').value || '7d';
    show('domains-error', false);
    return Promise.all([api(domainsPath(w, 'bounces')), api(domainsPath(w, 'complaints'))])
      .then(function (res) {
        if (gen !== health.domainsGen) return;
        fillDomains('bounces', res[0].domains);
        fillDomains('complaints', res[1].domains);
      })
      .catch(function (err) {
        if (gen !== health.domainsGen) return;
        fillDomains('bounces', []);
        fillDomains('complaints', []);
        show('domains-bounces-empty', false);
        show('domains-complaints-empty', false);
        showError(err, 'domains-error');
      });
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
    $('nav-health').addEventListener('click', function (e) {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate({ view: 'health' });
    });
    $('nav-recipients').addEventListener('click', function (e) {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate({});
    });
    $('health-range').addEventListener('change', function () {
      health.range = $('health-range').value;
      loadSeries();
    });
    $('domains-window').addEventListener('change', loadDomains);
    $('older').addEventListener('click', loadOlder);
    $('recent-older').addEventListener('click', loadRecentOlder);
    $('token-form').addEventListener('submit', onTokenSubmit);
    window.addEventListener('popstate', function () {
      state = normState(readQuery());
      render();
    });
    var q = readQuery();
    q.address = normaliseInput(q.address);
    q.message = normaliseInput(q.message);
    state = normState(q);
    render();
    if (!state.address && !state.message && !state.view && !state.domain) $('address').focus();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
