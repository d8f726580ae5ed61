-- wrk script: GET query shapes against /events and /sessions/{id}/events.
--
-- Environment:
--   EYE_KEY          API key with the query scope (optional)
--   BENCH_QUERY      session | category | range | page1 | page10000 | session_events |
--                    page10000_category (the deep page of one category) |
--                    since (events from a random instant on: a count over partial hours) |
--                    path (always BENCH_PATH_Q, e.g. a cursor URL)
--   BENCH_PATH_Q     with `path`: the path and query to ask for
--   BENCH_SESSIONS   sessions to pick from at random, `session-00000`.. (default 10000)
--   BENCH_DEEP_PAGE  the page `page10000` asks for (default 10000; smaller stores need less)
--   BENCH_RANGE_FROM, BENCH_RANGE_TO  epoch seconds the stored timestamps cover;
--                    `range` asks for a random window of BENCH_RANGE_WINDOW seconds
--                    (default 1% of the span, at least 1) inside it

local shape = os.getenv("BENCH_QUERY") or "page1"
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "10000")
local range_to = tonumber(os.getenv("BENCH_RANGE_TO") or tostring(os.time()))
local range_from = tonumber(os.getenv("BENCH_RANGE_FROM") or tostring(range_to - 864000))
local window = tonumber(os.getenv("BENCH_RANGE_WINDOW") or "0")
if window <= 0 then window = math.max(1, math.floor((range_to - range_from) / 100)) end
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
      local start = math.random(range_from, math.max(range_from, range_to - window))
      p = "/events?start_time=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start) ..
          "&end_time=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start + window - 1)
   elseif shape == "page1" then
      p = "/events?page=1"
   elseif shape == "page10000" then
      p = "/events?page=" .. deep
   elseif shape == "page10000_category" then
      p = "/events?category=" .. categories[math.random(1, 2)] .. "&page=" .. deep
   elseif shape == "since" then
      local start = math.random(range_from, range_to)
      p = "/events?start_time=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", start)
   elseif shape == "path" then
      p = os.getenv("BENCH_PATH_Q")
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
