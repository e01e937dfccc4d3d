-- wrk script for tests/benches/intake.sh: POST a new lead as an event (each request a lead
-- id of its own, so every accepted request starts one durable lead-routing run), and print
-- the counts and latencies the script reads on the last line.
local counter = 0
local threads = {}

-- Each thread's number, set as a global of its own Lua state before `init`.
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("KONTOR_TOKEN")
end

function request()
  counter = counter + 1
  local id = string.format("L-%d-%d", thread_id, counter)
  local body = '{"type":"lead.created","key":"' .. id .. '","id":"' .. id .. '","payload":'
    .. '{"id":"' .. id .. '","email":"einkauf@mueller-maschinen.de","company":"Müller Maschinenbau GmbH",'
    .. '"title":"Leiter Einkauf","country":"DE","postal_code":"80331","industry":"maschinenbau",'
    .. '"product":"A","employees":320,"quote_requested":true}}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("p50=%.2fms p99=%.2fms rps=%.1f requests=%d non2xx=%d errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6), summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
