"""Read CEUS clips exported as video files (AVI, MP4, MOV, MKV, ...) into a :class:`~DCEUSResponseLib.clip.Clip`.

Some sites export cine clips as ordinary videos instead of DICOM. A video carries display pixels and
(usually) timing, but no pixel spacing and no ultrasound regions, so:

* **Frames** are decoded with FFmpeg through PyAV (``pip install av``; its wheels ship FFmpeg) into
  8-bit RGB, honouring the stream's colour range (full or limited) and matrix. When every pixel of
  every frame is grey (channels within :data:`GREY_CHANNEL_TOLERANCE` levels, which absorbs codec
  noise), the clip is kept as one channel, the rounded mean of R, G and B (MONOCHROME2, a third of
  the memory); otherwise as ``(N, rows, columns, 3)`` RGB.
* **Frame times** (s, first frame 0), in order of preference: ``frame_rate_hz`` given by the user
  (uniform; it replaces the file's timing); the per-frame presentation timestamps times the stream's
  time base (exact, variable frame rates included), when the container carries real timestamps and
  they increase; the stream's average frame rate (uniform, with a warning); the frame rate coded in
  the video bitstream (e.g. H.264 timing info; with a warning). Raw elementary streams (e.g. a bare
  MJPEG or H.264 stream) carry no container timestamps: FFmpeg's 25 frames/s for them is a default,
  not a measurement, and is never used. No usable timing and no ``frame_rate_hz`` is an error
  asking for ``--frame-rate``.
* **Geometry**: ``pixel_spacing_mm`` from the user becomes ``Clip.pixel_spacing_mm`` (else a warning:
  distances in pixels); ``Clip.regions`` is empty: the layout finds the panels from pixel activity.

Without PyAV (imported inside the functions) the readers raise an InputError naming the package.
"""
# long: one reader whose container probing, timing and frame decoding share one open stream
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.io.files import MAX_DECODED_BYTES, require_regular_file
from DCEUSResponseLib.io.timing import check_frame_rate, check_times

#: File name extensions (lower case) taken for video exports by :func:`is_video_file`.
VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".wmv",
                                     ".mjpeg", ".mjpg", ".h264", ".264")  # the last four: raw streams
#: A pixel counts as grey when its R, G, B differ by at most this many levels (0..255); lossy
#: codecs and YUV to RGB conversion move grey pixels by a level or two, JPEG-like codecs by a few.
GREY_CHANNEL_TOLERANCE = 6
#: FFmpeg decoders of codecs that code only losslessly; any other (H.264, whose lossless mode a stream
#: does not declare, MPEG-4, MJPEG, VP9...) is taken as lossy (``Clip.lossy``).
LOSSLESS_CODECS = frozenset({"ffv1", "png", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "qtrle", "magicyuv", "apng"})
#: Warn when at least this fraction of frames repeat their predecessor exactly (a video exported
#: at a higher rate than the acquisition duplicates frames).
REPEATED_FRAME_WARNING_FRACTION = 0.10
#: ``--frame-rate`` replacing a file rate that differs by more than this fraction is warned about.
RATE_MISMATCH_FRACTION = 0.01

_COLOR_RANGE_FULL = 2  # AVCOL_RANGE_JPEG
_COLORSPACE_BT601 = 5  # AVCOL_SPC_BT470BG (ITU-R BT.601)
_AVFMT_NOTIMESTAMPS = 0x0080  # libavformat flag of (raw) formats whose packets carry no timestamps
_PYAV_HINT = ('reading video files needs the PyAV package (FFmpeg for Python), the "video" extra: '
              'pip install "DCEUSResponse[video]"')


def is_video_file(path: str | os.PathLike) -> bool:
    """True when ``path`` ends in a video extension of :data:`VIDEO_EXTENSIONS` (case-insensitive).

    Decided by the name only; the file need not exist. DICOM files and folders give False.
    """
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


def read_video_clip(path: str | os.PathLike, frame_rate_hz: float | None = None,
                    pixel_spacing_mm: float | tuple[float, float] | None = None) -> Clip:
    """Read a video export of a cine clip (any container and codec FFmpeg decodes).

    Parameters
    ----------
    path:
        The video file. Only its first video stream is read (a warning names the others).
    frame_rate_hz:
        Acquisition frame rate in frames per second. When given it replaces the file's timing
        (uniform times ``k / frame_rate_hz``), with a warning if the file says otherwise by more
        than 1 %; it is required when the file carries no usable timing.
    pixel_spacing_mm:
        Physical size of a pixel in mm: one number (square pixels) or ``(row, column)`` spacing.
        A video carries none; without it distances and areas stay in pixels (with a warning).

    Returns
    -------
    Clip
        ``frames`` uint8 ``(N, rows, columns)`` (MONOCHROME2) when all frames are grey, else
        ``(N, rows, columns, 3)`` RGB; ``frame_times_s`` in s from the first frame;
        ``timing_source`` one of ``"--frame-rate"``, ``"video timestamps"``,
        ``"video average frame rate"``, ``"video bitstream frame rate"``; no regions.

    Raises
    ------
    InputError
        PyAV missing, file missing or not a regular file, not a video or unreadable, no video
        stream, damaged stream, frame size changing within the clip, fewer than 2 frames, no
        usable frame timing and no ``frame_rate_hz``, frame times outside the bounds of
        :mod:`DCEUSResponseLib.io.timing`, a ``frame_rate_hz`` outside 1/60..1000 frames/s, a
        non-positive ``pixel_spacing_mm``.
    """
    frame_rate_hz = check_frame_rate(frame_rate_hz)
    spacing = _pixel_spacing(pixel_spacing_mm)
    path_str = os.fspath(path)
    if not os.path.exists(path_str):
        raise InputError("not found", path_str)
    require_regular_file(path_str, "video file")
    av = _import_av(path_str)

    decoded = _decode(av, path_str, keep_colour=False)
    if decoded.colour_from_frame is not None:
        # A colour frame after grey ones: decode again keeping every frame in RGB, exactly as stored.
        decoded = _decode(av, path_str, keep_colour=True)
    n_frames = decoded.n_frames
    _check_complete(decoded, path_str)
    if n_frames < 2:
        raise InputError(f"has {n_frames} decodable video frame{'s' if n_frames != 1 else ''}; a clip needs at least 2",
                         path_str)
    frames = decoded.frames[:n_frames]
    if decoded.frames.shape[0] > n_frames + max(1, n_frames // 10):
        frames = frames.copy()  # release a buffer that grew well beyond the clip
    warnings = list(decoded.warnings)
    frame_times, timing_source, timing_warnings = _frame_times(decoded, frame_rate_hz, path_str)
    warnings.extend(timing_warnings)
    warnings.extend(check_times(frame_times, f"the timing ({timing_source})", path_str))
    warnings.extend(_repeated_frame_warnings(frames))
    if spacing is None:
        warnings.append("the video carries no pixel spacing: distances and areas are in pixels "
                        "(give the spacing in mm with --pixel-spacing)")
    warnings.append("video export: no ultrasound regions, the whole frame is analysed as one single-display panel")
    return Clip(
        source=path_str,
        frames=frames,
        frame_times_s=frame_times,
        photometric="RGB" if frames.ndim == 4 else "MONOCHROME2",
        bits_stored=8,
        pixel_spacing_mm=spacing,
        regions=[],
        timing_source=timing_source,
        warnings=warnings,
        lossy=decoded.lossy,
    )


def write_video_clip(path: str | os.PathLike, frames: np.ndarray, frame_rate_hz: float, codec: str = "auto", *,
                     frame_times_s: Sequence[float] | None = None, crf: int = 0,
                     chroma_subsampling: str = "4:4:4") -> None:
    """Write uint8 frames as a video, for tests and examples (PyAV's FFmpeg encoders).

    ``frames``: ``(N, rows, columns)`` grey or ``(N, rows, columns, 3)`` RGB, uint8.
    ``frame_rate_hz``: the stream's nominal rate in frames per second. ``frame_times_s`` (optional,
    s, increasing): per-frame presentation times for a variable frame rate; the container's time
    base must resolve them (Matroska: 1 ms; MP4/MOV: 1/90000 s; AVI cannot hold them).

    ``codec``:

    - ``"ffv1"``: FFV1, lossless (grey as ``gray``, colour as ``bgr0``); ``.avi``, ``.mkv``, ``.mov``.
    - ``"h264"``: H.264 (libx264) in full-range BT.601 YUV, converted here with
      exact rounding. ``crf=0`` is lossless in YUV: grey frames come back exactly, colour frames
      within a level or two (the rounding of RGB to 8-bit YUV). ``crf`` > 0 is lossy (18 is
      "visually lossless"); ``chroma_subsampling`` ``"4:4:4"`` or ``"4:2:0"`` (the usual export).
      Grey frames are encoded as YUV too, as exports do.
    - ``"h264rgb"``: H.264 in RGB (libx264rgb), lossless at ``crf=0``.
    - ``"png"``: PNG per frame, lossless (``.avi``, ``.mkv``, ``.mov``).
    - ``"mjpeg"``: Motion JPEG (lossy, quality from ``crf``: 2 best .. 31 worst, 0 means 2).
    - ``"auto"``: ``ffv1`` for ``.avi``/``.mkv``, ``h264`` for ``.mp4``/``.mov``/``.m4v``.

    Raises InputError when PyAV is missing and ValueError for bad arguments.
    """
    path_str = os.fspath(path)
    av = _import_av(path_str)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[3] != 3):
        raise ValueError(f"frames must be uint8 (N, rows, columns) or (N, rows, columns, 3), got {frames.dtype} "
                         f"{frames.shape}")
    if not (math.isfinite(frame_rate_hz) and frame_rate_hz > 0):
        raise ValueError(f"frame_rate_hz must be positive, got {frame_rate_hz}")
    extension = os.path.splitext(path_str)[1].lower()
    if codec == "auto":
        codec = "ffv1" if extension in (".avi", ".mkv") else "h264"
    grey = frames.ndim == 3
    rate = Fraction(frame_rate_hz).limit_denominator(1_000_000)
    encoder, pixel_format, options, full_range = _encoder_settings(codec, grey, crf, chroma_subsampling)

    pts: list[int] | None = None
    time_base: Fraction | None = None
    if frame_times_s is not None:
        times = np.asarray(frame_times_s, dtype=float)
        if times.shape != (frames.shape[0],) or np.any(np.diff(times) <= 0):
            raise ValueError("frame_times_s needs one increasing time per frame")
        if extension == ".avi":
            raise ValueError("AVI holds only constant frame rates: use .mkv, .mp4 or .mov for frame_times_s")
        time_base = Fraction(1, 90_000)
        pts = [int(round((t - times[0]) / time_base)) for t in times]

    with av.open(path_str, mode="w") as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = pixel_format
        if full_range:
            stream.codec_context.color_range = _COLOR_RANGE_FULL
            stream.codec_context.colorspace = _COLORSPACE_BT601
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for index, image in enumerate(frames):
            if full_range:
                frame = av.VideoFrame.from_ndarray(_full_range_yuv(image, pixel_format), format=pixel_format)
                frame.color_range = _COLOR_RANGE_FULL
                frame.colorspace = _COLORSPACE_BT601
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray" if grey else "rgb24")
            if pts is not None:
                frame.pts = pts[index]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------------------------
# decoding


class _Decoded:
    """Frames and timing information of one decoding pass."""

    def __init__(self) -> None:
        self.frames = np.empty((0, 0, 0), dtype=np.uint8)
        self.n_frames = 0
        self.pts: list[int | None] = []
        self.time_base: Fraction | None = None
        self.container_has_timestamps = True
        self.average_rate: Fraction | None = None
        self.bitstream_rate: Fraction | None = None
        self.colour_from_frame: int | None = None  # set when a grey-mode pass meets a colour frame
        self.warnings: list[str] = []
        self.declared_frames = 0  # the container's frame count (0: not stated)
        self.declared_seconds: float | None = None  # the video's duration as the container states it
        self.lossy = True  # unless the codec is one that only codes losslessly (LOSSLESS_CODECS)

    def append(self, image: np.ndarray, expected_frames: int = 0, path: str = "") -> None:
        # The container's frame count is a claim, not a size: never allocate beyond the clip limit.
        most_frames = max(1, MAX_DECODED_BYTES // max(1, image.nbytes))
        if self.n_frames >= most_frames:
            raise InputError(f"the video decodes to more than {most_frames} frames of {image.shape[0]} x "
                             f"{image.shape[1]} pixels, over the {MAX_DECODED_BYTES / 2**30:g} GiB a clip may take",
                             path)
        if self.n_frames == 0:
            self.frames = np.empty((min(max(expected_frames, 16), most_frames),) + image.shape, dtype=np.uint8)
        elif self.n_frames == self.frames.shape[0]:
            grown = np.empty((min(2 * self.n_frames, most_frames),) + image.shape, dtype=np.uint8)
            grown[: self.n_frames] = self.frames
            self.frames = grown
        self.frames[self.n_frames] = image
        self.n_frames += 1


def _import_av(path: str) -> Any:
    try:
        import av  # noqa: F401  (optional dependency)
    except ImportError:
        raise InputError(_PYAV_HINT, path) from None
    return av


def _ffmpeg_errors(av: Any) -> tuple[type[BaseException], ...]:
    error = getattr(av, "FFmpegError", None) or getattr(getattr(av, "error", None), "FFmpegError", None)
    return (error, OSError) if error is not None else (OSError,)


def _one_line(error: BaseException) -> str:
    """FFmpeg's own words for an error (without the file name PyAV appends), on one line."""
    text = " ".join(str(getattr(error, "strerror", None) or error).split())
    return text or type(error).__name__


def _decode(av: Any, path: str, keep_colour: bool) -> _Decoded:
    """Decode the first video stream; grey frames as one channel unless ``keep_colour``.

    In grey mode the pass stops at the first frame that is not grey and sets ``colour_from_frame``
    (the caller decodes again in colour); when that is the very first frame it simply continues in
    colour.
    """
    errors = _ffmpeg_errors(av)
    try:
        container = av.open(path, mode="r")
    except errors as error:
        raise InputError(f"is not a readable video file (FFmpeg: {_one_line(error)})", path) from None
    result = _Decoded()
    with container:
        streams = list(container.streams.video)
        if not streams:
            raise InputError("contains no video stream", path)
        if len(streams) > 1:
            result.warnings.append(f"the file has {len(streams)} video streams; only the first is read")
        stream = streams[0]
        result.time_base = Fraction(stream.time_base) if stream.time_base else None
        flags = int(getattr(container.format, "flags", 0) or 0)
        result.container_has_timestamps = not flags & _AVFMT_NOTIMESTAMPS
        result.average_rate = _positive_fraction(stream.average_rate)
        result.bitstream_rate = _positive_fraction(getattr(stream.codec_context, "framerate", None))
        result.lossy = str(getattr(stream.codec_context, "name", "") or "") not in LOSSLESS_CODECS
        # Containers that index their frames know the count in advance (else the buffer grows).
        expected_frames = int(stream.frames or 0) + 1
        result.declared_frames = int(stream.frames or 0)
        result.declared_seconds = _declared_seconds(container, stream, result.time_base)
        colour = keep_colour
        shape: tuple[int, int] | None = None
        try:
            for frame in container.decode(stream):
                if shape is None:
                    shape = (frame.height, frame.width)
                elif (frame.height, frame.width) != shape:
                    raise InputError(f"the frame size changes from {shape[0]} x {shape[1]} to {frame.height} x "
                                     f"{frame.width} pixels at frame {result.n_frames}", path)
                image = _frame_pixels(frame)
                if not colour:
                    if image.ndim == 3 and not _is_grey(image):
                        if result.n_frames > 0:
                            result.colour_from_frame = result.n_frames
                            return result
                        colour = True
                    elif image.ndim == 3:
                        image = _grey_of(image)
                if colour and image.ndim == 2:
                    image = np.repeat(image[:, :, None], 3, axis=2)
                result.append(image, expected_frames, path)
                result.pts.append(frame.pts)
                if frame.time_base is not None and result.time_base is None:
                    result.time_base = Fraction(frame.time_base)
        except errors as error:
            raise InputError(f"the video stream cannot be decoded after {result.n_frames} frames "
                             f"({_one_line(error)})", path) from None
    return result


def _declared_seconds(container: Any, stream: Any, time_base: Fraction | None) -> float | None:
    """The video stream's duration as the file states it: the stream's own, Matroska's per-track
    ``DURATION`` tag, or the container's when the video is its only stream (audio may be longer)."""
    if stream.duration and time_base:
        return float(stream.duration * time_base)
    tag = str((getattr(stream, "metadata", None) or {}).get("DURATION", ""))
    parts = tag.split(":")
    if len(parts) == 3:
        try:
            return int(parts[0]) * 3600.0 + int(parts[1]) * 60.0 + float(parts[2])
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return container.duration / 1e6  # AV_TIME_BASE
    return None


def _check_complete(decoded: _Decoded, path: str) -> None:
    """Refuse a video that ends well before its file says it does (a file cut short: Matroska and AVI
    decode up to the cut without an error, so half a clip would be analysed as the whole).

    Judged by the time the decoded frames cover against the declared duration: frames fewer than
    declared alone are no cut (an MP4 edit list, a frame grabber's dropped frames keep their time).
    The frame count is used only when the file states no duration.
    """
    if decoded.colour_from_frame is not None:
        return  # a grey pass stopped early on purpose; the colour pass is checked
    pts = [p for p in decoded.pts if p is not None]
    if decoded.declared_seconds is None or decoded.time_base is None or len(pts) < 2:
        if decoded.declared_frames > 1 and decoded.n_frames < decoded.declared_frames - max(2, 0.05 * decoded.declared_frames):
            raise InputError(f"the video ends after {decoded.n_frames} of the {decoded.declared_frames} frames its "
                             "container declares: the file is truncated", path)
        return
    interval = float(np.median(np.diff(pts)) * decoded.time_base)
    decoded_seconds = float((pts[-1] - pts[0]) * decoded.time_base) + interval
    shortfall = decoded.declared_seconds - decoded_seconds
    if shortfall > max(1.0, 2.0 * interval) and decoded_seconds < 0.95 * decoded.declared_seconds:
        raise InputError(f"the video ends after {decoded_seconds:.1f} s ({decoded.n_frames} frames) but its "
                         f"container declares {decoded.declared_seconds:.1f} s: the file is truncated", path)


def _frame_pixels(frame: Any) -> np.ndarray:
    """uint8 pixels of a decoded frame: (rows, columns) for grey formats, else (rows, columns, 3) RGB."""
    name = frame.format.name
    if name.startswith("gray") or name.startswith("ya"):
        return frame.to_ndarray(format="gray")
    # Convert with the frame's own colour range: swscale otherwise assumes limited range for YUV.
    color_range = getattr(frame, "color_range", 0)
    if color_range:
        return frame.to_ndarray(format="rgb24", src_color_range=color_range)
    return frame.to_ndarray(format="rgb24")


def _is_grey(image: np.ndarray) -> bool:
    spread = image.max(axis=2).astype(np.int16) - image.min(axis=2)
    return int(spread.max()) <= GREY_CHANNEL_TOLERANCE


def _grey_of(image: np.ndarray) -> np.ndarray:
    """Rounded mean of the three channels of a grey RGB image (exact when R == G == B)."""
    total = image.astype(np.uint16).sum(axis=2)
    return ((total + 1) // 3).astype(np.uint8)


def _positive_fraction(value: Any) -> Fraction | None:
    if value is None:
        return None
    try:
        fraction = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return fraction if fraction > 0 else None


# --------------------------------------------------------------------------------------------
# timing


def _frame_times(decoded: _Decoded, frame_rate_hz: float | None, path: str) -> tuple[np.ndarray, str, list[str]]:
    n_frames = decoded.n_frames
    timestamp_times = _timestamp_times(decoded)
    file_rate_hz = _file_rate_hz(decoded, timestamp_times)
    if frame_rate_hz is not None:
        warnings = []
        if file_rate_hz is not None and abs(file_rate_hz / frame_rate_hz - 1.0) > RATE_MISMATCH_FRACTION:
            warnings.append(f"--frame-rate {frame_rate_hz:g} replaces the file's timing ({file_rate_hz:.4g} frames/s)")
        return np.arange(n_frames, dtype=float) / frame_rate_hz, "--frame-rate", warnings
    if timestamp_times is not None:
        return timestamp_times, "video timestamps", []
    if decoded.container_has_timestamps and decoded.average_rate is not None:
        rate = float(decoded.average_rate)
        warning = (f"the video's frames carry no increasing timestamps: times from its average rate "
                   f"({rate:.4g} frames/s); give --frame-rate if the acquisition rate differs")
        return np.arange(n_frames, dtype=float) / rate, "video average frame rate", [warning]
    if decoded.bitstream_rate is not None:
        rate = float(decoded.bitstream_rate)
        warning = (f"the video container has no timestamps: times from the rate coded in the video stream "
                   f"({rate:.4g} frames/s); give --frame-rate if the acquisition rate differs")
        return np.arange(n_frames, dtype=float) / rate, "video bitstream frame rate", [warning]
    raise InputError("the video carries no usable frame timing (no timestamps, no frame rate); "
                     "give the acquisition frame rate with --frame-rate", path)


def _timestamp_times(decoded: _Decoded) -> np.ndarray | None:
    """Frame times (s, first 0) from presentation timestamps, or None when they are not usable."""
    if not decoded.container_has_timestamps or decoded.time_base is None or decoded.time_base <= 0:
        return None
    if any(pts is None for pts in decoded.pts):
        return None
    first = decoded.pts[0]
    times = np.array([float((pts - first) * decoded.time_base) for pts in decoded.pts])
    if times.size < 2 or np.any(np.diff(times) <= 0):
        return None
    return times


def _file_rate_hz(decoded: _Decoded, timestamp_times: np.ndarray | None) -> float | None:
    if timestamp_times is not None:
        return float(1.0 / np.median(np.diff(timestamp_times)))
    for rate in ((decoded.average_rate if decoded.container_has_timestamps else None), decoded.bitstream_rate):
        if rate is not None:
            return float(rate)
    return None


def _repeated_frame_warnings(frames: np.ndarray) -> list[str]:
    repeats = sum(1 for k in range(1, frames.shape[0]) if np.array_equal(frames[k], frames[k - 1]))
    if frames.shape[0] > 1 and repeats >= REPEATED_FRAME_WARNING_FRACTION * (frames.shape[0] - 1):
        return [f"{repeats} of {frames.shape[0]} video frames repeat the previous frame exactly: the export's "
                "frame rate may exceed the acquisition rate (duplicated frames)"]
    return []


def _positive_number(value: Any, problem: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{problem}, not {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise InputError(f"{problem}, not {value!r}")
    return number


def _pixel_spacing(spacing: float | tuple[float, float] | None) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from one number or a pair; InputError unless positive."""
    if spacing is None:
        return None
    problem = "--pixel-spacing must be one or two positive numbers of mm"
    values = tuple(spacing) if isinstance(spacing, (tuple, list, np.ndarray)) else (spacing, spacing)
    try:
        if len(values) != 2:
            raise InputError(problem)
        row, column = (_positive_number(value, problem) for value in values)
    except InputError:
        raise InputError(f"{problem}, not {spacing!r}") from None
    return row, column


# --------------------------------------------------------------------------------------------
# encoding (tests)


def _encoder_settings(codec: str, grey: bool, crf: int, chroma_subsampling: str) -> tuple[str, str, dict, bool]:
    """(FFmpeg encoder, pixel format, encoder options, full-range YUV?) for :func:`write_video_clip`."""
    if codec == "ffv1":
        return "ffv1", "gray" if grey else "bgr0", {}, False
    if codec == "png":
        return "png", "gray" if grey else "rgb24", {}, False
    if codec == "h264rgb":
        return "libx264rgb", "rgb24", _x264_options(crf), False
    if codec == "h264":
        formats = {"4:4:4": "yuv444p", "4:2:0": "yuv420p"}
        if chroma_subsampling not in formats:
            raise ValueError(f"chroma_subsampling must be '4:4:4' or '4:2:0', not {chroma_subsampling!r}")
        return "libx264", formats[chroma_subsampling], _x264_options(crf), True
    if codec == "mjpeg":
        quality = str(min(max(crf, 2), 31))
        return "mjpeg", "yuvj444p", {"qmin": quality, "qmax": quality}, False
    raise ValueError(f"codec must be one of auto, ffv1, h264, h264rgb, png, mjpeg; not {codec!r}")


def _x264_options(crf: int) -> dict[str, str]:
    # qp 0 is mathematically lossless whatever the preset, so the fast one keeps tests quick; lossy
    # encodes keep libx264's default preset (medium), as exports are usually made.
    return {"preset": "veryfast", "qp": "0"} if crf == 0 else {"crf": str(crf)}


def _full_range_yuv(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """Planar full-range BT.601 YUV of an 8-bit grey or RGB image, exactly rounded.

    Done here rather than by swscale, whose 8-bit RGB to YUV conversion biases the chroma by about
    -0.4 levels; that bias tilts the colour of tinted maps and with it the recovered gray levels.
    ``yuv444p``: (3, rows, columns); ``yuv420p``: (rows * 3 / 2, columns) with chroma averaged over
    2 x 2 blocks (rows and columns must be even).
    """
    if image.ndim == 2:
        luma = image.astype(np.float64)
        blue_difference = np.full(image.shape, 128.0)
        red_difference = np.full(image.shape, 128.0)
    else:
        red, green, blue = (image[..., channel].astype(np.float64) for channel in range(3))
        luma = 0.299 * red + 0.587 * green + 0.114 * blue
        blue_difference = 128.0 + (blue - luma) / 1.772
        red_difference = 128.0 + (red - luma) / 1.402
    if pixel_format == "yuv420p":
        rows, columns = luma.shape
        if rows % 2 or columns % 2:
            raise ValueError(f"4:2:0 chroma needs an even number of rows and columns, got {rows} x {columns}")
        blue_difference = blue_difference.reshape(rows // 2, 2, columns // 2, 2).mean(axis=(1, 3))
        red_difference = red_difference.reshape(rows // 2, 2, columns // 2, 2).mean(axis=(1, 3))
        planes = [np.clip(np.round(plane), 0, 255).astype(np.uint8)
                  for plane in (luma, blue_difference, red_difference)]
        chroma = np.concatenate([planes[1].ravel(), planes[2].ravel()]).reshape(rows // 2, columns)
        return np.concatenate([planes[0], chroma], axis=0)
    return np.clip(np.round(np.stack([luma, blue_difference, red_difference])), 0, 255).astype(np.uint8)
