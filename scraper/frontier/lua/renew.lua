-- ARGV: worker, instance, lease_ms, (fp, token)... -> leases renewed, -1 when the name was taken over
local alive = P .. 'alive:' .. ARGV[1]
local cur = redis.call('GET', alive)
if cur and cur ~= ARGV[2] then return -1 end
local lease_ms = tonumber(ARGV[3])
redis.call('SET', alive, ARGV[2], 'PX', lease_ms)
local deadline = now_ms() + lease_ms
local n = 0
for i = 4, #ARGV, 2 do
  local l = lease_of(ARGV[i])
  if l and l.tok == ARGV[i + 1] then
    redis.call('ZADD', P .. 'leases', 'XX', deadline, ARGV[i])
    n = n + 1
  end
end
return n
