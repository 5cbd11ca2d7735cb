-- Token bucket: refill, then reserve / charge / refund, atomically.
-- Mirrors src/limits/bucket.rs operation for operation (IEEE doubles both sides).
-- KEYS[1]  the bucket: a hash {level = "%.17g", ts = ms since the epoch}
-- ARGV     op, amount, now_ms, capacity, refill_per_second, slack_ms
-- Returns  {allowed 0|1, level as an exact "%.17g" string}
local key = KEYS[1]
local op = ARGV[1]
local amount = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local capacity = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local slack = tonumber(ARGV[6])

local state = redis.call('HMGET', key, 'level', 'ts')
local level = tonumber(state[1])
local ts = tonumber(state[2])
if level == nil or ts == nil then
  -- New, expired, or a budget before a config change: start full.
  redis.call('DEL', key)
  level = capacity
  ts = now
end
if now > ts then
  level = level + (now - ts) * rate / 1000
  ts = now
end
if level > capacity then
  level = capacity
end

local allowed = 1
if op == 'reserve' then
  if level >= amount then
    level = level - amount
  else
    allowed = 0
  end
elseif op == 'charge' then
  level = level - amount
elseif op == 'refund' then
  level = math.min(level + amount, capacity)
else
  return redis.error_reply('tollgate bucket.lua: unknown op ' .. tostring(op))
end

redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts', string.format('%d', ts))
-- Forget the bucket once it is full again (then it equals a fresh one), plus slack.
local ttl = math.ceil((capacity - level) * 1000 / rate)
ttl = math.min(ttl, 9007199254740992) + (ts - now) + slack
redis.call('PEXPIRE', key, string.format('%d', ttl))
return {allowed, string.format('%.17g', level)}
