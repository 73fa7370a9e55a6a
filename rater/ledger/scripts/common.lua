-- Shared by every ledger script (prepended by rater/ledger/scripts.py).
-- Money is integer micro-units; Lua numbers are doubles, exact below 2^53 (9e15 micros).
-- The tariff formulas mirror rater/rating/tariff.py exactly; the golden vectors
-- (tests/golden/decisions.json) and property tests check both agree. L is one level of a
-- leg's plan (short names: stored with every leg; rater/ledger/fields.py names them).

local DEN = 600000            -- 60 s * 10000 (markup basis points)
local INF = 1e12              -- "unlimited" seconds (a free tariff)

local function num(x) return tonumber(x) or 0 end
local function int(x) return string.format('%d', x) end

-- cost of p paid seconds, half-up: round(num * p / DEN) with num = q*DEN + r
local function cost(L, p)
  if p <= 0 then return 0 end
  return L.q * p + math.floor((2 * L.r * p + DEN) / (2 * DEN))
end

-- money due for p paid seconds: the connect fee once, and only when something is paid
local function money_due(L, p)
  if p <= 0 then return 0 end
  return L.cf + cost(L, p)
end

-- charged seconds for d billed seconds
local function charged(L, d)
  if d <= 0 then return 0 end
  local dd = d - L.incl
  if dd <= 0 then return 0 end
  local extra = dd - L.init
  if extra <= 0 then return L.init end
  return L.init + math.ceil(extra / L.inc) * L.inc
end

local function is_free(L) return L.q == 0 and L.r == 0 and L.cf == 0 end

-- the most paid seconds whose cost fits x micros (a cost that rounds to 0 always fits).
-- tariff.py inverts the rounding in closed form, (DEN*(2x+1) - 1) // (2*num), whose
-- intermediates pass 2^53; doubles estimate, then step to the exact answer instead.
local function max_paid(L, x)
  if x < 0 then return 0 end
  if L.q == 0 and L.r == 0 then return INF end
  -- cost(p) <= x  <=>  num*p/DEN < x + 1/2: estimate, then step to the exact answer
  local p = math.floor((x + 0.5) * DEN / (L.q * DEN + L.r))
  if p > INF then return INF end
  while p > 0 and cost(L, p) > x do p = p - 1 end
  while cost(L, p + 1) <= x do p = p + 1 end
  return p
end

-- the longest billed duration whose cost fits `funds` given `free` package seconds
local function max_billed(L, funds, free)
  if is_free(L) then return INF end
  if funds < 0 then funds = 0 end
  local pm = 0
  if funds >= L.cf then pm = max_paid(L, funds - L.cf) end
  local s = free + pm
  if s < L.init then return L.incl end
  return L.incl + L.init + math.floor((s - L.init) / L.inc) * L.inc
end

-- free seconds a bucket can still give: none once it is closed (a terminated order kept
-- only for the seconds calls in progress still hold)
local function bucket_avail(bkey)
  local v = redis.call('HMGET', bkey, 'left', 'held', 'closed')
  if not v[1] or v[3] then return 0 end
  local a = num(v[1]) - num(v[2])
  if a < 0 then return 0 end
  return a
end

-- A leg's package seconds per bucket j of a level D: F[j] held in the bucket's period
-- FP[j] (counted in the bucket's `held`), U[j] banked from an earlier period of the same
-- order (a renewal came meanwhile: no longer in the bucket's counters), UP[j] its period.
-- Legs recorded before FP/U existed default to the period of authorization.
local function holds(L, D, j)
  D.FP = D.FP or {}
  D.U = D.U or {}
  D.UP = D.UP or {}
  if D.FP[j] == nil then D.FP[j] = L.bp[j] end
  if D.U[j] == nil then D.U[j] = 0 end
end

local function jstr(s) return cjson.encode(s or '') end
