"""A GLB file as an editable glTF document: its JSON, its binary chunk, typed accessors.

Only what the rig needs: read an accessor as a numpy array, append arrays as
new accessors (each in its own 4-byte aligned buffer view of the one binary
buffer) and write the container back.  Layout of a GLB: a 12-byte header
(magic ``glTF``, version 2, total length), then a JSON chunk padded with
spaces and a BIN chunk padded with zeros, each chunk preceded by its length
and type.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"glTF"
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942

COMPONENT_TYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
COMPONENT_CODES = {np.dtype(dtype): code for code, dtype in COMPONENT_TYPES.items()}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
ARRAY_BUFFER = 34962
"""Buffer view target of vertex attributes."""


@dataclass
class GlbDocument:
    gltf: dict[str, Any]
    """The glTF JSON, edited in place."""
    binary: bytearray
    """The BIN chunk: buffer 0."""

    @classmethod
    def parse(cls, data: bytes) -> GlbDocument:
        magic, version, length = struct.unpack_from("<4sII", data, 0)
        if magic != MAGIC or version != 2 or length > len(data):
            raise ValueError("not a glTF 2.0 binary (GLB) file")
        gltf: dict[str, Any] | None = None
        binary = bytearray()
        offset = 12
        while offset < length:
            chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
            chunk = data[offset + 8 : offset + 8 + chunk_length]
            if chunk_type == JSON_CHUNK:
                gltf = json.loads(chunk)
            elif chunk_type == BIN_CHUNK:
                binary = bytearray(chunk)
            offset += 8 + chunk_length
        if gltf is None:
            raise ValueError("the GLB file has no JSON chunk")
        return cls(gltf, binary)

    def to_bytes(self) -> bytes:
        self.gltf["buffers"] = [{"byteLength": len(self.binary)}]
        text = json.dumps(self.gltf, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 4)
        binary = bytes(self.binary) + b"\0" * (-len(self.binary) % 4)
        length = 12 + 8 + len(text) + 8 + len(binary)
        return b"".join(
            [
                struct.pack("<4sII", MAGIC, 2, length),
                struct.pack("<II", len(text), JSON_CHUNK),
                text,
                struct.pack("<II", len(binary), BIN_CHUNK),
                binary,
            ]
        )

    def read_accessor(self, index: int) -> np.ndarray:
        """Accessor ``index`` as a (count, width) array of its component type (no sparse storage)."""
        accessor = self.gltf["accessors"][index]
        dtype = np.dtype(COMPONENT_TYPES[accessor["componentType"]])
        width = TYPE_WIDTHS[accessor["type"]]
        count = accessor["count"]
        view = self.gltf["bufferViews"][accessor["bufferView"]]
        if view.get("buffer", 0) != 0:
            raise ValueError("only the GLB's own binary buffer is supported")
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        stride = view.get("byteStride", width * dtype.itemsize)
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(self.binary, dtype=np.uint8, offset=start, count=(count - 1) * stride + width * dtype.itemsize),
            shape=(count, width * dtype.itemsize),
            strides=(stride, 1),
        )
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def append_accessor(
        self, array: np.ndarray, accessor_type: str, *, target: int | None = None, with_bounds: bool = False
    ) -> int:
        """Store ``array`` (count, width) as a new accessor; returns its index.

        ``with_bounds`` writes ``min``/``max`` (required for positions and
        animation inputs).
        """
        array = np.ascontiguousarray(array)
        width = TYPE_WIDTHS[accessor_type]
        rows = array.reshape(len(array), width)
        self.binary += b"\0" * (-len(self.binary) % 4)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.binary), "byteLength": rows.nbytes}
        if target is not None:
            view["target"] = target
        self.binary += rows.tobytes()
        views = self.gltf.setdefault("bufferViews", [])
        views.append(view)
        accessor: dict[str, Any] = {
            "bufferView": len(views) - 1,
            "componentType": COMPONENT_CODES[rows.dtype],
            "count": len(rows),
            "type": accessor_type,
        }
        if with_bounds:
            accessor["min"] = rows.min(axis=0).tolist()
            accessor["max"] = rows.max(axis=0).tolist()
        accessors = self.gltf.setdefault("accessors", [])
        accessors.append(accessor)
        return len(accessors) - 1
