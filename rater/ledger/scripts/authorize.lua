-- authorize: how long may this leg run, at every level of its chain? No money moves.
-- On success the leg is recorded (its plan pinned: later rate changes do not touch it)
-- and counted as a live channel at every level.
-- KEYS: leg, outbox, live, account 1..n, buckets (level 1's, then level 2's, ...)
-- ARGV: op field, now_usec, cap, uuid, account, direction, destination, caller, node, n,
--       then per level: account floor max_channels q r connect incl init inc ppm prefix
--       rate_group nbuckets, followed by nbuckets x (order_id period); then the channel's
--       created_usec
local leg = KEYS[1]
local prev = redis.call('HGET', leg, ARGV[1])
if prev then return prev end

local n = tonumber(ARGV[10])
local i, kb = 11, 4 + n
local levels = {}
for l = 1, n do
  local L = {a = ARGV[i], fl = tonumber(ARGV[i + 1]), mc = tonumber(ARGV[i + 2]),
             q = tonumber(ARGV[i + 3]), r = tonumber(ARGV[i + 4]), cf = tonumber(ARGV[i + 5]),
             incl = tonumber(ARGV[i + 6]), init = tonumber(ARGV[i + 7]),
             inc = tonumber(ARGV[i + 8]), ppm = tonumber(ARGV[i + 9]), pfx = ARGV[i + 10],
             rg = ARGV[i + 11], b = {}, bp = {}, bk = {}}
  local nb = tonumber(ARGV[i + 12])
  i = i + 13
  for j = 1, nb do
    L.b[j] = ARGV[i]; L.bp[j] = tonumber(ARGV[i + 1]); L.bk[j] = kb
    kb = kb + 1; i = i + 2
  end
  levels[l] = L
end
local created = ARGV[i] or '0'

local maxs = tonumber(ARGV[3])
for l = 1, n do
  local L = levels[l]
  local v = redis.call('HMGET', KEYS[3 + l], 'bal', 'held', 'ch')
  if not v[1] then return 'refused unknown_account ' .. L.a end
  if L.mc > 0 and num(v[3]) >= L.mc then return 'refused max_channels ' .. L.a end
  local funds = num(v[1]) - num(v[2]) - L.fl
  local free = 0
  for j = 1, #L.b do free = free + bucket_avail(KEYS[L.bk[j]]) end
  local m = max_billed(L, funds, free)
  if not is_free(L) and m < L.incl + L.init then
    return 'refused insufficient_funds ' .. L.a
  end
  if m < maxs then maxs = m end
end
if maxs <= 0 then return 'refused insufficient_funds ' .. levels[1].a end

local dyn = {T = 0, lv = {}}
for l = 1, n do
  redis.call('HINCRBY', KEYS[3 + l], 'ch', 1)
  local F = {}
  for j = 1, #levels[l].b do F[j] = 0 end
  dyn.lv[l] = {S = 0, P = 0, M = 0, F = F}
end
local plan = {acct = ARGV[5], dir = ARGV[6], dst = ARGV[7], caller = ARGV[8], node = ARGV[9],
              at = ARGV[2], lv = levels}
local res = 'ok ' .. int(maxs)
-- plain fields (node, max, T, seq, ans) let a restarted daemon adopt the leg
redis.call('HSET', leg, 'st', 'authorized', 'plan', cmsgpack.pack(plan),
           'dyn', cmsgpack.pack(dyn), 'keys', table.concat(KEYS, '\n'), ARGV[1], res,
           'node', ARGV[9], 'max', int(maxs), 'T', '0', 'seq', '0', 'cr', created)
redis.call('SADD', KEYS[3], ARGV[4])
return res
