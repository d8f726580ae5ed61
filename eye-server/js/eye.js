/* eye.js: The Eye's browser tracker, readable source. The server serves the minified
 * build, eye-server/assets/eye.js (`node eye-server/js/build.mjs`); docs/browser-tracker.md
 * says how to use it. In Node (`require`) it exports its parts for eye.test.mjs. */
(function (w) {
  'use strict';
  // The data fields of each event type (eye-core event.rs), in wire order.
  const TYPES = {
    'page_interaction/page_view': ['host', 'path'],
    'page_interaction/cta_click': ['host', 'path', 'element'],
    'form_interaction/submit': ['host', 'path', 'form'],
  };
  // A host name with an optional port 1-65535 (eye-core fields.rs `Host`).
  const L = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
  const HOST = RegExp(`^${L}(?:\\.${L})*(?::([1-9]\\d{0,4}))?$`, 'i');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
  const MAX_EVENT = 32768; // bytes of one event's JSON (MAX_EVENT_BYTES)
  const BODY = 64000; // bytes per request: keepalive and beacons get 64 KiB in all
  const BATCH = 1000; // events per request (MAX_BATCH_EVENTS)
  const CAP = 1000; // unsent events kept in storage; the oldest go first
  const IDLE = 18e5; // a session ends after 30 min without events...
  const DAY = 864e5; // ...and 24 h after it began
  const QK = 'eye_q', SK = 'eye_s', OK = 'eye_optout'; // localStorage keys
  // Field names and autocomplete tokens that are never sent.
  const SECRET = /pass|pwd|secret|token|card|^cc|cc[-_]|cvc|cvv|iban|ssn|one-time/i;

  const cap = (s, n) => [...s].slice(0, n).join('');
  const bytes = (s) => new TextEncoder().encode(s).length;
  const isObj = (v) => v !== null && typeof v == 'object' && !Array.isArray(v);
  const deeper = (v, b) => v !== null && typeof v == 'object' && (!b || Object.values(v).some((c) => deeper(c, b - 1)));
  const iso = (t) => new Date(t).toISOString();

  /** The problems of an event as [{path, code}], with the server's paths and codes.
   * id, session_id and timestamp are made here and valid by construction; the
   * caller's category, name and data are checked as eye-core parse.rs does. */
  function check(e) {
    const err = [];
    const bad = (path, code) => err.push({ path: '/data/' + path, code });
    const t = TYPES[e.category + '/' + e.name];
    const d = e.data;
    if (!t) err.push({ path: /^(page|form)_interaction$/.test(e.category) ? '/name' : '/category', code: 'unknown_event_type' });
    else if (!isObj(d)) bad('', 'wrong_type');
    else {
      for (const k in d) t.includes(k) || bad(k, 'unknown_field');
      const str = (k, code, ok) => {
        const v = d[k];
        if (v === undefined) bad(k, 'missing_field');
        else if (typeof v != 'string') bad(k, 'wrong_type');
        else if (!ok(v, [...v].length)) bad(k, code);
      };
      str('host', 'invalid_host', (v) => {
        const m = HOST.exec(v);
        return m && v.length < 254 && !(m[1] > 65535);
      });
      str('path', 'invalid_path', (v, n) => v[0] == '/' && n <= 2048);
      if (t[2] == 'element') str('element', 'invalid_element', (v, n) => n && n <= 256);
      const f = d.form;
      if (t[2] == 'form') {
        if (f === undefined) bad('form', 'missing_field');
        else if (!isObj(f)) bad('form', 'wrong_type');
        else if (Object.values(f).some((v) => deeper(v, 31))) bad('form', 'form_too_deep');
      }
    }
    if (!err.length && bytes(JSON.stringify(e)) > MAX_EVENT) err.push({ path: '', code: 'event_too_large' });
    return err;
  }

  /** Whether a form field is left out. f: {name, type, autocomplete, ignore}. */
  const secret = (f) =>
    f.ignore || /^(password|hidden|file)$/i.test(f.type) || SECRET.test(f.name) || SECRET.test(f.autocomplete || '');

  /** The `form` object from FormData entries [[name, value]]: only names that belong
   * to a known field none of whose fields is secret; a repeated name gives an array. */
  function formOf(entries, fields) {
    const no = new Set(fields.filter(secret).map((f) => f.name));
    const o = Object.create(null);
    for (const [k, v] of entries) {
      if (typeof v == 'string' && !no.has(k) && fields.some((f) => f.name == k)) o[k] = k in o ? [].concat(o[k], v) : v;
    }
    return o;
  }

  /** The `element` of a CTA: the attribute's value, else the element's text, capped. */
  const cta = (v, text) => cap(v || text.replace(/\s+/g, ' ').trim(), 256);

  /** Whether the stored session {id, start, last} is over at time t (or not ours). */
  const renew = (s, t) => !s || !UUID.test(s.id) || !(t - s.last <= IDLE && t - s.start <= DAY);

  /** Milliseconds before retry n (0-based): doubling from 1 s to 5 min, less a jitter of
   * up to half (r in [0, 1)), never sooner than Retry-After (ra, ms). */
  const backoff = (n, r, ra) => Math.max(ra || 0, (Math.min(3e5, 1e3 * 2 ** n) * (1 + r)) / 2);

  /** A Retry-After header (delay-seconds; The Eye sends no dates) in milliseconds. */
  const retryAfter = (v) => v * 1e3 || 0;

  /** Statuses worth another attempt; 0 is a network error. Other 4xx never succeed:
   * a 400 answering a batch means every event in it was rejected. */
  const retryable = (s) => !s || s == 408 || s == 429 || s > 499;

  /** Splits events into request bodies of at most max bytes and BATCH events. */
  function split(q, max = BODY) {
    const out = [];
    let cur = [], size = 1; // "[" + (event + "," or "]") per event
    for (const e of q) {
      const n = bytes(JSON.stringify(e)) + 1;
      if (cur.length && (size + n > max || cur.length >= BATCH)) {
        out.push(cur);
        cur = [];
        size = 1;
      }
      cur.push(e);
      size += n;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  /** Whether the browser says not to send: automation, unless the page allows it, or
   * Do-Not-Track / Global Privacy Control when the page honours them. */
  const blocked = (nav, has) =>
    !!((nav.webdriver && !has('allow-automation')) ||
      (has('respect-dnt') && (nav.doNotTrack == '1' || nav.globalPrivacyControl === true)));

  /** A random (v4) UUID; randomUUID exists only on https pages. */
  function uuid() {
    const c = globalThis.crypto;
    if (c.randomUUID) return c.randomUUID();
    const h = [...c.getRandomValues(new Uint8Array(16))].map((x, i) =>
      ((i == 6 ? (x & 15) | 64 : i == 8 ? (x & 63) | 128 : x) + 256).toString(16).slice(1));
    return h.join('').replace(/(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
  }

  /** A tracker over injected surroundings, so tests can drive it:
   * x = {key, api, S: Storage?, now(), rand(), fetch(url, init), beacon(url, body),
   *      loc() -> {host, path}, timer(fn, ms), off: blocked(...)}. */
  function eye(x) {
    const mem = {}; // what storage would hold, when it refuses
    const get = (k) => {
      try {
        const v = x.S.getItem(k);
        if (v != null) return JSON.parse(v);
      } catch (e) {}
      return mem[k];
    };
    const set = (k, v) => {
      mem[k] = v;
      try {
        v == null ? x.S.removeItem(k) : x.S.setItem(k, JSON.stringify(v));
      } catch (e) {
        try { x.S.removeItem(k); } catch (e) {} // so that get() reads mem
      }
    };
    const queue = () => get(QK) || [];
    const on = () => !x.off && !get(OK);
    // sent_at is stamped on every attempt, so the server corrects clock skew right.
    const url = () => `${x.api}/events?key=${encodeURIComponent(x.key)}&sent_at=${iso(x.now())}`;
    const not = (q, b) => q.filter((e) => !b.some((s) => s.id == e.id));
    const drop = (b) => set(QK, not(queue(), b));
    let timer, busy, fails = 0, last, gone = [], lim = BODY;
    const later = (ms) => timer || (timer = x.timer(flush, ms) || 1);

    function session() {
      const t = x.now();
      let s = get(SK);
      if (renew(s, t)) s = { id: uuid(), start: t };
      s.last = t;
      set(SK, s);
      return s.id;
    }

    /** Validates and queues one event: {ok: true} or {ok: false, errors}. */
    function track(category, name, data) {
      if (!on()) return { ok: false, errors: [{ path: '', code: 'disabled' }] };
      const l = x.loc();
      const e = { id: uuid(), session_id: session(), category, name, data: Object.assign({ host: l.host, path: l.path }, data), timestamp: iso(x.now()) };
      const errors = check(e);
      if (errors.length) return { ok: false, errors };
      set(QK, queue().concat(e).slice(-CAP));
      fails || later(1e3); // while failing, the pending retry takes it
      return { ok: true };
    }

    /** A page view, unless this page was the last one seen (force: bfcache restore). */
    function view(force) {
      const l = x.loc(), k = l.host + l.path;
      if (k != last || force) {
        last = k;
        track('page_interaction', 'page_view');
      }
    }

    /** Sends the oldest batch. One request at a time keeps within keepalive's quota. */
    async function flush() {
      timer = 0;
      const b = !busy && on() && split(queue(), lim)[0];
      if (!b) return;
      busy = b;
      let status = 0, ra;
      try {
        const r = await x.fetch(url(), { method: 'POST', keepalive: true, body: JSON.stringify(b), headers: { 'content-type': 'text/plain' } });
        status = r.status;
        ra = r.headers.get('retry-after');
      } catch (e) {}
      busy = 0;
      // 413: the server takes smaller bodies than ours; halve them down to one event.
      if (status == 413 && b[1]) return later(0, (lim = bytes(JSON.stringify(b)) / 2 + 1));
      if (retryable(status)) return later(backoff(fails++, x.rand(), retryAfter(ra)));
      fails = 0; // accepted, or refused for good: done either way
      drop(b);
      if (queue().length) later(0);
    }

    /** The page goes away: beacon what no request or beacon of this page carries yet
     * (pagehide often follows visibilitychange). While the server fails, the events
     * also stay stored for the next page (their ids make the resend harmless). */
    function hide() {
      for (const b of on() ? split(not(queue(), gone.concat(busy || [])), lim) : []) {
        if (!x.beacon(url(), JSON.stringify(b))) break;
        gone = gone.concat(b);
        fails || drop(b);
      }
    }

    if (queue().length) later(1e3); // left by an earlier page
    return { track, view, flush, hide, optOut: () => (set(OK, 1), set(QK, null)), optIn: () => set(OK, null) };
  }

  function start() {
    const d = document;
    const s = d.currentScript || d.querySelector('script[data-key]');
    const attr = (n) => s.getAttribute('data-' + n);
    const key = s && attr('key');
    if (!key) return;
    let S;
    try { S = w.localStorage; } catch (e) {} // storage blocked: memory only
    const nav = navigator;
    const t = eye({
      key,
      api: (attr('api') || new URL(s.src).origin).replace(/\/+$/, ''),
      S,
      now: Date.now,
      rand: Math.random,
      fetch: (u, o) => fetch(u, o),
      beacon: (u, b) => nav.sendBeacon && nav.sendBeacon(u, new Blob([b], { type: 'text/plain' })),
      loc: () => ({ host: location.host, path: cap(location.pathname, 2048) }),
      timer: (f, ms) => setTimeout(f, ms),
      off: blocked(nav, (n) => attr(n) != null),
    });
    const on = (o, ev, f) => o.addEventListener(ev, f, true);
    for (const m of ['pushState', 'replaceState']) {
      const orig = history[m];
      history[m] = function () {
        const r = orig.apply(this, arguments);
        t.view();
        return r;
      };
    }
    on(w, 'popstate', () => t.view());
    on(w, 'pageshow', (e) => e.persisted && t.view(1));
    on(w, 'pagehide', t.hide);
    on(d, 'visibilitychange', () => d.visibilityState == 'hidden' && t.hide());
    on(d, 'click', (e) => {
      const c = e.target.closest && e.target.closest('[data-eye-cta]');
      if (c) t.track('page_interaction', 'cta_click', { element: cta(c.getAttribute('data-eye-cta'), c.textContent) });
    });
    on(d, 'submit', (e) => {
      const f = e.target;
      // Fields are looked up in the document, not in f.elements (which a field named
      // "elements" shadows); a value whose field is not found is not sent.
      if (f.hasAttribute('data-eye-form')) {
        t.track('form_interaction', 'submit', {
          form: formOf(new FormData(f), [...d.querySelectorAll('[name]')].filter((el) => el.form == f).map((el) => ({
            name: el.name, type: el.type, autocomplete: el.getAttribute('autocomplete'), ignore: el.closest('[data-eye-ignore]'),
          }))),
        });
      }
    });
    w.eye = { track: t.track, optOut: t.optOut, optIn: t.optIn };
    t.view();
  }

  if (typeof module == 'object' && module && module.exports) {
    module.exports = { check, secret, formOf, cta, renew, backoff, retryAfter, retryable, split, blocked, uuid, iso, eye, CAP, BODY };
  }
  if (w.document) start();
})(typeof window == 'object' ? window : {});
