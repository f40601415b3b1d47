-- Batches of BATCH (default 100) errors per request, from a file made by bench-ingest.sh.
local key = os.getenv("SLUICE_KEY")
local f = assert(io.open(os.getenv("BATCH_FILE"), "rb"))
local body = f:read("*a")
f:close()
local headers = {["X-API-Key"] = key, ["Content-Type"] = "application/json"}
if os.getenv("BATCH_GZIP") == "1" then headers["Content-Encoding"] = "gzip" end
request = function()
  return wrk.format("POST", "/api/errors/batch", headers, body)
end
