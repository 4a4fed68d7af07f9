"""Frames with labels and provenance, the labeled data set, import/export."""

from elt.data.frames import (
    attach_labels, atomic_write_bytes, atomic_write_text, chemical_elements, frame_hash, has_labels,
    labels_of, read_frames, write_frames,
)

__all__ = [
    "attach_labels", "atomic_write_bytes", "atomic_write_text", "chemical_elements", "frame_hash",
    "has_labels", "labels_of", "read_frames", "write_frames",
]
