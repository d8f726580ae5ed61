-- wrk script: POST events to /events, one per request or in batches.
--
-- Environment:
--   EYE_KEY          API key, sent as `Authorization: Bearer <key>` (optional)
--   BENCH_BATCH      events per request: 1 sends one JSON object, N > 1 a JSON array (default 1)
--   BENCH_PATH       request path (default /events)
--   BENCH_SESSIONS   sessions the events are spread over, `session-00000`.. (default 10000)
--   BENCH_JITTER_SECS  each event's timestamp is now minus a random delay of up to this
--                    many seconds (default 2: events arrive soon after they happen, as
--                    from an SDK that flushes every few seconds; 864000 scatters them
--                    over 10 days, which scatters inserts over every timestamp index)
--   BENCH_QUOTA      stop once this many events were answered 2xx (all threads together; optional)
--   BENCH_THREADS    wrk's -t, to split BENCH_QUOTA between threads (default 2)
--                    (with a quota, a connection answered 503 waits for the answer's
--                    Retry-After before it sends again, as the SDK does)
--   BENCH_DONE_DIR   with BENCH_QUOTA: a thread that reached its share writes the file
--                    `done-<thread>` here. wrk itself runs for its whole -d even when
--                    every thread stopped, so bench/run watches for these files and
--                    ends wrk with SIGINT (wrk then prints its summary as usual).
--
-- Every event carries a unique, UUIDv7-like id: 48-bit milliseconds (second
-- resolution), version 7, the wrk thread number, the variant, then a per-thread
-- counter, so ids are unique across threads and runs and roughly time-ordered.
-- Event types rotate: page_view, cta_click, form submit.

local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local path = os.getenv("BENCH_PATH") or "/events"
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "10000")
local jitter = tonumber(os.getenv("BENCH_JITTER_SECS") or "2")
local quota = tonumber(os.getenv("BENCH_QUOTA") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local key = os.getenv("EYE_KEY")
local done_dir = os.getenv("BENCH_DONE_DIR")

local threads = {}
local next_tid = 0

function setup(thread)
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
   table.insert(threads, thread)
end

local counter = 0
accepted = 0
refused = 0
local my_quota = 0

function init(args)
   math.randomseed(os.time() * 100 + (tid or 0))
   wrk.method = "POST"
   wrk.path = path
   wrk.headers["Content-Type"] = "application/json"
   if key and key ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. key
   end
   if quota > 0 then
      my_quota = math.ceil(quota / nthreads)
   end
end

local function uuid7(now)
   counter = counter + 1
   local ms = now * 1000
   return string.format("%08x-%04x-7%03x-%04x-%08x%04x",
      math.floor(ms / 65536), ms % 65536, (tid or 0) % 4096,
      0x8000 + math.floor(counter / 4294967296) % 0x4000,
      counter % 4294967296, math.random(0, 65535))
end

local function event(now)
   local ts = now - math.random(0, jitter)
   local stamp = os.date("!%Y-%m-%dT%H:%M:%S", ts) .. string.format(".%06dZ", math.random(0, 999999))
   local session = string.format("session-%05d", math.random(0, sessions - 1))
   local kind = counter % 3
   local data
   if kind == 0 then
      data = string.format('{"host":"www.example.com","path":"/products/%d"}', counter % 500)
   elseif kind == 1 then
      data = string.format('{"host":"www.example.com","path":"/products/%d","element":"chat bubble"}', counter % 500)
   else
      data = '{"host":"www.example.com","path":"/signup","form":{"first_name":"John","last_name":"Doe"}}'
   end
   local category, name = "page_interaction", "page_view"
   if kind == 1 then name = "cta_click" elseif kind == 2 then category, name = "form_interaction", "submit" end
   return string.format('{"id":"%s","session_id":"%s","category":"%s","name":"%s","data":%s,"timestamp":"%s"}',
      uuid7(now), session, category, name, data, stamp)
end

function request()
   local now = os.time()
   local body
   if batch <= 1 then
      body = event(now)
   else
      local parts = {}
      for i = 1, batch do parts[i] = event(now) end
      body = "[" .. table.concat(parts, ",") .. "]"
   end
   return wrk.format(nil, nil, nil, body)
end

-- With a quota (the end-to-end figures), count what was accepted, and, like the SDK,
-- make a connection answered 503 wait for its Retry-After (in seconds) before it
-- sends again instead of hammering a server that said it is full. wrk calls delay()
-- for the same connection right after its response(). Without a quota neither is
-- defined: a response() callback costs wrk CPU on the cores it shares with the server.
if quota > 0 then
   local wait_ms = 0

   function delay()
      local ms = wait_ms
      wait_ms = 0
      return ms
   end

   function response(status, headers, body)
      if status >= 200 and status < 300 then
         accepted = accepted + batch
         if accepted >= my_quota then
            if done_dir then
               local f = io.open(done_dir .. "/done-" .. tostring(tid), "w")
               if f then f:close() end
            end
            wrk.thread:stop()
         end
      else
         refused = refused + 1
         if status == 503 then
            wait_ms = 1000 * (tonumber(headers["Retry-After"] or headers["retry-after"] or "1") or 1)
         end
      end
   end
end

function done(summary, latency, requests)
   local acc, ref = 0, 0
   for _, t in ipairs(threads) do
      acc = acc + (tonumber(t:get("accepted")) or 0)
      ref = ref + (tonumber(t:get("refused")) or 0)
   end
   io.write(string.format("BENCH requests %d errors %d non2xx %d p50_us %d p99_us %d accepted_events %d refused_requests %d\n",
      summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status, latency:percentile(50), latency:percentile(99), acc, ref))
end
