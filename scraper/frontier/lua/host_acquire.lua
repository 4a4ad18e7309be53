-- ARGV: host, token, per_host, ttl_ms, delay_ms -> {1, gate delay ms (0: no gate)}
-- or {0, ms until the host's next start (0: busy, unknown)}
local H = P .. 'host:' .. ARGV[1] .. ':'
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', H .. 'busy', '-inf', now)
if redis.call('ZCARD', H .. 'busy') >= tonumber(ARGV[3]) then return {0, 0} end
if redis.call('EXISTS', H .. 'gate') == 1 then return {0, 0} end
local nxt = tonumber(redis.call('GET', H .. 'next') or '0')
if now < nxt then return {0, nxt - now} end
local ttl = tonumber(ARGV[4])
redis.call('ZADD', H .. 'busy', now + ttl, ARGV[2])
local delay = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', H .. 'delay') or '0'))
if delay > 0 then
  redis.call('SET', H .. 'gate', ARGV[2], 'PX', ttl)
  return {1, delay}
end
return {1, 0}
