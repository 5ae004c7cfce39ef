"""The frame geometry of a CEUS clip: where each pixel of the full frame lies, in mm.

One definition for the whole package: frame pixel (row r, column c) is at LPS ``(c dx, r dy, 0)``
mm, i.e. RAS ``(-c dx, -r dy, 0)``, with ``(dy, dx)`` the clip's pixel spacing (the first
ultrasound region with a physical calibration, else the file's pixel spacing, else 1 mm). ROI
segmentations (``.seg.nrrd`` and scene segments), the panel volumes of a Slicer scene, the
parametric map volumes and the map NRRD files all place pixels with it, so they overlay exactly;
co-registration with CT/PET starts from it.

A *panel* (the contrast panel, or the B-mode panel of a dual display) is a crop of the frame whose
top-left pixel is frame pixel (y0, x0): its IJK is (column within the panel, row within the panel,
0). A *map grid* is the contrast panel binned N x N: map pixel (r, c) is centred on frame pixel
``origin_px + N (r, c)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from DCEUSResponseLib.errors import InputError

#: Pixel spacing (dy, dx) mm of a clip without any calibration.
UNCALIBRATED_SPACING_MM = (1.0, 1.0)
#: LPS <-> RAS (the same matrix both ways): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# How far (pixels) a grid origin may sit from the pixel grid and still count as on it: only the
# round-off of saving spacing and origin as decimal text.
GRID_TOLERANCE_PX = 1e-3


@dataclass(frozen=True)
class FrameGeometry:
    """Pixel <-> mm of a clip's full frame; ``spacing_mm`` is ``(dy, dx)``, row then column."""

    spacing_mm: tuple[float, float] = UNCALIBRATED_SPACING_MM

    @classmethod
    def from_spacing(cls, spacing_mm: Sequence[float] | None) -> "FrameGeometry":
        """The geometry of a grid with ``(dy, dx)`` mm pixels; 1 mm when ``spacing_mm`` is None."""
        if not spacing_mm:
            return cls()
        return cls((float(spacing_mm[0]), float(spacing_mm[1])))

    @classmethod
    def from_calibration(cls, regions: Iterable, pixel_spacing_mm: Sequence[float] | None) -> "FrameGeometry":
        """The clip's geometry: the first region (``.spacing_mm``) with a calibration, else
        ``pixel_spacing_mm``, else 1 mm."""
        for region in regions:
            if region.spacing_mm:
                return cls.from_spacing(region.spacing_mm)
        return cls.from_spacing(pixel_spacing_mm)

    @classmethod
    def of_map_grid(cls, map_spacing_mm: Sequence[float] | None, binning: int) -> "FrameGeometry":
        """The frame geometry a map grid of ``map_spacing_mm`` pixels (``binning`` frame pixels each)
        came from, when the clip itself is not at hand."""
        if not map_spacing_mm:
            return cls()
        return cls((map_spacing_mm[0] / binning, map_spacing_mm[1] / binning))

    # -- points ------------------------------------------------------------------------------

    def pixel_to_frame_mm(self, rows, columns) -> np.ndarray:
        """LPS mm ``(..., 3)`` of frame pixels (fractional rows and columns allowed)."""
        dy, dx = self.spacing_mm
        rows, columns = np.broadcast_arrays(np.asarray(rows, dtype=np.float64), np.asarray(columns, dtype=np.float64))
        return np.stack([columns * dx, rows * dy, np.zeros_like(rows)], axis=-1)

    def frame_mm_to_pixel(self, points) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, columns)`` (fractional) of LPS points ``(..., 3)`` mm projected onto the frame plane."""
        dy, dx = self.spacing_mm
        points = np.asarray(points, dtype=np.float64)
        return points[..., 1] / dy, points[..., 0] / dx

    # -- grids -------------------------------------------------------------------------------

    def panel_ijk_to_lps(self, x0: float, y0: float) -> np.ndarray:
        """4 x 4 IJK-to-LPS (mm) of a panel whose top-left pixel is frame pixel (row y0, column x0)."""
        return self.map_ijk_to_lps((y0, x0), 1)

    def panel_ijk_to_ras(self, x0: float, y0: float) -> np.ndarray:
        """4 x 4 IJK-to-RAS (mm) of a panel: i along the frame's columns (RAS -x), j along its rows
        (RAS -y), k the 1 mm thick plane z = 0 (Slicer's image-sequence orientation diag(-1, -1, 1))."""
        return self.map_ijk_to_ras((y0, x0), 1)

    def map_ijk_to_lps(self, origin_px: Sequence[float], binning: int) -> np.ndarray:
        """4 x 4 IJK-to-LPS (mm) of a map grid whose pixel (0, 0) is centred on frame pixel
        ``origin_px`` (row, column) and whose pixels span ``binning`` frame pixels."""
        dy, dx = self.spacing_mm
        origin_row, origin_col = origin_px
        return np.array([[dx * binning, 0.0, 0.0, origin_col * dx],
                         [0.0, dy * binning, 0.0, origin_row * dy],
                         [0.0, 0.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])

    def map_ijk_to_ras(self, origin_px: Sequence[float], binning: int) -> np.ndarray:
        """4 x 4 IJK-to-RAS (mm) of a map grid (see :meth:`map_ijk_to_lps`)."""
        # Written out rather than LPS_TO_RAS @ ...: a product would turn the zeros into -0.0,
        # which Slicer then writes into the scene's files.
        dy, dx = self.spacing_mm
        origin_row, origin_col = origin_px  # ints stay ints: -0 * dx is 0.0, not -0.0
        return np.array([[-dx * binning, 0.0, 0.0, -origin_col * dx],
                         [0.0, -dy * binning, 0.0, -origin_row * dy],
                         [0.0, 0.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])

    def panel_origin_px(self, ijk_to_ras: np.ndarray, what: str, source: str) -> tuple[int, int]:
        """``(x0, y0)``: the frame pixel at IJK (0, 0, 0) of a grid that must be the frame's pixel grid.

        The inverse of :meth:`panel_ijk_to_ras`; a grid with another spacing or orientation, off the
        pixel grid or off the plane z = 0 is an :class:`InputError` naming ``what``.
        """
        dy, dx = self.spacing_mm
        ijk_to_ras = np.asarray(ijk_to_ras, dtype=np.float64)
        expected = self.panel_ijk_to_ras(0, 0)[:3, :2]
        linear = ijk_to_ras[:3, :2]
        if not np.allclose(linear, expected, rtol=1e-6, atol=1e-9 * max(dx, dy)):
            raise InputError(f"{what} is not on the clip's pixel grid (IJK-to-RAS columns "
                             f"{np.round(linear.T, 6).tolist()} mm, expected {np.round(expected.T, 6).tolist()} mm: "
                             "spacing (dx, dy) with i along RAS -x and j along RAS -y)", source)
        lps_origin = ijk_to_ras[:3, 3] * (-1.0, -1.0, 1.0)
        row, column = (float(v) for v in self.frame_mm_to_pixel(lps_origin))
        x0, y0 = int(round(column)), int(round(row))
        if abs(column - x0) > GRID_TOLERANCE_PX or abs(row - y0) > GRID_TOLERANCE_PX or abs(ijk_to_ras[2, 3]) > 1e-6:
            raise InputError(f"{what} is not on the clip's pixel grid: its first voxel is at frame pixel "
                             f"(row {row:.4f}, column {column:.4f}, plane z = {ijk_to_ras[2, 3]:.4g} mm)", source)
        return x0, y0

    def lps_to_pixel_matrix(self) -> np.ndarray:
        """4 x 4 from LPS mm to frame (column, row, z, 1): compose with a grid's IJK-to-LPS matrix."""
        dy, dx = self.spacing_mm
        return np.diag([1.0 / dx, 1.0 / dy, 1.0, 1.0])
