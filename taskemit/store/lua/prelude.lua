-- In front of every script: the globals the scripts read, as locals. A global is a table lookup
-- each time it is read; a local is a register, in a function an upvalue.
local redis, KEYS, ARGV = redis, KEYS, ARGV
local ipairs, pairs, next, select, type, pcall, unpack = ipairs, pairs, next, select, type, pcall, unpack
local tonumber, tostring = tonumber, tostring
local string, table, math, cjson = string, table, math, cjson
