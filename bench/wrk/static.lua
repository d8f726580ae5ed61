-- wrk script: POST one fixed event body to /events, the same bytes every request.
--
-- The cheap generator: `ingest.lua` formats a new event (id, timestamp, session) in
-- Lua for every request, which costs wrk about as much CPU as a bare axum server
-- spends answering it, and on a machine where wrk shares the cores with the server
-- that slows the fast baselines more than The Eye. Here the request is built once
-- (`wrk.format` in `init`) and `request()` returns the same string, so nearly all the
-- CPU goes to the server. Both generators are fair; `bench/run` reports both.
--
-- The event has no `id` (the server assigns a UUIDv7, so the store keeps every one)
-- and a timestamp taken when wrk starts.
--
-- Environment:
--   EYE_KEY          API key, sent as `Authorization: Bearer <key>` (optional)
--   BENCH_PATH       request path (default /events)
--   BENCH_STOP_AFTER stop each thread after this many responses (optional; for
--                    profiling a fixed number of requests). Without it no response()
--                    callback is defined, which would cost wrk CPU.
--   BENCH_DONE_DIR   with BENCH_STOP_AFTER: a thread that stopped writes `done-<thread>`
--                    here (as in ingest.lua, so bench/run can end wrk early)

local path = os.getenv("BENCH_PATH") or "/events"
local key = os.getenv("EYE_KEY")
local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "0")
local done_dir = os.getenv("BENCH_DONE_DIR")

local threads = {}
local next_tid = 0

function setup(thread)
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
   table.insert(threads, thread)
end

local req

function init(args)
   local headers = { ["Content-Type"] = "application/json" }
   if key and key ~= "" then
      headers["Authorization"] = "Bearer " .. key
   end
   local stamp = os.date("!%Y-%m-%dT%H:%M:%S.000000Z", os.time())
   local body = string.format(
      '{"session_id":"session-00042","category":"page_interaction","name":"page_view",' ..
      '"data":{"host":"www.example.com","path":"/products/42"},"timestamp":"%s"}', stamp)
   req = wrk.format("POST", path, headers, body)
end

function request()
   return req
end

if stop_after > 0 then
   local seen = 0
   function response(status, headers, body)
      seen = seen + 1
      if seen >= stop_after then
         if done_dir then
            local f = io.open(done_dir .. "/done-" .. tostring(tid), "w")
            if f then f:close() end
         end
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   io.write(string.format("BENCH requests %d errors %d non2xx %d p50_us %d p99_us %d accepted_events 0 refused_requests 0\n",
      summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
