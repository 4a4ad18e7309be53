-- ARGV: host, token
local H = P .. 'host:' .. ARGV[1] .. ':'
redis.call('ZREM', H .. 'busy', ARGV[2])
if redis.call('GET', H .. 'gate') == ARGV[2] then redis.call('DEL', H .. 'gate') end
return 1
