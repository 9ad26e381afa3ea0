-- wrk script for bench/tracker.sh: realistic HTTP announces, one per connection.
-- 1,000 torrents (HASHES file, 40 hex digits a line), random peer id and port, a quarter of
-- peers seeding, compact=1, numwant=50, `Connection: close` as real clients announce.

local hashes = {}
for line in io.lines(os.getenv("HASHES") or "hashes.txt") do
  if #line == 40 then
    hashes[#hashes + 1] = line:gsub("..", "%%%0")
  end
end

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

request = function()
  local hash = hashes[math.random(#hashes)]
  local peer_id = string.format("-WR0001-%06d%06d", math.random(0, 999999), math.random(0, 999999))
  local port = math.random(1, 65535)
  local left = 0
  if math.random(4) > 1 then
    left = math.random(1, 1000000000)
  end
  local path = "/announce?info_hash=" .. hash .. "&peer_id=" .. peer_id .. "&port=" .. port
    .. "&uploaded=0&downloaded=0&left=" .. left .. "&compact=1&numwant=50"
  return wrk.format("GET", path, { ["Connection"] = "close" })
end
