-- ARGV: worker, instance, lease_ms -> {1} or {0, ms left on the live worker's heartbeat}
local alive = P .. 'alive:' .. ARGV[1]
local cur = redis.call('GET', alive)
if cur and cur ~= ARGV[2] then return {0, redis.call('PTTL', alive)} end
redis.call('SET', alive, ARGV[2], 'PX', ARGV[3])
redis.call('SADD', P .. 'workers', ARGV[1])
redis.call('SADD', P .. 'seeding', ARGV[1])
return {1, 0}
