-- ARGV: worker, fp, token, line, has_line, member -> 1 recorded, 0 refused
-- The record and the release of the lease in one step. The first record of a URL wins: a
-- lease that ran out still records it when it is back in pending (`member`) or leased
-- again (whose holder's record is refused then). No lease at all (token 0: an
-- invalid_url line): recorded by the first worker to mark it seen.
local fp, tok, member = ARGV[2], ARGV[3], ARGV[6]
local l = lease_of(fp)
if l then
  if tok == '0' then return 0 end
  release(fp)
  redis.call('DECR', P .. 'outstanding')
elseif tok ~= '0' then
  if member == '' or redis.call('ZREM', P .. 'pending', member) == 0 then return 0 end
  redis.call('DECR', P .. 'outstanding')
elseif redis.call('SADD', P .. 'seen', fp) == 0 then
  return 0
end
if ARGV[5] == '1' then redis.call('RPUSH', P .. 'outbox:' .. ARGV[1], ARGV[4]) end
return 1
