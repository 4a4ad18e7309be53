-- ARGV: worker, fp, token, line, has_line -> 1 recorded, 0 refused
-- The record and the release of the lease in one step. No lease at all (an invalid_url
-- line): recorded by the first worker to mark it seen.
local fp = ARGV[2]
local l = lease_of(fp)
if l then
  if l.tok ~= ARGV[3] then return 0 end
  release(fp)
  redis.call('DECR', P .. 'outstanding')
elseif redis.call('SADD', P .. 'seen', fp) == 0 then
  return 0
end
if ARGV[5] == '1' then redis.call('RPUSH', P .. 'outbox:' .. ARGV[1], ARGV[4]) end
return 1
