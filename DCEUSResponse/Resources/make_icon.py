"""Draw the DCEUSResponse icon: a time-intensity curve over a gold-tinted ultrasound sector.

Writes the 128 x 128 RGBA PNG to the module's ``Resources/Icons/DCEUSResponse.png`` (the icon
Slicer shows for the module) and to the repository's ``Resources/Icons/DCEUSResponse.png`` (the
extension icon, ``EXTENSION_ICONURL``). Deterministic: rerunning gives the same pixels.

    python DCEUSResponse/Resources/make_icon.py
"""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SUPERSAMPLE = 4  # draw large, then downsample: smooth edges
GOLD = np.array([1.0, 0.78, 0.36])  # tint of a typical CEUS "gold" display map (max channel 1)
CURVE = (235, 250, 255, 255)
CURVE_HALO = (20, 40, 70, 200)

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_ICON = os.path.join(HERE, "Icons", "DCEUSResponse.png")
EXTENSION_ICON = os.path.join(HERE, "..", "..", "Resources", "Icons", "DCEUSResponse.png")


def sector_image(size: int) -> Image.Image:
    """A convex-probe ultrasound sector filled with gold-tinted speckle, brighter in a 'lesion'."""
    rng = np.random.default_rng(2026)
    apex = np.array([size * 0.5, -size * 0.18])  # probe apex above the image
    r_min, r_max = size * 0.34, size * 1.12
    half_angle = math.radians(38)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = x - apex[0], y - apex[1]
    radius = np.hypot(dx, dy)
    angle = np.arctan2(dx, dy)
    inside = (radius >= r_min) & (radius <= r_max) & (np.abs(angle) <= half_angle)

    # Fully developed speckle: |complex Gaussian|^2 blurred a little, log-compressed like a scanner.
    field = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    power = np.abs(field) ** 2
    kernel = np.outer(*(2 * [np.exp(-0.5 * (np.arange(-6, 7) / 2.2) ** 2)]))
    kernel /= kernel.sum()
    power = _convolve(power, kernel)
    perfusion = 0.35 + 0.65 * np.exp(-(((x - size * 0.36) ** 2 + (y - size * 0.62) ** 2) / (2 * (size * 0.11) ** 2)))
    depth_gain = np.clip(1.15 - 0.55 * (radius - r_min) / (r_max - r_min), 0.4, 1.2)
    level = np.log10(power * perfusion * depth_gain + 1e-3)
    gray = np.clip((level - level[inside].min()) / (np.percentile(level[inside], 99.5) - level[inside].min()), 0, 1)
    gray = np.where(inside, gray, 0.0)

    rgb = (gray[..., None] * GOLD[None, None, :] * 255).astype(np.uint8)
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    image = Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    return image.filter(ImageFilter.SMOOTH)


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2D convolution by FFT with wrap-around (the speckle is random anyway)."""
    padded = np.zeros_like(image)
    kr, kc = kernel.shape
    padded[:kr, :kc] = kernel
    padded = np.roll(padded, (-(kr // 2), -(kc // 2)), axis=(0, 1))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * np.fft.fft2(padded)))


def tic_points(size: int) -> list[tuple[float, float]]:
    """A lognormal bolus time-intensity curve (baseline, wash-in, peak, wash-out) across the icon."""
    left, right = size * 0.08, size * 0.94
    bottom, top = size * 0.86, size * 0.18
    t0, mu, sigma = 0.08, math.log(0.22), 0.55
    times = np.linspace(0.0, 1.0, 200)
    tau = np.clip(times - t0, 1e-9, None)
    e = np.where(times > t0, np.exp(-(np.log(tau) - mu) ** 2 / (2 * sigma**2)) / (tau * sigma * math.sqrt(2 * math.pi)), 0.0)
    e = 0.04 + e / e.max()
    e /= e.max()
    xs = left + (right - left) * times
    ys = bottom - (bottom - top) * e
    return list(zip(xs.tolist(), ys.tolist()))


def draw_icon() -> Image.Image:
    big = SIZE * SUPERSAMPLE
    image = sector_image(big)
    draw = ImageDraw.Draw(image)
    points = tic_points(big)
    draw.line(points, fill=CURVE_HALO, width=int(big * 0.075), joint="curve")
    draw.line(points, fill=CURVE, width=int(big * 0.035), joint="curve")
    # Sample points of the measured curve, as the module's chart shows them.
    for x, y in points[8::22]:
        r = big * 0.028
        draw.ellipse([x - r, y - r, x + r, y + r], fill=CURVE, outline=CURVE_HALO, width=int(big * 0.008))
    return image.resize((SIZE, SIZE), Image.LANCZOS)


def main() -> None:
    icon = draw_icon()
    for path in (MODULE_ICON, EXTENSION_ICON):
        path = os.path.normpath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        icon.save(path, optimize=True)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
