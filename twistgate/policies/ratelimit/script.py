"""
The Redis side of a rate-limit decision: one Lua script, run atomically by
Redis (EVALSHA), deciding one request against every limit of its route on
the Redis server's clock (``TIME``), so every gateway process sharing the
Redis shares the limits exactly.

It is the Lua twin of `twistgate.policies.ratelimit.algorithms` (same arithmetic in
the same order; read that module's docstring first).  Numbers cross the
boundary as strings: floats are written with ``%.17g`` (which round-trips a
double exactly) and integers with ``%.0f``, because Redis turns Lua numbers
into integers on the way out.

KEYS: one per limit.  ARGV[1]: ``""`` (use the server's TIME) or a time in
µs (tests drive both backends with the same clock).  Then four per limit:
algorithm (1 token bucket, 2 fixed window, 3 sliding window), count,
period in µs, burst.  Returns: the µs time used, then per limit allowed
(1/0), remaining, reset µs, retry µs.
"""

from __future__ import annotations

import hashlib

SCRIPT = r"""
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local SLACK = 1000
local n = #KEYS
local steps = {}
local all_ok = true

local function fmt_int(x) return string.format('%.0f', x) end

for i = 1, n do
  local key = KEYS[i]
  local algo = tonumber(ARGV[4 * i - 2])
  local count = tonumber(ARGV[4 * i - 1])
  local per = tonumber(ARGV[4 * i])
  local burst = tonumber(ARGV[4 * i + 1])
  local s = {key = key, algo = algo, count = count, per = per, burst = burst}
  if algo == 1 then
    local tokens, last = burst, now
    local v = redis.call('HMGET', key, 't', 'l')
    if v[1] and v[2] then
      tokens = tonumber(v[1])
      last = tonumber(v[2])
      local elapsed = now - last
      if elapsed > 0 then
        tokens = math.min(burst, tokens + elapsed * count / per)
      end
    end
    s.tokens = tokens
    s.last = math.max(last, now)
    s.ok = tokens >= 1.0
  elseif algo == 2 then
    local window = math.floor(now / per)
    local counted = 0
    local v = redis.call('HMGET', key, 'w', 'c')
    if v[1] and v[2] and tonumber(v[1]) == window then
      counted = tonumber(v[2])
    end
    s.window = window
    s.counted = counted
    s.stop = (window + 1) * per
    s.ok = counted < count
  else
    local cutoff = now - per
    while true do
      local head = redis.call('LINDEX', key, 0)
      if not head or tonumber(head) > cutoff then break end
      redis.call('LPOP', key)
    end
    s.len = redis.call('LLEN', key)
    if s.len > 0 then
      s.oldest = tonumber(redis.call('LINDEX', key, 0))
      s.newest = tonumber(redis.call('LINDEX', key, -1))
    end
    s.ok = s.len < count
  end
  if not s.ok then all_ok = false end
  steps[i] = s
end

local out = {fmt_int(now)}
local function put(ok, remaining, reset, retry)
  out[#out + 1] = ok and '1' or '0'
  out[#out + 1] = fmt_int(remaining)
  out[#out + 1] = fmt_int(reset)
  out[#out + 1] = fmt_int(retry)
end
local function expire_at(key, at)
  redis.call('PEXPIRE', key, math.ceil((at - now) / 1000) + 1)
end

for i = 1, n do
  local s = steps[i]
  if s.algo == 1 then
    if all_ok then
      local left = s.tokens - 1.0
      local reset = math.ceil((s.burst - left) * s.per / s.count)
      redis.call('HSET', s.key, 't', string.format('%.17g', left), 'l', fmt_int(s.last))
      expire_at(s.key, now + reset + SLACK)
      put(true, math.floor(left), reset, 0)
    else
      local retry = 0
      if not s.ok then retry = math.ceil((1.0 - s.tokens) * s.per / s.count) end
      put(s.ok, math.floor(s.tokens), math.ceil((s.burst - s.tokens) * s.per / s.count), retry)
    end
  elseif s.algo == 2 then
    if all_ok then
      redis.call('HSET', s.key, 'w', fmt_int(s.window), 'c', fmt_int(s.counted + 1))
      expire_at(s.key, s.stop)
      put(true, s.count - s.counted - 1, s.stop - now, 0)
    else
      local retry = 0
      if not s.ok then retry = s.stop - now end
      put(s.ok, math.max(0, s.count - s.counted), s.stop - now, retry)
    end
  else
    if all_ok then
      redis.call('RPUSH', s.key, fmt_int(now))
      if s.len == 0 then s.oldest = now end
      s.newest = now
      s.len = s.len + 1
      expire_at(s.key, s.newest + s.per)
      put(true, s.count - s.len, s.newest + s.per - now, 0)
    else
      local reset, retry = 0, 0
      if s.len > 0 then
        reset = s.newest + s.per - now
        if not s.ok then retry = s.oldest + s.per - now end
      end
      put(s.ok, math.max(0, s.count - s.len), reset, retry)
    end
  end
end
return out
"""

SCRIPT_BYTES = SCRIPT.encode("ascii")
SCRIPT_SHA = hashlib.sha1(SCRIPT_BYTES).hexdigest()
