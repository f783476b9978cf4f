-- bench/pushpull.lua: wrk script for the pushpull HTTP binding: each
-- request is one Communication Object {"sets": {jti: SET, ...}} with
-- PER_REQUEST pre-generated SETs (POST /streams/{name}/pushpull).
--
--   wrk ... -s bench/pushpull.lua URL -- PATH TOKEN SETS_TSV COUNT NTHREADS PER_REQUEST
--
-- SETS_TSV has one "<jti>\t<SET>" a line (bench/gen_sets.py); the first
-- COUNT lines are used.  Thread k (0-based) takes lines k, k+NTHREADS, ...,
-- so the threads send disjoint SETs.  A thread that runs out starts its
-- slice again (counted in "wrapped": the repeats are duplicates).
-- Every 200 answer must have an empty "setErrs" and PER_REQUEST acks;
-- those that do not are counted in "bad".  done() prints "WRKJSON {...}".

local next_id = 0
local threads = {}

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

sent = 0
wrapped = 0
bad = 0
first_bad = ""
local entries = {}
local n = 0
local i = 0
local per = 100
local path, headers

function init(args)
   path = args[1]
   local count = tonumber(args[4])
   local nthreads = tonumber(args[5])
   per = tonumber(args[6])
   headers = {
      ["Authorization"] = "Bearer " .. args[2],
      ["Content-Type"] = "application/json",
   }
   local line_no = 0
   for line in io.lines(args[3]) do
      if line_no >= count then break end
      if line_no % nthreads == id then
         local tab = line:find("\t", 1, true)
         -- jti (a UUID) and the compact JWS need no JSON escaping
         entries[#entries + 1] = '"' .. line:sub(1, tab - 1) .. '":"' .. line:sub(tab + 1) .. '"'
      end
      line_no = line_no + 1
   end
   n = #entries
   if n < per then error("too few SETs for thread " .. id) end
end

function request()
   local parts = {}
   for k = 1, per do
      i = i + 1
      if i > n then
         i = 1
         wrapped = wrapped + 1
      end
      parts[k] = entries[i]
   end
   sent = sent + 1
   return wrk.format("POST", path, headers, '{"sets":{' .. table.concat(parts, ",") .. '}}')
end

function response(status, hdrs, body)
   if status ~= 200 then return end      -- counted by wrk as a status error
   local acks = 0
   local ack = body:match('"ack":%[(.-)%]')
   if ack then
      for _ in ack:gmatch('"[^"]*"') do acks = acks + 1 end
   end
   if acks ~= per or not body:find('"setErrs":{}', 1, true) then
      bad = bad + 1
      if first_bad == "" then first_bad = body:sub(1, 300) end
   end
end

function done(summary, latency, requests)
   local s, w, b = 0, 0, 0
   local fb = ""
   for _, t in ipairs(threads) do
      s = s + t:get("sent")
      w = w + t:get("wrapped")
      b = b + t:get("bad")
      if fb == "" then fb = t:get("first_bad") end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
      '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f,"sent":%d,"wrapped":%d,"bad":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read,
      e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, s, w, b))
   if fb ~= "" then io.stderr:write("first bad answer: " .. fb .. "\n") end
end
