"""The structs shared by Python and WGSL (q8ta_wgpu/uniforms.py) are defined once: the kernels
include the generated declarations, the Python side packs and reads fields by name, and the
generated WGSL declares exactly the fields, types and order the numpy dtype has."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from q8ta_wgpu import uniforms
from q8ta_wgpu.shaders import LIBRARY
from q8ta_wgpu.uniforms import CHAN, GEMM_PARAMS, STRUCTS, TENSOR_DESC, UniformStruct

PACKAGE = Path(uniforms.__file__).parent


def _parse_struct(src: str, name: str) -> list[tuple[str, str]]:
    body = re.search(rf"struct {name} \{{(.*?)\}}", src, re.S)
    assert body, f"no struct {name}"
    text = re.sub(r"//[^\n]*", "", body.group(1))
    return re.findall(r"(\w+)\s*:\s*(\w+)\s*,", text)


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.name)
def test_generated_wgsl_matches_the_dtype(struct):
    fields = _parse_struct(LIBRARY.source(struct.include), struct.name)
    kinds = {"u32": "u", "i32": "i", "f32": "f"}
    assert [(n, kinds[t]) for n, t in fields] == [(n, struct.dtype[n].kind) for n in struct.dtype.names]
    assert struct.dtype.itemsize == 4 * struct.words and struct.words % 4 == 0


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.name)
def test_each_struct_is_declared_by_its_include_only(struct):
    """No kernel file declares a shared struct by hand; the ones that use it include it."""
    users = []
    for f in LIBRARY.files():
        raw = LIBRARY.raw(f)
        assert f"struct {struct.name} " not in raw, f"{f} declares {struct.name}: include {struct.include}"
        src = LIBRARY.source(f)
        code = re.sub(r"//[^\n]*", "", src)
        if "@compute" in code and re.search(rf"\b{struct.name}\b", code):  # a kernel using it
            users.append(f)
            assert src.count(f"struct {struct.name} {{") == 1, f
    assert users, f"no kernel uses {struct.name}"


def test_pack_and_get_by_name():
    floats = {n: 0.25 * i for i, (n, t, _) in enumerate(GEMM_PARAMS.fields) if t == "f32"}
    words = GEMM_PARAMS.pack(
        **{n: i for i, (n, t, _) in enumerate(GEMM_PARAMS.fields) if t != "f32"}, **floats
    )
    assert words.dtype == np.uint32 and words.size == GEMM_PARAMS.words == 28
    assert GEMM_PARAMS.get(words, "add_m_b") == floats["add_m_b"] != 0
    assert GEMM_PARAMS.get(words, "k4_pg") == 3 and GEMM_PARAMS.get(words, "add_m_a") == 18 * 0.25
    assert words[18] == np.float32(18 * 0.25).view(np.uint32)  # the f32 field's bits
    neg = TENSOR_DESC.pack(**{n: 0 for n, _, _ in TENSOR_DESC.fields} | {"zp": -128, "base": 2**32 - 7})
    assert TENSOR_DESC.get(neg, "zp") == -128 and TENSOR_DESC.get(neg, "base") == 2**32 - 7
    with pytest.raises(TypeError, match=r"missing fields \['c', 'h'"):
        TENSOR_DESC.pack(n=1)
    with pytest.raises(TypeError, match=r"unknown fields \['nope'\]"):
        CHAN.pack(**{n: 0 for n, _, _ in CHAN.fields}, nope=1)
    with pytest.raises(ValueError, match="type"):
        UniformStruct("Bad", (("x", "f16", ""),))


def test_no_positional_field_access_in_the_package():
    """Fields are read by name (`STRUCT.get(words, "name")`), never as words[i]."""
    for f in PACKAGE.glob("*.py"):
        src = f.read_text()
        assert not re.search(r"\b(desc|tensor_desc\([^)]*\))\[\d+\]", src), f.name
        assert "pack_fields" not in src, f.name
