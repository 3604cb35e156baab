-- tunlab.lua: Wireshark dissector for tunlab's tunnel protocol, in its three wire formats.
--
-- Classic (the course's first assignment): TYPE ID PAYLOAD, TYPE one ASCII byte, ID one
-- ASCII digit '0'..'9'.
--   C<id>          proxy1 -> proxy2  open connection <id> (trailing bytes are ignored)
--   C<id>OK/NOK    proxy2 -> proxy1  the TCP connect to the server worked / failed
--   D<id><bytes>   both              data of connection <id>, binary-safe
--   X<id>          both              close connection <id>
-- Stop-and-wait (the second assignment): TYPE ID SEQ, SEQ the ASCII digit '0' or '1'.
--   C<id>0, C<id>0OK, C<id>0NOK, D<id><seq><bytes>, A<id><seq> (acks D<id><seq>), X<id><seq>
-- The two text formats look alike (D10hola is id 1, seq 0 in one and payload "0hola" in the
-- other): a UDP conversation is taken as stop-and-wait once it shows an A frame or a
-- stop-and-wait C (C<id>0, C<id>0OK), and as classic otherwise. The preference
-- tunlab.text_mode (Edit > Preferences > Protocols > tunlab, or -o tunlab.text_mode:stop-and-wait)
-- decides it for captures that start after the opening frames.
-- Extended (go-back-n, selective-repeat): binary, first byte 0xE1, big-endian fields, a
-- CRC-32C trailer (checked here; a bad one is an expert error). See README "Wire modes".
--
-- Registered on UDP 3328 (the lab's default proxy2 port), and found on any other port by the
-- tunnel's opening C frame (see the heuristic at the end). To force it on port N:
--   tshark -r FILE -X lua_script:assets/wireshark/tunlab.lua -d udp.port==N,tunlab
--   wireshark -X lua_script:assets/wireshark/tunlab.lua -d udp.port==N,tunlab FILE
-- (or in Wireshark: Analyze > Decode As…, UDP port N, tunlab).
--
-- The Info column reads like tunlab's own traces (describe::frame_label), direction first:
-- p1→p2 C3, p2→p1 C3OK, p2→p1 C3NOK, p1→p2 X3, p1→p2 D3 len=5 "hola\n"; stop-and-wait
-- p1→p2 C30, p2→p1 C30OK, p1→p2 D31 len=5 "hola\n", p2→p1 A31, p1→p2 X30; extended
-- p1→p2 C3 isn=7, p2→p1 C3OK isn=9, p1→p2 D3 seq=17 len=5 "hola\n",
-- p2→p1 A3 ack=18 win=64 sack=20-22,25 (SACK ranges inclusive), p1→p2 X3 seq=40.
-- Once a connection's C and OK have been seen, its seq, ack and SACK numbers are counted
-- from their ISNs, as tunlab's own traces count them (describe::frame_label_relative) and as
-- Wireshark counts TCP's: the first D reads seq=0, a keepalive probe before it seq=-1. The
-- preference tunlab.relative_seq (-o tunlab.relative_seq:FALSE) shows them as on the wire;
-- the fields tunlab.seq and tunlab.ack always hold the wire's numbers, tunlab.seq_relative
-- and tunlab.ack_relative the counted ones.
--
-- Each use of a connection id (from its C to its X) is a stream of its own, numbered like
-- tcp.stream: filter with tunlab.stream == N, or follow it (the D payloads, proxy1's side as
-- node 0 and proxy2's as node 1) with
--   tshark -r FILE -X lua_script:assets/wireshark/tunlab.lua -q -z follow,tunlab,ascii,N
-- (raw instead of ascii gives hex). In Wireshark: Tools > tunlab > Follow stream.
-- Frames the link emulator dropped before sending (tunlab's pcapng keeps them on the interface
-- tunlab-not-sent) are marked [not sent] and left out of what a stream carried.
-- Written for Wireshark 4.0 (Lua 5.2).

local DEFAULT_PORT = 3328
-- Course peers read with a 1500-byte buffer; anything longer is cut silently on their side.
local MAX_DATAGRAM = 1500
-- Payload bytes shown in the Info column, as in tunlab's traces (event.rs PREVIEW_LEN).
local PREVIEW_LEN = 48

local tunlab = Proto("tunlab", "tunlab tunnel (classic, stop-and-wait, extended)")

local TYPE_NAMES = {
    C = "connect",
    D = "data",
    A = "ack",
    X = "close",
}

-- The extended format's first byte, and its type codes.
local EXTENDED = 0xe1
local SEALED = 0xe2
local EXT_TYPES = {
    [1] = { letter = "C", name = "connect" },
    [2] = { letter = "OK", name = "connect ok" },
    [3] = { letter = "NOK", name = "connect refused" },
    [4] = { letter = "D", name = "data" },
    [5] = { letter = "A", name = "ack" },
    [6] = { letter = "X", name = "close" },
}
local MAX_SACK_BLOCKS = 8

tunlab.prefs.text_mode = Pref.enum("Text format",
    1, "How to read the text formats when a conversation does not show which it is",
    { { 1, "auto", 1 }, { 2, "classic", 2 }, { 3, "stop-and-wait", 3 } },
    false)
tunlab.prefs.relative_seq = Pref.bool("Relative sequence numbers", true,
    "Count an extended connection's seq, ack and SACK numbers from its initial sequence "
    .. "numbers (its C's and its OK's), as tunlab's traces do")

local f_type = ProtoField.string("tunlab.type", "Type")
local f_id = ProtoField.uint8("tunlab.id", "Connection id", base.DEC)
local f_status = ProtoField.string("tunlab.status", "Connect status")
local f_len = ProtoField.uint16("tunlab.len", "Payload length", base.DEC)
local f_payload = ProtoField.bytes("tunlab.payload", "Payload")
local f_ignored = ProtoField.bytes("tunlab.ignored", "Ignored trailing bytes")
local f_direction = ProtoField.string("tunlab.direction", "Direction")
local f_stream = ProtoField.uint32("tunlab.stream", "Stream index", base.DEC)
local f_not_sent = ProtoField.bool("tunlab.not_sent", "Not sent (dropped by the link emulator)")
local f_mode = ProtoField.string("tunlab.mode", "Wire format")
local f_seq = ProtoField.uint32("tunlab.seq", "Sequence number", base.DEC)
local f_ack = ProtoField.uint32("tunlab.ack", "Ack (stop-and-wait: of seq; extended: next expected)",
    base.DEC)
local f_window = ProtoField.uint32("tunlab.window", "Receive window (frames)", base.DEC)
local f_isn = ProtoField.uint32("tunlab.isn", "Initial sequence number", base.DEC)
-- Signed: a keepalive probe before the first data frame is one before the ISN.
local f_seq_relative = ProtoField.int32("tunlab.seq_relative",
    "Sequence number (relative to the sender's ISN)", base.DEC)
local f_ack_relative = ProtoField.int32("tunlab.ack_relative",
    "Ack (relative to the receiver's ISN)", base.DEC)
-- The extended C's destination (a SOCKS5 client's, in SOCKS5's ATYP ADDR PORT encoding) and
-- the extended NOK's reason (the SOCKS5 reply code proxy1 gives its client).
local REASONS = {
    [1] = "general failure",
    [2] = "not allowed by ruleset",
    [3] = "network unreachable",
    [4] = "host unreachable",
    [5] = "connection refused",
    [6] = "TTL expired (timed out)",
}
local ATYPS = { [1] = "IPv4", [3] = "host name", [4] = "IPv6" }
local f_destination = ProtoField.string("tunlab.destination", "Destination")
local f_dest_atyp = ProtoField.uint8("tunlab.destination.atyp", "Address type", base.HEX, ATYPS)
local f_dest_host = ProtoField.string("tunlab.destination.host", "Host")
local f_dest_port = ProtoField.uint16("tunlab.destination.port", "Port", base.DEC)
local f_reason = ProtoField.uint8("tunlab.reason", "Refusal reason (SOCKS5 reply code)", base.HEX,
    REASONS)
local f_sack_count = ProtoField.uint8("tunlab.sack.count", "SACK blocks", base.DEC)
local f_sack_start = ProtoField.uint32("tunlab.sack.start", "SACK block start", base.DEC)
local f_sack_end = ProtoField.uint32("tunlab.sack.end", "SACK block end (exclusive)", base.DEC)
local f_ext_type = ProtoField.uint8("tunlab.ext_type", "Extended type code", base.HEX)
local f_ext_id = ProtoField.uint16("tunlab.ext_id", "Connection id", base.DEC)
local f_crc = ProtoField.uint32("tunlab.crc", "CRC-32C", base.HEX)
local f_crc_ok = ProtoField.bool("tunlab.crc_ok", "CRC-32C matches")
-- The sealed variant (0xE2, `--key-file`): the clear header only.
local f_sealed = ProtoField.string("tunlab.sealed", "Sealed (ChaCha20-Poly1305)")
local f_sealed_kind = ProtoField.uint8("tunlab.sealed.kind", "Sealed kind", base.HEX)
local f_p1_session = ProtoField.uint64("tunlab.sealed.p1_session", "proxy1 session", base.HEX)
local f_p2_session = ProtoField.uint64("tunlab.sealed.p2_session", "proxy2 session", base.HEX)
local f_counter = ProtoField.uint64("tunlab.sealed.counter", "Counter (nonce)", base.DEC)
local f_ciphertext = ProtoField.bytes("tunlab.sealed.ciphertext", "Ciphertext")
local f_sealed_len = ProtoField.uint16("tunlab.sealed.len", "Ciphertext length", base.DEC)
local f_tag = ProtoField.bytes("tunlab.sealed.tag", "Poly1305 tag")
tunlab.fields = { f_type, f_id, f_status, f_len, f_payload, f_ignored, f_direction, f_stream,
    f_not_sent, f_mode, f_seq, f_ack, f_window, f_isn, f_seq_relative, f_ack_relative, f_sack_count, f_sack_start, f_sack_end,
    f_ext_type, f_ext_id, f_crc, f_crc_ok, f_sealed, f_sealed_kind, f_p1_session, f_p2_session,
    f_counter, f_ciphertext, f_sealed_len, f_tag, f_destination, f_dest_atyp, f_dest_host,
    f_dest_port, f_reason }

-- tunlab's pcapng puts frames the link emulator dropped on an interface of their own.
local NOT_SENT_INTERFACE = "tunlab-not-sent"
local f_interface_name = Field.new("frame.interface_name")
local f_comment = Field.new("frame.comment")

-- What the first pass learned, per packet number: direction, stream, and the ISNs its
-- numbers count from. Later passes (and Wireshark's random access) read it back, so every
-- pass shows the same.
local per_packet = {}
-- Per UDP conversation (the two endpoints): which end is proxy2, and each id's stream.
local conversations = {}
local next_stream = 0
-- Per packet and per conversation, the text format (see text_mode below).
local text_modes = {}
local conversation_modes = {}

function tunlab.init()
    per_packet = {}
    conversations = {}
    next_stream = 0
    text_modes = {}
    conversation_modes = {}
end

local function endpoint(address, port)
    return tostring(address) .. ":" .. tostring(port)
end

-- Works out a packet's direction and stream on the first pass; `kind` and `tail` are the
-- frame's type letter and what follows C<id>, `isn` an extended C's or OK's ISN.
local function place(pinfo, kind, id, tail, isn)
    local known = per_packet[pinfo.number]
    if known ~= nil then return known end
    local src = endpoint(pinfo.src, pinfo.src_port)
    local dst = endpoint(pinfo.dst, pinfo.dst_port)
    local key = src < dst and (src .. "|" .. dst) or (dst .. "|" .. src)
    local conv = conversations[key]
    if conv == nil then
        conv = { proxy2 = nil, current = {}, closed = {}, text_mode = nil, isns = {} }
        conversations[key] = conv
    end
    -- C/OK/NOK keep their letter in `kind` and their status in `tail` for every format.
    -- proxy2 is where a C goes and where C..OK / C..NOK come from; failing that, the
    -- lab's default proxy2 port.
    if kind == "C" and (tail == "OK" or tail == "NOK") then
        conv.proxy2 = src
    elseif kind == "C" then
        conv.proxy2 = dst
    elseif conv.proxy2 == nil then
        if pinfo.dst_port == DEFAULT_PORT then conv.proxy2 = dst
        elseif pinfo.src_port == DEFAULT_PORT then conv.proxy2 = src end
    end
    local direction = "?"
    if conv.proxy2 == dst then direction = "p1→p2"
    elseif conv.proxy2 == src then direction = "p2→p1" end
    -- A new stream starts with each C that opens the id (the first, or one after an X).
    local opening = kind == "C" and tail ~= "OK" and tail ~= "NOK"
    if conv.current[id] == nil or (opening and conv.closed[id]) then
        conv.current[id] = next_stream
        next_stream = next_stream + 1
        conv.closed[id] = false
    end
    local stream = conv.current[id]
    if kind == "X" then conv.closed[id] = true end
    -- The extended modes' ISNs: proxy1's from its C, proxy2's from its OK. A C with another
    -- ISN than the id's last one opens a new connection, whose OK is still to come (a re-sent
    -- C carries the same ISN).
    local isns = conv.isns[id]
    if isn ~= nil and kind == "C" and tail == "" then
        if isns == nil or isns.p1 ~= isn then
            isns = { p1 = isn }
            conv.isns[id] = isns
        end
    elseif isn ~= nil and tail == "OK" then
        isns = isns or {}
        isns.p2 = isn
        conv.isns[id] = isns
    end
    -- Numbers count from ISNs only once both are known, as in tunlab's traces: a D or an X
    -- from its sender's, an ack from its receiver's (it acknowledges the receiver's data).
    local own_base, peer_base
    if isns ~= nil and isns.p1 ~= nil and isns.p2 ~= nil then
        if direction == "p1→p2" then own_base, peer_base = isns.p1, isns.p2
        elseif direction == "p2→p1" then own_base, peer_base = isns.p2, isns.p1 end
    end
    known = { direction = direction, stream = stream, own_base = own_base, peer_base = peer_base }
    per_packet[pinfo.number] = known
    return known
end

local function not_sent_frame()
    local name = f_interface_name()
    return name ~= nil and tostring(name.value) == NOT_SENT_INTERFACE
end

local e_malformed = ProtoExpert.new("tunlab.malformed", "Malformed tunlab datagram",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_too_long = ProtoExpert.new("tunlab.too_long",
    "Datagram longer than 1500 bytes: course peers would cut it",
    expert.group.PROTOCOL, expert.severity.WARN)
local e_refused = ProtoExpert.new("tunlab.nok", "proxy2 could not reach the server (NOK)",
    expert.group.RESPONSE_CODE, expert.severity.NOTE)
tunlab.experts = { e_malformed, e_too_long, e_refused }

-- The length of the valid UTF-8 sequence at position i of bytes, and its code point; nil
-- when the bytes there are not one (a lone continuation byte, a cut or overlong sequence,
-- a surrogate).
local function utf8_at(bytes, i)
    local b = bytes:byte(i)
    local n, low, high, cp
    if b >= 0xc2 and b <= 0xdf then n, cp = 1, b - 0xc0
    elseif b >= 0xe0 and b <= 0xef then n, cp = 2, b - 0xe0
    elseif b >= 0xf0 and b <= 0xf4 then n, cp = 3, b - 0xf0
    else return nil end
    -- The allowed range of the first continuation byte (RFC 3629's table).
    low, high = 0x80, 0xbf
    if b == 0xe0 then low = 0xa0 elseif b == 0xed then high = 0x9f
    elseif b == 0xf0 then low = 0x90 elseif b == 0xf4 then high = 0x8f end
    for k = 1, n do
        local c = bytes:byte(i + k)
        if c == nil then return nil end
        if k == 1 then
            if c < low or c > high then return nil end
        elseif c < 0x80 or c > 0xbf then return nil end
        cp = cp * 64 + (c - 0x80)
    end
    return n + 1, cp
end

-- Characters that must not reach a terminal as text: C1 controls, and format or separator
-- characters that move or hide text.
local function printable(cp)
    return not ((cp >= 0x80 and cp <= 0x9f) or cp == 0xad
        or (cp >= 0x200b and cp <= 0x200f) or (cp >= 0x2028 and cp <= 0x202e)
        or (cp >= 0x2060 and cp <= 0x206f) or cp == 0xfeff
        or (cp >= 0xfff9 and cp <= 0xfffb))
end

-- The same escaping as tunlab's describe::escape_bytes: printable text as is (UTF-8 too),
-- \n \r \t \\ \" escaped, every other byte as \xNN.
local function escape_bytes(bytes)
    local out = {}
    local i = 1
    while i <= #bytes do
        local b = bytes:byte(i)
        local len, cp = nil, nil
        if b >= 0x80 then len, cp = utf8_at(bytes, i) end
        if len and printable(cp) then
            out[#out + 1] = bytes:sub(i, i + len - 1)
            i = i + len
        elseif len then
            for k = i, i + len - 1 do
                out[#out + 1] = string.format("\\x%02x", bytes:byte(k))
            end
            i = i + len
        else
            if b == 10 then out[#out + 1] = "\\n"
            elseif b == 13 then out[#out + 1] = "\\r"
            elseif b == 9 then out[#out + 1] = "\\t"
            elseif b == 92 then out[#out + 1] = "\\\\"
            elseif b == 34 then out[#out + 1] = "\\\""
            elseif b >= 0x20 and b <= 0x7e then out[#out + 1] = string.char(b)
            else out[#out + 1] = string.format("\\x%02x", b)
            end
            i = i + 1
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

-- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as the extended format's trailer.
local CRC32C_TABLE = {}
for n = 0, 255 do
    local c = n
    for _ = 1, 8 do
        if bit32.band(c, 1) == 1 then
            c = bit32.bxor(bit32.rshift(c, 1), 0x82f63b78)
        else
            c = bit32.rshift(c, 1)
        end
    end
    CRC32C_TABLE[n] = c
end

local function crc32c(bytes)
    local crc = 0xffffffff
    for i = 1, #bytes do
        local index = bit32.band(bit32.bxor(crc, bytes:byte(i)), 0xff)
        crc = bit32.bxor(bit32.rshift(crc, 8), CRC32C_TABLE[index])
    end
    return bit32.bxor(crc, 0xffffffff)
end

-- The text format of this packet's conversation: "classic" or "stop-and-wait". Decided on
-- the first pass (an A frame or a stop-and-wait C makes a conversation stop-and-wait for
-- good) and kept per packet, so every pass reads a packet the same way.
local function text_mode(pinfo, tvb, kind)
    local known = text_modes[pinfo.number]
    if known ~= nil then return known end
    local pref = tunlab.prefs.text_mode
    local mode
    if pref == 2 then
        mode = "classic"
    elseif pref == 3 then
        mode = "stop-and-wait"
    else
        local src = endpoint(pinfo.src, pinfo.src_port)
        local dst = endpoint(pinfo.dst, pinfo.dst_port)
        local key = src < dst and (src .. "|" .. dst) or (dst .. "|" .. src)
        local len = tvb:len()
        local third = len >= 3 and tvb(2, 1):uint() or nil
        local bit = third == 0x30 or third == 0x31
        local tail = len > 3 and tvb(3, len - 3):raw() or ""
        if kind == "A" or (kind == "C" and bit and (len == 3 or tail == "OK" or tail == "NOK")) then
            conversation_modes[key] = "stop-and-wait"
        end
        mode = conversation_modes[key] or "classic"
    end
    text_modes[pinfo.number] = mode
    return mode
end

-- The number a wire number `value` reads as: counted from `base` (signed, across the wrap)
-- when the connection's ISNs are known and the preference asks for it, as on the wire
-- otherwise. tunlab's Seq::shown_from.
local function shown_from(value, base)
    if base == nil or not tunlab.prefs.relative_seq then return value end
    local offset = (value - base) % 4294967296
    if offset >= 2147483648 then offset = offset - 4294967296 end
    return offset
end

-- The relative field of a wire number, when it has one (generated: it is not on the wire).
local function add_relative(subtree, field, range, value, base)
    if base == nil or not tunlab.prefs.relative_seq then return end
    subtree:add(field, range, shown_from(value, base)):set_generated()
end

-- Labels and tree items shared by the three formats, once a frame is parsed:
-- `frame` = { kind = "C"/"D"/"A"/"X", id, tail (C: "", "OK", "NOK"), isn (extended C, OK),
-- label or label_at(where), fill(subtree, where) }; `where` is what `place` worked out.
local function finish(tvb, pinfo, tree, frame, mode_name)
    local where = place(pinfo, frame.kind, frame.id, frame.tail or "", frame.isn)
    if frame.label_at ~= nil then frame.label = frame.label_at(where) end
    local dropped = not_sent_frame()
    local subtree = tree:add(tunlab, tvb())
    subtree:add(f_mode, mode_name):set_generated()
    frame.fill(subtree, where)
    subtree:add(f_direction, where.direction):set_generated()
    subtree:add(f_stream, where.stream):set_generated()
    if dropped then subtree:add(f_not_sent, true):set_generated() end
    -- The course's stop-and-wait peers send D frames of up to 4096 bytes of data, and
    -- read as much: only the other formats have the 1500-byte limit.
    if tvb:len() > MAX_DATAGRAM and mode_name ~= "stop-and-wait" then
        subtree:add_proto_expert_info(e_too_long)
    end
    local label = where.direction .. " " .. frame.label
    subtree:append_text(": " .. label)
    if dropped then
        -- Named like any frame (type, id, direction, length), and why it never crossed.
        local why = ""
        local comment = f_comment()
        if comment ~= nil then why = " — " .. tostring(comment.value) end
        label = "[not sent] " .. label .. why
    end
    pinfo.cols.info:set(label)
    return tvb:len()
end

-- `len=5 "hola\n"`: a D frame's length and payload preview, as tunlab's traces show it.
local function data_text(tvb, at, rest)
    local payload = rest > 0 and tvb(at, math.min(rest, PREVIEW_LEN)):raw() or ""
    local more = rest > PREVIEW_LEN and "…" or ""
    return string.format('len=%d "%s%s"', rest, escape_bytes(payload), more)
end

local function dissect_text(tvb, pinfo, tree)
    local len = tvb:len()
    local kind = tvb(0, 1):string()
    local digit = tvb(1, 1):uint()
    if TYPE_NAMES[kind] == nil then
        return malformed(tree, pinfo, tvb,
            string.format("unknown frame type byte 0x%02x", tvb(0, 1):uint()))
    end
    if digit < 0x30 or digit > 0x39 then
        return malformed(tree, pinfo, tvb,
            string.format("bad connection id byte 0x%02x (ids are ASCII '0'..'9' in this mode)",
                digit))
    end
    local id = digit - 0x30
    local mode = text_mode(pinfo, tvb, kind)
    local frame = { kind = kind, id = id, tail = "" }
    local common = function(subtree)
        subtree:add(f_type, tvb(0, 1)):append_text(" (" .. TYPE_NAMES[kind] .. ")")
        subtree:add(f_id, tvb(1, 1), id)
    end

    if mode == "classic" then
        if kind == "A" then
            return malformed(tree, pinfo, tvb, "A frames do not exist in classic mode")
        end
        local rest = len - 2
        local tail = (kind == "C" and rest > 0) and tvb(2, rest):raw() or ""
        if kind == "C" then
            -- Only the exact replies mean OK/NOK; anything else after C<id> is ignored.
            if tail == "OK" or tail == "NOK" then
                frame.tail = tail
                frame.label = string.format("C%d%s", id, tail)
                frame.fill = function(subtree)
                    common(subtree)
                    subtree:add(f_status, tvb(2, rest))
                    if tail == "NOK" then subtree:add_proto_expert_info(e_refused) end
                end
            else
                frame.label = string.format("C%d", id)
                frame.fill = function(subtree)
                    common(subtree)
                    if rest > 0 then subtree:add(f_ignored, tvb(2, rest)) end
                end
            end
        elseif kind == "D" then
            if rest == 0 then
                -- proxy1's probe: "do you still have this id?" (answered X if not)
                frame.label = string.format("D%d len=0 (probe)", id)
            else
                frame.label = string.format("D%d %s", id, data_text(tvb, 2, rest))
            end
            frame.fill = function(subtree)
                common(subtree)
                subtree:add(f_len, rest):set_generated()
                if rest > 0 then subtree:add(f_payload, tvb(2, rest)) end
            end
        else
            frame.label = string.format("X%d", id)
            frame.fill = function(subtree)
                common(subtree)
                if rest > 0 then subtree:add(f_ignored, tvb(2, rest)) end
            end
        end
        return finish(tvb, pinfo, tree, frame, "classic")
    end

    -- Stop-and-wait: the third byte is the alternating bit (C: whatever it is, course
    -- peers read the status after it).
    if kind == "C" then
        local tail = len > 3 and tvb(3, len - 3):raw() or ""
        if tail ~= "OK" and tail ~= "NOK" then tail = "" end
        frame.tail = tail
        frame.label = string.format("C%d0%s", id, tail)
        frame.fill = function(subtree)
            common(subtree)
            if len >= 3 then subtree:add(f_seq, tvb(2, 1), tvb(2, 1):uint() - 0x30) end
            if tail ~= "" then
                subtree:add(f_status, tvb(3, len - 3))
                if tail == "NOK" then subtree:add_proto_expert_info(e_refused) end
            end
        end
        return finish(tvb, pinfo, tree, frame, "stop-and-wait")
    end
    local bit = 0
    if len >= 3 then
        local b = tvb(2, 1):uint()
        if b ~= 0x30 and b ~= 0x31 then
            return malformed(tree, pinfo, tvb,
                string.format("bad sequence byte 0x%02x (stop-and-wait seqs are ASCII '0' or '1')",
                    b))
        end
        bit = b - 0x30
    elseif kind ~= "X" then
        return malformed(tree, pinfo, tvb,
            string.format("%s frame of %d bytes has no sequence byte", kind, len))
    end
    if kind == "D" then
        local rest = len - 3
        frame.label = string.format("D%d%d %s", id, bit, data_text(tvb, 3, rest))
        frame.fill = function(subtree)
            common(subtree)
            subtree:add(f_seq, tvb(2, 1), bit)
            subtree:add(f_len, rest):set_generated()
            if rest > 0 then subtree:add(f_payload, tvb(3, rest)) end
        end
    else
        frame.label = string.format("%s%d%d", kind, id, bit)
        frame.fill = function(subtree)
            common(subtree)
            if len >= 3 then
                subtree:add(kind == "A" and f_ack or f_seq, tvb(2, 1), bit)
            end
            if len > 3 then subtree:add(f_ignored, tvb(3, len - 3)) end
        end
    end
    return finish(tvb, pinfo, tree, frame, "stop-and-wait")
end

-- The extended binary format (go-back-n, selective-repeat): 0xE1, type, id (2), body, CRC-32C.
-- The destination of an extended C: `len` bytes at `at` that must be exactly one SOCKS5
-- address (ATYP ADDR PORT). Returns { text, host, host_range, port_range } or nil.
local function read_destination(tvb, at, len)
    local atyp = tvb(at, 1):uint()
    local host_at, host_len = at + 1, nil
    if atyp == 1 then
        host_len = 4
    elseif atyp == 4 then
        host_len = 16
    elseif atyp == 3 and len >= 2 then
        host_at, host_len = at + 2, tvb(at + 1, 1):uint()
        if host_len == 0 then return nil end
    else
        return nil
    end
    if host_at - at + host_len + 2 ~= len then return nil end
    local host_range = tvb(host_at, host_len)
    local port_range = tvb(host_at + host_len, 2)
    local host
    if atyp == 1 then
        host = tostring(host_range:ipv4())
    elseif atyp == 4 then
        host = "[" .. tostring(host_range:ipv6()) .. "]"
    else
        host = host_range:string()
    end
    return {
        text = host .. ":" .. port_range:uint(),
        host = host,
        host_range = host_range,
        port_range = port_range,
    }
end

local function dissect_extended(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 8 then
        return malformed(tree, pinfo, tvb,
            string.format("extended datagram of %d bytes is shorter than 8", len))
    end
    local stored = tvb(len - 4, 4):uint()
    local computed = crc32c(tvb(0, len - 4):raw())
    if stored ~= computed then
        local item = malformed(tree, pinfo, tvb,
            string.format("checksum mismatch: CRC-32C 0x%08x, the bytes give 0x%08x (corrupted)",
                stored, computed))
        return item
    end
    local code = tvb(1, 1):uint()
    local t = EXT_TYPES[code]
    if t == nil then
        return malformed(tree, pinfo, tvb, string.format("unknown extended type 0x%02x", code))
    end
    local id = tvb(2, 2):uint()
    local body_len = len - 8
    local function need(n)
        return body_len >= n
    end
    local frame = { id = id, tail = "" }
    local common = function(subtree)
        subtree:add(f_ext_type, tvb(1, 1)):append_text(" (" .. t.name .. ")")
        subtree:add(f_type, t.letter):set_generated()
        subtree:add(f_ext_id, tvb(2, 2))
    end
    local crc_items = function(subtree)
        subtree:add(f_crc, tvb(len - 4, 4))
        subtree:add(f_crc_ok, true):set_generated()
    end
    if t.letter == "C" or t.letter == "OK" then
        if not need(4) then return malformed(tree, pinfo, tvb, t.letter .. " without its ISN") end
        local isn = tvb(4, 4):uint()
        frame.kind = "C"
        frame.isn = isn
        -- A C may carry a destination after its ISN: ATYP, address, port (RFC 1928).
        local destination
        if t.letter == "C" and body_len > 4 then
            destination = read_destination(tvb, 8, body_len - 4)
            if destination == nil then
                return malformed(tree, pinfo, tvb, "C whose destination does not parse")
            end
        end
        if t.letter == "OK" then
            frame.tail = "OK"
            frame.label = string.format("C%dOK isn=%d", id, isn)
        elseif destination then
            frame.label = string.format("C%d isn=%d → %s", id, isn, destination.text)
        else
            frame.label = string.format("C%d isn=%d", id, isn)
        end
        frame.fill = function(subtree)
            common(subtree)
            subtree:add(f_isn, tvb(4, 4))
            if destination then
                local d = subtree:add(f_destination, tvb(8, body_len - 4), destination.text)
                d:add(f_dest_atyp, tvb(8, 1))
                d:add(f_dest_host, destination.host_range, destination.host)
                d:add(f_dest_port, destination.port_range)
            elseif body_len > 4 then
                subtree:add(f_ignored, tvb(8, body_len - 4))
            end
            crc_items(subtree)
        end
    elseif t.letter == "NOK" then
        if body_len > 1 then
            return malformed(tree, pinfo, tvb,
                string.format("NOK with a %d-byte body (at most its reason byte)", body_len))
        end
        frame.kind = "C"
        frame.tail = "NOK"
        if body_len == 1 then
            local reason = tvb(4, 1):uint()
            frame.label = string.format("C%dNOK reason=0x%02x (%s)", id, reason,
                REASONS[reason] or "general failure")
        else
            frame.label = string.format("C%dNOK", id)
        end
        frame.fill = function(subtree)
            common(subtree)
            subtree:add_proto_expert_info(e_refused)
            if body_len == 1 then subtree:add(f_reason, tvb(4, 1)) end
            crc_items(subtree)
        end
    elseif t.letter == "D" then
        if not need(4) then return malformed(tree, pinfo, tvb, "D without its seq") end
        local seq = tvb(4, 4):uint()
        local rest = body_len - 4
        frame.kind = "D"
        frame.label_at = function(where)
            local shown = shown_from(seq, where.own_base)
            if rest == 0 then
                -- proxy1's keepalive: one below the oldest unacked seq, answered with an ack
                return string.format("D%d seq=%d len=0 (keepalive probe)", id, shown)
            end
            return string.format("D%d seq=%d %s", id, shown, data_text(tvb, 8, rest))
        end
        frame.fill = function(subtree, where)
            common(subtree)
            subtree:add(f_seq, tvb(4, 4))
            add_relative(subtree, f_seq_relative, tvb(4, 4), seq, where.own_base)
            subtree:add(f_len, rest):set_generated()
            if rest > 0 then subtree:add(f_payload, tvb(8, rest)) end
            crc_items(subtree)
        end
    elseif t.letter == "A" then
        if not need(9) then return malformed(tree, pinfo, tvb, "A shorter than its 9-byte body") end
        local count = tvb(12, 1):uint()
        if count > MAX_SACK_BLOCKS or body_len ~= 9 + 8 * count then
            return malformed(tree, pinfo, tvb,
                string.format("A with %d SACK blocks in a %d-byte body", count, body_len))
        end
        local ack = tvb(4, 4):uint()
        local window = tvb(8, 4):uint()
        frame.kind = "A"
        frame.label_at = function(where)
            local base = where.peer_base
            local parts = { string.format("A%d ack=%d win=%d", id, shown_from(ack, base), window) }
            for i = 0, count - 1 do
                local start = shown_from(tvb(13 + 8 * i, 4):uint(), base)
                -- The wire's end is exclusive; the label shows the last frame held.
                local last = shown_from(tvb(17 + 8 * i, 4):uint(), base) - 1
                local range = start == last and string.format("%d", start)
                    or string.format("%d-%d", start, last)
                parts[#parts + 1] = (i == 0 and " sack=" or ",") .. range
            end
            return table.concat(parts)
        end
        frame.fill = function(subtree, where)
            common(subtree)
            subtree:add(f_ack, tvb(4, 4))
            add_relative(subtree, f_ack_relative, tvb(4, 4), ack, where.peer_base)
            subtree:add(f_window, tvb(8, 4))
            subtree:add(f_sack_count, tvb(12, 1))
            for i = 0, count - 1 do
                subtree:add(f_sack_start, tvb(13 + 8 * i, 4))
                subtree:add(f_sack_end, tvb(17 + 8 * i, 4))
            end
            crc_items(subtree)
        end
    else
        if body_len ~= 4 then
            return malformed(tree, pinfo, tvb, string.format("X with a %d-byte body", body_len))
        end
        local seq = tvb(4, 4):uint()
        frame.kind = "X"
        frame.label_at = function(where)
            return string.format("X%d seq=%d", id, shown_from(seq, where.own_base))
        end
        frame.fill = function(subtree, where)
            common(subtree)
            subtree:add(f_seq, tvb(4, 4))
            add_relative(subtree, f_seq_relative, tvb(4, 4), seq, where.own_base)
            crc_items(subtree)
        end
    end
    return finish(tvb, pinfo, tree, frame, "extended")
end

-- Sealed kinds (byte 1 after 0xE2): name, direction.
local SEALED_KINDS = {
    [1] = { "hello", "p1→p2" },
    [2] = { "hello-ack", "p2→p1" },
    [3] = { "frame", "p1→p2" },
    [4] = { "frame", "p2→p1" },
    [5] = { "reject (proxy2 could not authenticate this proxy1: another key?)", "p2→p1" },
}
local SEALED_HEADER = 26
local SEALED_TAG = 16

-- A sealed datagram: only its clear header can be read; `tunlab decrypt` opens the frames.
local function dissect_sealed(tvb, pinfo, tree)
    local len = tvb:len()
    local subtree = tree:add(tunlab, tvb())
    if len < SEALED_HEADER then
        return malformed(tree, pinfo, tvb,
            string.format("sealed datagram of %d bytes is shorter than its 26-byte header", len))
    end
    local code = tvb(1, 1):uint()
    local known = SEALED_KINDS[code]
    if known == nil then
        return malformed(tree, pinfo, tvb, string.format("unknown sealed kind 0x%02x", code))
    end
    local name, direction = known[1], known[2]
    subtree:add(f_sealed, name):set_generated()
    subtree:add(f_sealed_kind, tvb(1, 1))
    subtree:add(f_direction, direction):set_generated()
    subtree:add(f_p1_session, tvb(2, 8))
    subtree:add(f_p2_session, tvb(10, 8))
    subtree:add(f_counter, tvb(18, 8))
    local body = len - SEALED_HEADER - SEALED_TAG
    if code ~= 5 and body >= 0 then
        if body > 0 then subtree:add(f_ciphertext, tvb(SEALED_HEADER, body)) end
        subtree:add(f_sealed_len, body):set_generated()
        subtree:add(f_tag, tvb(len - SEALED_TAG, SEALED_TAG))
    end
    if len > MAX_DATAGRAM then subtree:add_proto_expert_info(e_too_long) end
    local label
    if code == 3 or code == 4 then
        label = string.format("%s sealed frame len=%d counter=%s", direction, body,
            tostring(tvb(18, 8):uint64()))
    else
        label = string.format("%s sealed %s", direction, name)
    end
    subtree:append_text(": " .. label)
    pinfo.cols.info:set(label)
    return len
end

function tunlab.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    pinfo.cols.protocol:set("TUNLAB")
    if len >= 1 and tvb(0, 1):uint() == EXTENDED then
        return dissect_extended(tvb, pinfo, tree)
    end
    if len >= 1 and tvb(0, 1):uint() == SEALED then
        return dissect_sealed(tvb, pinfo, tree)
    end
    if len < 2 then
        return malformed(tree, pinfo, tvb,
            string.format("datagram of %d bytes is shorter than the 2-byte header", len))
    end
    return dissect_text(tvb, pinfo, tree)
end

DissectorTable.get("udp.port"):add(DEFAULT_PORT, tunlab)

-- On other ports (the lab's "auto" ports, a standalone proxy's own choice) a tunnel shows
-- itself by its opening exchange: a datagram that is exactly C<id>, C<id>OK or C<id>NOK.
-- Seeing one marks that UDP conversation as tunlab, so the D and X frames that follow decode
-- too. The test is strict, so other traffic is left alone; turn it off in Analyze > Enabled
-- Protocols (tunlab_udp) if it ever is not.
local function opening(tvb)
    local len = tvb:len()
    -- A sealed link opens with proxy1's hello: 0xE2 0x01 and a 42-byte datagram (26-byte
    -- header, empty body, 16-byte tag).
    if len == 42 and tvb(0, 1):uint() == 0xE2 and tvb(1, 1):uint() == 1 then return true end
    if len >= 1 and tvb(0, 1):uint() == EXTENDED then
        -- An extended C (12 bytes, more with a destination: at most 12 + 259), OK (12) or
        -- NOK (8, or 9 with its reason), with a valid CRC-32C.
        local code = tvb(1, 1):uint()
        local fits = (code == 1 and len >= 12 and len <= 12 + 259)
            or (code == 2 and len == 12) or (code == 3 and (len == 8 or len == 9))
        if not fits then return false end
        return tvb(len - 4, 4):uint() == crc32c(tvb(0, len - 4):raw())
    end
    if len < 2 or len > 6 then return false end
    if tvb(0, 1):uint() ~= 0x43 then return false end -- 'C'
    local digit = tvb(1, 1):uint()
    if digit < 0x30 or digit > 0x39 then return false end
    local tail = len > 2 and tvb(2, len - 2):raw() or ""
    -- Classic C<id>, C<id>OK, C<id>NOK; stop-and-wait C<id>0, C<id>0OK, C<id>0NOK.
    return tail == "" or tail == "OK" or tail == "NOK"
        or tail == "0" or tail == "0OK" or tail == "0NOK"
end

local function heuristic(tvb, pinfo, tree)
    if not opening(tvb) then return false end
    pinfo.conversation = tunlab
    tunlab.dissector(tvb, pinfo, tree)
    return true
end

tunlab:register_heuristic("udp", heuristic)

-- Older tunlab pcapngs kept a frame the link emulator dropped before sending as an empty
-- packet whose comment says what happened. Show that comment in the Info column, so the drop
-- is visible in the packet list where it happened.
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

-- Follow one stream: the D payloads of one use of one id, in order, proxy1's side as node 0
-- and proxy2's as node 1, in the shape of tshark's own follow output. Frames that were not
-- sent are left out: they never crossed.
--   tshark -r FILE -X lua_script:tunlab.lua -q -z follow,tunlab,ascii,N   (or raw: hex)
local f_stream_field = Field.new("tunlab.stream")
local f_payload_field = Field.new("tunlab.payload")
local f_direction_field = Field.new("tunlab.direction")

local function hex(bytes)
    return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Collects stream `stream`'s chunks while packets are dissected; `report(text)` gets the
-- follow output when they all have been.
local function follow(stream, mode, report)
    local filter = string.format("tunlab.stream == %d && tunlab.type == \"D\" && !tunlab.not_sent",
        stream)
    local chunks = {}
    local nodes = {}
    local tap = Listener.new(nil, filter)
    function tap.packet(pinfo)
        local payload = f_payload_field()
        local direction = f_direction_field()
        if direction == nil then return end
        local side = tostring(direction.value) == "p2→p1" and 1 or 0
        local src = endpoint(pinfo.src, pinfo.src_port)
        local dst = endpoint(pinfo.dst, pinfo.dst_port)
        if side == 0 then nodes[0], nodes[1] = src, dst else nodes[0], nodes[1] = dst, src end
        local bytes = payload ~= nil and payload.range:raw() or ""
        chunks[#chunks + 1] = { side = side, bytes = bytes }
    end
    function tap.draw()
        local out = {}
        out[#out + 1] = string.rep("=", 67)
        out[#out + 1] = "Follow: tunlab," .. mode
        out[#out + 1] = "Filter: " .. filter
        out[#out + 1] = "Node 0: " .. (nodes[0] or "")
        out[#out + 1] = "Node 1: " .. (nodes[1] or "")
        for _, chunk in ipairs(chunks) do
            local indent = chunk.side == 1 and "\t" or ""
            if mode == "raw" then
                out[#out + 1] = indent .. hex(chunk.bytes)
            else
                out[#out + 1] = indent .. tostring(#chunk.bytes)
                out[#out + 1] = indent .. escape_bytes(chunk.bytes)
            end
        end
        out[#out + 1] = string.rep("=", 67)
        report(table.concat(out, "\n"))
    end
    function tap.reset()
        chunks = {}
        nodes = {}
    end
end

register_stat_cmd_arg("follow,tunlab", function(arg)
    local mode, stream = arg:match("^follow,tunlab,(%a+),(%d+)$")
    if mode == nil or (mode ~= "ascii" and mode ~= "raw") then
        error("usage: -z follow,tunlab,ascii,N or -z follow,tunlab,raw,N (N: the tunlab.stream)")
    end
    follow(tonumber(stream), mode, print)
end)

if gui_enabled() then
    register_menu("tunlab/Follow stream", function()
        new_dialog("Follow tunlab stream", function(stream)
            local window = TextWindow.new("tunlab stream " .. stream)
            follow(tonumber(stream) or 0, "ascii", function(text) window:set(text) end)
            retap_packets()
        end, "Stream index (tunlab.stream)")
    end, MENU_TOOLS_UNSORTED)
end
