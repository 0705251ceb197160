-- wrk: GET /v1/venues/nearby with the app's defaults (1 km, 20 venues).
-- Data rows: token, lat, lon (bench/data/nearby.tsv).
dofile("common.lua")

function request()
  local row = bench.next_row()
  return wrk.format("GET", string.format("/v1/venues/nearby?lat=%s&lon=%s", row[2], row[3]),
    { ["Authorization"] = "Bearer " .. row[1] })
end

function response(status, headers, body)
  bench.count(status)
  local items = 0
  for _ in body:gmatch('"distance_m"') do items = items + 1 end
  bench.label(items == 0 and "empty" or "venues")
end
