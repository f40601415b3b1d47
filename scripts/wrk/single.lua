-- One error per request, with varying numbers so normalisation matters.
local key = os.getenv("SLUICE_KEY")
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"level":"error","message":"Database timeout after %d ms for user %d","stack_trace":"Error: timeout\\n    at Database.connect (/srv/app/db.js:%d:5)\\n    at handler (/srv/app/routes.js:31:12)","context":{"user_id":"%d","password":"hunter2"},"source":"backend","environment":"production"}', n % 5000, n, n % 300, n)
  return wrk.format("POST", "/api/errors", {["X-API-Key"] = key, ["Content-Type"] = "application/json"}, body)
end
