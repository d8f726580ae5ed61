-- wrk script: GET query shapes against /events and /sessions/{id}/events.
--
-- Environment:
--   EYE_KEY          API key with the query scope (optional)
--   BENCH_QUERY      session | category | range | page1 | page10000 | session_events
--   BENCH_SESSIONS   sessions to pick from at random, `session-00000`.. (default 10000)
--   BENCH_DEEP_PAGE  the page `page10000` asks for (default 10000; smaller stores need less)
--   BENCH_SPAN_SECS  how far back the stored timestamps go (default 864000); `range`
--                    asks for a random one-hour window inside it

local shape = os.getenv("BENCH_QUERY") or "page1"
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "10000")
local span = tonumber(os.getenv("BENCH_SPAN_SECS") or "864000")
local deep = tonumber(os.getenv("BENCH_DEEP_PAGE") or "10000")
local key = os.getenv("EYE_KEY")
local categories = { "page_interaction", "form_interaction" }

function init(args)
   math.randomseed(os.time() * 100 + (tid or 0))
   if key and key ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. key
   end
end

local function session()
   return string.format("session-%05d", math.random(0, sessions - 1))
end

function request()
   local p
   if shape == "session" then
      p = "/events?session_id=" .. session()
   elseif shape == "category" then
      p = "/events?category=" .. categories[math.random(1, 2)]
   elseif shape == "range" then
      local start = os.time() - math.random(3600, span)
      p = "/events?start_time=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start) ..
          "&end_time=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start + 3600)
   elseif shape == "page1" then
      p = "/events?page=1"
   elseif shape == "page10000" then
      p = "/events?page=" .. deep
   elseif shape == "session_events" then
      p = "/sessions/" .. session() .. "/events"
   else
      error("unknown BENCH_QUERY " .. shape)
   end
   return wrk.format("GET", p)
end

function done(summary, latency, requests)
   io.write(string.format("BENCH requests %d errors %d non2xx %d p50_us %d p99_us %d\n",
      summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
