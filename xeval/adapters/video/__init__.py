"""Video detectors: the interface (:class:`VideoDetector`, :class:`VideoPrediction`),
clip and frame-by-frame adapters, the frame view that makes one frame of a clip an image
detector, a frame-difference baseline and an interpretable reasoning detector."""

from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.adapters.video.clip import ClipAdapter, FrameByFrame
from xeval.adapters.video.frame_difference import FrameDifference
from xeval.adapters.video.frame_view import frame_view
from xeval.adapters.video.reasoning import ReasoningDetector

__all__ = [
    "ClipAdapter",
    "FrameByFrame",
    "FrameDifference",
    "ReasoningDetector",
    "VideoDetector",
    "VideoPrediction",
    "frame_view",
]
