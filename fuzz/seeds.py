#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) from the project's test sources.

Events: every raw-string JSON object or array in eye-core's and eye-server's tests and
eye-core's doc examples. Timestamps: every quoted string in those files that starts
like a date. Query strings: every `/events?...`, `/errors?...` and `/sessions/..?...`
literal. Segments: the events wrapped as queue messages and framed as the journal
writes them ([len u32 LE][CRC-32 u32 LE][JSON]). Run once; then `cargo fuzz cmin`
keeps what adds coverage. Seeds are named by content hash, as libFuzzer names them.
"""
import glob, hashlib, json, os, re, struct, zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)
SOURCES = sorted(
    glob.glob(f"{REPO}/eye-core/tests/core/*.rs")
    + glob.glob(f"{REPO}/eye-core/src/*.rs")
    + glob.glob(f"{REPO}/eye-server/tests/api/*.rs")
    + glob.glob(f"{REPO}/eye-server/src/openapi/paths.rs")
)


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = f"{ROOT}/corpus/{target}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/{hashlib.sha1(data).hexdigest()}", "wb") as f:
        f.write(data)


def frame(payload):
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


texts = [open(p, encoding="utf-8").read() for p in SOURCES]
raw_strings = [m for t in texts for m in re.findall(r'r#"(.*?)"#', t, re.S)]
events = []
for s in raw_strings:
    s = s.strip()
    if s[:1] in "{[":
        write("event_json", s)
        if s.startswith("["):
            write("event_batch", s)
        try:
            v = json.loads(s)
        except ValueError:
            continue
        if isinstance(v, dict):
            events.append(v)
        elif isinstance(v, list):
            events += [e for e in v if isinstance(e, dict)]
# json!({...}) macros whose body is plain JSON (no Rust expressions inside).
def balanced(t, i):
    depth = 0
    for j in range(i, len(t)):
        depth += {"{": 1, "}": -1}.get(t[j], 0)
        if depth == 0:
            return t[i:j + 1]
    return None
for t in texts:
    for m in re.finditer(r"json!\(\{", t):
        body = balanced(t, m.end() - 1)
        try:
            v = json.loads(body or "")
        except ValueError:
            continue
        if isinstance(v, dict) and "session_id" in v:
            events.append(v)
            write("event_json", json.dumps(v))
if events:
    write("event_batch", json.dumps(events[:20]))
    write("event_batch", json.dumps(events[:2]))

stamps = {m for t in texts for m in re.findall(r'"([0-9]{4}-[0-9]{2}-[0-9]{2}[^"]{0,30})"', t)}
for s in sorted(stamps):
    write("timestamp", s)

queries = {m for t in texts for m in re.findall(r'"/(?:events|errors|sessions/[^"?]*/events)\?([^"]*)"', t)}
for s in sorted(queries):
    write("query_string", s)
write("query_string", "name=page_view&name=cta_click")
write("query_string", "start_time=2022-01-01&end_time=2022-02-01T00:00:00Z&page=2&page_size=5")

messages = []
for i, e in enumerate(events):
    messages.append({"type": "event.v1", "id": f"0190a3f0-8c2e-7cc3-8d4e-{i:012x}",
                     "application": "shop", "received_at": "2022-01-01T00:00:00.000000Z", "event": e})
messages.append({"type": "rejected.v1", "key": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
                 "application": "shop", "received_at": "2022-01-01T00:00:00.000000Z",
                 "errors": [{"path": "/timestamp", "code": "invalid_timestamp", "message": "no"}],
                 "payload": "{}"})
frames = [frame(json.dumps(m, separators=(",", ":")).encode()) for m in messages]
# Two header bytes choose the read size and the frame cap (see segment_bytes.rs).
for n in (1, 2, 5):
    seg = b"".join(frames[:n])
    write("segment_bytes", b"\x00\x00" + seg)
    write("segment_bytes", b"\x07\x02" + seg[:-3])
print(f"{len(raw_strings)} raw strings, {len(events)} events, {len(stamps)} timestamps, "
      f"{len(queries)} queries, {len(frames)} frames")
