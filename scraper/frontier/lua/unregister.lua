-- ARGV: worker, instance -> 1 when the worker left nothing behind and is gone
local W = ARGV[1]
redis.call('SREM', P .. 'seeding', W)
if redis.call('LLEN', P .. 'outbox:' .. W) > 0 or redis.call('LLEN', P .. 'flushing:' .. W) > 0 then return 0 end
if redis.call('GET', P .. 'alive:' .. W) == ARGV[2] then redis.call('DEL', P .. 'alive:' .. W) end
redis.call('SREM', P .. 'workers', W)
return 1
