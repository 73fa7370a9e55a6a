-- authorize: how long may this leg run, at every level of its chain? No money moves.
-- On success the leg is recorded (its plan pinned: later rate changes do not touch it)
-- and counted as a live channel at every level.
-- A dry run (`rater quote`, dry_run_billed given) takes the same decision over the same
-- levels, writes nothing, and answers {decision, figures of level 1, ..., of level n}.
-- KEYS: leg, outbox, live, account 1..n, buckets (level 1's, then level 2's, ...)
-- ARGV: named in rater/ledger/fields.py: AUTHORIZE_ARGV, then AUTHORIZE_LEVEL_ARGV per level
--       with its buckets' (order_id, period_no), then AUTHORIZE_TAIL
local op_field, now_usec, cap_seconds, uuid, account, direction, destination, caller, node,
  n_levels = unpack(ARGV, 1, 10)
local leg = KEYS[1]

local n = tonumber(n_levels)
local i, bucket_key = 11, 4 + n
local levels = {}
for l = 1, n do
  -- plan.lv: short names, stored with the leg (fields.py)
  local L = {a = ARGV[i], fl = tonumber(ARGV[i + 1]), mc = tonumber(ARGV[i + 2]),
             q = tonumber(ARGV[i + 3]), r = tonumber(ARGV[i + 4]), cf = tonumber(ARGV[i + 5]),
             incl = tonumber(ARGV[i + 6]), init = tonumber(ARGV[i + 7]),
             inc = tonumber(ARGV[i + 8]), ppm = tonumber(ARGV[i + 9]), pfx = ARGV[i + 10],
             rg = ARGV[i + 11], b = {}, bp = {}, bk = {}}
  local n_buckets = tonumber(ARGV[i + 12])
  i = i + 13
  for j = 1, n_buckets do
    L.b[j] = ARGV[i]; L.bp[j] = tonumber(ARGV[i + 1]); L.bk[j] = bucket_key
    bucket_key = bucket_key + 1; i = i + 2
  end
  levels[l] = L
end
local created_usec = ARGV[i] or '0'
local dry_run_billed = tonumber(ARGV[i + 1])  -- nil: a real authorization
local dry_run = dry_run_billed ~= nil

if not dry_run then
  local prev = redis.call('HGET', leg, op_field)
  if prev then return prev end
end

-- what a dry run answers per level: present (0: not in Redis), balance, held, live legs,
-- max billed seconds (capped), then for dry_run_billed seconds: charged, free, cost;
-- then each bucket's free seconds
local function figures(L, acct, funds, free, level_max)
  local s = charged(L, dry_run_billed)
  local take = math.min(free, s)
  local f = {1, num(acct[1]), num(acct[2]), num(acct[3]), level_max, s, take,
             money_due(L, s - take)}
  for j = 1, #L.b do f[#f + 1] = bucket_avail(KEYS[L.bk[j]]) end
  return f
end

-- the decision: level by level, customer first; at each level unknown account, then
-- channels, then funds. A real run answers the first refusal; a dry run goes on for the
-- figures and answers the same refusal.
local max_seconds = tonumber(cap_seconds)
local refusal = nil
local level_figures = {}
for l = 1, n do
  local L = levels[l]
  local acct = redis.call('HMGET', KEYS[3 + l], 'bal', 'held', 'ch')
  local why = nil
  if not acct[1] then why = 'unknown_account'
  elseif L.mc > 0 and num(acct[3]) >= L.mc then why = 'max_channels' end
  if acct[1] and (dry_run or not why) then
    local funds = num(acct[1]) - num(acct[2]) - L.fl
    local free = 0
    for j = 1, #L.b do free = free + bucket_avail(KEYS[L.bk[j]]) end
    local m = max_billed(L, funds, free)
    if not why and not is_free(L) and m < L.incl + L.init then why = 'insufficient_funds' end
    if m < max_seconds then max_seconds = m end
    if dry_run then
      level_figures[l] = figures(L, acct, funds, free, math.min(m, tonumber(cap_seconds)))
    end
  elseif dry_run then
    level_figures[l] = {0}
  end
  if why then
    local reply = 'refused ' .. why .. ' ' .. L.a
    if not dry_run then return reply end
    refusal = refusal or reply
  end
end
if not refusal and max_seconds <= 0 then
  refusal = 'refused insufficient_funds ' .. levels[1].a
  if not dry_run then return refusal end
end
local res = refusal or ('ok ' .. int(max_seconds))
if dry_run then
  table.insert(level_figures, 1, res)
  return level_figures
end

local dyn = {T = 0, lv = {}}
for l = 1, n do
  redis.call('HINCRBY', KEYS[3 + l], 'ch', 1)
  local F = {}
  for j = 1, #levels[l].b do F[j] = 0 end
  dyn.lv[l] = {S = 0, P = 0, M = 0, F = F}
end
local plan = {acct = account, dir = direction, dst = destination, caller = caller,
              node = node, at = now_usec, lv = levels}
-- plain fields (node, max, T, seq, ans, cr) let a restarted daemon adopt the leg
redis.call('HSET', leg, 'st', 'authorized', 'plan', cmsgpack.pack(plan),
           'dyn', cmsgpack.pack(dyn), 'keys', table.concat(KEYS, '\n'), op_field, res,
           'node', node, 'max', int(max_seconds), 'T', '0', 'seq', '0', 'cr', created_usec)
redis.call('SADD', KEYS[3], uuid)
return res
