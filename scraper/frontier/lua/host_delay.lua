-- ARGV: host, delay_ms: robots.txt's Crawl-delay, for every worker
local key = P .. 'host:' .. ARGV[1] .. ':delay'
if tonumber(redis.call('GET', key) or '0') < tonumber(ARGV[2]) then redis.call('SET', key, ARGV[2]) end
return 1
