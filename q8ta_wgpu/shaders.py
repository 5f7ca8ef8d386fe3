"""The shader library: WGSL sources by name, with their includes resolved.

Sources are the `.wgsl` files of `kernels/` (shipped inside the wheel as `q8ta_wgpu/kernels/`),
the struct declarations generated from `uniforms.py` (`struct_<name>.wgsl`), and sources
registered at run time (a probe's kernel variants, a test's shader): registering
is how new code reaches `Device.pipeline` without touching the package's files.

A line `// #include "name.wgsl"` is replaced by that source, recursively. Each source enters a
shader at most once (a second include of it is dropped: an include guard), and a cycle raises.
The packed int8 dot product is chosen by include: a kernel that calls `dot4I8Packed` includes
"dot4.wgsl", which resolves to `dot4_builtin.wgsl` (nothing: WGSL's builtin) or
`dot4_fallback.wgsl` (a module-scope function of the same name, exact by hand, which shadows the
builtin) by the device's dot4 mode. The builtin path's source is thus the kernel's own text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from . import uniforms

# The include that names the packed dot product, and the file each dot4 mode resolves it to.
DOT4_INCLUDE = "dot4.wgsl"
DOT4_SOURCES = {"builtin": "dot4_builtin.wgsl", "fallback": "dot4_fallback.wgsl"}

T = TypeVar("T")
_INCLUDE = re.compile(r'^//\s*#include\s+"([\w.]+)"\s*$', re.M)
_BINDING = re.compile(r"@group\(0\)\s*@binding\((\d+)\)\s*var(?:<[^>]*>)?\s+(\w+)")
_COMMENT = re.compile(r"//[^\n]*")


def kernels_dir() -> Path:
    """Where the .wgsl files are: inside the installed package, or `kernels/` of a checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "kernels", here.parent / "kernels"):
        if cand.is_dir() and any(cand.glob("*.wgsl")):
            return cand
    raise FileNotFoundError(f"q8ta_wgpu kernels not found in {here / 'kernels'} or {here.parent / 'kernels'}")


class ShaderLibrary:
    """WGSL sources by name: the kernel files plus registered sources. A registered name stays
    for the life of the library and cannot change its text (compiled modules and pipelines are
    cached by name), nor take a kernel file's name."""

    def __init__(self, root: Path | None = None, generated: Mapping[str, str] | None = None) -> None:
        self._root = root
        self._generated = dict(generated or {})  # sources made from Python definitions
        self._registered: dict[str, str] = {}
        self._bindings: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else kernels_dir()

    def files(self) -> list[str]:
        """The kernel files' names, sorted."""
        return sorted(p.name for p in self.root.glob("*.wgsl"))

    def register(self, name: str, source: str) -> None:
        """Make `source` loadable as `name` (idempotent for the same text)."""
        if not re.fullmatch(r"[\w.]+\.wgsl", name):
            raise ValueError(f"shader name {name!r} must be letters, digits, '_' or '.' ending in .wgsl")
        if (self.root / name).is_file() or name in self._generated:
            raise ValueError(f"shader name {name!r} is a kernel file of {self.root}; choose another")
        with self._lock:
            old = self._registered.get(name)
            if old is not None and old != source:
                raise ValueError(f"shader {name!r} is already registered with other text")
            self._registered[name] = source

    def register_many(self, sources: Mapping[str, str]) -> None:
        for name, source in sources.items():
            self.register(name, source)

    def raw(self, name: str) -> str:
        """The source of `name` as written, includes unresolved."""
        with self._lock:
            if name in self._registered:
                return self._registered[name]
        if name in self._generated:
            return self._generated[name]
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"no shader named {name!r} in {self.root} or registered")
        return path.read_text()

    def source(self, name: str, dot4: str = "builtin") -> str:
        """The source of `name` with its includes resolved for dot4 mode `dot4`."""
        if dot4 not in DOT4_SOURCES:
            raise ValueError(f"dot4 mode {dot4!r} is not one of {sorted(DOT4_SOURCES)}")
        seen: set[str] = set()

        def resolve(current: str, chain: tuple[str, ...]) -> str:
            if current in chain:
                raise ValueError(f"include cycle: {' -> '.join((*chain, current))}")
            seen.add(current)

            def include(m: re.Match[str]) -> str:
                target = DOT4_SOURCES[dot4] if m.group(1) == DOT4_INCLUDE else m.group(1)
                if target in chain or target == current:
                    raise ValueError(f"include cycle: {' -> '.join((*chain, current, target))}")
                if target in seen:
                    return ""  # included once already
                return resolve(target, (*chain, current))

            return _INCLUDE.sub(include, self.raw(current))

        return resolve(name, ())

    def ordered(self, name: str, resources: Mapping[str, T]) -> list[T]:
        """`resources` given by binding name, as a list in shader `name`'s @binding order; a
        binding left out or a name the shader does not declare raises ValueError."""
        names = self.bindings(name)
        if set(resources) != set(names):
            raise ValueError(f"{name} binds {list(names)}, given {list(resources)}")
        return [resources[n] for n in names]

    def bindings(self, name: str) -> tuple[str, ...]:
        """The names of shader `name`'s group-0 bindings in @binding order (0, 1, ...): how pass
        specs bind resources by name."""
        with self._lock:
            hit = self._bindings.get(name)
        if hit is not None:
            return hit
        found = {int(i): n for i, n in _BINDING.findall(_COMMENT.sub("", self.source(name)))}
        names = tuple(found[i] for i in sorted(found))
        if sorted(found) != list(range(len(found))):
            raise ValueError(f"shader {name!r}: @binding indices {sorted(found)} are not 0..{len(found) - 1}")
        with self._lock:
            self._bindings[name] = names
        return names


# The library every Device uses unless given another; it serves the structs of uniforms.py.
LIBRARY = ShaderLibrary(generated=uniforms.SOURCES)
