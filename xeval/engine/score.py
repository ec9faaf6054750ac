"""Score precomputed anomaly maps against a dataset's ground truth (``xeval score``).

Maps are laid out like the dataset's test split:
``<maps>/<category>/test/<defect>/<stem>.<ext>`` with ``ext`` in tiff/tif/npy/png (any
case). The tree is checked before anything is scored, and every problem is an
:class:`~xeval.errors.InputError` that names what is wrong:

- every category of the dataset (or of ``categories``) needs maps: a category without
  any (no folder, an empty one) is an error, or with ``allow_missing=True`` a row of NaN
  marked ``missing`` in ``note``, with a :class:`~xeval.errors.MissingDataWarning`;
  without ``categories``, a category folder of the maps that the dataset lacks is an
  error too;
- exactly one map file per test image: two files for one image (``000.tiff`` and
  ``000.npy``) are an error naming both; test images without a map and files that are
  not the map of a test image (another stem, defect or format, too deep, outside
  ``test/``) are listed by name (at most :data:`LIST_CAP` of each, then "and N more").
  Hidden files and folders (``.DS_Store``) are ignored;
- every map must be readable, numeric and real, 2-D (a single channel), non-empty and
  finite; a map of another size than its mask is resized bilinearly to the mask's
  native size (never the reverse) when both have the same aspect ratio up to one pixel
  of rounding (see :func:`same_aspect`), and is an error otherwise.

Image score = max of the map.

Parallel scoring: the work is a list of :class:`ChunkTask` s, one per category and per
``chunk_size`` consecutive test images; :func:`score_chunk` (a top-level function, so
that Dask can ship it) decodes a chunk's maps and masks and returns its metric states
(:class:`ChunkStates`), never the maps. An executor of :mod:`xeval.engine.executor`
runs the tasks (in this process by default, or on Dask workers) and the client merges
the states of each category in a tree (:class:`TreeReduce`, image order kept) and
computes the results. Every value is identical (``==``) for any chunking and any
number of workers: the merges are concatenations in image order or integer sums (the
binned mode keeps its region weights as exact integers, :class:`SplitFreeBinnedState`;
PRO@t sums its per-image terms in image order, :class:`PerImageThresholdState`). A task
holds one chunk of maps; in binned mode the client holds only fixed-size merged states.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xeval.data.io import read_map
from xeval.data.loader import load_mask
from xeval.data.mvtec import list_categories, load_mvtec
from xeval.errors import InputError, MissingDataWarning
from xeval.metrics import ImageMetrics, PixelRanking, ThresholdMetrics
from xeval.metrics._validation import merged_ids
from xeval.metrics.detection import ImageScoreState
from xeval.metrics.pixel import (
    BinnedPixelState,
    ExactPixelState,
    _accumulate,
    _chunks,
    _exponent,
)
from xeval.metrics.regions import positive_weights
from xeval.metrics.resize import resize_to, same_aspect
from xeval.metrics.threshold import ThresholdState

#: Map file extensions (compared in lower case).
MAP_EXTENSIONS = (".tiff", ".tif", ".npy", ".png")
#: At most this many names are listed per kind of problem in an error message.
LIST_CAP = 10
#: Test images per chunk task (``chunk_size``, ``--chunk-size``).
DEFAULT_CHUNK_SIZE = 64
_LAYOUT = "<maps>/<category>/test/<defect>/<id>.<tiff|tif|npy|png>"


def _listing(items, cap: int = LIST_CAP) -> str:
    """``a, b, c and 7 more``."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:cap])
    return shown + (f" and {len(items) - cap} more" if len(items) > cap else "")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


@dataclass
class CategoryMaps:
    """The map files found under ``<maps>/<category>``.

    ``maps`` maps ``(defect, stem)`` to the map files of that image (more than one is an
    error); ``others`` are the visible files that are not laid out as maps.
    """

    folder: Path
    maps: dict[tuple[str, str], list[Path]] = field(default_factory=dict)
    others: list[Path] = field(default_factory=list)

    @property
    def missing(self) -> bool:
        """No visible file at all: the category has no maps."""
        return not self.maps and not self.others


def index_maps(maps_dir: Path, category: str) -> CategoryMaps:
    """List the files of ``<maps_dir>/<category>`` (see the module docstring)."""
    folder = maps_dir / category
    found = CategoryMaps(folder)
    if not folder.is_dir():
        return found
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if _hidden(rel) or p.is_dir():
            continue
        parts = rel.parts
        if len(parts) == 3 and parts[0] == "test" and p.suffix.lower() in MAP_EXTENSIONS:
            found.maps.setdefault((parts[1], p.stem), []).append(p)
        else:
            found.others.append(p)
    return found


def _check_layout(maps_dir: Path, splits: dict, indexes: dict[str, CategoryMaps]) -> None:
    """One map file per test image, no other file: else one error listing every problem."""
    doubles, missing, extra = [], [], []
    for cat, split in splits.items():
        idx = indexes[cat]
        expected = {(s.defect, Path(s.image_path).stem): s for s in split.test}
        for key, s in expected.items():
            paths = idx.maps.get(key, [])
            if not paths:
                missing.append(s.id)
            elif len(paths) > 1:
                doubles.append(f"{s.id} ({' and '.join(str(p) for p in paths)})")
        unexpected = [p for key, ps in idx.maps.items() if key not in expected for p in ps]
        extra += sorted(p.relative_to(maps_dir).as_posix() for p in unexpected + idx.others)
    problems = []
    if doubles:
        problems.append(
            f"{len(doubles)} test image(s) with two or more map files (keep one per "
            f"image): {_listing(doubles)}"
        )
    if missing:
        problems.append(
            f"{len(missing)} test image(s) with no anomaly map (expected {_LAYOUT}): "
            f"{_listing(missing)}"
        )
    if extra:
        problems.append(
            f"{len(extra)} file(s) under {maps_dir} that are not the map of a test image "
            "(no test image has that defect and name, or the file is not a "
            f"{'/'.join(e[1:] for e in MAP_EXTENSIONS)} map in <category>/test/<defect>/): "
            f"{_listing(extra)}"
        )
    if problems:
        raise InputError("the maps do not match the test images: " + "; ".join(problems))


def load_map(path: Path, mask_shape: tuple[int, int], *, image: str = "") -> np.ndarray:
    """Read the map ``path`` of a test image whose mask has ``mask_shape`` and bring it to
    that shape (see the module docstring); every problem is an error naming the file."""
    amap = read_map(path)  # refuses archives, complex values; float64 kept exactly
    of = f" (test image {image})" if image else ""
    if amap.size == 0:
        raise InputError(f"map file {path}{of} is empty: shape {amap.shape}")
    bad = int(amap.size - np.count_nonzero(np.isfinite(amap)))
    if bad:
        raise InputError(
            f"map file {path}{of} holds {bad} NaN or infinite value(s); expected finite numbers"
        )
    if amap.shape != tuple(mask_shape):
        if not same_aspect(amap.shape, mask_shape):
            raise InputError(
                f"map file {path}{of} has shape {amap.shape} and its mask {tuple(mask_shape)}: "
                "their aspect ratios differ, so the map cannot be resized to the mask "
                "without distortion (expected the mask's shape, or the same aspect ratio "
                "at another resolution)"
            )
        try:
            amap = resize_to(amap, mask_shape)
        except InputError as exc:
            raise InputError(f"map file {path}{of}: {exc}") from exc
    return amap


def _load_pair(path: Path, sample) -> tuple[np.ndarray, np.ndarray]:
    mask = load_mask(sample)
    return mask, load_map(path, mask.shape, image=sample.id)


# ------------------------------------------------------------------ split-free states
_LIMB_BITS = 28
_LIMB_MASK = (1 << _LIMB_BITS) - 1
_W_SCALE_BITS = 27 + 2 * _LIMB_BITS  # a weight w in (0, 1] is exactly W / 2**83


def _weight_limbs(w: np.ndarray) -> np.ndarray:
    """The region weights ``w`` (float64 in (0, 1]) as exact integers ``W = w * 2**83``
    split in three 28-bit limbs, shape ``(3, n)`` (int64; float64 ``w >= 2**-31``, i.e.
    regions of at most 2**31 pixels, is exactly such an integer)."""
    x = w * float(1 << 27)
    a = np.floor(x)
    r = (x - a) * float(1 << _LIMB_BITS)  # exact: the fraction of a float is a float
    b = np.floor(r)
    c = (r - b) * float(1 << _LIMB_BITS)
    if not np.array_equal(c, np.floor(c)):
        raise InputError(
            "a ground-truth region of more than 2**31 pixels cannot be weighted exactly "
            "in binned mode; use mode='exact'"
        )
    return np.stack([a, b, c]).astype(np.int64)


def _carry(limbs: np.ndarray, sl: slice = slice(None)) -> None:
    """Normalise ``limbs`` (3, n) in place on ``sl``: the two low limbs below 2**28."""
    for k in (2, 1):
        row = limbs[k, sl]
        limbs[k - 1, sl] += row >> _LIMB_BITS
        row &= _LIMB_MASK


def _shift_bins(arr: np.ndarray, d: int, z: int, half: int) -> None:
    """Move a binned layout (see :class:`BinnedPixelState`) ``d`` bins towards the zero
    bin ``z`` in place, merging what falls out of range into it (integer arrays: exact)."""
    if d >= half:
        arr[z] = arr.sum()
        arr[:z] = 0
        arr[z + 1 :] = 0
        return
    arr[z] += arr[z + 1 : z + 1 + d].sum() + arr[z - d : z].sum()
    arr[z + 1 : -d] = arr[z + 1 + d :].copy()
    arr[-d:] = 0
    arr[d:z] = arr[: z - d].copy()
    arr[:d] = 0


@dataclass
class SplitFreeBinnedState(BinnedPixelState):
    """A :class:`~xeval.metrics.pixel.BinnedPixelState` whose result does not depend on
    how the images were split into chunks or in which order the chunks were merged.

    The bin counts of the parent are integers (exact under any split); its region
    weights are float sums, whose last bits depend on the order of the additions. Here
    the weight of every bin is kept as an exact integer (``sum of w * 2**83`` in three
    int64 limbs of 28 bits, ``limbs``) and rounded to float64 once, correctly, in
    :meth:`summary`. Pickled sparsely (only the non-empty bins travel).
    """

    limbs: np.ndarray | None = None

    def _alloc(self) -> None:
        size = 2 * self.half + 1
        self.n_all = np.zeros(size, np.int64)
        self.n_pos = np.zeros(size, np.int64)
        self.limbs = np.zeros((3, size), np.int64)
        self.w_pos = None

    def _raise_cut(self, e_cut: int) -> None:
        if self.n_all is None:
            self._alloc()
        elif e_cut > self.e_cut >= 0:
            d = (e_cut - self.e_cut) << self.bits
            for arr in (self.n_all, self.n_pos, *self.limbs):
                _shift_bins(arr, d, self.half, self.half)
            _carry(self.limbs)
        self.e_cut = e_cut

    def update(self, mask: np.ndarray, amap: np.ndarray) -> None:
        """Add one image (or an (N, H, W) stack); see the parent."""
        for m, a in _chunks(mask, amap):
            v = a.ravel()
            if v.dtype != np.float32:
                v = v.astype(np.float32)
            vmin, vmax = float(v.min()), float(v.max())
            e_max = max(_exponent(vmin), _exponent(vmax))
            e_cut = max(e_max - self.octaves + 1, 0)
            if e_cut > self.e_cut or self.n_all is None:
                self._raise_cut(max(e_cut, self.e_cut))
            b, lo, hi = self._bins(v, vmin, vmax)
            _accumulate(self.n_all, lo, b, hi - lo + 1)
            idx = np.flatnonzero(m)
            if idx.size:
                w, nreg = positive_weights(m)
                uniq, inv = np.unique(b[idx], return_inverse=True)
                at = lo + uniq.astype(np.int64)
                self.n_pos[at] += np.bincount(inv, minlength=uniq.size)
                for k, limb in enumerate(_weight_limbs(w)):
                    # per-bin sums of < 2**28 integers over < 2**25 pixels: exact floats
                    self.limbs[k, at] += np.bincount(inv, limb, uniq.size).astype(np.int64)
                _carry(self.limbs, slice(int(at[0]), int(at[-1]) + 1))
                self.n_regions += nreg
            self.n_images += 1 if m.ndim == 2 else m.shape[0]

    def copy(self) -> SplitFreeBinnedState:
        c = SplitFreeBinnedState(
            bits=self.bits,
            octaves=self.octaves,
            e_cut=self.e_cut,
            n_regions=self.n_regions,
            n_images=self.n_images,
            ids=list(self.ids),
        )
        if self.n_all is not None:
            c.n_all, c.n_pos, c.limbs = self.n_all.copy(), self.n_pos.copy(), self.limbs.copy()
        return c

    def merge(self, other: SplitFreeBinnedState) -> SplitFreeBinnedState:
        """Exact merge (integers only): any bracketing and order give the same state."""
        if (self.bits, self.octaves) != (other.bits, other.octaves):
            raise ValueError(
                "cannot merge binned states of different resolution: "
                f"bits/octaves {self.bits}/{self.octaves} vs {other.bits}/{other.octaves}"
            )
        ids = merged_ids(self.ids, other.ids, "merging binned pixel-ranking states")
        if other.n_all is None or self.n_all is None:
            out = (self if other.n_all is None else other).copy()
            out.ids = ids
            return out
        cut = max(self.e_cut, other.e_cut)
        a = self.copy()
        a.ids = ids
        a._raise_cut(cut)
        b = other
        if other.e_cut < cut:  # only a state to shift is copied (the inputs are kept)
            b = other.copy()
            b._raise_cut(cut)
        a.n_all += b.n_all
        a.n_pos += b.n_pos
        a.limbs += b.limbs
        _carry(a.limbs)
        a.n_regions += b.n_regions
        a.n_images += b.n_images
        return a

    def summary(self):
        """The parent's rank summary, with each bin's weight ``sum / 2**83`` correctly
        rounded to float64 (Python's int division)."""
        if self.n_all is None:
            self._alloc()
            self.e_cut = 0
        w = np.zeros(self.n_pos.size, np.float64)
        nz = np.flatnonzero(self.n_pos)
        top, mid, low = (self.limbs[k, nz].tolist() for k in range(3))
        scale = 1 << _W_SCALE_BITS
        w[nz] = [
            ((x << 2 * _LIMB_BITS) + (y << _LIMB_BITS) + z) / scale
            for x, y, z in zip(top, mid, low, strict=True)
        ]
        self.w_pos = w
        try:
            return super().summary()
        finally:
            self.w_pos = None

    def packed(self) -> PackedBinned:
        """A sparse copy (non-empty bins only) to send or keep; :meth:`PackedBinned.unpacked`
        restores it."""
        return PackedBinned(self.__getstate__())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.n_all is not None:
            nz = np.flatnonzero(self.n_all)
            state["n_all"] = (nz.astype(np.int32), self.n_all[nz])
            state["n_pos"] = self.n_pos[nz]
            state["limbs"] = self.limbs[:, nz]
        return state

    def __setstate__(self, state: dict) -> None:
        if state.get("n_all") is not None:
            nz, vals = state["n_all"]
            size = 2 * (state["octaves"] << state["bits"]) + 1
            n_all, n_pos = np.zeros(size, np.int64), np.zeros(size, np.int64)
            limbs = np.zeros((3, size), np.int64)
            n_all[nz], n_pos[nz], limbs[:, nz] = vals, state["n_pos"], state["limbs"]
            state = {**state, "n_all": n_all, "n_pos": n_pos, "limbs": limbs}
        self.__dict__.update(state)


@dataclass
class PackedBinned:
    """A :class:`SplitFreeBinnedState` with only its non-empty bins (what a chunk task
    returns in binned mode: a few MB, not the dense 60 MB arrays)."""

    state: dict

    def unpacked(self) -> SplitFreeBinnedState:
        out = SplitFreeBinnedState.__new__(SplitFreeBinnedState)
        out.__setstate__(dict(self.state))
        return out


@dataclass
class PerImageThresholdState:
    """A :class:`~xeval.metrics.threshold.ThresholdState` whose PRO sum is kept as the
    per-image terms in image order (``pro_terms``) and summed left to right once, at
    :meth:`finish`: the same float as one sequential pass, for any chunking."""

    inner: ThresholdState = field(default_factory=ThresholdState)
    pro_terms: list = field(default_factory=list)

    def merge(self, o: PerImageThresholdState) -> PerImageThresholdState:
        return PerImageThresholdState(self.inner.merge(o.inner), self.pro_terms + o.pro_terms)

    def finish(self) -> ThresholdState:
        total = 0.0
        for t in self.pro_terms:
            total += t
        inner = self.inner.merge(ThresholdState())
        inner.pro_sum = total
        return inner


# ------------------------------------------------------------------------ chunk tasks
@dataclass(frozen=True)
class ChunkTask:
    """Score ``samples`` (consecutive test images of ``category``) against their map
    files ``paths``: chunk ``index`` of the category. Picklable; small (paths only)."""

    category: str
    index: int
    paths: tuple
    samples: tuple
    mode: str = "exact"
    threshold: float | None = None
    decode_threads: int = 1


@dataclass
class ChunkStates:
    """The metric states of one chunk (or of merged chunks, in image order): pixel
    ranking, image scores and, with a threshold, the threshold state. Never the maps
    (the exact pixel-ranking state holds the scores, as its definition needs)."""

    category: str
    pixel: object
    image: ImageScoreState
    thresh: PerImageThresholdState | None = None

    def unpacked(self) -> ChunkStates:
        """The states ready to merge (a packed binned state unpacked)."""
        if isinstance(self.pixel, PackedBinned):
            return ChunkStates(self.category, self.pixel.unpacked(), self.image, self.thresh)
        return self

    def merge(self, o: ChunkStates) -> ChunkStates:
        """``self`` then ``o`` (image order kept); every merge is a concatenation or an
        integer sum, so the result does not depend on the bracketing."""
        if o.category != self.category:
            raise ValueError(f"cannot merge chunks of {self.category!r} and {o.category!r}")
        return ChunkStates(
            self.category,
            self.pixel.merge(o.pixel),
            self.image.merge(o.image),
            None if self.thresh is None else self.thresh.merge(o.thresh),
        )


def _pixel_metric(mode: str, fpr_limits=(0.3,)) -> PixelRanking:
    return PixelRanking(fpr_limits=fpr_limits, mode=mode)


def score_chunk(task: ChunkTask) -> ChunkStates:
    """Decode the map files and masks of one chunk and return its metric states (a
    top-level function, so that Dask can ship it). Memory: one chunk of maps at a time;
    in binned mode the result is the chunk's histogram, packed (non-empty bins only)."""
    if task.mode == "exact":
        ps = ExactPixelState()
    else:  # PixelRanking's default resolution (what _finish computes with)
        ps = SplitFreeBinnedState(bits=15, octaves=20)
    img = ImageMetrics()
    ist = img.init()
    thr = ThresholdMetrics(threshold=task.threshold) if task.threshold is not None else None
    ts = PerImageThresholdState() if thr else None
    threads = max(1, min(int(task.decode_threads), len(task.paths)))
    with ThreadPoolExecutor(max_workers=threads) as ex:  # decoding releases the GIL
        pairs = ex.map(_load_pair, task.paths, task.samples)
        for s, (mask, amap) in zip(task.samples, pairs, strict=True):
            ps.update(mask, amap)
            img.update(ist, [s.label], [float(amap.max())], ids=[s.id])
            if thr:
                one = thr.update(ThresholdState(), mask, amap)
                if one.n_regions:
                    ts.pro_terms.append(one.pro_sum)
                one.pro_sum = 0.0
                ts.inner = ts.inner.merge(one)
    if isinstance(ps, SplitFreeBinnedState):
        ps = ps.packed()
    return ChunkStates(task.category, ps, ist, ts)


class TreeReduce:
    """Pairwise (tree) merge of states fed in order, holding O(log n) states: like a
    binary counter, two states of the same height merge (older on the left) as soon as
    both exist; :meth:`result` merges what is left, right to left."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, object]] = []

    def add(self, state) -> None:
        h = 0
        while self._stack and self._stack[-1][0] == h:
            _, left = self._stack.pop()
            state = left.merge(state)
            h += 1
        self._stack.append((h, state))

    def result(self):
        if not self._stack:
            raise ValueError("nothing to merge")
        acc = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            acc = left.merge(acc)
        return acc


def tree_merge(states):
    """Tree reduction of ``states`` in order (see :class:`TreeReduce`)."""
    tr = TreeReduce()
    for s in states:
        tr.add(s)
    return tr.result()


def _finish(merged: ChunkStates, n_images: int, *, fpr_limits, mode, threshold) -> dict:
    """The result row of a category from its merged states."""
    pix = _pixel_metric(mode, fpr_limits)
    out = {"n_images": n_images}
    out.update(ImageMetrics().compute(merged.image))
    p = pix.compute(merged.pixel)
    for k in ("pixel_auroc", "pixel_aupr", *(f"aupro@{x:g}" for x in pix.fpr_limits), "iou_oracle"):
        out[k] = p.get(k, math.nan)
    out.update({k: v for k, v in p.items() if k.startswith("error_bound/")})
    if threshold is not None:
        t = ThresholdMetrics(threshold=threshold).compute(merged.thresh.finish())
        out.update({k: t[k] for k in ("pro@t", "iou@t", "dice@t", "iou_per_image@t")})
    return out


def check_chunk_size(chunk_size) -> int:
    """``chunk_size`` as an int >= 1, or an :class:`InputError` naming it."""
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or int(chunk_size) < 1
    ):
        raise InputError(
            f"chunk_size must be a whole number of test images per task, >= 1, got {chunk_size!r}"
        )
    return int(chunk_size)


def chunk_tasks(
    category: str,
    split,
    index: CategoryMaps,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    mode: str = "exact",
    threshold: float | None = None,
    decode_threads: int = 1,
) -> list[ChunkTask]:
    """The chunk tasks of one category: consecutive test images, ``chunk_size`` each."""
    chunk_size = check_chunk_size(chunk_size)
    paths = [index.maps[(s.defect, Path(s.image_path).stem)][0] for s in split.test]
    return [
        ChunkTask(
            category,
            i // chunk_size,
            tuple(paths[i : i + chunk_size]),
            tuple(split.test[i : i + chunk_size]),
            mode,
            None if threshold is None else float(threshold),
            decode_threads,
        )
        for i in range(0, len(paths), chunk_size)
    ]


def _chunk_key(task: ChunkTask) -> str:
    return f"{task.category}/chunk{task.index}"


def _results(executor, tasks: list[ChunkTask]):
    """``(task, states or exception)`` in task order: in this process without an
    executor, else through ``executor.map_units`` (an in-process executor raises at
    once; a Dask executor yields a :class:`~xeval.engine.executor.UnitFailure`)."""
    if executor is None:
        for t in tasks:
            yield t, score_chunk(t)
        return
    keys = [_chunk_key(t) for t in tasks]
    by_key = dict(zip(keys, tasks, strict=True))
    for key, res in executor.map_units(score_chunk, tasks, keys=keys):
        yield by_key[key], res


def _raise_failure(res: BaseException) -> None:
    """Raise a failed chunk's own error (an :class:`InputError` naming the map file, as
    in one process) when the executor could bring it back, else the failure itself."""
    error = getattr(res, "error", None)
    if isinstance(error, Exception) and getattr(res, "worker_traceback", ""):
        raise error from None  # the chunk raised it (not a lost worker): as in one process
    raise res


def _decode_threads(executor) -> int:
    """Decoding threads per chunk: 4 in this process (as before), else the executor's
    threads per worker (so that workers do not oversubscribe the cores)."""
    if executor is None or getattr(executor, "kind", None) == "in-process":
        return 4
    return max(1, int(getattr(executor, "threads_per_worker", 1) or 1))


def _score_all(
    work: dict,
    *,
    fpr_limits,
    mode: str,
    threshold,
    chunk_size: int,
    executor=None,
    decode_threads: int = 4,
) -> dict[str, dict]:
    """Score every category of ``work`` (``{category: (split, index)}``) in chunk tasks
    and return ``{category: row}``. The first failing chunk (in image order) raises its
    error, which names the map file."""
    _pixel_metric(mode, fpr_limits)  # validates mode and limits before any work
    if threshold is not None:
        threshold = ThresholdMetrics(threshold=threshold).threshold  # finite float
    tasks = [
        t
        for c, (split, index) in work.items()
        for t in chunk_tasks(
            c,
            split,
            index,
            chunk_size=chunk_size,
            mode=mode,
            threshold=threshold,
            decode_threads=decode_threads,
        )
    ]
    reducers = {c: TreeReduce() for c in work}
    left = {c: sum(t.category == c for t in tasks) for c in work}
    rows: dict[str, dict] = {}
    for task, res in _results(executor, tasks):
        if isinstance(res, BaseException):
            _raise_failure(res)
        c = task.category
        reducers[c].add(res.unpacked())
        left[c] -= 1
        if not left[c]:  # the category is complete: compute it and free its states
            rows[c] = _finish(
                reducers.pop(c).result(),
                len(work[c][0].test),
                fpr_limits=fpr_limits,
                mode=mode,
                threshold=threshold,
            )
    return {c: rows[c] for c in work}


def _load_split(gt_dir: Path, category: str):
    split = load_mvtec(gt_dir, category, require_train=False)
    if not split.test:
        raise InputError(f"category {category!r} of {gt_dir} has no test images")
    return split


def score_category(
    maps_dir: Path,
    gt_dir: Path,
    category: str,
    *,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    workers: int = 4,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    executor=None,
) -> dict:
    """All image and pixel metrics of one category, after checking its maps (see the
    module docstring). ``workers`` = decoding threads per chunk in this process;
    ``chunk_size`` and ``executor`` as in :func:`score_folder`."""
    maps_dir, gt_dir = Path(maps_dir), Path(gt_dir)
    chunk_size = check_chunk_size(chunk_size)
    split = _load_split(gt_dir, category)
    index = index_maps(maps_dir, category)
    _check_layout(maps_dir, {category: split}, {category: index})
    return _score_all(
        {category: (split, index)},
        fpr_limits=fpr_limits,
        mode=mode,
        threshold=threshold,
        chunk_size=chunk_size,
        executor=executor,
        decode_threads=workers,
    )[category]


def _select_categories(maps_dir: Path, gt_dir: Path, categories) -> list[str]:
    known = list_categories(gt_dir)
    if categories is None:
        strays = sorted(
            p.name
            for p in maps_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in known
        )
        if strays:
            raise InputError(
                f"--maps {maps_dir} holds maps of categories that {gt_dir} does not have: "
                f"{_listing(strays)} (dataset categories: {_listing(known)}); rename them, "
                "or choose the categories to score with --categories"
            )
        return known
    cats = [str(c) for c in categories]
    doubles = sorted({c for c in cats if cats.count(c) > 1})
    if doubles:
        raise InputError(f"categories {cats} name {_listing(doubles)} more than once")
    unknown = [c for c in cats if c not in known]
    if unknown:
        raise InputError(
            f"categories {_listing(unknown)}: not categories of {gt_dir} "
            f"(its categories: {_listing(known)})"
        )
    return cats


def score_folder(
    maps_dir,
    gt_dir,
    *,
    categories=None,
    fpr_limits=(0.3,),
    mode="exact",
    threshold=None,
    allow_missing: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    executor=None,
) -> pd.DataFrame:
    """One row per category plus a ``mean`` row (unweighted mean over the scored
    categories); ``note`` says which categories are missing (``allow_missing=True``).

    ``categories`` defaults to every category of ``gt_dir``. The whole maps tree is
    checked (see the module docstring) before anything is scored.

    The work is a list of chunk tasks (:func:`score_chunk`): per category, per
    ``chunk_size`` consecutive test images, decode the maps and masks and return the
    metric states, never the maps. ``executor`` (an executor of
    :mod:`xeval.engine.executor`; ``None`` = this process, one chunk at a time) runs
    them; the states of a category are merged in a tree (:class:`TreeReduce`) and the
    results computed here. Every value is identical (``==``) for any ``chunk_size``
    and executor: the merges are concatenations in image order or integer sums (the
    binned mode keeps its region weights as exact integers, see
    :class:`SplitFreeBinnedState`). Memory of a task is bounded by ``chunk_size`` maps;
    in binned mode the client only holds merged fixed-size states.
    """
    maps_dir, gt_dir = Path(maps_dir), Path(gt_dir)
    chunk_size = check_chunk_size(chunk_size)
    if not maps_dir.is_dir():
        raise InputError(f"--maps {maps_dir} is not a folder (expected {_LAYOUT})")
    cats = _select_categories(maps_dir, gt_dir, categories)
    if "mean" in cats:
        raise InputError(
            f"{gt_dir} has a category named 'mean', which the table uses for the mean row"
        )
    indexes = {c: index_maps(maps_dir, c) for c in cats}
    missing = [c for c in cats if indexes[c].missing]
    if len(missing) == len(cats):
        raise InputError(
            f"no category of {gt_dir} has maps under {maps_dir} (expected {_LAYOUT}; "
            f"categories: {_listing(cats)})"
        )
    if missing:
        where = _listing(f"{c!r} ({maps_dir / c})" for c in missing)
        if not allow_missing:
            raise InputError(
                f"no maps for {len(missing)} of {len(cats)} categories: the maps folder of "
                f"{where} is missing or holds no map file (expected {_LAYOUT}); score the "
                "others with "
                "--categories, or pass --allow-missing to show them as missing (NaN)"
            )
        warnings.warn(
            f"no maps for categories {where}: they are shown as missing (NaN) and left out "
            "of the mean",
            MissingDataWarning,
            stacklevel=2,
        )
    present = [c for c in cats if c not in missing]
    splits = {c: _load_split(gt_dir, c) for c in present}
    _check_layout(maps_dir, splits, indexes)
    scored = _score_all(
        {c: (splits[c], indexes[c]) for c in present},
        fpr_limits=fpr_limits,
        mode=mode,
        threshold=threshold,
        chunk_size=chunk_size,
        executor=executor,
        decode_threads=_decode_threads(executor),
    )
    rows = []
    for c in cats:
        if c in missing:
            rows.append(
                {"category": c, "n_images": 0, "note": f"missing: no maps in {maps_dir / c}"}
            )
            continue
        rows.append({"category": c, **scored[c], "note": ""})
    df = pd.DataFrame(rows)
    scored = df[~df["category"].isin(missing)]
    values = scored.drop(columns=["category", "note"])
    num = values.mean(numeric_only=True)
    mean = {"category": "mean", **num.to_dict()}
    mean["n_images"] = int(scored["n_images"].sum())
    notes = (
        [f"mean of {len(present)} of {len(cats)} categories (missing: {', '.join(missing)})"]
        if missing
        else []
    )
    for col in values.select_dtypes("number").columns:
        undefined = scored.loc[values[col].isna(), "category"].tolist()
        if undefined:
            notes.append(f"{col} undefined (NaN) in {', '.join(undefined)}: mean of the others")
    mean["note"] = "; ".join(notes)
    out = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    return out[[c for c in out.columns if c != "note"] + ["note"]]
