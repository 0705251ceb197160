-- wrk: GET /healthz, the framework's ceiling: the same server, a route that does nothing.
dofile("common.lua")

wrk.method = "GET"
wrk.path = "/healthz"

function response(status, headers, body)
  bench.count(status)
end
