"""Readers for images, ground-truth masks and anomaly maps.

All readers raise :class:`~xeval.errors.DatasetError` naming the file, the value that
was found and what was expected.

Supported formats
-----------------
- images: ``.png .jpg .jpeg .bmp .tif .tiff`` (``.tif``/``.tiff`` through ``tifffile``,
  the rest through Pillow). EXIF orientation tags are **not** applied: pixels are read
  as stored, which is what dataset masks are drawn on.
- masks: any single-channel image (or one whose channels are identical) holding only
  ``{0, 255}`` or ``{0, 1}`` (``{0, 65535}`` for 16-bit files; boolean files as is).
- maps: ``.npy`` (any numeric dtype), ``.tif``/``.tiff`` (float or integer), ``.png``
  (raw integer values, **quantised**: a PNG map has at most 65536 levels and is not
  rescaled, so a 0/255 PNG map yields values in ``[0, 255]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from xeval.errors import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAP_EXTENSIONS",
    "is_image_file",
    "image_size",
    "read_image",
    "read_label_mask",
    "read_mask",
    "read_map",
]

#: File extensions (lower case) accepted for images and masks.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: File extensions (lower case) accepted by :func:`read_map`.
MAP_EXTENSIONS: tuple[str, ...] = (".npy", ".tif", ".tiff", ".png")
_TIFF = (".tif", ".tiff")


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file whose extension is in :data:`IMAGE_EXTENSIONS`."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _open_tiff(path: Path, *, data: bool) -> tuple[np.ndarray, str]:
    """``(array, axes)`` of the first series of a TIFF file (``data=False``: a zero-copy
    stand-in of its shape, to interpret the layout without reading the pixels)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = str(series.axes)
        if data:
            return np.asarray(series.asarray()), axes
        return np.broadcast_to(np.zeros((), dtype=series.dtype), tuple(series.shape)), axes


def _as_hwc(arr: np.ndarray, axes: str = "") -> np.ndarray:
    """The pixel array as ``(H, W)`` or ``(H, W, C)``: a TIFF's samples axis (``S`` in
    ``axes``, e.g. planar RGB stored as ``(3, H, W)``) moved last, leading singleton
    axes (pages, planes) dropped. Pillow arrays are already ``(H, W[, C])``."""
    if "S" in axes and arr.ndim == len(axes) and axes.index("S") != arr.ndim - 1:
        arr = np.moveaxis(arr, axes.index("S"), -1)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _raw_array(path: Path, *, what: str = "image", palette: str = "colours") -> np.ndarray:
    """The stored pixel array of an image file as ``(H, W)`` or ``(H, W, C)``, without
    any conversion of values (palette images: their colours, or with
    ``palette="indices"`` their indices); native byte order; at least 1x1 pixels."""
    if not path.is_file():
        raise DatasetError(f"{what} file {path} does not exist (expected a readable file)")
    try:
        if path.suffix.lower() in _TIFF:
            arr = _as_hwc(*_open_tiff(path, data=True))
        else:
            with Image.open(path) as img:
                if img.mode == "P" and palette == "colours":
                    # Palette images: keep the colours for images, indices are meaningless.
                    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    img = img.convert("RGB")
                arr = np.asarray(img)
    except DatasetError:
        raise
    except Exception as exc:  # corrupt or unsupported file
        raise DatasetError(
            f"cannot read {what} file {path}: {type(exc).__name__}: {exc} "
            f"(expected one of {', '.join(IMAGE_EXTENSIONS)})"
        ) from exc
    _check_not_empty(arr.shape, path, what)
    if not arr.dtype.isnative:  # e.g. big-endian 16-bit TIFF or Pillow mode I;16B
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _check_not_empty(shape: tuple[int, ...], path: Path, what: str) -> None:
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise DatasetError(
            f"{what} file {path} has zero size: pixel array of shape {tuple(shape)} "
            "(expected at least 1x1 pixels)"
        )


def _image_layout(arr: np.ndarray, path: Path) -> np.ndarray:
    """``(H, W, C)`` with C in 1..4 -> ``(H, W, 3)`` (gray replicated, alpha dropped)."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DatasetError(
            f"image file {path} has pixel array shape {arr.shape} "
            "(expected (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA)"
        )
    return arr


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file, read from its header only where possible.

    Parameters
    ----------
    path:
        Image file.

    Returns
    -------
    tuple of int
        Height and width in pixels.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"image file {p} does not exist (expected a readable file)")
    if p.suffix.lower() in _TIFF:
        # read as read_image reads it (tifffile, samples axis last), from the header only
        try:
            shape = _as_hwc(*_open_tiff(p, data=False)).shape
        except Exception as exc:
            raise DatasetError(
                f"cannot read the header of image file {p}: {type(exc).__name__}: {exc}"
            ) from exc
        _check_not_empty(shape, p, "image")
        _image_layout(np.broadcast_to(np.zeros((), np.uint8), shape), p)  # same checks
        return int(shape[0]), int(shape[1])
    try:
        with Image.open(p) as img:  # lazy: reads the header only
            w, h = img.size
    except Exception as exc:
        raise DatasetError(
            f"cannot read the header of image file {p}: {type(exc).__name__}: {exc} "
            f"(expected one of {', '.join(IMAGE_EXTENSIONS)})"
        ) from exc
    _check_not_empty((h, w), p, "image")
    return int(h), int(w)


def _to_unit_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Integer or float pixels -> float32 in [0, 1] (integers scaled by the dtype max)."""
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(arr.dtype, np.integer):
        # e.g. Pillow mode "I" (int32) for 16-bit files
        lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
        if lo < 0 or hi > 65535:
            raise DatasetError(
                f"image file {path} holds integer values in [{lo}, {hi}] "
                "(expected 8-bit [0, 255] or 16-bit [0, 65535] pixels)"
            )
        scale = 255.0 if hi <= 255 else 65535.0
        return arr.astype(np.float32) / np.float32(scale)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
        if not (np.isfinite(out).all() and lo >= 0.0 and hi <= 1.0):
            raise DatasetError(
                f"image file {path} holds float values in [{lo}, {hi}] or non-finite "
                "values (expected float images in [0, 1])"
            )
        return out
    raise DatasetError(f"image file {path} has unsupported pixel type {arr.dtype}")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 ``(H, W, 3)`` in ``[0, 1]``.

    Grayscale images are replicated to 3 channels, an alpha channel is dropped, 16-bit
    images are divided by 65535 (8-bit by 255).

    Parameters
    ----------
    path:
        Image file (``.png .jpg .jpeg .bmp .tif .tiff``).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(H, W, 3)``.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, or not a 2-D gray / RGB(A) image.
    """
    p = Path(path)
    arr = _image_layout(_raw_array(p), p)
    return np.ascontiguousarray(_to_unit_float(arr, p))


def _single_channel(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Reduce ``(H, W, C)`` with identical channels to ``(H, W)``; refuse anything else."""
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):  # drop alpha
        arr = arr[..., : arr.shape[-1] - 1]
    if arr.ndim == 3:
        if arr.shape[-1] == 1:
            return arr[..., 0]
        first = arr[..., 0]
        if all(np.array_equal(first, arr[..., c]) for c in range(1, arr.shape[-1])):
            return first
        raise DatasetError(
            f"{what} file {path} has {arr.shape[-1]} different channels, shape {arr.shape} "
            "(expected a single-channel image or identical channels)"
        )
    if arr.ndim != 2:
        raise DatasetError(f"{what} file {path} has shape {arr.shape} (expected (H, W))")
    return arr


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary ground-truth mask as bool ``(H, W)``.

    Accepted values: ``{0, 255}`` or ``{0, 1}`` (``{0, 65535}`` for 16-bit files), in a
    single-channel image or one whose channels are identical; palette images are read as
    their indices (``{0, 1}``). Any other value is an error: masks are never thresholded
    silently (a JPEG-compressed mask, for instance, is refused).

    Parameters
    ----------
    path:
        Mask file (any of :data:`IMAGE_EXTENSIONS`).

    Returns
    -------
    numpy.ndarray
        bool array of shape ``(H, W)``.

    Raises
    ------
    DatasetError
        Missing file, multi-channel mask, or non-binary values (the message lists them).
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"mask file {p} does not exist (expected a binary mask image)")
    arr = _single_channel(_raw_array(p, what="mask", palette="indices"), p, "mask")
    if arr.dtype == bool:
        return arr.copy()
    if arr.dtype.kind not in "iuf":
        raise DatasetError(
            f"mask file {p} holds pixels of type {arr.dtype} (expected integers, booleans "
            "or floats holding only 0/255 or 0/1)"
        )
    values = np.unique(arr)
    allowed = [{0, 1}, {0, 255}] + ([{0, 65535}] if arr.dtype == np.uint16 else [])
    vset = {v.item() for v in values}
    if not any(vset <= a for a in allowed):
        shown = ", ".join(str(v) for v in values[:10]) + (" ..." if values.size > 10 else "")
        raise DatasetError(
            f"mask file {p} is not binary: it holds {values.size} distinct values "
            f"[{shown}] (expected only 0/255 or 0/1)"
        )
    return arr > 0


def read_label_mask(path: str | os.PathLike, *, value: int = 0) -> np.ndarray:
    """Read a one-defect ground-truth file whose defect pixels hold ``value`` (MVTec LOCO:
    the defect's ``pixel_value``) as bool ``(H, W)``.

    The file must hold 0 and one other value: ``value`` when given (> 0), else any
    single non-zero value. Any other content (two defect values, none at all, a
    multi-channel image) is an error naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"ground-truth file {p} does not exist")
    try:
        with Image.open(p) as img:
            arr = np.asarray(img)
    except Exception as exc:
        raise DatasetError(
            f"cannot read ground-truth file {p}: {type(exc).__name__}: {exc}"
        ) from exc
    arr = _single_channel(arr, p, "ground-truth file")
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise DatasetError(f"ground-truth file {p} must hold integers, got dtype {arr.dtype}")
    nonzero = np.unique(arr[arr != 0])
    if nonzero.size != 1:
        what = "no defect pixel" if nonzero.size == 0 else f"{nonzero.size} defect values"
        raise DatasetError(
            f"ground-truth file {p} must mark exactly one defect (0 and one value), found "
            f"{what} ({nonzero[:5].tolist()})"
        )
    if value and int(nonzero[0]) != int(value):
        raise DatasetError(
            f"ground-truth file {p} marks its defect with value {int(nonzero[0])}, but the "
            f"defect configuration expects {int(value)}"
        )
    return arr != 0


def read_map(path: str | os.PathLike) -> np.ndarray:
    """Read an anomaly map (or attribution map) as a float ``(H, W)`` array.

    ``.npy`` and ``.tif``/``.tiff`` keep their values; ``.png`` maps give their raw
    integer values as floats (quantised, not rescaled). The result is float32 when that
    represents every value exactly (float32/float16 maps, integers up to 2**24), and
    float64 otherwise (float64 maps, larger integers): reading never creates ties or
    overflow. Singleton axes are squeezed (``(1, H, W)``, ``(H, W, 1)``). NaN and inf
    are passed through: the metrics validate them.

    Parameters
    ----------
    path:
        Map file (``.npy .tif .tiff .png``).

    Returns
    -------
    numpy.ndarray
        float32 (or float64, see above) array of shape ``(H, W)``.

    Raises
    ------
    DatasetError
        Missing file, unsupported extension, an archive or pickle instead of one array,
        complex or non-numeric values, integers beyond 2**53 (not exact as floats), or
        an array that is not 2-D after squeezing (e.g. more than one channel).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in MAP_EXTENSIONS:
        raise DatasetError(
            f"map file {p} has extension {ext!r} (expected one of {', '.join(MAP_EXTENSIONS)})"
        )
    if not p.is_file():
        raise DatasetError(f"map file {p} does not exist")
    try:
        if ext == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif ext in _TIFF:
            import tifffile

            arr = np.asarray(tifffile.imread(p))
        else:
            with Image.open(p) as img:
                arr = np.asarray(img)
    except Exception as exc:
        raise DatasetError(f"cannot read map file {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(arr, np.ndarray):  # an .npz archive named .npy
        kind = type(arr).__name__
        if hasattr(arr, "close"):
            arr.close()
        raise DatasetError(f"map file {p} holds a {kind} (an .npz archive?), expected one array")
    if arr.ndim > 2:
        arr = arr.squeeze()
        if arr.ndim < 2:  # e.g. (1, 1, W): keep two axes
            arr = arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(1, 1)
    if arr.ndim != 2:
        raise DatasetError(
            f"map file {p} holds an array of shape {arr.shape} "
            "(expected a 2-D (H, W) map, or one with a single channel)"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DatasetError(f"map file {p} holds complex values (expected real numbers)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DatasetError(f"map file {p} holds dtype {arr.dtype} (expected numbers)")
    return np.ascontiguousarray(arr, dtype=_map_dtype(arr, p))


def _map_dtype(arr: np.ndarray, p: Path) -> type:
    """float32 where it holds every value of ``arr`` exactly, else float64."""
    if arr.dtype == bool or arr.dtype in (np.float16, np.float32):
        return np.float32
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0:
            return np.float32
        lo, hi = int(arr.min()), int(arr.max())
        if max(-lo, hi) <= 2**24:
            return np.float32
        if max(-lo, hi) > 2**53:
            raise DatasetError(
                f"map file {p} holds integers up to {max(-lo, hi)}, beyond 2**53: they "
                "cannot be compared exactly as floating point; rescale the map"
            )
    return np.float64
