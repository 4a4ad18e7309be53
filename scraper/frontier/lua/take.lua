-- ARGV: worker, n, lease_ms -> {ended, outstanding, reclaimed, (token, member)...}
-- Puts expired leases back first (a dead worker's URLs), then takes the shallowest pending URLs.
local worker, n, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 256)
for _, fp in ipairs(expired) do
  local l = lease_of(fp)
  if l then redis.call('ZADD', P .. 'pending', l.score, l.member) end
  release(fp)
end
local reply = {0, 0, #expired}
if n > 0 then
  local popped = redis.call('ZPOPMIN', P .. 'pending', n)
  for i = 1, #popped, 2 do
    table.insert(reply, grant(worker, popped[i + 1], popped[i], now + lease_ms))
    table.insert(reply, popped[i])
  end
end
local left = outstanding()
reply[2] = left
if #reply == 3 and left <= 0 then
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'seeding')) do
    if redis.call('EXISTS', P .. 'alive:' .. w) == 0 then redis.call('SREM', P .. 'seeding', w) end
  end
  if redis.call('SCARD', P .. 'seeding') == 0 then reply[1] = 1 end
end
return reply
