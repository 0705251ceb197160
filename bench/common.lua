-- Shared by the bench's wrk scripts (each starts with dofile("common.lua"); wrk runs in bench/).
--
--   * data rows: a tab-separated file (BENCH_DATA), read once per thread; thread i of n takes rows
--     BENCH_OFFSET + i, + i + n, ... so that no two requests of a run share a row;
--   * a fixed offered rate when BENCH_RATE > 0 (Debian's wrk has no -R): delay() hands every thread
--     send slots 1/rate apart, and a connection waits for the next free slot before each request;
--   * responses counted by status, and by a label the endpoint script derives from the body;
--   * done() prints one line "BENCH_JSON {...}" that bench/runners.py reads.
-- The environment is read at load time, so delay() exists (or not) before wrk looks for it.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_spec = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_spec)
  return tonumber(now_spec.tv_sec) * 1000 + tonumber(now_spec.tv_nsec) / 1e6
end

bench = {
  run = os.getenv("BENCH_RUN") or "run",
  threads = tonumber(os.getenv("BENCH_THREADS") or "1"),
  statuses = {},
  labels = {},
}

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
local rows, cursor

function bench.label(name)
  bench.labels[name] = (bench.labels[name] or 0) + 1
end

function init(args)
  local data = os.getenv("BENCH_DATA")
  if data == nil then return end
  rows = {}
  for line in io.lines(data) do
    local fields = {}
    for field in line:gmatch("[^\t]+") do fields[#fields + 1] = field end
    rows[#rows + 1] = fields
  end
  cursor = offset + (thread_index or 0)
end

-- The next data row of this thread (wrapping around when the file is used up) and a request id
-- unique in this run, for Idempotency-Key.
function bench.next_row()
  local row = rows[cursor % #rows + 1]
  cursor = cursor + bench.threads
  sent_count = sent_count + 1
  return row, string.format("%s-%d-%d", bench.run, thread_index or 0, sent_count)
end

if rate > 0 then
  local interval_ms = 1000 * bench.threads / rate
  local next_at

  function delay()
    local now = now_ms()
    -- More than a second behind (every connection was busy): start over instead of bursting.
    if next_at == nil or next_at < now - 1000 then next_at = now end
    local wait = next_at - now
    next_at = next_at + interval_ms
    return wait > 0 and math.floor(wait) or 0
  end
end

-- Globals the main state reads from each thread in done().
statuses, labels, sent_count = bench.statuses, bench.labels, 0

function bench.count(status)
  bench.statuses[status] = (bench.statuses[status] or 0) + 1
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

local function json_counts(counts)
  local parts = {}
  for key, n in pairs(counts) do parts[#parts + 1] = string.format('"%s": %d', tostring(key), n) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local all_statuses, all_labels, sent = {}, {}, 0
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("statuses")) do all_statuses[key] = (all_statuses[key] or 0) + n end
    for key, n in pairs(thread:get("labels")) do all_labels[key] = (all_labels[key] or 0) + n end
    sent = sent + (thread:get("sent_count") or 0)
  end
  local percentiles = {}
  for _, p in ipairs({ 50, 90, 95, 99, 99.9 }) do
    percentiles[#percentiles + 1] = string.format('"%s": %.1f', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "sent": %d, "latency_us": {%s, "mean": %.1f, "max": %d}, '
    .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "non_2xx_3xx": %d, '
    .. '"statuses": %s, "labels": %s}\n',
    summary.requests, summary.duration, sent, table.concat(percentiles, ", "), latency.mean, latency.max,
    e.connect, e.read, e.write, e.timeout, e.status, json_counts(all_statuses), json_counts(all_labels)))
end
