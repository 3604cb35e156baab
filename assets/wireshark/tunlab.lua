-- tunlab.lua: Wireshark dissector for tunlab's tunnel protocol, classic mode (the course's).
--
-- A datagram is TYPE ID PAYLOAD: TYPE one ASCII byte, ID one ASCII digit '0'..'9'.
--   C<id>          proxy1 -> proxy2  open connection <id> (trailing bytes are ignored)
--   C<id>OK/NOK    proxy2 -> proxy1  the TCP connect to the server worked / failed
--   D<id><bytes>   both              data of connection <id>, binary-safe
--   X<id>          both              close connection <id>
--
-- Registered on UDP 3328 (the lab's default proxy2 port), and found on any other port by the
-- tunnel's opening C frame (see the heuristic at the end). To force it on port N:
--   tshark -r FILE -X lua_script:assets/wireshark/tunlab.lua -d udp.port==N,tunlab
--   wireshark -X lua_script:assets/wireshark/tunlab.lua -d udp.port==N,tunlab FILE
-- (or in Wireshark: Analyze > Decode As…, UDP port N, tunlab).
--
-- The Info column reads like tunlab's own traces: C3, C3OK, C3NOK, X3, D3 len=5 "hola\n".
-- Written for Wireshark 4.0 (Lua 5.2).

local DEFAULT_PORT = 3328
-- Course peers read with a 1500-byte buffer; anything longer is cut silently on their side.
local MAX_DATAGRAM = 1500
-- Payload bytes shown in the Info column, as in tunlab's traces (event.rs PREVIEW_LEN).
local PREVIEW_LEN = 48

local tunlab = Proto("tunlab", "tunlab tunnel (classic C/D/X)")

local TYPE_NAMES = {
    C = "connect",
    D = "data",
    X = "close",
}

local f_type = ProtoField.string("tunlab.type", "Type")
local f_id = ProtoField.uint8("tunlab.id", "Connection id", base.DEC)
local f_status = ProtoField.string("tunlab.status", "Connect status")
local f_len = ProtoField.uint16("tunlab.len", "Payload length", base.DEC)
local f_payload = ProtoField.bytes("tunlab.payload", "Payload")
local f_ignored = ProtoField.bytes("tunlab.ignored", "Ignored trailing bytes")
tunlab.fields = { f_type, f_id, f_status, f_len, f_payload, f_ignored }

local e_malformed = ProtoExpert.new("tunlab.malformed", "Malformed tunlab datagram",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_too_long = ProtoExpert.new("tunlab.too_long",
    "Datagram longer than 1500 bytes: course peers would cut it",
    expert.group.PROTOCOL, expert.severity.WARN)
local e_refused = ProtoExpert.new("tunlab.nok", "proxy2 could not reach the server (NOK)",
    expert.group.RESPONSE_CODE, expert.severity.NOTE)
tunlab.experts = { e_malformed, e_too_long, e_refused }

-- The same escaping as tunlab's describe::escape_bytes.
local function escape_bytes(bytes)
    local out = {}
    for i = 1, #bytes do
        local b = bytes:byte(i)
        if b == 10 then out[#out + 1] = "\\n"
        elseif b == 13 then out[#out + 1] = "\\r"
        elseif b == 9 then out[#out + 1] = "\\t"
        elseif b == 92 then out[#out + 1] = "\\\\"
        elseif b == 34 then out[#out + 1] = "\\\""
        elseif b >= 0x20 and b <= 0x7e then out[#out + 1] = string.char(b)
        else out[#out + 1] = string.format("\\x%02x", b)
        end
    end
    return table.concat(out)
end

local function malformed(tree, pinfo, tvb, why)
    pinfo.cols.info:set("tunlab malformed: " .. why)
    local item = tree:add(tunlab, tvb(), "tunlab (malformed)")
    item:add_proto_expert_info(e_malformed, why)
    return tvb:len()
end

function tunlab.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol:set("TUNLAB")
    if len < 2 then
        return malformed(tree, pinfo, tvb,
            string.format("datagram of %d bytes is shorter than the 2-byte header", len))
    end
    local kind = tvb(0, 1):string()
    local digit = tvb(1, 1):uint()
    if TYPE_NAMES[kind] == nil then
        return malformed(tree, pinfo, tvb,
            string.format("unknown frame type byte 0x%02x", tvb(0, 1):uint()))
    end
    if digit < 0x30 or digit > 0x39 then
        return malformed(tree, pinfo, tvb,
            string.format("bad connection id byte 0x%02x (classic ids are ASCII '0'..'9')", digit))
    end
    local id = digit - 0x30
    local rest = len - 2

    local subtree = tree:add(tunlab, tvb())
    subtree:add(f_type, tvb(0, 1)):append_text(" (" .. TYPE_NAMES[kind] .. ")")
    subtree:add(f_id, tvb(1, 1), id)
    if len > MAX_DATAGRAM then
        subtree:add_proto_expert_info(e_too_long)
    end

    local label
    if kind == "C" then
        local tail = rest > 0 and tvb(2, rest):raw() or ""
        -- Only the exact replies mean OK/NOK; anything else after C<id> is ignored (seed rule).
        if tail == "OK" or tail == "NOK" then
            subtree:add(f_status, tvb(2, rest))
            if tail == "NOK" then subtree:add_proto_expert_info(e_refused) end
            label = string.format("C%d%s", id, tail)
        else
            if rest > 0 then subtree:add(f_ignored, tvb(2, rest)) end
            label = string.format("C%d", id)
        end
    elseif kind == "D" then
        subtree:add(f_len, rest):set_generated()
        local payload = ""
        if rest > 0 then
            subtree:add(f_payload, tvb(2, rest))
            payload = tvb(2, math.min(rest, PREVIEW_LEN)):raw()
        end
        local more = rest > PREVIEW_LEN and "…" or ""
        if rest == 0 then
            -- proxy1's probe: "do you still have this id?" (answered X if not)
            label = string.format("D%d len=0 (probe)", id)
        else
            label = string.format('D%d len=%d "%s%s"', id, rest, escape_bytes(payload), more)
        end
    else
        if rest > 0 then subtree:add(f_ignored, tvb(2, rest)) end
        label = string.format("X%d", id)
    end
    subtree:append_text(": " .. label)
    pinfo.cols.info:set(label)
    return len
end

DissectorTable.get("udp.port"):add(DEFAULT_PORT, tunlab)

-- On other ports (the lab's "auto" ports, a standalone proxy's own choice) a tunnel shows
-- itself by its opening exchange: a datagram that is exactly C<id>, C<id>OK or C<id>NOK.
-- Seeing one marks that UDP conversation as tunlab, so the D and X frames that follow decode
-- too. The test is strict, so other traffic is left alone; turn it off in Analyze > Enabled
-- Protocols (tunlab_udp) if it ever is not.
local function opening(tvb)
    local len = tvb:len()
    if len ~= 2 and len ~= 4 and len ~= 5 then return false end
    if tvb(0, 1):uint() ~= 0x43 then return false end -- 'C'
    local digit = tvb(1, 1):uint()
    if digit < 0x30 or digit > 0x39 then return false end
    local tail = len > 2 and tvb(2, len - 2):raw() or ""
    return tail == "" or tail == "OK" or tail == "NOK"
end

local function heuristic(tvb, pinfo, tree)
    if not opening(tvb) then return false end
    pinfo.conversation = tunlab
    tunlab.dissector(tvb, pinfo, tree)
    return true
end

tunlab:register_heuristic("udp", heuristic)

-- tunlab's pcapng keeps a frame the link emulator dropped before sending as an empty packet
-- (no bytes crossed the wire) whose comment says what happened. Show that comment in the
-- Info column, so the drop is visible in the packet list where it happened.
local f_comment = Field.new("frame.comment")
local not_sent = Proto("tunlab_not_sent", "tunlab frame that was not sent")

function not_sent.dissector(tvb, pinfo, tree)
    if tvb:len() ~= 0 then return end
    local comment = f_comment()
    if comment == nil then return end
    local text = tostring(comment.value)
    if not text:find("not sent", 1, true) then return end
    pinfo.cols.protocol:set("TUNLAB")
    pinfo.cols.info:set(text)
end

register_postdissector(not_sent)
