-- reserve: hold money and package seconds, at every level, up to `target` billed seconds.
-- Grants as much as every level can pay (never past what the poorest level affords);
-- 'short' means less than asked, 'refused' nothing more. Holds, not ledger entries:
-- the money moves at commit.
-- KEYS: leg, outbox, live, account 1..n, buckets   (as authorize)
-- ARGV: named in rater/ledger/fields.py (RESERVE_ARGV); answered_usec is 0 if unknown
local op_field, target, answered_usec, seq = unpack(ARGV, 1, 4)
local leg = KEYS[1]
local h = redis.call('HMGET', leg, 'st', 'plan', 'dyn', op_field)
if h[4] then return h[4] end
if not h[1] then return 'refused 0 unknown_leg' end
if h[1] ~= 'authorized' and h[1] ~= 'answered' then return 'refused 0 leg_' .. h[1] end
local plan = cmsgpack.unpack(h[2])
local dyn = cmsgpack.unpack(h[3])
local levels = plan.lv
local n = #levels
target = tonumber(target)

local function store(res)
  redis.call('HSET', leg, op_field, res, 'dyn', cmsgpack.pack(dyn), 'st', 'answered',
             'T', int(dyn.T), 'seq', seq)
  if answered_usec ~= '0' then redis.call('HSETNX', leg, 'ans', answered_usec) end
  return res
end

if target <= dyn.T then return store('ok ' .. int(dyn.T)) end

-- what reserving up to T would take at level l: takes per bucket, new paid, new money
local function need(l, T)
  local L, D = levels[l], dyn.lv[l]
  local s_new = charged(L, T)
  local add = s_new - D.S
  local takes = {}
  for j = 1, #L.b do takes[j] = 0 end
  if add <= 0 then return D.S, takes, D.P, D.M end
  for j = 1, #L.b do
    if add <= 0 then break end
    local t = math.min(bucket_avail(KEYS[L.bk[j]]), add)
    takes[j] = t
    add = add - t
  end
  local p_new = D.P + add
  return s_new, takes, p_new, money_due(L, p_new)
end

local function funds(l)
  local v = redis.call('HMGET', KEYS[3 + l], 'bal', 'held')
  return num(v[1]) - num(v[2]) - levels[l].fl
end

local granted, short_acct = target, nil
for l = 1, n do
  local _, _, _, m_new = need(l, target)
  if m_new - dyn.lv[l].M > funds(l) then short_acct = short_acct or levels[l].a end
end
if short_acct then
  -- the most every level affords, counting what this leg already holds
  for l = 1, n do
    local L, D = levels[l], dyn.lv[l]
    local free = 0
    for j = 1, #L.b do free = free + D.F[j] + bucket_avail(KEYS[L.bk[j]]) end
    local m = max_billed(L, funds(l) + D.M, free)
    if m < granted then granted = m end
  end
  if granted <= dyn.T then
    return store('refused ' .. int(dyn.T) .. ' insufficient_funds ' .. short_acct)
  end
end

for l = 1, n do
  local L, D = levels[l], dyn.lv[l]
  local s_new, takes, p_new, m_new = need(l, granted)
  for j = 1, #L.b do
    if takes[j] > 0 then
      local bkey = KEYS[L.bk[j]]
      holds(L, D, j)
      local period = num(redis.call('HGET', bkey, 'period'))
      if period ~= D.FP[j] then
        -- renewed since this leg's last hold: those seconds belong to the old period
        D.U[j] = D.U[j] + D.F[j]
        D.UP[j] = D.FP[j]
        D.F[j] = 0
        D.FP[j] = period
      end
      redis.call('HINCRBY', bkey, 'held', int(takes[j]))
      D.F[j] = D.F[j] + takes[j]
    end
  end
  if m_new ~= D.M then redis.call('HINCRBY', KEYS[3 + l], 'held', int(m_new - D.M)) end
  D.S, D.P, D.M = s_new, p_new, m_new
end
dyn.T = granted
if short_acct then return store('short ' .. int(granted) .. ' insufficient_funds ' .. short_acct) end
return store('ok ' .. int(granted))
