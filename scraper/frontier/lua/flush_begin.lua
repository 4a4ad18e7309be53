-- ARGV: worker, n -> the lines of flushing:W (a batch moved there from the outbox when it was empty)
local fl, ob = P .. 'flushing:' .. ARGV[1], P .. 'outbox:' .. ARGV[1]
if redis.call('LLEN', fl) == 0 then
  local lines = redis.call('LRANGE', ob, 0, tonumber(ARGV[2]) - 1)
  for _, line in ipairs(lines) do redis.call('RPUSH', fl, line) end
  if #lines > 0 then redis.call('LTRIM', ob, #lines, -1) end
end
return redis.call('LRANGE', fl, 0, -1)
