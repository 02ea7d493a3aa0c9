"""planner.gguf_header against gguf's own reader: the same metadata and the same tensors, on the
embedded SmolLM2 file and on files the gguf package writes with every kind of value."""
import re
import struct

import gguf
import numpy as np
import pytest

from llama_arena.cli import main
from planner.errors import ArenaError
from planner.gguf_header import decoded, read_header


def same_as_gguf(path):
    ours, theirs = read_header(path), gguf.GGUFReader(path)
    assert set(ours.fields) == {key for key in theirs.fields if not key.startswith("GGUF.")}   # its own counts
    for key in ours.fields:
        field = theirs.fields[key]
        assert decoded(ours.fields[key]) == field.contents(), key
    assert [t.name for t in theirs.tensors] == list(ours.tensors)
    for t in theirs.tensors:
        mine = ours.tensors[t.name]
        assert (mine.shape, mine.type, mine.offset) == (tuple(int(s) for s in t.shape), int(t.tensor_type), t.data_offset)


def test_the_embedded_model_reads_as_gguf_reads_it(smollm2_path):
    same_as_gguf(smollm2_path)


def test_every_value_type_and_the_alignment(tmp_path):
    path = tmp_path / "all.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("u8", 200), w.add_int8("i8", -5), w.add_uint16("u16", 60000), w.add_int16("i16", -300)
    w.add_uint32("u32", 4_000_000_000), w.add_int32("i32", -7), w.add_float32("f32", 0.5), w.add_bool("b", True)
    w.add_uint64("u64", 2**63), w.add_int64("i64", -2**40), w.add_float64("f64", 1e-300)
    w.add_string("s", "héllo"), w.add_array("words", ["a", "bé", ""]), w.add_array("ints", [1, 2, 3])
    w.add_array("floats", [0.25, -1.5])
    w.add_custom_alignment(64)
    w.add_tensor("a", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("b", np.ones((5,), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    same_as_gguf(path)
    assert read_header(path).tensors["b"].offset % 64 == 0


def test_an_alignment_of_zero_is_named(tmp_path):
    path = tmp_path / "zero.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("general.alignment", 0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ArenaError, match="general.alignment is 0"):
        read_header(path)


def test_nested_arrays_keep_their_nesting(tmp_path):
    path = tmp_path / "nested.gguf"   # gguf's reader flattens them; the layout nests them
    w = gguf.GGUFWriter(path, "llama")
    w.add_array("nested", [[1, 2], [3]]), w.add_array("texts", [["a"], ["b", "c"]])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    fields = read_header(path).fields
    assert fields["nested"] == [[1, 2], [3]] and decoded(fields["texts"]) == [["a"], ["b", "c"]]


@pytest.mark.parametrize("content", [b"", b"GGUF", b"GGUF" + b"\0" * 20, b"GGUF\x03\0\0\0" + b"\xff" * 16,
                                     b"GGML" + b"\0" * 20, b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\5\0\0\0\0\0\0\0k"])
def test_what_is_not_a_gguf_header_is_named(tmp_path, content):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ArenaError, match=f"{path}: not a readable GGUF file"):
        read_header(path)


HEAD = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"     # no tensors, one key 'k'


@pytest.mark.parametrize("content, message", [
    (HEAD + struct.pack("<I", 13) + b"\0" * 8, "metadata 'k' has value type 13, which GGUF does not define"),
    (HEAD + struct.pack("<I", 10) + b"\0" * 3, "8 bytes asked at offset 37, past the end of the file"),
    (HEAD + struct.pack("<IIQ", 9, 4, 2**62), "metadata 'k' is an array of 4,611,686,018,427,387,904 values, past the end"),
    (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1) + b"\xff" + struct.pack("<II", 4, 7), "a metadata key at offset 24 is not UTF-8"),
    (b"GGUF" + struct.pack("<IQQQ", 3, 1, 0, 1) + b"\xfe" + struct.pack("<IQIQ", 1, 8, 0, 0), "a tensor name at offset 24 is not UTF-8"),
])
def test_a_corrupt_header_is_named_in_words(tmp_path, content, message):
    """Not Python's KeyError: 13, struct.error or UnicodeDecodeError text."""
    path = tmp_path / "bad.gguf"
    path.write_bytes(content + bytes(64) * ("past the end" not in message))
    with pytest.raises(ArenaError, match=f"truncated or corrupt \\({re.escape(message)}"):
        read_header(path)


def nested_arrays(path, depth):
    """A GGUF file whose one metadata value, 'deep', is `depth` arrays one inside the other around a u32 7."""
    array = struct.pack("<IQ", 9, 1)   # element type ARRAY, one element
    value = array * (depth - 1) + struct.pack("<IQI", 4, 1, 7)
    path.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 4) + b"deep" + struct.pack("<I", 9) + value)
    return path


def test_arrays_nested_deeper_than_8_are_named(tmp_path, capsys):
    """The reader recurses once per level: thousands of levels would reach Python's recursion limit."""
    assert read_header(nested_arrays(tmp_path / "8.gguf", 8)).fields["deep"] == [[[[[[[[7]]]]]]]]
    path = nested_arrays(tmp_path / "5000.gguf", 5000)
    with pytest.raises(ArenaError, match=f"{path}: GGUF metadata 'deep' nests arrays more than 8 deep"):
        read_header(path)
    assert main(["plan", "llama", "--model", str(path), "--set", "n=5"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("qtype, dims, message", [
    (gguf.GGMLQuantizationType.F32, (32, 0), "tensor 'w' has shape [32, 0], no values"),
    (gguf.GGMLQuantizationType.Q4_0, (33, 2), "tensor 'w' has rows of 33 values, not whole Q4_0 blocks of 32"),
])
def test_tensors_the_loader_cannot_shape_are_named(tmp_path, qtype, dims, message):
    from executor.gguf_file import GGUFFile
    path = tmp_path / "w.gguf"
    w = gguf.GGUFWriter(path, "llama")
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    w.add_tensor("w", np.zeros((2, 32 // block * size), dtype=np.uint8), raw_dtype=qtype)   # dims (32, 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # gguf writes no such tensor: its dims are changed in the file
    path.write_bytes(path.read_bytes().replace(struct.pack("<2Q", 32, 2), struct.pack("<2Q", *dims), 1))
    with pytest.raises(ArenaError, match=f"{path}: {re.escape(message)}"):
        GGUFFile(path)


def raw_gguf(path, keys, tensors):
    """A GGUF file byte by byte: `keys` as (name, u32 value), `tensors` as (name, dims, offset),
    each an F32 tensor, the data zeros enough for them all."""
    def string(text):
        return struct.pack("<Q", len(text.encode())) + text.encode()
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(keys))
    for key, value in keys:
        out += string(key) + struct.pack("<II", 4, value)
    for name, dims, offset in tensors:
        out += string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, 0, offset)
    path.write_bytes(out + bytes(-len(out) % 32) + bytes(4096))
    return path


@pytest.mark.parametrize("keys, tensors, message", [
    ([("general.alignment", 32), ("general.alignment", 64)], [], "metadata key 'general.alignment' appears twice"),
    ([], [("w", [8], 0), ("w", [8], 32)], "tensor 'w' appears twice"),
    ([], [("w", [8], 0), ("v", [8], 36)], "tensor 'v' starts at 36, not a multiple of the alignment 32"),
    ([("general.alignment", 3)], [], "general.alignment is 3, not a power of two"),
    ([], [("w", [1] * 5, 0)], "tensor 'w' has 5 dimensions; GGUF's have at most 4"),
])
def test_what_llama_cpp_refuses_in_a_header_is_named(tmp_path, keys, tensors, message):
    """Read as written, a second key or tensor of one name silently replaced the first, and a
    tensor off the alignment was read from the wrong bytes: llama.cpp refuses these files."""
    with pytest.raises(ArenaError, match=re.escape(message)):
        read_header(raw_gguf(tmp_path / "bad.gguf", keys, tensors))
    assert read_header(raw_gguf(tmp_path / "good.gguf", [], [("w", [8], 0), ("v", [8], 32)])).tensors["v"].shape == (8,)


def test_the_planners_table_of_types_is_ggufs():
    from planner.gguf_tensors import TYPES
    for number, (name, block, size) in TYPES.items():
        kind = gguf.GGMLQuantizationType(number)
        assert (kind.name, *gguf.GGML_QUANT_SIZES[kind]) == (name, block, size)
