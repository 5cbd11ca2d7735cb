-- Period budget: roll over to a later window, then reserve / charge / refund, atomically.
-- Mirrors src/limits/budget.rs. The caller computes the UTC window (month lengths).
-- KEYS[1]  the budget: a hash {w = window start ms, used = integer}
-- ARGV     op, amount, now_ms, budget_amount, window_start_ms, window_end_ms, slack_ms
-- Returns  {allowed 0|1, used}
local key = KEYS[1]
local op = ARGV[1]
local amount = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local win = tonumber(ARGV[5])
local win_end = tonumber(ARGV[6])
local slack = tonumber(ARGV[7])
local max_amount = 9007199254740992

local state = redis.call('HMGET', key, 'w', 'used')
local w = tonumber(state[1])
local used = tonumber(state[2])
if w == nil or used == nil then
  -- New, expired, or a bucket before a config change: start from zero.
  redis.call('DEL', key)
  w = win
  used = 0
elseif w < win then
  w = win
  used = 0
end

local allowed = 1
if op == 'reserve' then
  if used + amount <= budget then
    used = used + amount
  else
    allowed = 0
  end
elseif op == 'charge' then
  used = math.min(used + amount, max_amount)
elseif op == 'refund' then
  if w == win then
    used = math.max(used - amount, 0)
  end
else
  return redis.error_reply('tollgate budget.lua: unknown op ' .. tostring(op))
end

redis.call('HSET', key, 'w', string.format('%d', w), 'used', string.format('%d', used))
-- Forget the budget when its window ends. State of a later window (a replica whose
-- clock is ahead wrote it) keeps the expiry that replica set.
if w == win then
  redis.call('PEXPIRE', key, string.format('%d', math.max(win_end - now, 1) + slack))
end
return {allowed, used}
