"""The checks and helpers of :mod:`xeval._validation`, under the name the metric modules
import them by (kept light: ``xeval.stats`` and ``xeval.comparisons`` import
``xeval._validation`` directly, without loading every metric and torch)."""

from xeval._validation import (  # noqa: F401
    FLOAT64_EXACT_INT,
    above,
    as_image_list,
    at_least,
    check_float32_safe,
    check_ids,
    check_labels_scores,
    check_map,
    check_mask,
    exact_mean,
    extend_ids,
    merged_ids,
    paired,
    pow2_scale,
    undefined,
)
