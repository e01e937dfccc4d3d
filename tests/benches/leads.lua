-- wrk script for tests/benches/intake.sh leads: POST a new lead to /api/v1/leads (each
-- request an external id of its own, so every accepted request is one stored lead and one
-- durable lead-routing run), and print the counts and latencies the script reads.
local counter = 0
local threads = {}

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
  local id = string.format("CRM-%d-%d", thread_id, counter)
  local body = '{"external_id":"' .. id .. '","email":"einkauf@mueller-maschinen.de",'
    .. '"company":"Müller Maschinenbau GmbH","title":"Leiter Einkauf","country":"DE",'
    .. '"postal_code":"80331","industry":"maschinenbau","products":["A"],"employees":320,'
    .. '"quote_requested":true,"source":"web"}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("p50=%.2fms p99=%.2fms rps=%.1f requests=%d non2xx=%d errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6), summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
