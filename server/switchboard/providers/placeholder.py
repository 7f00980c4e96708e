"""Placeholder media for the simulated provider, made so a person sees at once what they are.

- an image: a PNG test pattern (colour bars, a grey ramp) with "SIMULATED", "PLACEHOLDER IMAGE",
  its size and the model's id written across a black band;
- speech: a WAV of three short 1 kHz beeps (a test tone), about a second long;
- video: an animated GIF of the same pattern labelled "PLACEHOLDER VIDEO", a white bar sweeping
  across it in eight frames.

Pure Python (zlib, wave): a 512x512 image takes a few milliseconds and is a few kilobytes.
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib

IMAGE_SIZE = (512, 512)
VIDEO_SIZE = (192, 108)
VIDEO_FRAMES = 8

# 16 colours: black, white, the six 75% bars' hues and a ramp of eight greys.
_HUES = (0, 0, 0, 255, 255, 255, 191, 191, 0, 0, 191, 191, 0, 191, 0, 191, 0, 191, 191, 0, 0, 0, 0, 191)
_PALETTE = bytes(_HUES) + bytes(v for i in range(8) for v in (i * 255 // 7,) * 3)
_BLACK, _WHITE, _GREY0 = 0, 1, 8

# A 5x7 bitmap font: each glyph is 35 bits, row by row, the top row in the high bits.
_FONT = {
    "A": 0x3A31FC631, "B": 0x7A31F463E, "C": 0x3A308422E, "D": 0x7A318C63E, "E": 0x7E10F421F,
    "F": 0x7E10F4210, "G": 0x3A30BC62F, "H": 0x4631FC631, "I": 0x38842108E, "J": 0x1C4210A4C,
    "K": 0x4654C5251, "L": 0x42108421F, "M": 0x4775AC631, "N": 0x4639ACE31, "O": 0x3A318C62E,
    "P": 0x7A31F4210, "Q": 0x3A318D64D, "R": 0x7A31F5251, "S": 0x3E107043E, "T": 0x7C8421084,
    "U": 0x46318C62E, "V": 0x46318C544, "W": 0x4631AD6AA, "X": 0x462A22A31, "Y": 0x462A21084,
    "Z": 0x7C222221F, "0": 0x3A33AE62E, "1": 0x11842108E, "2": 0x3A211111F, "3": 0x7C441062E,
    "4": 0x08CA97C42, "5": 0x7E1E0862E, "6": 0x1910F462E, "7": 0x7C2222108, "8": 0x3A317462E,
    "9": 0x3A317844C, "-": 0x0000F8000, ".": 0x00000018C, "/": 0x042222210, ":": 0x018C03180,
    "_": 0x00000001F,
}  # fmt: skip


def _text(canvas: list[bytearray], line: str, top: int, height: int) -> None:
    """Write ``line`` in white, centred, in the rows ``top`` to ``top + height`` of ``canvas``."""
    width = len(canvas[0])
    line = line.upper()
    scale = max(1, min(height // 8, (width * 9 // 10) // max(1, 6 * len(line))))
    left = (width - (6 * len(line) - 1) * scale) // 2
    top += (height - 7 * scale) // 2
    for n, ch in enumerate(line):
        bits = _FONT.get(ch, 0)
        for row in range(7):
            for col in range(5):
                if bits >> (34 - row * 5 - col) & 1:
                    x, y = left + (n * 6 + col) * scale, top + row * scale
                    x0, x1 = max(0, x), min(width, x + scale)
                    for dy in range(scale):
                        if 0 <= y + dy < len(canvas) and x1 > x0:
                            canvas[y + dy][x0:x1] = bytes((_WHITE,)) * (x1 - x0)


def pattern(width: int, height: int, lines: list[str], marker: float | None = None) -> list[bytearray]:
    """Rows of palette indices: colour bars on top, a black band with ``lines`` of text, a grey
    ramp below; ``marker`` (0..1) draws a white vertical bar at that fraction of the width."""
    bars = bytearray(1 + x * 7 // width for x in range(width))
    ramp = bytearray(_GREY0 + x * 8 // width for x in range(width))
    band_top, band_end = height // 4, height * 3 // 4
    canvas = [bytearray(bars) if y < band_top else bytearray(ramp) if y >= band_end else bytearray(width)
              for y in range(height)]  # fmt: skip
    if lines:
        heights = [2] + [1] * (len(lines) - 1)  # the first line twice as tall as the others
        unit = (band_end - band_top) // (sum(heights) + 1)
        y = band_top + unit // 2
        for line, share in zip(lines, heights, strict=True):
            if unit * share >= 8:  # too small to read: the bars and ramp say enough
                _text(canvas, line, y, unit * share)
            y += unit * share
    if marker is not None:
        x0 = min(width - 1, int(marker * width))
        x1 = min(width, x0 + max(1, width // 40))
        for y in (*range(band_top), *range(band_end, height)):
            canvas[y][x0:x1] = bytes((_WHITE,)) * (x1 - x0)
    return canvas


def png(width: int, height: int, lines: list[str]) -> bytes:
    """An indexed-colour PNG of the test pattern."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pattern(width, height, lines))
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", _PALETTE)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def image(model_id: str, width: int = IMAGE_SIZE[0], height: int = IMAGE_SIZE[1]) -> bytes:
    """The placeholder image for ``model_id``: a labelled test pattern of ``width`` x ``height``."""
    return png(width, height, ["SIMULATED", "PLACEHOLDER IMAGE", f"{width}X{height}", model_id])


def tone(rate: int = 16000) -> bytes:
    """A mono 16-bit WAV: three 0.2 s beeps of 1 kHz, 0.15 s apart (about a second)."""
    beep, gap = int(rate * 0.2), int(rate * 0.15)
    one = b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * 1000 * i / rate))) for i in range(beep))
    silence = b"\x00\x00" * gap
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(silence.join((one, one, one)) + silence)
    return out.getvalue()


def _lzw(indices: bytes) -> bytes:
    """GIF image data for 4-bit ``indices`` without compression: each pixel a 5-bit literal code,
    with a clear code often enough that the code size never grows."""
    clear, end = 16, 17
    codes = [clear]
    for n, index in enumerate(indices):
        if n and n % 12 == 0:  # 18 + 11 table entries at most: the 5-bit code size is never outgrown
            codes.append(clear)
        codes.append(index)
    codes.append(end)
    acc = nbits = 0
    out = bytearray()
    for code in codes:
        acc |= code << nbits
        nbits += 5
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = b"".join(bytes((len(out[k : k + 255]),)) + out[k : k + 255] for k in range(0, len(out), 255))
    return b"\x04" + blocks + b"\x00"


def video(model_id: str, width: int = VIDEO_SIZE[0], height: int = VIDEO_SIZE[1]) -> bytes:
    """The placeholder video for ``model_id``: an animated GIF, 8 frames of 0.125 s, looping."""
    lines = ["SIMULATED", "PLACEHOLDER VIDEO", model_id]
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF3, 0, 0) + _PALETTE
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frames = []
    for f in range(VIDEO_FRAMES):
        rows = pattern(width, height, lines, marker=f / VIDEO_FRAMES)
        control = b"\x21\xf9\x04\x00" + struct.pack("<H", 12) + b"\x00\x00"  # 12 hundredths of a second
        descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00"
        frames.append(control + descriptor + _lzw(b"".join(bytes(r) for r in rows)))
    return head + loop + b"".join(frames) + b"\x3b"
