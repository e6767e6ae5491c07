"""Real JPEG/PNG bytes for the images the emulator "generates" and "edits" (Pillow).

Clients under test decode, hash and store these files, so they must be genuine images in the
requested format and aspect ratio. Content is derived from the prompt only, so the same request
always yields the same bytes, and an edit is visibly different from its input so a test can tell
that the input really went through the pipeline. Only this module imports Pillow; the rest of the
emulator imports it lazily, the first time an image is rendered.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

from airflow_provider_kontext.emulator.config import ASPECT_RATIOS

__all__ = ["render_edit", "render_text_to_image", "size_for"]

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_RGB = tuple[int, int, int]


def size_for(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    """Pixel size for an aspect ratio (a Kontext enum value or any ``"W:H"``) with the given long side."""
    w, h = ASPECT_RATIOS.get(aspect_ratio) or _parse_ratio(aspect_ratio)
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def _parse_ratio(aspect_ratio: str) -> tuple[int, int]:
    """``"W:H"`` as two positive ints (Market models allow ratios like 8:1 that Kontext does not)."""
    width, sep, height = aspect_ratio.partition(":")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise ValueError(f"not an aspect ratio: {aspect_ratio!r}")
    return int(width), int(height)


def _palette(prompt: str) -> tuple[_RGB, _RGB, _RGB, bytes]:
    """Two gradient colours, an accent colour and the raw digest, all from the prompt."""
    digest = hashlib.sha256(prompt.encode()).digest()
    first = (digest[0], digest[1], digest[2])
    second = (255 - digest[0], digest[3], 255 - digest[2])
    accent = (digest[4] | 0x80, digest[5] | 0x40, digest[6])
    return first, second, accent, digest


@lru_cache(maxsize=16)
def _font(size: int) -> _Font:
    """Pillow's bundled font at ``size`` (bitmap fallback if Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _draw_caption(image: Image.Image, text: str, colour: _RGB) -> None:
    """Write ``text`` (wrapped, at most four lines) onto the image with a contrasting outline."""
    width, height = image.size
    size = max(10, min(width, height) // 14)
    font = _font(size)
    chars = max(8, int(width / (size * 0.55)))
    lines = textwrap.wrap(text, width=chars)[:4] or [""]
    draw = ImageDraw.Draw(image)
    y = max(4, height // 12)
    for line in lines:
        draw.text((max(4, width // 20), y), line, font=font, fill=colour, stroke_width=2, stroke_fill=(0, 0, 0))
        y += int(size * 1.25)


def _draw_watermark(image: Image.Image, watermark: str | None) -> None:
    """Mark the output when the request asked for a watermark (kie's ``watermark`` field)."""
    if not watermark:
        return
    width, height = image.size
    size = max(8, min(width, height) // 20)
    draw = ImageDraw.Draw(image)
    draw.text(
        (width - 4, height - 4),
        watermark[:40],
        font=_font(size),
        fill=(255, 255, 255),
        anchor="rd",
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )


def _encode(image: Image.Image, output_format: str) -> bytes:
    """Encode as ``jpeg`` or ``png`` (favouring speed over size)."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def render_text_to_image(
    prompt: str, aspect_ratio: str, output_format: str, long_side: int, watermark: str | None = None
) -> bytes:
    """A deterministic picture for a prompt: hashed gradient, a few discs, the prompt as caption."""
    width, height = size_for(aspect_ratio, long_side)
    first, second, accent, digest = _palette(prompt)
    gradient = Image.linear_gradient("L").rotate(digest[7] % 360, expand=False).resize((width, height))
    image = ImageOps.colorize(gradient, first, second).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(3):
        cx = digest[8 + i] * width // 256
        cy = digest[11 + i] * height // 256
        radius = max(4, digest[14 + i] * min(width, height) // 1024 + min(width, height) // 16)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=accent, outline=(0, 0, 0))
    _draw_caption(image, prompt, (255, 255, 255))
    _draw_watermark(image, watermark)
    return _encode(image, output_format)


def render_edit(
    source: bytes,
    prompt: str,
    aspect_ratio: str | None,
    output_format: str,
    long_side: int,
    watermark: str | None = None,
) -> bytes:
    """An "edit" of ``source``: inverted and tinted, framed, captioned with the prompt.

    With ``aspect_ratio`` the result is centre-cropped to it (kie crops/pads); without, the
    input's own ratio is kept. Either way the long side is ``long_side``.
    Raises ``ValueError`` when ``source`` is not a decodable image.
    """
    try:
        with Image.open(io.BytesIO(source)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"inputImage is not a decodable image: {exc}") from exc
    if aspect_ratio is not None:
        image = ImageOps.fit(image, size_for(aspect_ratio, long_side))
    else:
        scale = long_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    _, _, accent, _ = _palette(prompt)
    image = Image.blend(ImageOps.invert(image), Image.new("RGB", image.size, accent), 0.3)
    border = max(3, max(image.size) // 48)
    ImageDraw.Draw(image).rectangle((0, 0, image.width - 1, image.height - 1), outline=accent, width=border)
    _draw_caption(image, prompt, (255, 255, 0))
    _draw_watermark(image, watermark)
    return _encode(image, output_format)
