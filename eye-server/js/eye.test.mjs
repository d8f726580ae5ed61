// Unit tests of eye.js's pure parts and of its tracker driven through injected
// surroundings: `node --test eye-server/js/`. Every test runs twice, against the readable
// source (eye.js) and against the minified build the server serves (../assets/eye.js),
// so the build is proven to behave like the source.
//
// Fakes, and why: the storage, fetch, beacon, clock and timer given to the tracker are
// small fakes because Node has no localStorage, sendBeacon or page; the real browser
// path is the Chromium test on the server side.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const SOURCE = new URL('./eye.js', import.meta.url);
const BUILD = new URL('../assets/eye.js', import.meta.url);

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RFC3339_MILLIS_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const MIN = 60_000;

/** Storage with localStorage's three methods over a Map; `full` makes setItem throw
 * like a browser whose quota is exhausted. */
function fakeStorage() {
  const map = new Map();
  return {
    map,
    full: false,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem(k, v) {
      if (this.full) throw new Error('QuotaExceededError');
      map.set(k, String(v));
    },
    removeItem: (k) => map.delete(k),
  };
}

/** The surroundings a tracker runs in, with a hand-driven clock and timer. `replies` is
 * what fetch answers, in order: {status, retryAfter}, 'network' (a rejected fetch) or
 * 'pending' (never settles); 201 once they run out. */
function surroundings(over = {}) {
  const x = {
    key: 'eye_pk_test',
    api: 'https://eye.test',
    S: fakeStorage(),
    t: T0,
    host: 'shop.example',
    path: '/',
    off: false,
    requests: [],
    beacons: [],
    timers: [],
    replies: [],
    beaconAccepts: true,
    now: () => x.t,
    rand: () => 0.5,
    loc: () => ({ host: x.host, path: x.path }),
    timer: (fn, ms) => x.timers.push(ms),
    async fetch(url, init) {
      x.requests.push({ url, init, events: JSON.parse(init.body) });
      const reply = x.replies.shift() ?? { status: 201 };
      if (reply === 'network') throw new TypeError('Failed to fetch');
      if (reply === 'pending') return new Promise(() => {});
      const headers = { 'retry-after': reply.retryAfter ?? null };
      return { status: reply.status, headers: { get: (k) => headers[k.toLowerCase()] ?? null } };
    },
    beacon(url, body) {
      if (!x.beaconAccepts) return false;
      x.beacons.push({ url, events: JSON.parse(body) });
      return true;
    },
    ...over,
  };
  return x;
}

const stored = (x) => JSON.parse(x.S.map.get('eye_q') ?? '[]');

for (const [label, file] of [['source', SOURCE], ['build', BUILD]]) {
  const eye = require(file.pathname);
  const valid = (over = {}) => ({
    id: eye.uuid(),
    session_id: eye.uuid(),
    category: 'page_interaction',
    name: 'cta_click',
    data: { host: 'shop.example', path: '/pricing', element: 'buy' },
    timestamp: eye.iso(T0),
    ...over,
  });
  const codes = (e) => eye.check(e).map((p) => `${p.path} ${p.code}`);

  describe(`${label}: validation follows eye-core's rules`, () => {
    test('each of the three event types with its own data fields is valid', () => {
      assert.deepEqual(codes(valid({ name: 'page_view', data: { host: 'a.com', path: '/' } })), []);
      assert.deepEqual(codes(valid()), []);
      assert.deepEqual(codes(valid({ category: 'form_interaction', name: 'submit', data: { host: 'a.com', path: '/', form: { q: 'x' } } })), []);
    });

    test('an unknown type is reported on /category, or on /name when the category exists', () => {
      assert.deepEqual(codes(valid({ category: 'video', name: 'play' })), ['/category unknown_event_type']);
      assert.deepEqual(codes(valid({ name: 'submit' })), ['/name unknown_event_type']);
    });

    test('data must be an object holding only its type\'s fields', () => {
      assert.deepEqual(codes(valid({ data: ['x'] })), ['/data/ wrong_type']);
      const d = { host: 'a.com', path: '/', element: 'x', form: {} };
      assert.deepEqual(codes(valid({ data: d })), ['/data/form unknown_field']);
      assert.deepEqual(codes(valid({ data: { path: '/', element: 1 } })), ['/data/host missing_field', '/data/element wrong_type']);
    });

    test('host takes names, addresses and ports 1-65535 as the server does', () => {
      for (const ok of ['www.consumeraffairs.com', 'localhost', 'localhost:8000', '127.0.0.1:1', 'a-b.c:65535', 'x']) {
        assert.deepEqual(codes(valid({ data: { host: ok, path: '/', element: 'e' } })), [], ok);
      }
      const long = Array(5).fill('a'.repeat(60)).join('.') + '.com';
      for (const bad of ['', 'a..b', '.a', 'a.', '-a', 'a-', 'a b', 'a_b.com', 'a:0', 'a:65536', 'a:080', 'a:', 'a:1:2', 'https://a.com', '[::1]:80', 'a'.repeat(64), long]) {
        assert.deepEqual(codes(valid({ data: { host: bad, path: '/', element: 'e' } })), ['/data/host invalid_host'], bad);
      }
    });

    test('path starts with / and has at most 2048 characters, counted as code points', () => {
      const at = (path) => codes(valid({ data: { host: 'a.com', path, element: 'e' } }));
      assert.deepEqual(at('/' + 'é'.repeat(2047)), []);
      assert.deepEqual(at('/' + 'a'.repeat(2048)), ['/data/path invalid_path']);
      assert.deepEqual(at('pricing'), ['/data/path invalid_path']);
      assert.deepEqual(at(''), ['/data/path invalid_path']);
    });

    test('element has 1 to 256 characters', () => {
      const at = (element) => codes(valid({ data: { host: 'a.com', path: '/', element } }));
      assert.deepEqual(at('😀'.repeat(256)), []);
      assert.deepEqual(at('e'.repeat(257)), ['/data/element invalid_element']);
      assert.deepEqual(at(''), ['/data/element invalid_element']);
    });

    test('form is an object nested at most 32 levels deep', () => {
      const at = (form) => codes(valid({ category: 'form_interaction', name: 'submit', data: { host: 'a.com', path: '/', form } }));
      const nest = (levels) => {
        let v = 'leaf';
        for (let i = 0; i < levels - 1; i++) v = i % 2 ? [v] : { k: v };
        return { top: v };
      };
      assert.deepEqual(at(nest(32)), []);
      assert.deepEqual(at(nest(33)), ['/data/form form_too_deep']);
      assert.deepEqual(at(['a']), ['/data/form wrong_type']);
      assert.deepEqual(at(undefined), ['/data/form missing_field']);
    });

    test('an event over 32 KiB of JSON is too large, counting UTF-8 bytes', () => {
      const at = (text) => codes(valid({ category: 'form_interaction', name: 'submit', data: { host: 'a.com', path: '/', form: { text } } }));
      assert.deepEqual(at('é'.repeat(16000)), []);
      assert.deepEqual(at('é'.repeat(16500)), [' event_too_large']);
    });
  });

  describe(`${label}: track() queues only valid events, in the server's format`, () => {
    test('a valid event is queued with a UUID, the session, the page and an RFC 3339 timestamp', () => {
      const x = surroundings({ path: '/pricing' });
      const t = eye.eye(x);
      assert.deepEqual(t.track('page_interaction', 'cta_click', { element: 'buy' }), { ok: true });
      const [e] = stored(x);
      assert.deepEqual(Object.keys(e), ['id', 'session_id', 'category', 'name', 'data', 'timestamp']);
      assert.match(e.id, UUID_V4);
      assert.match(e.session_id, UUID_V4);
      assert.deepEqual(e.data, { host: 'shop.example', path: '/pricing', element: 'buy' });
      assert.equal(e.timestamp, '2026-01-01T00:00:00.000Z');
      assert.match(e.timestamp, RFC3339_MILLIS_UTC);
      assert.deepEqual(eye.check(e), []);
    });

    test('an invalid event is refused with every problem and never queued', () => {
      const x = surroundings();
      const t = eye.eye(x);
      const r = t.track('page_interaction', 'cta_click', { host: 'bad host', element: '', colour: 'red' });
      assert.equal(r.ok, false);
      assert.deepEqual(r.errors.map((p) => p.code).sort(), ['invalid_element', 'invalid_host', 'unknown_field']);
      assert.deepEqual(stored(x), []);
    });

    test('ids stay hyphenated v4 UUIDs without crypto.randomUUID (http pages)', () => {
      const real = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
      Object.defineProperty(globalThis, 'crypto', { configurable: true, value: { getRandomValues: (a) => a.fill(0) } });
      try {
        assert.equal(eye.uuid(), '00000000-0000-4000-8000-000000000000');
      } finally {
        Object.defineProperty(globalThis, 'crypto', real);
      }
      assert.notEqual(eye.uuid(), eye.uuid());
    });
  });

  describe(`${label}: forms never carry secrets`, () => {
    const field = (name, type = 'text', extra = {}) => ({ name, type, autocomplete: null, ignore: null, ...extra });

    test('passwords, hidden and ignored fields, card, CVC, IBAN and SSN fields are left out', () => {
      const fields = [
        field('email', 'email'), field('first_name'), field('pw', 'password'), field('csrf', 'hidden'),
        field('note', 'textarea', { ignore: {} }), field('card_number'), field('num', 'text', { autocomplete: 'cc-number' }),
        field('exp', 'text', { autocomplete: 'cc-exp' }), field('cvc'), field('CVV2'), field('iban'), field('ssn'),
        field('user_password'), field('code', 'text', { autocomplete: 'one-time-code' }), field('upload', 'file'),
        field('pin2', 'text', { autocomplete: 'new-password' }),
      ];
      const entries = fields.map((f) => [f.name, 'v']);
      assert.deepEqual({ ...eye.formOf(entries, fields) }, { email: 'v', first_name: 'v' });
    });

    test('a name shared with a secret field, or with no field found, is left out', () => {
      const fields = [field('token_or_text'), field('x'), field('x', 'hidden')];
      assert.deepEqual({ ...eye.formOf([['x', 'a'], ['stray', 'b'], ['token_or_text', 'c']], fields) }, {});
    });

    test('repeated names become arrays; files are skipped; prototype names are plain keys', () => {
      const fields = [field('tag', 'checkbox'), field('toString'), field('__proto__'), field('doc', 'text')];
      const form = eye.formOf([['tag', 'a'], ['tag', 'b'], ['tag', 'c'], ['toString', 's'], ['__proto__', 'p'], ['doc', {}]], fields);
      assert.equal(JSON.stringify(form), '{"tag":["a","b","c"],"toString":"s","__proto__":"p"}');
    });

    test('a CTA is named by its attribute, else by its trimmed text, capped at 256 characters', () => {
      assert.equal(eye.cta('signup', 'Sign up now'), 'signup');
      assert.equal(eye.cta('', '\n  Start   free\ttrial \n'), 'Start free trial');
      assert.equal(eye.cta(null, 'é'.repeat(300)), 'é'.repeat(256));
    });
  });

  describe(`${label}: sessions`, () => {
    const s = { id: '6f1c1d3e-8b9a-4c2d-9e0f-1a2b3c4d5e6f', start: T0, last: T0 };

    test('a session ends after 30 minutes idle or 24 hours, and a foreign id is replaced', () => {
      assert.equal(eye.renew(null, T0), true);
      assert.equal(eye.renew(s, T0 + 30 * MIN), false);
      assert.equal(eye.renew(s, T0 + 30 * MIN + 1), true);
      assert.equal(eye.renew({ ...s, last: T0 + 1440 * MIN - 1 }, T0 + 1440 * MIN), false);
      assert.equal(eye.renew({ ...s, last: T0 + 1440 * MIN }, T0 + 1440 * MIN + 1), true);
      assert.equal(eye.renew({ ...s, id: 'x'.repeat(500) }, T0), true);
    });

    test('events share a session until 30 idle minutes pass; activity cannot stretch it past 24 h', () => {
      const x = surroundings();
      const t = eye.eye(x);
      const sessionAt = (minutes) => {
        x.t = T0 + minutes * MIN;
        t.track('page_interaction', 'page_view');
        return stored(x).at(-1).session_id;
      };
      const first = sessionAt(0);
      assert.equal(sessionAt(29), first);
      const second = sessionAt(60);
      assert.notEqual(second, first);
      let m = 60;
      while (m + 20 <= 60 + 1440) assert.equal(sessionAt((m += 20)), second, `minute ${m}`);
      assert.notEqual(sessionAt(m + 20), second);
    });

    test('tabs (trackers on one storage) share the session', () => {
      const x = surroundings();
      eye.eye(x).track('page_interaction', 'page_view');
      eye.eye(x).track('page_interaction', 'page_view');
      const [a, b] = stored(x);
      assert.equal(a.session_id, b.session_id);
    });
  });

  describe(`${label}: delivery`, () => {
    test('a batch is POSTed as a text/plain JSON array with the key and a fresh sent_at', async () => {
      const x = surroundings();
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      assert.deepEqual(x.timers, [1000]);
      x.t += 1000;
      await t.flush();
      const [r] = x.requests;
      assert.equal(r.url, 'https://eye.test/events?key=eye_pk_test&sent_at=2026-01-01T00:00:01.000Z');
      assert.deepEqual(r.init.headers, { 'content-type': 'text/plain' });
      assert.equal(r.init.method, 'POST');
      assert.equal(r.init.keepalive, true);
      assert.equal(r.events.length, 1);
      assert.deepEqual(stored(x), []);
    });

    test('network errors, 408, 429 and 5xx are retried with the same ids and a new sent_at', async () => {
      for (const reply of ['network', { status: 408 }, { status: 429 }, { status: 500 }, { status: 503 }]) {
        const x = surroundings({ replies: [reply] });
        const t = eye.eye(x);
        t.track('page_interaction', 'page_view');
        await t.flush();
        assert.equal(stored(x).length, 1, JSON.stringify(reply));
        assert.equal(x.timers.length, 2, 'a retry is scheduled');
        x.t += 10_000;
        await t.flush();
        const [a, b] = x.requests;
        assert.equal(a.events[0].id, b.events[0].id);
        assert.notEqual(new URL(a.url).searchParams.get('sent_at'), new URL(b.url).searchParams.get('sent_at'));
        assert.equal(new URL(b.url).searchParams.get('sent_at'), eye.iso(x.t));
        assert.deepEqual(stored(x), []);
      }
    });

    test('other 4xx are never retried: the batch is dropped', async () => {
      for (const status of [400, 401, 403, 404, 413, 415]) {
        const x = surroundings({ replies: [{ status }] });
        const t = eye.eye(x);
        t.track('page_interaction', 'page_view');
        await t.flush();
        assert.deepEqual(stored(x), [], String(status));
        assert.deepEqual(x.timers, [1000], 'no retry scheduled');
      }
    });

    test('a 413 halves the refused body until one event; a single event refused is dropped', async () => {
      const x = surroundings({ replies: [{ status: 413 }, { status: 413 }, { status: 413 }, { status: 413 }] });
      const t = eye.eye(x);
      for (let i = 0; i < 8; i++) t.track('page_interaction', 'page_view', { path: `/${i}` });
      for (let i = 0; i < 20 && stored(x).length; i++) await t.flush();
      const sizes = x.requests.map((r) => r.init.body.length);
      assert.deepEqual(x.requests.map((r) => r.events.length).slice(0, 4), [8, 4, 2, 1]);
      for (let i = 1; i < 4; i++) assert.ok(sizes[i] <= sizes[i - 1] / 2 + 1, `${sizes}`);
      assert.deepEqual(stored(x), []);
      const delivered = x.requests.slice(4).flatMap((r) => r.events.map((e) => e.data.path));
      assert.deepEqual(delivered, ['/1', '/2', '/3', '/4', '/5', '/6', '/7'], 'only /0 was refused alone and dropped');
    });

    test('Retry-After is honoured and backoff doubles, with jitter of at most half', async () => {
      const x = surroundings({ replies: [{ status: 503, retryAfter: '7' }, { status: 503 }, { status: 503 }] });
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      await t.flush();
      await t.flush();
      await t.flush();
      assert.deepEqual(x.timers, [1000, 7000, 1500, 3000]);
    });

    test('backoff stays within [half, all] of 1 s doubling to 5 min, and under Retry-After never', () => {
      for (let n = 0; n < 40; n++) {
        const full = Math.min(300_000, 1000 * 2 ** n);
        for (const r of [0, 0.25, 0.5, 0.999999]) {
          const d = eye.backoff(n, r, 0);
          assert.ok(d >= full / 2 && d < full, `n=${n} r=${r} d=${d}`);
        }
      }
      assert.equal(eye.backoff(0, 0.5, 120_000), 120_000);
      assert.equal(eye.backoff(10, 0.5, 1000), 225_000);
      assert.equal(eye.retryAfter('120'), 120_000);
      assert.equal(eye.retryAfter(null), 0);
      assert.equal(eye.retryAfter('Wed, 21 Oct 2015 07:28:00 GMT'), 0);
    });

    test('batches stay under 64 KiB of UTF-8 and 1000 events, in order', () => {
      const events = Array.from({ length: 300 }, (_, i) => ({ id: String(i), data: { text: 'é'.repeat(400) } }));
      const batches = eye.split(events);
      assert.ok(batches.length > 1);
      for (const b of batches) assert.ok(Buffer.byteLength(JSON.stringify(b)) <= eye.BODY);
      assert.ok(eye.BODY <= 65536);
      assert.deepEqual(batches.flat(), events);
      const two = Buffer.byteLength(JSON.stringify(events.slice(0, 2)));
      assert.deepEqual(eye.split(events.slice(0, 2), two).map((b) => b.length), [2], 'a body may fill the limit exactly');
      assert.deepEqual(eye.split(events.slice(0, 2), two - 1).map((b) => b.length), [1, 1]);
      const tiny = Array.from({ length: 2500 }, (_, i) => ({ i }));
      assert.deepEqual(eye.split(tiny).map((b) => b.length), [1000, 1000, 500]);
    });

    test('one request at a time; the next batch follows a success', async () => {
      const x = surroundings();
      const t = eye.eye(x);
      const big = 'x'.repeat(30_000);
      for (let i = 0; i < 3; i++) assert.equal(t.track('form_interaction', 'submit', { form: { big } }).ok, true);
      await t.flush();
      assert.equal(x.requests.length, 1);
      assert.equal(x.requests[0].events.length, 2);
      assert.deepEqual(x.timers, [1000, 0]);
      await t.flush();
      assert.equal(x.requests.length, 2);
      assert.deepEqual(stored(x), []);
    });

    test('storage keeps the newest 1000 unsent events', () => {
      const x = surroundings();
      const t = eye.eye(x);
      for (let i = 0; i < 1005; i++) {
        x.path = `/p${i}`;
        t.track('page_interaction', 'page_view');
      }
      const q = stored(x);
      assert.equal(q.length, eye.CAP);
      assert.equal(q[0].data.path, '/p5');
      assert.equal(q.at(-1).data.path, '/p1004');
    });

    test('events left by an earlier page are sent by the next one', async () => {
      const x = surroundings({ replies: ['network'] });
      const page1 = eye.eye(x);
      page1.track('page_interaction', 'page_view');
      await page1.flush();
      x.timers.length = 0;
      const page2 = eye.eye(x);
      assert.deepEqual(x.timers, [1000]);
      await page2.flush();
      assert.equal(x.requests.length, 2);
      assert.deepEqual(stored(x), []);
    });

    test('a full storage does not lose events: they are kept in memory', async () => {
      const x = surroundings();
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      x.S.full = true;
      t.track('page_interaction', 'cta_click', { element: 'buy' });
      await t.flush();
      assert.deepEqual(x.requests[0].events.map((e) => e.name), ['page_view', 'cta_click']);
    });

    test('leaving the page beacons what no request carries', async () => {
      const x = surroundings({ replies: ['pending'] });
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      t.flush(); // stays in flight
      await null;
      t.track('page_interaction', 'cta_click', { element: 'buy' });
      t.hide();
      assert.equal(x.beacons.length, 1);
      assert.match(x.beacons[0].url, /^https:\/\/eye\.test\/events\?key=eye_pk_test&sent_at=/);
      assert.deepEqual(x.beacons[0].events.map((e) => e.name), ['cta_click']);
      assert.deepEqual(stored(x).map((e) => e.name), ['page_view'], 'the beaconed event is done');
    });

    test('while the server fails, beaconed events also stay stored for the next page', async () => {
      const x = surroundings({ replies: [{ status: 503 }] });
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      await t.flush();
      t.hide();
      assert.equal(x.beacons.length, 1);
      assert.equal(stored(x).length, 1);
    });

    test('hiding twice (visibilitychange, then pagehide) beacons each event once', async () => {
      const x = surroundings({ replies: [{ status: 503 }] });
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      await t.flush();
      t.hide();
      t.track('page_interaction', 'cta_click', { element: 'buy' });
      t.hide();
      assert.deepEqual(x.beacons.map((b) => b.events.map((e) => e.name)), [['page_view'], ['cta_click']]);
    });

    test('a refused beacon leaves the events stored', () => {
      const x = surroundings({ beaconAccepts: false });
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      t.hide();
      assert.equal(stored(x).length, 1);
    });
  });

  describe(`${label}: page views`, () => {
    test('each page once: a repeated URL (replaceState, pushState to itself) is not a new view', () => {
      const x = surroundings();
      const t = eye.eye(x);
      t.view(); // load
      t.view(); // replaceState with the same URL
      x.path = '/pricing';
      t.view(); // pushState
      t.view(); // replaceState
      x.path = '/';
      t.view(); // popstate back
      t.view(1); // bfcache restore of the same page
      assert.deepEqual(stored(x).map((e) => e.data.path), ['/', '/pricing', '/', '/']);
      assert.ok(stored(x).every((e) => e.name === 'page_view'));
    });
  });

  describe(`${label}: respect`, () => {
    test('optOut stops tracking, clears the queue and is remembered; optIn resumes', async () => {
      const x = surroundings();
      const t = eye.eye(x);
      t.track('page_interaction', 'page_view');
      t.optOut();
      assert.deepEqual(stored(x), []);
      const r = t.track('page_interaction', 'page_view');
      assert.deepEqual(r, { ok: false, errors: [{ path: '', code: 'disabled' }] });
      const next = eye.eye(x);
      next.view();
      await next.flush();
      assert.deepEqual(x.requests, []);
      next.optIn();
      assert.deepEqual(next.track('page_interaction', 'page_view'), { ok: true });
    });

    test('automation, Do-Not-Track and Global Privacy Control block as configured', () => {
      const has = (...attrs) => (n) => attrs.includes(n);
      assert.equal(eye.blocked({ webdriver: true }, has()), true);
      assert.equal(eye.blocked({ webdriver: true }, has('allow-automation')), false);
      assert.equal(eye.blocked({ doNotTrack: '1' }, has()), false);
      assert.equal(eye.blocked({ doNotTrack: '1' }, has('respect-dnt')), true);
      assert.equal(eye.blocked({ globalPrivacyControl: true }, has('respect-dnt')), true);
      assert.equal(eye.blocked({ doNotTrack: '0', globalPrivacyControl: false }, has('respect-dnt')), false);
    });

    test('a blocked tracker queues and sends nothing', async () => {
      const x = surroundings({ off: true });
      const t = eye.eye(x);
      t.view();
      assert.equal(t.track('page_interaction', 'page_view').ok, false);
      await t.flush();
      t.hide();
      assert.deepEqual([stored(x), x.requests, x.beacons], [[], [], []]);
    });
  });
}

describe('the served build', () => {
  const build = readFileSync(BUILD, 'utf8');

  test('was built from the current source (run build.mjs after editing eye.js)', () => {
    const sha = createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 16);
    assert.equal(build.match(/sha256:([0-9a-f]+)/)?.[1], sha);
  });

  test('is under 3 KiB gzipped', () => {
    assert.ok(gzipSync(build, { level: 9 }).length < 3072);
  });
});
