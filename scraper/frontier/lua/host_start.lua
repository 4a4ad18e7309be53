-- ARGV: host, token, delay_ms: the request starts now; the next may start `delay` later
local H = P .. 'host:' .. ARGV[1] .. ':'
if redis.call('GET', H .. 'gate') == ARGV[2] then
  local delay = tonumber(ARGV[3])
  redis.call('SET', H .. 'next', string.format('%.0f', now_ms() + delay), 'PX', delay + 1000)
  redis.call('DEL', H .. 'gate')
end
return 1
