"""Reading an offline wandb run back: its .wandb file, decoded into protobuf Records."""

import struct
from pathlib import Path

from wandb.proto.wandb_internal_pb2 import Record


def wandb_records(path: Path):
    """Decode an offline run's .wandb file (a LevelDB-style log of protobuf Records)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, offset, pieces = 32768, 7, []
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        length, kind = struct.unpack_from("<HB", data, offset + 4)
        pieces.append(data[offset + 7 : offset + 7 + length])
        offset += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST piece of a split one
            record = Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record
