"""Per family, the options that suit small inputs."""

from __future__ import annotations

# Options that keep a 32-px input at 4x4 or more after the last stage, per family: what a
# search space for small images sets (the defaults are the 224-px designs).
SMALL_INPUT_OPTIONS: dict[str, dict[str, object]] = {
    "dsconv": {"stem_stride": 1},
    "inverted_residual": {"stem_stride": 1, "full_res_stages": 2},
    "plain": {"stem_stride": 1, "full_res_stages": 1},
    "ghostnet": {"stem_stride": 1, "full_res_stages": 1},
    "shufflenet_v2": {"stem_stride": 1, "stem_pool": False},
    "mobilenet_v3": {"stem_stride": 1, "full_res_stages": 1},
}
