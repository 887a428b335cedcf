-- Argo CD health for panel.puqcloud.com User, ClientMembership and PanelAccessPolicy, read from
-- the kstatus conditions the operator writes (Ready, Reconciling, Stalled) and
-- status.observedGeneration.
local hs = {}
local function cond(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then return c end
    end
  end
  return nil
end
local function describe(c)
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason
end
local generation = obj.metadata.generation
local stalled = cond("Stalled")
if stalled ~= nil and stalled.status == "True" and stalled.observedGeneration == generation then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local reconciling = cond("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end
if obj.status == nil or obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local ready = cond("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
hs.status = "Progressing"
if ready ~= nil then hs.message = describe(ready) else hs.message = "Waiting for the Ready condition" end
return hs
