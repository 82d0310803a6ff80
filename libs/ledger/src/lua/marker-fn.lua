-- Whether a slot's ready marker `current` (nil when absent) belongs to a rebuild later than
-- generation `gen`, whose mark it then refuses (cluster-load-put.lua and cluster-markers.lua,
-- op 'mark'). Generations are `<µs>-<random>` (cluster-load.lua), ordered by their time part,
-- then their text: the latest rebuild wins every slot whatever order two rebuilds' marks arrive
-- in. A marker of the older counter format is a small number and loses to any.
local function marker_later(current, gen)
  if not current then return false end
  local held = current:gsub('^L', '')
  local ht, gt = tonumber(held:match('^%d+') or '-1'), tonumber(gen:match('^%d+') or '-1')
  return ht > gt or (ht == gt and held > gen)
end
