-- apply: a money operation over a chain (top-up, adjustment, package charge or refund),
-- all or nothing, exactly once per op id, with optional package bucket changes.
-- KEYS: ops, outbox, account 1..n, bucket 1..m
-- ARGV: named in rater/ledger/fields.py (APPLY_ARGV): op_id, now_usec, allow_below_floor
--       (0|1), n_entries,
--       n x (account floor amount entry_id kind ref),
--       m, m x (action order period cap)   action: open | renew | close
--       extra (raw JSON value carried to the flusher, or '')
local op_id, now_usec, allow_below_floor, n_entries = unpack(ARGV, 1, 4)
local prev = redis.call('HGET', KEYS[1], op_id)
if prev then return prev end
local allow = allow_below_floor == '1'
local n = tonumber(n_entries)
local entries, i = {}, 5
local delta = {}
for e = 1, n do
  entries[e] = {a = ARGV[i], fl = tonumber(ARGV[i + 1]), amt = tonumber(ARGV[i + 2]),
                id = ARGV[i + 3], kind = ARGV[i + 4], ref = ARGV[i + 5], key = KEYS[2 + e]}
  i = i + 6
end
local m = tonumber(ARGV[i]); i = i + 1
local bops = {}
for b = 1, m do
  bops[b] = {act = ARGV[i], order = ARGV[i + 1], period = ARGV[i + 2], cap = ARGV[i + 3],
             key = KEYS[2 + n + b]}
  i = i + 4
end
local extra = ARGV[i] or ''

-- check everything before the first write: scripts do not roll back
for _, E in ipairs(entries) do
  local v = redis.call('HMGET', E.key, 'bal', 'held')
  if not v[1] then return 'refused unknown_account ' .. E.a end
  delta[E.key] = (delta[E.key] or 0) + E.amt
  if not allow and E.amt < 0 and num(v[1]) - num(v[2]) - E.fl + delta[E.key] < 0 then
    return 'refused insufficient_funds ' .. E.a
  end
end

local ledger = {}
for _, E in ipairs(entries) do
  if E.amt ~= 0 then
    redis.call('HINCRBY', E.key, 'bal', int(E.amt))
    ledger[#ledger + 1] = '{"id":' .. jstr(E.id) .. ',"account":' .. jstr(E.a) ..
      ',"amount":' .. int(E.amt) .. ',"kind":' .. jstr(E.kind) .. ',"ref":' .. jstr(E.ref) .. '}'
  end
end
for _, B in ipairs(bops) do
  if B.act == 'open' or B.act == 'renew' then
    -- a new period: all its seconds free. Seconds live calls held in the old period stay
    -- theirs (each leg banks them, commit.lua) but leave this period's counters.
    redis.call('HSET', B.key, 'left', B.cap, 'cap', B.cap, 'period', B.period, 'held', '0')
    redis.call('HDEL', B.key, 'closed')
  elseif B.act == 'close' then
    -- ended: no new call gets its seconds; the seconds calls in progress hold stay
    -- theirs (the refund counted them as used), and the key goes with the last of them
    local held = num(redis.call('HGET', B.key, 'held'))
    if held > 0 then
      redis.call('HSET', B.key, 'left', int(held), 'closed', '1')
    else
      redis.call('DEL', B.key)
    end
  end
end
local entry = '{"op":"money","id":' .. jstr(op_id) .. ',"at":' .. int(num(now_usec)) ..
  ',"ledger":[' .. table.concat(ledger, ',') .. ']'
if extra ~= '' then entry = entry .. ',"extra":' .. extra end
entry = entry .. '}'
redis.call('XADD', KEYS[2], '*', 'e', entry)
local res = 'ok'
redis.call('HSET', KEYS[1], op_id, res)
return res
