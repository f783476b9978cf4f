-- bench/push.lua: wrk script for RFC 8935 push, one pre-generated SET per
-- request (POST /streams/{name}/events).
--
--   wrk ... -s bench/push.lua URL -- PATH TOKEN SETS_TSV COUNT NTHREADS
--
-- SETS_TSV has one "<jti>\t<SET>" a line (bench/gen_sets.py); the first
-- COUNT lines are used.  Thread k (0-based) takes lines k, k+NTHREADS, ...,
-- so the threads send disjoint SETs.  A thread that runs out starts its
-- slice again (counted in "wrapped": the repeats are duplicates).
-- done() prints one line "WRKJSON {...}" for bench/lib.py.

local next_id = 0
local threads = {}

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

sent = 0
wrapped = 0
n = 0
local sets = {}
local i = 0
local path, headers

function init(args)
   path = args[1]
   local count = tonumber(args[4])
   local nthreads = tonumber(args[5])
   headers = {
      ["Authorization"] = "Bearer " .. args[2],
      ["Content-Type"] = "application/secevent+jwt",
   }
   local line_no = 0
   for line in io.lines(args[3]) do
      if line_no >= count then break end
      if line_no % nthreads == id then
         sets[#sets + 1] = line:sub(line:find("\t", 1, true) + 1)
      end
      line_no = line_no + 1
   end
   n = #sets
   if n == 0 then error("no SETs for thread " .. id) end
end

function request()
   i = i + 1
   if i > n then
      i = 1
      wrapped = wrapped + 1
   end
   sent = sent + 1
   return wrk.format("POST", path, headers, sets[i])
end

function done(summary, latency, requests)
   local s, w = 0, 0
   for _, t in ipairs(threads) do
      s = s + t:get("sent")
      w = w + t:get("wrapped")
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
      '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f,"sent":%d,"wrapped":%d,"bad":0}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read,
      e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, s, w))
end
