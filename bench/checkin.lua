-- wrk: POST /v1/checkins. Data rows: token, lat, lon, accuracy_m (bench/data/checkins.tsv).
-- observed_at is the send time; every request has its own Idempotency-Key. A rejected check-in is
-- still 201: the label says accepted or rejected:<reason>, and unlocked counts the codes handed out.
dofile("common.lua")

function request()
  local row, id = bench.next_row()
  local body = string.format('{"lat":%s,"lon":%s,"accuracy_m":%s,"observed_at":"%s"}',
    row[2], row[3], row[4], os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/v1/checkins", {
    ["Authorization"] = "Bearer " .. row[1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id,
  }, body)
end

function response(status, headers, body)
  bench.count(status)
  if status ~= 201 then return end
  if body:match('"status":%s*"accepted"') then
    bench.label("accepted")
  else
    bench.label("rejected:" .. (body:match('"reason":%s*"([%w_]+)"') or "unknown"))
  end
  for _ in body:gmatch('"code":') do bench.label("unlocked") end
end
