-- ARGV: ttl_ms, (host, token)...
local deadline = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local H = P .. 'host:' .. ARGV[i] .. ':'
  redis.call('ZADD', H .. 'busy', 'XX', deadline, ARGV[i + 1])
  if redis.call('GET', H .. 'gate') == ARGV[i + 1] then redis.call('PEXPIRE', H .. 'gate', ARGV[1]) end
end
return 1
