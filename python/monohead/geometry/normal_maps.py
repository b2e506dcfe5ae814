"""Normal maps as 8-bit and 16-bit RGB PNG images.

Encoding (conventions.md): ``RGB = round((N + 1) / 2 * M)`` with ``M = 255`` (8-bit) or
``M = 65535`` (16-bit), background ``(0, 0, 0)``. A unit normal never encodes to
``(0, 0, 0)`` (that would need every component below ``-1 + 1/M``), so decoding recovers the
mask as the non-black pixels.

Why a small PNG codec of our own: Pillow cannot write 16-bit RGB images and reads them back
as 8-bit, and a 16-bit normal map is what keeps the quantisation error (about 0.002 degrees
instead of 0.2) below the integrator's noise floor. PNG is simple enough (signature, IHDR,
IDAT, IEND chunks with CRC-32; zlib data; a filter byte per row) that ~100 lines of NumPy +
:mod:`zlib` write and read it exactly, with no new dependency. The writer always uses filter
type 0 (None); the reader undoes all five filter types, so 16-bit files written by other tools
(libpng, OpenCV, Blender) read back exactly, though rows with the Average or Paeth filter are
undone in a Python loop (slower). 8-bit files are read with Pillow (fast, every PNG variant);
interlaced 16-bit files are refused with a clear error.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from .. import _io
from .. import _validate as v

__all__ = [
    "decode_png",
    "encode_png",
    "image_to_normals",
    "load_normal_map",
    "normals_to_image",
    "save_normal_map",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS_TO_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_COLOR_TYPE_TO_CHANNELS = {v_: k for k, v_ in _CHANNELS_TO_COLOR_TYPE.items()}


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(image: Any, compress_level: int = 6) -> bytes:
    """PNG file bytes of an 8-bit or 16-bit image (filter type 0, not interlaced).

    Args:
        image: ``(H, W)`` gray, ``(H, W, 1|2|3|4)`` gray, gray+alpha, RGB or RGBA;
            ``uint8`` (8-bit) or ``uint16`` (16-bit), any layout. Row 0 is the top.
        compress_level: zlib level 0-9.

    Returns:
        The bytes of a PNG file.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array; got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image must have dtype uint8 or uint16; got dtype {image.dtype}")
    img = image[..., None] if image.ndim == 2 else image
    if img.ndim != 3 or img.shape[2] not in _CHANNELS_TO_COLOR_TYPE or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W) or (H, W, C) with C in 1-4; got {v.shape_str(image.shape)}")
    if isinstance(compress_level, bool) or not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be an integer in 0-9; got {compress_level!r}")
    H, W, C = img.shape
    depth = 8 if img.dtype == np.uint8 else 16
    rows = np.ascontiguousarray(img, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(H, -1)
    raw = np.zeros((H, rows.shape[1] + 1), np.uint8)  # leading 0 = filter type None
    raw[:, 1:] = rows
    ihdr = struct.pack(">IIBBBBB", W, H, depth, _CHANNELS_TO_COLOR_TYPE[C], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), compress_level))
        + _chunk(b"IEND", b"")
    )


def _read_chunks(data: bytes) -> tuple[dict[str, int], bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    data = bytes(data)
    if data[:8] != _SIGNATURE:
        raise ValueError("data is not a PNG file (bad signature)")
    pos, header, idat = 8, None, []
    while True:
        if pos + 8 > len(data):
            raise ValueError("PNG data is truncated (no IEND chunk)")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError(f"PNG data is truncated in a {tag!r} chunk")
        if struct.unpack(">I", crc)[0] != zlib.crc32(tag + body) & 0xFFFFFFFF:
            raise ValueError(f"PNG data is corrupt: CRC mismatch in a {tag!r} chunk")
        pos += 12 + length
        if tag == b"IHDR":
            if length != 13:
                raise ValueError(f"PNG IHDR chunk must have 13 bytes; got {length}")
            w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            header = {
                "width": w,
                "height": h,
                "bit_depth": depth,
                "color_type": ctype,
                "compression": comp,
                "filter": filt,
                "interlace": interlace,
            }
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if header is None:
        raise ValueError("PNG data has no IHDR chunk")
    return header, b"".join(idat)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters (types 0-4) of ``raw`` (``height * (stride + 1)`` bytes)."""
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for r in range(height):
        ftype = int(rows[r, 0])
        line = rows[r, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum over pixels, byte lane by byte lane
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).ravel() & 0xFF
        elif ftype == 2:  # Up
            cur = (line + prev) & 0xFF
        elif ftype in (3, 4):  # Average, Paeth: sequential along the row
            lst, up = line.tolist(), prev.tolist()
            for i in range(stride):
                left = lst[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    lst[i] = (lst[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    ul = up[i - bpp] if i >= bpp else 0
                    lst[i] = (lst[i] + _paeth(left, up[i], ul)) & 0xFF
            cur = np.array(lst, np.int64)
        else:
            raise ValueError(f"PNG data is corrupt: unknown filter type {ftype} in row {r}")
        out[r] = cur
        prev = cur
    return out


#: Largest image decode_png accepts (PIL's default limit): beyond it a PNG is refused before
#: it is inflated.
MAX_PNG_PIXELS = 89_478_485


def decode_png(data: Any) -> np.ndarray:
    """Image of PNG file bytes: gray, gray+alpha, RGB or RGBA, 8 or 16 bits, not interlaced.

    Returns:
        ``(H, W, C)`` ``uint8`` or ``uint16`` array (``C`` = 1, 2, 3 or 4), row 0 at the top.

    Raises:
        ValueError: not a PNG, corrupt (CRC, zlib, truncated), or an unsupported variant
        (palette, bit depth below 8, interlaced).
    """
    hdr, idat = _read_chunks(data)
    ctype, depth = hdr["color_type"], hdr["bit_depth"]
    if ctype not in _COLOR_TYPE_TO_CHANNELS or depth not in (8, 16):
        raise ValueError(
            f"PNG variant not supported: color type {ctype}, bit depth {depth} (need 8 or 16 bits, no palette)"
        )
    if hdr["interlace"] != 0 or hdr["compression"] != 0 or hdr["filter"] != 0:
        raise ValueError("PNG variant not supported: interlaced or non-standard compression/filter method")
    H, W, C = hdr["height"], hdr["width"], _COLOR_TYPE_TO_CHANNELS[ctype]
    if H * W > MAX_PNG_PIXELS:
        raise ValueError(
            f"PNG declares {W}x{H} = {H * W} pixels, more than the limit of {MAX_PNG_PIXELS} (a decompression bomb?)"
        )
    bpp = C * depth // 8
    stride = W * bpp
    try:
        # Never inflate more than the header declares (plus one byte to detect excess data).
        raw = np.frombuffer(zlib.decompressobj().decompress(idat, H * (stride + 1) + 1), np.uint8)
    except zlib.error as exc:
        raise ValueError(f"PNG data is corrupt: {exc}") from exc
    if raw.size != H * (stride + 1):
        raise ValueError(f"PNG data is corrupt: {raw.size} image bytes for a {W}x{H} image (need {H * (stride + 1)})")
    rows = _unfilter(raw, H, stride, bpp)
    if depth == 16:
        return rows.view(">u2").astype(np.uint16).reshape(H, W, C)
    return rows.reshape(H, W, C)


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16; got {bits!r}")
    return int(bits)


def normals_to_image(normals: Any, mask: Any = None, bits: int = 8) -> np.ndarray:
    """Encode a normal map as an RGB image: ``round((N + 1) / 2 * M)``, background black.

    Args:
        normals: ``(H, W, 3)`` normals in the camera frame (x right, y up, z toward the
            viewer), any float dtype and layout; finite with components in ``[-1, 1]``
            (up to 1e-6, then clipped) inside the mask. Not renormalised.
        mask: ``(H, W)`` bool; default: the pixels whose normal is not ``(0, 0, 0)``.
        bits: 8 (``M = 255``, ``uint8``) or 16 (``M = 65535``, ``uint16``).

    Returns:
        ``(H, W, 3)`` ``uint8`` or ``uint16`` image, ``(0, 0, 0)`` outside the mask.
    """
    bits = _check_bits(bits)
    n = v.check_normals(normals)
    m = v.default_mask(n) if mask is None else v.check_mask(mask, n.shape[:2])
    inside = n[m]
    bad = int(np.count_nonzero(~np.isfinite(inside).all(axis=1)))
    if bad:
        raise ValueError(f"normals must be finite inside the mask; got {bad} pixel(s) with NaN or inf")
    bad = int(np.count_nonzero((np.abs(inside) > 1 + 1e-6).any(axis=1)))
    if bad:
        raise ValueError(f"normals must have components in [-1, 1] inside the mask; got {bad} pixel(s) outside")
    top = (1 << bits) - 1
    out = np.zeros(n.shape, np.uint16 if bits == 16 else np.uint8)
    out[m] = np.rint((np.clip(inside, -1.0, 1.0) + 1.0) * (top / 2.0)).astype(out.dtype)
    return out


def image_to_normals(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Decode an RGB normal-map image: ``N = RGB / M * 2 - 1``, renormalised to unit length.

    Args:
        image: ``(H, W, 3)`` ``uint8`` (``M = 255``) or ``uint16`` (``M = 65535``); black
            pixels are background.

    Returns:
        ``(normals, mask)``: ``(H, W, 3)`` float64 unit normals (``(0, 0, 0)`` outside the
        mask) and the ``(H, W)`` bool mask of non-black pixels.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array; got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image must have dtype uint8 or uint16; got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3); got {v.shape_str(image.shape)}")
    top = float(np.iinfo(image.dtype).max)
    mask = image.any(axis=-1)
    n = image.astype(np.float64) * (2.0 / top) - 1.0
    length = np.sqrt((n * n).sum(-1))
    ok = mask & (length > 0)
    n[ok] /= length[ok, None]
    n[~mask] = 0.0
    return n, mask


def save_normal_map(path: Any, normals: Any, mask: Any = None, bits: int = 8) -> None:
    """Write a normal map as an 8- or 16-bit RGB PNG, atomically (see :func:`normals_to_image`)."""
    p = _io.check_path(path)
    img = normals_to_image(normals, mask, bits)
    _io.atomic_write_bytes(p, encode_png(img))


def load_normal_map(path: Any) -> tuple[np.ndarray, np.ndarray]:
    """Read an 8- or 16-bit RGB(A) normal-map PNG; returns ``(normals, mask)`` as :func:`image_to_normals`.

    An alpha channel, if any, is ignored (the mask is the non-black pixels). 8-bit files are
    decoded by Pillow, 16-bit files by :func:`decode_png`.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ValueError(f"path must name an existing file; got {p!r}")
    with open(p, "rb") as f:
        data = f.read()
    hdr, _ = _read_chunks(data)
    if hdr["height"] * hdr["width"] > MAX_PNG_PIXELS:
        raise ValueError(
            f"{p!r} declares {hdr['width']}x{hdr['height']} pixels, more than the limit of {MAX_PNG_PIXELS} "
            "(a decompression bomb?)"
        )
    if hdr["bit_depth"] == 16:
        img = decode_png(data)
    else:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            img = np.asarray(im.convert("RGB"))
    if img.shape[2] not in (3, 4):
        raise ValueError(f"{p!r} must be an RGB or RGBA image; got {img.shape[2]} channel(s)")
    return image_to_normals(np.ascontiguousarray(img[..., :3]))
