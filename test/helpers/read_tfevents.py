"""An independent reader of TensorBoard event files, for cross-checking lib/track/tensorboard.ts.

The TFRecord framing and its masked CRC-32C are checked with a bit-by-bit CRC (no table); the Event
protobuf is decoded by the official protobuf runtime (python3-protobuf) from message descriptors
built here with the field numbers of tensorflow/core/util/event.proto and summary.proto.
Prints one JSON object per event: {wall_time, step, file_version?, values: [{tag, simple_value? |
histo? | text?}]}. Usage: python3 read_tfevents.py FILE
"""
import json
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def build_messages():
    T = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="tfevents_subset.proto", package="tensorflow", syntax="proto3")

    def msg(name, fields):
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name

    OPT, REP = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("HistogramProto", [("min", 1, T.TYPE_DOUBLE, OPT, None), ("max", 2, T.TYPE_DOUBLE, OPT, None),
                           ("num", 3, T.TYPE_DOUBLE, OPT, None), ("sum", 4, T.TYPE_DOUBLE, OPT, None),
                           ("sum_squares", 5, T.TYPE_DOUBLE, OPT, None),
                           ("bucket_limit", 6, T.TYPE_DOUBLE, REP, None), ("bucket", 7, T.TYPE_DOUBLE, REP, None)])
    msg("TensorProto", [("dtype", 1, T.TYPE_INT32, OPT, None), ("string_val", 8, T.TYPE_BYTES, REP, None)])
    msg("PluginData", [("plugin_name", 1, T.TYPE_STRING, OPT, None), ("content", 2, T.TYPE_BYTES, OPT, None)])
    msg("SummaryMetadata", [("plugin_data", 1, T.TYPE_MESSAGE, OPT, ".tensorflow.PluginData")])
    msg("Value", [("tag", 1, T.TYPE_STRING, OPT, None), ("simple_value", 2, T.TYPE_FLOAT, OPT, None),
                  ("histo", 5, T.TYPE_MESSAGE, OPT, ".tensorflow.HistogramProto"),
                  ("tensor", 8, T.TYPE_MESSAGE, OPT, ".tensorflow.TensorProto"),
                  ("metadata", 9, T.TYPE_MESSAGE, OPT, ".tensorflow.SummaryMetadata")])
    msg("Summary", [("value", 1, T.TYPE_MESSAGE, REP, ".tensorflow.Value")])
    msg("Event", [("wall_time", 1, T.TYPE_DOUBLE, OPT, None), ("step", 2, T.TYPE_INT64, OPT, None),
                  ("file_version", 3, T.TYPE_STRING, OPT, None),
                  ("summary", 5, T.TYPE_MESSAGE, OPT, ".tensorflow.Summary")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    desc = pool.FindMessageTypeByName("tensorflow.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def main(path):
    Event = build_messages()
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc_len,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if crc_len != masked(header):
            sys.exit(f"bad length crc at {pos}")
        body = data[pos + 12:pos + 12 + length]
        (crc_body,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if crc_body != masked(body):
            sys.exit(f"bad data crc at {pos}")
        pos += 16 + length
        ev = Event()
        ev.ParseFromString(body)
        out = {"wall_time": ev.wall_time, "step": ev.step, "values": []}
        if ev.file_version:
            out["file_version"] = ev.file_version
        for v in ev.summary.value:
            item = {"tag": v.tag}
            if v.HasField("histo"):
                h = v.histo
                item["histo"] = {"min": h.min, "max": h.max, "num": h.num, "sum": h.sum, "sum_squares": h.sum_squares,
                                 "bucket_limit": list(h.bucket_limit), "bucket": list(h.bucket)}
            elif v.HasField("tensor"):
                item["text"] = b"".join(v.tensor.string_val).decode("utf8")
                item["plugin"] = v.metadata.plugin_data.plugin_name
                item["dtype"] = v.tensor.dtype
            else:
                item["simple_value"] = v.simple_value
            out["values"].append(item)
        print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
