-- Shared by every script: KEYS[1] is the job's prefix; every key name is built from it.
local P = KEYS[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease_of(fp)
  local raw = redis.call('HGET', P .. 'lease', fp)
  if not raw then return nil end
  local tok, owner, score, member = string.match(raw, '^(%d+)|([^|]*)|([^|]*)|(.*)$')
  return {tok = tok, owner = owner, score = score, member = member}
end
local function grant(worker, score, member, deadline)
  local fp = string.sub(member, 1, 8)
  local tok = redis.call('INCR', P .. 'token')
  redis.call('HSET', P .. 'lease', fp, tok .. '|' .. worker .. '|' .. score .. '|' .. member)
  redis.call('ZADD', P .. 'leases', deadline, fp)
  return tok
end
local function release(fp)
  redis.call('HDEL', P .. 'lease', fp)
  redis.call('ZREM', P .. 'leases', fp)
end
local function outstanding()
  return tonumber(redis.call('GET', P .. 'outstanding') or '0')
end
