-- wrk: POST /v1/redemptions at the till. Data rows: staff token, code, venue_id (bench/data/redeem*.tsv).
-- Each request has its own Idempotency-Key, so a code redeemed twice is a real second attempt (409).
dofile("common.lua")

function request()
  local row, id = bench.next_row()
  return wrk.format("POST", "/v1/redemptions", {
    ["Authorization"] = "Bearer " .. row[1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id,
  }, string.format('{"code":"%s","venue_id":"%s"}', row[2], row[3]))
end

function response(status, headers, body)
  bench.count(status)
end
