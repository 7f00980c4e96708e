"""Decoders for the tests of the simulated media: PNG (8-bit, indexed or RGB, no interlace), GIF
(every frame, any LZW stream) and WAV, written from the formats' specifications so a test can
look at the pixels and samples a viewer would show."""

from __future__ import annotations

import io
import struct
import wave
import zlib


def png_pixels(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Width, height and RGB rows of an 8-bit PNG (colour type 2 or 3, filter type 0 rows)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        if tag == b"IDAT":
            idat += body
        chunks[tag] = body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, interlace) == (8, 0)
    assert ctype in (2, 3)
    raw = zlib.decompress(idat)
    stride = width * (3 if ctype == 2 else 1)
    palette = chunks.get(b"PLTE", b"")
    rows = []
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        assert line[0] == 0, "only filter type 0 is decoded here"
        px = line[1:]
        if ctype == 2:
            rows.append([tuple(px[i : i + 3]) for i in range(0, stride, 3)])
        else:
            rows.append([tuple(palette[3 * i : 3 * i + 3]) for i in px])
    return width, height, rows  # type: ignore[return-value]


def _lzw_decode(data: bytes, min_size: int, count: int) -> list[int]:
    clear, end = 1 << min_size, (1 << min_size) + 1
    size, table, out, prev = min_size + 1, [], [], None
    acc = nbits = 0
    reset = lambda: [[i] for i in range(clear)] + [[], []]  # noqa: E731
    table = reset()
    for byte in data:
        acc |= byte << nbits
        nbits += 8
        while nbits >= size:
            code, acc, nbits = acc & ((1 << size) - 1), acc >> size, nbits - size
            if code == clear:
                table, size, prev = reset(), min_size + 1, None
                continue
            if code == end:
                return out[:count]
            if prev is None:
                entry = table[code]
            else:
                entry = table[code] if code < len(table) else prev + prev[:1]
                table.append(prev + entry[:1])
                if len(table) == 1 << size and size < 12:
                    size += 1
            out.extend(entry)
            prev = entry
    return out[:count]


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    """The bytes of the GIF data sub-blocks starting at ``pos``, and the position after them."""
    out = b""
    while data[pos]:
        out += data[pos + 1 : pos + 1 + data[pos]]
        pos += 1 + data[pos]
    return out, pos + 1


def gif_frames(data: bytes) -> tuple[int, int, list[list[list[tuple[int, int, int]]]], list[int]]:
    """Width, height, every frame's RGB rows and every frame's delay (hundredths of a second)."""
    assert data[:6] == b"GIF89a"
    width, height, flags, _, _ = struct.unpack("<HHBBB", data[6:13])
    pos = 13
    palette = data[pos : pos + 3 * (2 << (flags & 7))] if flags & 0x80 else b""
    pos += len(palette)
    frames, delays, delay = [], [], 0
    while data[pos] != 0x3B:
        if data[pos] == 0x21:
            label = data[pos + 1]
            block, pos = _sub_blocks(data, pos + 2)
            if label == 0xF9:
                delay = struct.unpack("<H", block[1:3])[0]
            continue
        assert data[pos] == 0x2C
        _, _, w, h, fflags = struct.unpack("<HHHHB", data[pos + 1 : pos + 10])
        assert not fflags & 0x80, "local colour tables are not decoded here"
        pos += 10
        min_size = data[pos]
        stream, pos = _sub_blocks(data, pos + 1)
        indices = _lzw_decode(stream, min_size, w * h)
        assert len(indices) == w * h
        frames.append([[tuple(palette[3 * i : 3 * i + 3]) for i in indices[y * w : (y + 1) * w]] for y in range(h)])
        delays.append(delay)
    return width, height, frames, delays  # type: ignore[return-value]


def wav_samples(data: bytes) -> tuple[int, list[int]]:
    """Frame rate and 16-bit mono samples of a WAV."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        frames = w.readframes(w.getnframes())
        return w.getframerate(), list(struct.unpack(f"<{len(frames) // 2}h", frames))
