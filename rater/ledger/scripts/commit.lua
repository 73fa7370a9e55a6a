-- commit: the leg is over. Charge every level its final cost from the billed duration,
-- return the unused holds, free the channel, and append the CDR and ledger entries to the
-- outbox in the same step. A never-answered leg commits with 0 billed seconds (release); a
-- withdrawn one (0 seconds) frees its holds and channel and writes nothing to the outbox.
-- KEYS: leg, outbox, live, account 1..n, buckets   (as authorize)
-- ARGV: named in rater/ledger/fields.py (COMMIT_ARGV)
local op_field, billed, now_usec, hangup_cause, created_usec, answered_usec, hangup_usec,
  settlement, ttl, uuid = unpack(ARGV, 1, 10)
local leg = KEYS[1]
local h = redis.call('HMGET', leg, 'st', 'plan', 'dyn', op_field)
if h[4] then return h[4] end
if not h[1] then return 'refused unknown_leg' end
if h[1] ~= 'authorized' and h[1] ~= 'answered' then return 'refused leg_' .. h[1] end
local plan = cmsgpack.unpack(h[2])
local dyn = cmsgpack.unpack(h[3])
local levels = plan.lv
billed = tonumber(billed)

local charges, usage, ledger, costs = {}, {}, {}, {}
local total = 0

local function add_usage(L, j, period, seconds)
  if seconds > 0 then
    usage[#usage + 1] = '{"order":' .. jstr(L.b[j]) .. ',"account":' .. jstr(L.a) ..
      ',"period":' .. int(num(period)) .. ',"seconds":' .. int(seconds) .. '}'
  end
end
for l = 1, #levels do
  local L, D = levels[l], dyn.lv[l]
  local akey = KEYS[3 + l]
  local s = charged(L, billed)
  local rest = s
  local banked, use, extra = {}, {}, {}
  for j = 1, #L.b do  -- what this leg reserved: banked seconds of an earlier period first
    holds(L, D, j)
    banked[j] = math.min(D.U[j], rest)
    rest = rest - banked[j]
    use[j] = math.min(D.F[j], rest)
    rest = rest - use[j]
  end
  for j = 1, #L.b do  -- ran past what was reserved: more package seconds if there are any
    extra[j] = 0
    if rest > 0 then
      extra[j] = math.min(bucket_avail(KEYS[L.bk[j]]), rest)
      rest = rest - extra[j]
    end
  end
  local money = money_due(L, rest)
  redis.call('HINCRBY', akey, 'bal', int(-money))
  if D.M ~= 0 then redis.call('HINCRBY', akey, 'held', int(-D.M)) end
  redis.call('HINCRBY', akey, 'ch', -1)
  for j = 1, #L.b do
    local bkey = KEYS[L.bk[j]]
    local b = redis.call('HMGET', bkey, 'period', 'closed')
    local period = b[1] and num(b[1])  -- nil: the bucket is gone (released)
    local own = period == D.FP[j]       -- this leg's holds F are in the bucket's counters
    if own then
      if use[j] + extra[j] ~= 0 then
        redis.call('HINCRBY', bkey, 'left', int(-(use[j] + extra[j])))
      end
      if D.F[j] ~= 0 then
        local held = redis.call('HINCRBY', bkey, 'held', int(-D.F[j]))
        if b[2] and held <= 0 then redis.call('DEL', bkey) end  -- closed and now unheld
      end
    elseif period and extra[j] ~= 0 then
      redis.call('HINCRBY', bkey, 'left', int(-extra[j]))
    end
    -- usage rows, each in the period its seconds were held in
    add_usage(L, j, D.UP[j] or D.FP[j], banked[j])
    if own then
      add_usage(L, j, period, use[j] + extra[j])
    else
      add_usage(L, j, D.FP[j], use[j])
      if period then add_usage(L, j, period, extra[j]) end
    end
  end
  if l == 1 then total = money end
  costs[l] = int(money)
  charges[l] = '{"level":' .. int(l - 1) .. ',"account":' .. jstr(L.a) ..
    ',"rate_group":' .. jstr(L.rg) .. ',"prefix":' .. jstr(L.pfx) ..
    ',"price_per_min":' .. int(L.ppm) .. ',"charged_seconds":' .. int(s) ..
    ',"free_seconds":' .. int(s - rest) .. ',"cost":' .. int(money) .. '}'
  if money ~= 0 then
    ledger[#ledger + 1] = '{"id":' .. jstr('call:' .. uuid .. ':' .. int(l - 1)) ..
      ',"account":' .. jstr(L.a) .. ',"amount":' .. int(-money) ..
      ',"kind":"call","ref":' .. jstr(uuid) .. '}'
  end
end

local cdr = '{"uuid":' .. jstr(uuid) .. ',"account":' .. jstr(plan.acct) ..
  ',"direction":' .. jstr(plan.dir) .. ',"caller":' .. jstr(plan.caller) ..
  ',"destination":' .. jstr(plan.dst) .. ',"node":' .. jstr(plan.node) ..
  ',"created_usec":' .. int(num(created_usec)) .. ',"answered_usec":' .. int(num(answered_usec)) ..
  ',"hangup_usec":' .. int(num(hangup_usec)) .. ',"billed_seconds":' .. int(billed) ..
  ',"hangup_cause":' .. jstr(hangup_cause) .. ',"settlement":' .. jstr(settlement) ..
  ',"total_cost":' .. int(total) .. '}'
local entry = '{"op":"commit","id":' .. jstr(uuid) .. ',"at":' .. int(num(now_usec)) ..
  ',"cdr":' .. cdr .. ',"charges":[' .. table.concat(charges, ',') ..
  '],"usage":[' .. table.concat(usage, ',') .. '],"ledger":[' .. table.concat(ledger, ',') .. ']}'
-- withdrawn: an authorization the daemon refused (Redis's reply was lost): no CDR, no call
if settlement ~= 'withdrawn' then redis.call('XADD', KEYS[2], '*', 'e', entry) end
redis.call('SREM', KEYS[3], uuid)
local res = 'ok ' .. int(billed) .. ' ' .. table.concat(costs, ' ')
-- A finished leg is kept `ttl` seconds only so that replays stay no-ops: a replayed commit
-- answers its stored result, a replayed authorization its own (never a new leg), anything
-- else is refused `leg_committed`. So it is written again with just those: a small hash
-- in Redis's compact encoding, about a fifth of the live leg it was.
local authorized = redis.call('HGET', leg, 'o:a')
redis.call('DEL', leg)
if authorized then
  redis.call('HSET', leg, 'st', 'committed', op_field, res, 'o:a', authorized)
else
  redis.call('HSET', leg, 'st', 'committed', op_field, res)
end
redis.call('EXPIRE', leg, tonumber(ttl))
return res
