"""What clip-level experts share: one frame per clip, placed at time 0 (pooling spreads it over the clip)."""

from __future__ import annotations

import numpy as np

from stages.extract.experts.base import Expert


class ClipExpert(Expert):
    frame_rate = 0.0  # one frame per clip, whatever its length

    def frame_times(self, num_frames: int) -> np.ndarray:
        return np.zeros(num_frames)
