import io

import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import image_bytes, picture
from processing import reasons
from processing.decode import decode_image
from processing.reasons import Rejected


def test_palette_with_transparency_composites_on_white():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] * 256)
    data = image_bytes(img, "PNG", transparency=0)
    assert (decode_image(data).rgb == 255).all()


def test_la_and_rgba_alpha_on_white():
    la = Image.new("LA", (8, 8), (0, 0))          # fully transparent black
    assert (decode_image(image_bytes(la, "PNG")).rgb == 255).all()
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    assert decode_image(image_bytes(rgba, "PNG")).rgb[0, 0].tolist() == [255, 0, 0]


def test_cmyk_jpeg():
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    r, g, b = decode_image(image_bytes(img, "JPEG")).rgb[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_grayscale_scaled():
    arr = np.full((4, 4), 65535, np.uint16)
    img = Image.fromarray(arr)
    out = decode_image(image_bytes(img, "PNG")).rgb
    assert out.shape == (4, 4, 3) and (out == 255).all()


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = decode_image(image_bytes(img, "JPEG", exif=exif.tobytes())).rgb
    assert out.shape[:2] == (40, 20)


def test_animated_gif_first_frame_flagged():
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    dec = decode_image(buf.getvalue())
    assert dec.animated and dec.rgb[0, 0, 0] > 200 and dec.rgb[0, 0, 1] < 50


@pytest.mark.parametrize("data,reason", [
    (b"<html><body>not a jpeg</body></html>", reasons.NOT_AN_IMAGE),
    (b"", reasons.NOT_AN_IMAGE),
])
def test_non_images(data, reason):
    with pytest.raises(Rejected) as exc:
        decode_image(data)
    assert exc.value.reason == reason


def test_truncated_jpeg():
    data = image_bytes(picture(300, 300), "JPEG", quality=95)
    with pytest.raises(Rejected) as exc:
        decode_image(data[: len(data) // 2])
    assert exc.value.reason == reasons.TRUNCATED


def test_decompression_bomb_capped():
    data = image_bytes(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(Rejected) as exc:
        decode_image(data, max_pixels=1_000_000)
    assert exc.value.reason == reasons.DECOMPRESSION_BOMB


def test_pillow_notes_on_odd_files_do_not_reach_stderr():
    """A TIFF whose first IFD points nowhere: Pillow warns "Corrupt EXIF data" on stderr; the reason is the record."""
    import warnings

    from processing.decode import decode_image
    from processing.reasons import NOT_AN_IMAGE, Rejected

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(Rejected) as exc:
            decode_image(b"II*\x00\xff\xff\xff\x7f")
    assert exc.value.reason == NOT_AN_IMAGE and not seen, [str(w.message) for w in seen]


@pytest.mark.slow   # decodes 100 Mpx
def test_max_pixels_above_pillows_own_cap_is_the_limit():
    """Pillow refuses more than 89,478,485 px (2x that: an error) whatever the caller asks; max_pixels decides."""
    data = image_bytes(Image.new("L", (10_000, 10_000), 128), "PNG")        # 100 Mpx, 120 kB
    with pytest.raises(Rejected) as exc:
        decode_image(data)                                                 # the default cap: still a bomb
    assert exc.value.reason == reasons.DECOMPRESSION_BOMB
    assert decode_image(data, max_pixels=100_000_000).rgb.shape == (10_000, 10_000, 3)
    big = image_bytes(Image.new("1", (14_000, 14_000)), "PNG")             # 196 Mpx: past Pillow's error limit
    with pytest.raises(Rejected) as exc:
        decode_image(big, max_pixels=195_999_999)
    assert exc.value.reason == reasons.DECOMPRESSION_BOMB and "exceeds 195999999" in exc.value.detail
