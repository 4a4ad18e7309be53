-- ARGV: worker, size -> the shard holds flushing:W whole, up to `size` bytes
redis.call('SET', P .. 'size:' .. ARGV[1], ARGV[2])
redis.call('DEL', P .. 'flushing:' .. ARGV[1])
return 1
