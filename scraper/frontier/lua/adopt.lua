-- ARGV: adopter, dead, take_flushing -> lines moved to the adopter's outbox; -1: not dead
if redis.call('EXISTS', P .. 'alive:' .. ARGV[2]) == 1 then return -1 end
local mine = P .. 'outbox:' .. ARGV[1]
local moved = 0
local function drain(src)
  local lines = redis.call('LRANGE', src, 0, -1)
  for _, line in ipairs(lines) do redis.call('RPUSH', mine, line) end
  redis.call('DEL', src)
  moved = moved + #lines
end
if ARGV[3] == '1' then drain(P .. 'flushing:' .. ARGV[2]) end
drain(P .. 'outbox:' .. ARGV[2])
return moved
