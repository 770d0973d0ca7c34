"""Writes the package's _caffe_pb2.py from protoc's FileDescriptorSet of caffe.proto.

protoc's own --python_out output depends on protoc's version: code from an old
protoc stops under protobuf >= 4.21 ("Descriptors cannot be created directly"),
and code from a new one refuses older runtimes. The module written here hands
the serialized descriptor to the runtime's builder, which every protobuf from
3.20 on has, so it imports under every version pyproject.toml allows, whichever
protoc parsed the .proto.

    python write_caffe_pb2.py DESCRIPTOR_SET OUTPUT
"""

from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf import descriptor_pb2

MODULE = '''"""Caffe's protobuf messages, generated from {proto_name} when this package was built."""

from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf.internal import builder as _builder

DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile({serialized!r})
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, globals())
_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, __name__, globals())
'''


def module_text(descriptor_set: bytes) -> str:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    if len(files) != 1:
        raise SystemExit(f"expected the descriptor of one .proto file, got {len(files)}")
    return MODULE.format(proto_name=files[0].name, serialized=files[0].SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("descriptor_set", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    args.output.write_text(module_text(args.descriptor_set.read_bytes()))


if __name__ == "__main__":
    main()
