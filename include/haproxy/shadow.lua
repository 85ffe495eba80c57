-- shadow.lua : fire-and-forget copy of POST /invocations to a shadow server.
-- Target is read per request from the proc-scope variable proc.shadow
-- (set at runtime on the admin socket, by include/mlcicd/deploy/haproxy.py:
--  "experimental-mode on; set var proc.shadow str(http://127.0.0.1:8003)"; "off" disables it).
-- One Lua task per copy: the caller's request goes on at once and never waits for the shadow.
local MAX_INFLIGHT = 200          -- cap concurrent shadow tasks (drop beyond)
local inflight, sent, dropped, failed, truncated = 0, 0, 0, 0, 0
local by_status = {}          -- shadow response status histogram (-1 = Lua error)

local function send_copy(url, body, rid, ctype, auth)
  return function()
    local hc = core.httpclient()
    local headers = { ["x-request-id"] = { rid }, ["content-type"] = { ctype }, ["x-shadow"] = { "1" } }
    if auth ~= "" then headers["authorization"] = { auth } end  -- the servers' token (MLCICD_SERVER_TOKEN)
    local ok, res = pcall(hc.post, hc, {
      url = url .. "/invocations",
      headers = headers,
      body = body,
      timeout = 2000,             -- ms, applies to the httpclient stream
    })
    inflight = inflight - 1
    local st = (ok and res and res.status) or -1
    if st >= 200 and st < 500 then sent = sent + 1 else failed = failed + 1 end
    by_status[st] = (by_status[st] or 0) + 1
  end
end

core.register_action("shadow", { "http-req" }, function(txn)
  local url = txn:get_var("proc.shadow")
  if url == nil or url == "" or url == "off" then return end
  if inflight >= MAX_INFLIGHT then dropped = dropped + 1; return end
  local hdrs = txn.http:req_get_headers()          -- header values are 0-indexed
  local body = txn.f:req_body() or ""
  local cl = hdrs["content-length"] and tonumber(hdrs["content-length"][0])
  if cl and #body < cl then truncated = truncated + 1; return end  -- body > buffer: don't mirror a partial copy
  local rid = hdrs["x-request-id"] and hdrs["x-request-id"][0] or ""
  local ct = hdrs["content-type"] and hdrs["content-type"][0] or "application/json"
  local auth = hdrs["authorization"] and hdrs["authorization"][0] or ""
  inflight = inflight + 1
  core.register_task(send_copy(url, body, rid, ct, auth))   -- returns immediately
end, 0)

-- "shadow stats" on the stats socket (counters of the shared Lua state)
core.register_cli({ "shadow", "stats" }, "show shadow mirror counters", function(applet)
  local h = ""
  for k, v in pairs(by_status) do h = h .. string.format(" %s:%d", tostring(k), v) end
  applet:send(string.format("inflight=%d sent=%d failed=%d dropped=%d truncated=%d status={%s }\n", inflight, sent, failed, dropped, truncated, h))
end)
